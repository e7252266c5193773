//! Why fencing tokens: a lock holder that pauses past its validity, then writes.
//!
//! Run with `cargo run --example fenced_write` (three throwaway `redis-server` nodes are
//! started, or `RESPLOCK_NODES` is used). The protected resource is a file that remembers the
//! highest token it has accepted and refuses a write with a lower one: the check Kleppmann
//! asks of the storage, which no lock can do on its own.
//!
//! The scene, played twice (without fencing, then with it):
//! 1. A child process takes the lock (ttl 1 s) and is about to write.
//! 2. It is paused (`SIGSTOP`, standing for a GC pause or a swapped-out process) for 2 s: its
//!    lock expires meanwhile.
//! 3. This process takes the lock, writes "fresh" (token 2 with fencing) and releases.
//! 4. The child resumes (`SIGCONT`) and writes "stale", believing it still holds the lock.
//!
//! Without fencing the stale write overwrites the fresh one. With fencing it carries the
//! older token and the file rejects it.

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fail;
use resplock::Redlock;

const RESOURCE: &str = "example:ledger";
const TTL: Duration = Duration::from_secs(1);
const PAUSE: Duration = Duration::from_secs(2);

/// The protected resource: a file holding the highest token accepted and the data.
struct Ledger(PathBuf);

impl Ledger {
    /// Writes `data` unless `token` is lower than the highest token seen. `None`: no token
    /// (a resource that cannot check), always accepted.
    fn write(&self, token: Option<u64>, data: &str) -> Result<(), String> {
        let (highest, _) = self.read();
        match token {
            Some(token) if token < highest => {
                return Err(format!("rejected: token {token} < {highest}"));
            }
            _ => {}
        }
        let keep = token.unwrap_or(0).max(highest);
        std::fs::write(&self.0, format!("{keep}\n{data}\n")).map_err(|e| e.to_string())
    }

    fn read(&self) -> (u64, String) {
        let text = std::fs::read_to_string(&self.0).unwrap_or_default();
        let mut lines = text.lines();
        let token = lines.next().and_then(|t| t.parse().ok()).unwrap_or(0);
        (token, lines.next().unwrap_or("").to_owned())
    }
}

fn manager(urls: &[String], fencing: bool) -> Redlock {
    Redlock::builder()
        .nodes(urls)
        .fencing(fencing)
        .build()
        .unwrap_or_else(|e| fail(&format!("bad configuration: {e}")))
}

/// The child: take the lock, say so, wait for the go (it is paused meanwhile), write.
fn child(urls: &[String], fencing: bool, ledger: &Path) {
    let dlm = manager(urls, fencing);
    let guard = dlm
        .lock(RESOURCE, TTL)
        .unwrap_or_else(|e| fail(&format!("child: {e}")));
    println!("locked, token {:?}", guard.token());
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    // Resumed long after the validity ended; a careless holder writes anyway.
    let outcome = Ledger(ledger.to_owned()).write(guard.token(), "stale (child, after its pause)");
    println!("wrote {outcome:?}");
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &child.id().to_string()])
        .status();
    if !status.is_ok_and(|s| s.success()) {
        fail(&format!("could not send SIG{name} to the child"));
    }
}

fn scene(urls: &[String], fencing: bool, dir: &Path) {
    let path = dir.join(if fencing {
        "ledger-fenced"
    } else {
        "ledger-plain"
    });
    let ledger = Ledger(path.clone());
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(&e.to_string()));
    let mut child = Command::new(exe)
        .arg("child")
        .arg(if fencing { "fenced" } else { "plain" })
        .arg(&path)
        .env("RESPLOCK_NODES", urls.join(","))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("could not start the child: {e}")));
    let mut out = BufReader::new(child.stdout.take().unwrap_or_else(|| fail("no stdout")));
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    println!("  child: {}", line.trim());

    signal(&child, "STOP");
    std::thread::sleep(PAUSE);
    let dlm = manager(urls, fencing);
    let guard = dlm
        .lock(RESOURCE, TTL)
        .unwrap_or_else(|e| fail(&format!("parent: {e}")));
    let wrote = ledger.write(guard.token(), "fresh (parent)");
    println!(
        "  parent: locked with token {:?}, wrote {wrote:?}",
        guard.token()
    );
    let _ = guard.release();

    signal(&child, "CONT");
    if let Some(stdin) = child.stdin.as_mut() {
        let _ = stdin.write_all(b"go\n");
    }
    line.clear();
    let _ = out.read_line(&mut line);
    println!("  child, resumed: {}", line.trim());
    let _ = child.wait();
    let (token, data) = ledger.read();
    println!("  the ledger holds: {data:?} (token {token})");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, mode, path] = args.as_slice() {
        if role == "child" {
            let urls: Vec<String> = std::env::var("RESPLOCK_NODES")
                .unwrap_or_default()
                .split(',')
                .map(str::to_owned)
                .collect();
            child(&urls, mode == "fenced", Path::new(path));
            return;
        }
    }
    let (urls, _servers) = common::nodes(3);
    let dir = std::env::temp_dir().join(format!("resplock-fenced-write-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&e.to_string()));
    println!("without fencing:");
    scene(&urls, false, &dir);
    println!("with fencing:");
    scene(&urls, true, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}
