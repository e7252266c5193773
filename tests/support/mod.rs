//! Test rig shared by every integration test, benchmark and example: real `redis-server`
//! nodes, a raw RESP client for assertions, a fault-injecting TCP proxy and a scripted fake
//! RESP server.
//!
//! Use it with `mod support;` at the top of a test file, then e.g.
//! `let cluster = support::Cluster::start(3);`. Everything listens on `127.0.0.1` on ports
//! chosen by the OS (never 6379), and everything it starts (processes, threads, temp dirs) is
//! stopped and removed on `Drop`, also while a test panics. Processes are signalled only by
//! their PID, never by name.
//!
//! - [`redis`]: [`require_redis`], [`RedisOptions`], [`RedisNode`], [`Cluster`].
//! - [`raw`]: [`Raw`], a tiny blocking RESP client, and the owned [`RawReply`].
//! - [`proxy`]: [`FaultProxy`]: latency per direction, black hole, reset, partition.
//! - [`fake`]: [`FakeServer`] answering per command with an [`Action`], and [`NeverAccepts`]
//!   for connect timeouts.
//! - [`errors`]: assertions on the crate's `NotAcquired` errors.
//! - [`tls`]: a throwaway PKI (rcgen) and `redis-server` nodes with a TLS port.
//! - [`measure`]: for benchmarks and timelines: environment knobs, plain sockets for floors,
//!   percentiles, machine-wide monotonic readings.
//!
//! Depends only on std, `resplock::resp` (the codec) and `socket2` (already a dependency of the
//! crate; used for `SO_LINGER` 0 resets and a listen backlog of 0), plus `rcgen` (a
//! dev-dependency) for the certificates of [`tls`].
#![allow(dead_code, unused_imports)]

pub mod errors;
pub mod fake;
pub mod measure;
pub mod proxy;
pub mod raw;
pub mod redis;
pub mod tls;

pub use fake::{Action, Command, FakeServer, NeverAccepts};
pub use proxy::FaultProxy;
pub use raw::{Raw, RawReply};
pub use redis::{find_redis_server, require_redis, Cluster, RedisNode, RedisOptions};

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The loopback address every part of the rig listens on.
pub const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A loopback port that was free a moment ago: binds `127.0.0.1:0`, reads the port the OS
/// chose, and releases it. Another process may take it before the caller binds it again, so
/// callers retry with a fresh port when binding fails. Never returns 6379.
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind(SocketAddrV4::new(LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("rig: cannot bind 127.0.0.1:0: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("rig: local_addr of a bound listener: {e}"))
            .port();
        if port != 6379 {
            return port;
        }
    }
}

/// `127.0.0.1:port`.
pub fn local_addr(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(LOCALHOST, port))
}

/// Creates a fresh, empty directory under [`std::env::temp_dir`] whose name starts with
/// `resplock-<label>-` and is unique to this process and call. The caller removes it.
pub fn unique_temp_dir(label: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "resplock-{label}-{}-{n}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("rig: cannot create temp dir {}: {e}", dir.display()));
    dir
}

/// Polls `cond` every few milliseconds until it returns true (then returns true) or `timeout`
/// has passed (then returns false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sleeps for `total`, in slices of at most 5 ms, returning early (false) as soon as `stop`
/// returns true. Returns true when the whole duration elapsed. Lets rig threads that delay
/// bytes notice a shutdown promptly.
pub(crate) fn sleep_unless(total: Duration, mut stop: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + total;
    loop {
        if stop() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
    }
}
