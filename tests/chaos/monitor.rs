//! A debugging aid, off by default: with `RESPLOCK_CHAOS_MONITOR=<dir>` the test watches every
//! lock node with `MONITOR` (directly, not through the proxies) and writes what each node ran
//! on the chaos keys to `<dir>/monitor-n<i>.txt`, one line per command: the instant the
//! node ran it and the instant the line was read, both as milliseconds since the start of the
//! chaos on the run's timeline, then the node's line (commands run by scripts show as
//! `[0 lua]`; a `[0 monitor]` line marks each (re)connection: what ran before it is
//! missing). Lock values are unique per acquisition, and the records carry them (`value=`),
//! so a record's keys can be followed command by command on every node. `MONITOR` slows the
//! nodes down a little; the connection is re-opened after a kill or restart.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::{Clock, Ns};
use crate::support::{Raw, RawReply};

pub struct Monitor {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<(Ns, String)>>>,
    /// Wall clock (seconds since the epoch) and the run's clock, read together.
    wall0: f64,
    mono0: Ns,
}

impl Monitor {
    pub fn start(nodes: &[SocketAddr], clock: Clock) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = nodes
            .iter()
            .map(|&addr| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || watch(addr, clock, &stop))
            })
            .collect();
        let wall0 = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Monitor {
            stop,
            threads,
            wall0,
            mono0: clock.now(),
        }
    }

    /// Stops watching and writes the files; `start_ns` is the start of the chaos.
    pub fn finish(self, dir: &str, start_ns: Ns) {
        self.stop.store(true, Ordering::Relaxed);
        let offset_ms = (self.mono0 as f64 - start_ns as f64) / 1e6;
        for (i, handle) in self.threads.into_iter().enumerate() {
            let lines = handle.join().unwrap_or_default();
            let mut text = String::new();
            for (read_at, line) in lines {
                let ran_at = line
                    .split_whitespace()
                    .next()
                    .and_then(|t| t.parse::<f64>().ok())
                    .map_or(f64::NAN, |t| (t - self.wall0) * 1e3 + offset_ms);
                let read_ms = (read_at as f64 - start_ns as f64) / 1e6;
                text.push_str(&format!("{ran_at:.3} {read_ms:.3} {line}\n"));
            }
            let path = format!("{dir}/monitor-n{i}.txt");
            if let Err(e) = std::fs::write(&path, text) {
                println!("chaos: cannot write {path}: {e}");
            }
        }
    }
}

fn watch(addr: SocketAddr, clock: Clock, stop: &AtomicBool) -> Vec<(Ns, String)> {
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut raw) = Raw::connect(addr) else {
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        raw.set_timeout(Duration::from_millis(200));
        if raw.send(&[b"MONITOR"]).is_err() {
            continue;
        }
        // Commands run while this watch was down are missing: say so.
        out.push((clock.now(), "- [0 monitor] \"(re)connected\"".to_owned()));
        while !stop.load(Ordering::Relaxed) {
            match raw.read_reply() {
                Ok(RawReply::Simple(line)) => {
                    if line.contains("chaos:lock:") {
                        out.push((clock.now(), line));
                    }
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
    }
    out
}
