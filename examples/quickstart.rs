//! Two workers contend for one lock over three Redis nodes.
//!
//! Run with `cargo run --example quickstart`. With `RESPLOCK_NODES` set (comma-separated
//! `redis://` URLs) it uses those nodes; otherwise it starts three throwaway `redis-server`
//! processes on free loopback ports and stops them at the end. It installs nothing.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use resplock::Redlock;

fn main() {
    let (urls, _servers) = match std::env::var("RESPLOCK_NODES") {
        Ok(list) => (list.split(',').map(str::to_owned).collect(), Vec::new()),
        Err(_) => start_throwaway_nodes(3),
    };
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

/// Throwaway `redis-server` processes, killed (by PID) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_throwaway_nodes(count: usize) -> (Vec<String>, Vec<Server>) {
    let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
    let mut urls = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..count {
        let port = free_port();
        let spawned = Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => servers.push(Server(child)),
            Err(e) => {
                drop(servers);
                fail(&format!(
                    "could not start {binary}: {e}\n\
                     install it with: sudo apt-get install -y redis-server\n\
                     or point REDIS_SERVER at a redis-server binary, \
                     or set RESPLOCK_NODES to existing nodes"
                ))
            }
        }
        if !wait_until_listening(port) {
            drop(servers);
            fail(&format!("redis-server did not start on port {port}"));
        }
        urls.push(format!("redis://127.0.0.1:{port}"));
    }
    (urls, servers)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| fail(&format!("no free port: {e}")))
}

fn wait_until_listening(port: u16) -> bool {
    let give_up = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > give_up {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}

fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(1)
}
