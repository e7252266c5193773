//! What a fencing token costs: lock + release with `fencing(true)` against the same without
//! it and against the floor of three round trips, on real `redis-server` nodes the bench starts
//! itself (through the test rig, `tests/support/`).
//!
//! `cargo bench --bench fencing` prints, for 1, 3 and 5 nodes, the p50 and p99 of:
//! - `unfenced`: `lock` then `release` (one round each);
//! - `fenced`: `lock` then `release` on a manager with fencing (three rounds);
//! - `floor`: a plain `TcpStream` client that runs the same three scripts (fenced acquire,
//!   confirm, release) as three write-all-then-read-all round trips, checking every reply.
//!
//! The three run in interleaved blocks, so load from other processes hits them alike.
//! `RESPLOCK_BENCH_ITERS` sets the operations per variant (default 3000).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use resplock::resp::{decode, encode_command, Limits, Reply, Status};
use resplock::script::{FENCED_ACQUIRE_SHA1, FENCE_CONFIRM_SHA1, RELEASE_SHA1};
use resplock::Redlock;
use support::{measure, Cluster};

const TTL: Duration = Duration::from_secs(30);
const BLOCK: usize = 100;

/// Three round trips over plain sockets: take + count, confirm, release.
struct Floor {
    conns: Vec<TcpStream>,
    buf: Vec<u8>,
    counter: u64,
}

impl Floor {
    fn new(cluster: &Cluster) -> Self {
        let conns = cluster
            .nodes()
            .iter()
            .map(|node| measure::plain_stream(node.addr(), Duration::from_secs(2)))
            .collect();
        Self {
            conns,
            buf: vec![0; 4096],
            counter: 0,
        }
    }

    /// Writes `command` to every node, then reads one reply from each, checking it.
    fn round(&mut self, command: &[u8], check: impl Fn(Reply<'_>) -> bool) {
        for conn in &mut self.conns {
            conn.write_all(command).unwrap_or_else(|e| panic!("{e}"));
        }
        for conn in &mut self.conns {
            let mut have = 0;
            loop {
                let n = conn
                    .read(&mut self.buf[have..])
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(n > 0, "closed");
                have += n;
                match decode(&self.buf[..have], &Limits::LOCK_CLIENT) {
                    Ok(Status::Complete((reply, used))) => {
                        assert_eq!(used, have, "one reply");
                        assert!(check(reply), "unexpected reply {reply:?}");
                        break;
                    }
                    Ok(Status::Incomplete) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }

    fn lock_release(&mut self) {
        self.counter += 1;
        let value = format!("{:032x}", self.counter);
        let (key, counter) = (&b"bench:floor"[..], &b"resplock:fence:bench:floor"[..]);
        let mut command = Vec::new();
        let args: [&[u8]; 7] = [
            b"EVALSHA",
            FENCED_ACQUIRE_SHA1.as_bytes(),
            b"2",
            key,
            counter,
            value.as_bytes(),
            b"30000",
        ];
        encode_command(&mut command, &args);
        self.round(&command, |r| matches!(r, Reply::Integer(t) if t > 0));
        command.clear();
        let token = self.counter.to_string();
        let args: [&[u8]; 7] = [
            b"EVALSHA",
            FENCE_CONFIRM_SHA1.as_bytes(),
            b"2",
            key,
            counter,
            value.as_bytes(),
            token.as_bytes(),
        ];
        encode_command(&mut command, &args);
        self.round(&command, |r| r == Reply::Integer(1));
        command.clear();
        let args: [&[u8]; 5] = [
            b"EVALSHA",
            RELEASE_SHA1.as_bytes(),
            b"1",
            key,
            value.as_bytes(),
        ];
        encode_command(&mut command, &args);
        self.round(&command, |r| r == Reply::Integer(1));
    }
}

fn lock_release(dlm: &Redlock, key: &str, fenced: bool) {
    let guard = dlm.lock(key, TTL).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(guard.token().is_some(), fenced);
    assert_eq!(guard.release(), Ok(true));
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let iters = measure::env_count("RESPLOCK_BENCH_ITERS", 3000);
    println!("## Fencing: lock + release, p50 / p99 (interleaved blocks of {BLOCK})");
    println!(
        "| nodes | unfenced | fenced | floor (3 round trips) | fenced / unfenced | fenced / floor |"
    );
    println!("|---|---|---|---|---|---|");
    for nodes in [1, 3, 5] {
        let cluster = Cluster::start(nodes);
        let build = |fencing: bool| {
            Redlock::builder()
                .nodes(cluster.urls())
                .fencing(fencing)
                .node_timeout(Duration::from_millis(200))
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let (plain, fenced) = (build(false), build(true));
        let mut floor = Floor::new(&cluster);
        for _ in 0..300 {
            lock_release(&plain, "bench:plain", false);
            lock_release(&fenced, "bench:fenced", true);
            floor.lock_release();
        }
        let mut samples: [Vec<Duration>; 3] = Default::default();
        for block in 0..iters.div_ceil(BLOCK) {
            for turn in 0..3 {
                let variant = (block + turn) % 3;
                for _ in 0..BLOCK {
                    let started = Instant::now();
                    match variant {
                        0 => lock_release(&plain, "bench:plain", false),
                        1 => lock_release(&fenced, "bench:fenced", true),
                        _ => floor.lock_release(),
                    }
                    samples[variant].push(started.elapsed());
                }
            }
        }
        for list in &mut samples {
            list.sort_unstable();
        }
        let [p50, p99] = [0.5, 0.99].map(|q| samples.each_ref().map(|s| measure::percentile(s, q)));
        let [plain, fenced, floor] = p50;
        println!(
            "| {nodes} | {:?} / {:?} | {:?} / {:?} | {:?} / {:?} | {:.2}x | {:.2}x |",
            plain,
            p99[0],
            fenced,
            p99[1],
            floor,
            p99[2],
            fenced.as_secs_f64() / plain.as_secs_f64(),
            fenced.as_secs_f64() / floor.as_secs_f64(),
        );
    }
}
