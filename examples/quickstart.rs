//! Two workers contend for one lock over three Redis nodes.
//!
//! Run with `cargo run --example quickstart`. With `RESPLOCK_NODES` set (comma-separated
//! `redis://` URLs) it uses those nodes; otherwise it starts three throwaway `redis-server`
//! processes on free loopback ports and stops them at the end. It installs nothing.

#[path = "common/mod.rs"]
mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::fail;
use resplock::Redlock;

fn main() {
    let (urls, _servers) = common::nodes(3);
    println!("nodes: {}", urls.join(", "));

    let dlm = Redlock::builder()
        .nodes(&urls)
        .retries(20)
        .retry_delay(Duration::from_millis(50))
        .retry_jitter(Duration::from_millis(50))
        .build()
        .unwrap_or_else(|e| fail(&format!("bad configuration: {e}")));

    let start = Instant::now();
    let workers: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|name| {
            let dlm = dlm.clone();
            thread::spawn(move || {
                for round in 1..=3 {
                    let resource = "quickstart:printer";
                    let ttl = Duration::from_secs(2);
                    // One attempt first, to show contention; then wait with retries.
                    let guard = match dlm.try_lock(resource, ttl) {
                        Err(e) if e.is_contention() => {
                            println!("{:>6.0?} {name}: busy, waiting", start.elapsed());
                            dlm.lock(resource, ttl)
                        }
                        other => other,
                    };
                    match guard {
                        Ok(guard) => {
                            println!(
                                "{:>6.0?} {name}: got the lock (round {round}, valid for {:.0?})",
                                start.elapsed(),
                                guard.remaining()
                            );
                            thread::sleep(Duration::from_millis(150));
                            match guard.release() {
                                Ok(true) => println!("{:>6.0?} {name}: released", start.elapsed()),
                                Ok(false) => println!("{name}: the lock had expired"),
                                Err(e) => println!("{name}: release failed: {e}"),
                            }
                        }
                        Err(e) => println!("{name}: not acquired: {e}"),
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}
