//! Shared by the examples: nodes from `RESPLOCK_NODES`, or throwaway `redis-server` processes
//! on free loopback ports, stopped (by PID) when dropped. Installs nothing.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The node URLs, and the servers to keep alive while they are used.
pub fn nodes(count: usize) -> (Vec<String>, Vec<Server>) {
    match std::env::var("RESPLOCK_NODES") {
        Ok(list) => (list.split(',').map(str::to_owned).collect(), Vec::new()),
        Err(_) => start_throwaway_nodes(count),
    }
}

/// Throwaway `redis-server` processes, killed (by PID) when dropped.
pub struct Server(Child);

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

pub fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(1)
}
