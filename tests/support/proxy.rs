//! `FaultProxy`: a TCP proxy on a free loopback port in front of one target (usually a
//! [`RedisNode`](super::RedisNode)), with faults switched on and off while it runs.
//!
//! Threads: one accepting (nonblocking `accept` polled every 2 ms), and per connection one
//! reader and one writer per direction. A reader stamps each chunk it reads with
//! `now + latency` for its direction; the writer delivers chunks in order, each no earlier than
//! its stamp. So latency is added once per chunk without accumulating, order is preserved, and
//! a new latency applies to chunks read after the change, on existing and new connections.
//!
//! Faults (all take effect on existing and new connections):
//! - latency per direction: [`FaultProxy::set_latency_upstream`] (client → target) and
//!   [`FaultProxy::set_latency_downstream`] (target → client);
//! - [`FaultProxy::blackhole`]: bytes are read and dropped in both directions (also chunks
//!   already queued); new connections are accepted and then hear nothing. Bytes dropped are
//!   lost for good: a connection used during a black hole stays out of step after it ends;
//! - [`FaultProxy::reset_all`]: every current connection is closed with `SO_LINGER` 0 on both
//!   sides, so the client and the target get a TCP RST (`ECONNRESET`), not an orderly FIN;
//! - [`FaultProxy::partition`]: resets every current connection, and while it lasts every new
//!   connection is reset right after the kernel accepted it (the client's `connect` succeeds,
//!   its first read or write fails with a reset or EOF; it is not `ECONNREFUSED`). Heal with
//!   `partition(false)`.
//!
//! When the target refuses the proxy's own connection (node down), the client connection is
//! reset, so a stopped node behind a proxy looks like a reset, not a refusal. Dropping the
//! proxy closes the listener and every connection and joins all its threads.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::SockRef;

use super::redis::RedisNode;
use super::{local_addr, sleep_unless, LOCALHOST};

/// How long the proxy waits for its own connection to the target.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One direction of a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dir {
    /// Client → target.
    Up,
    /// Target → client.
    Down,
}

struct Shared {
    target: SocketAddr,
    latency_up_ns: AtomicU64,
    latency_down_ns: AtomicU64,
    blackhole: AtomicBool,
    partitioned: AtomicBool,
    /// Times the accept loop found its backlog empty: healing waits for one more, so a
    /// connection made during a partition is reset, never served once it ends.
    backlog_drained: AtomicU64,
    shutdown: AtomicBool,
    accepted: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn latency(&self, dir: Dir) -> Duration {
        let ns = match dir {
            Dir::Up => &self.latency_up_ns,
            Dir::Down => &self.latency_down_ns,
        };
        Duration::from_nanos(ns.load(Ordering::SeqCst))
    }

    fn spawn(self: &Arc<Self>, f: impl FnOnce() + Send + 'static) {
        let handle = std::thread::Builder::new()
            .name("rig-proxy".into())
            .spawn(f)
            .unwrap_or_else(|e| panic!("rig: spawn proxy thread: {e}"));
        self.threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(handle);
    }

    fn register(&self, conn: &Arc<Conn>) {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(conn.id, Arc::clone(conn));
    }

    fn unregister(&self, id: u64) {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Resets and forgets every current connection.
    fn reset_all(&self) {
        let conns: Vec<Arc<Conn>> = self
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, c)| c)
            .collect();
        for conn in conns {
            conn.kill(true);
        }
    }
}

/// One proxied connection. The sockets are closed when the last thread using it ends.
struct Conn {
    id: u64,
    client: TcpStream,
    /// `None` for a connection accepted during a black hole whose target could not be reached.
    upstream: Option<TcpStream>,
    dead: AtomicBool,
    /// Directions still running; the last one to finish unregisters the connection.
    live: AtomicUsize,
}

impl Conn {
    /// Marks the connection dead and wakes its readers (`shutdown(Read)` sends nothing). With
    /// `rst`, `SO_LINGER` 0 makes the final close send a RST to both peers.
    fn kill(&self, rst: bool) {
        self.dead.store(true, Ordering::SeqCst);
        for s in std::iter::once(&self.client).chain(self.upstream.as_ref()) {
            if rst {
                let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
            }
            let _ = s.shutdown(Shutdown::Read);
        }
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    fn stream(&self, dir: Dir, reading: bool) -> Option<&TcpStream> {
        // Up: read the client, write the target. Down: read the target, write the client.
        match (dir, reading) {
            (Dir::Up, true) | (Dir::Down, false) => Some(&self.client),
            (Dir::Up, false) | (Dir::Down, true) => self.upstream.as_ref(),
        }
    }
}

/// Resets `stream` (RST on close) and closes it.
fn reset_stream(stream: TcpStream) {
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// A fault-injecting TCP proxy. See the module docs.
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    userinfo: String,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `target`, with no fault.
    pub fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind(local_addr(0))
            .unwrap_or_else(|e| panic!("rig: proxy cannot bind {LOCALHOST}:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("rig: proxy local_addr: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("rig: proxy set_nonblocking: {e}"));
        let shared = Arc::new(Shared {
            target,
            latency_up_ns: AtomicU64::new(0),
            latency_down_ns: AtomicU64::new(0),
            blackhole: AtomicBool::new(false),
            partitioned: AtomicBool::new(false),
            backlog_drained: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("rig-proxy-accept".into())
            .spawn(move || accept_loop(&accept_shared, &listener))
            .unwrap_or_else(|e| panic!("rig: spawn proxy accept thread: {e}"));
        FaultProxy {
            shared,
            addr,
            userinfo: String::new(),
            accept: Some(accept),
        }
    }

    /// A proxy in front of `node`, whose [`FaultProxy::url`] carries the node's credentials.
    /// The proxy keeps the node's address: it follows the node across restarts.
    pub fn for_node(node: &RedisNode) -> FaultProxy {
        let mut proxy = Self::start(node.addr());
        proxy.userinfo = node.userinfo();
        proxy
    }

    /// The proxy's own address (`127.0.0.1:port`): connect here instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://[userinfo]127.0.0.1:port` pointing at the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}127.0.0.1:{}", self.userinfo, self.addr.port())
    }

    /// The address the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Delays every chunk sent client → target by `latency` (0 to turn off).
    pub fn set_latency_upstream(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.shared.latency_up_ns.store(ns, Ordering::SeqCst);
    }

    /// Delays every chunk sent target → client by `latency` (0 to turn off).
    pub fn set_latency_downstream(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.shared.latency_down_ns.store(ns, Ordering::SeqCst);
    }

    /// Sets both latencies: a round trip then costs at least `2 * latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.set_latency_upstream(latency);
        self.set_latency_downstream(latency);
    }

    /// Turns the black hole on (read everything, forward nothing) or off.
    pub fn blackhole(&self, on: bool) {
        self.shared.blackhole.store(on, Ordering::SeqCst);
    }

    /// Resets every current connection (RST to both sides). New connections work normally.
    pub fn reset_all(&self) {
        self.shared.reset_all();
    }

    /// Cuts the target off (`true`: reset current connections and every new one) or heals
    /// (`false`).
    pub fn partition(&self, on: bool) {
        if on {
            self.shared.partitioned.store(true, Ordering::SeqCst);
            self.shared.reset_all();
            return;
        }
        // Connections made during the partition may still wait in the listen backlog, with
        // commands in them: let the accept loop reset them all before healing.
        let seen = self.shared.backlog_drained.load(Ordering::SeqCst);
        let give_up = Instant::now() + Duration::from_secs(5);
        while self.shared.backlog_drained.load(Ordering::SeqCst) < seen + 2
            && Instant::now() < give_up
            && self.shared.partitioned.load(Ordering::SeqCst)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.shared.partitioned.store(false, Ordering::SeqCst);
    }

    /// Clears every fault: no latency, no black hole, no partition.
    pub fn heal(&self) {
        self.set_latency(Duration::ZERO);
        self.blackhole(false);
        self.partition(false);
    }

    /// Connections accepted so far (including ones reset by a partition).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections currently being forwarded.
    pub fn active_connections(&self) -> usize {
        self.shared
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Bytes delivered client → target so far.
    pub fn bytes_upstream(&self) -> u64 {
        self.shared.bytes_up.load(Ordering::SeqCst)
    }

    /// Bytes delivered target → client so far.
    pub fn bytes_downstream(&self) -> u64 {
        self.shared.bytes_down.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    /// Closes the listener, resets every connection and joins every thread.
    fn drop(&mut self) {
        // Reset before raising the flag: a writer that sees the flag first unregisters its
        // connection, and reset_all would then never wake the reader blocked on it.
        self.shared.reset_all();
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        self.shared.reset_all();
        loop {
            let handles: Vec<JoinHandle<()>> = std::mem::take(
                &mut *self
                    .shared
                    .threads
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            if handles.is_empty() {
                break;
            }
            for h in handles {
                let _ = h.join();
            }
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    let mut last_prune = Instant::now();
    while !shared.shutdown.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                if shared.partitioned.load(Ordering::SeqCst) {
                    reset_stream(client);
                    continue;
                }
                let s = Arc::clone(shared);
                shared.spawn(move || serve(&s, client));
            }
            Err(_) => {
                shared.backlog_drained.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        if last_prune.elapsed() > Duration::from_millis(200) {
            last_prune = Instant::now();
            shared
                .threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|h| !h.is_finished());
        }
    }
}

/// Connects to the target and runs the four forwarding threads of one connection (this one
/// becomes the client → target reader).
fn serve(shared: &Arc<Shared>, client: TcpStream) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_nodelay(true);
    let upstream = match TcpStream::connect_timeout(&shared.target, UPSTREAM_CONNECT_TIMEOUT) {
        Ok(u) => {
            let _ = u.set_nodelay(true);
            Some(u)
        }
        Err(_) if shared.blackhole.load(Ordering::SeqCst) => None,
        Err(_) => {
            reset_stream(client);
            return;
        }
    };
    let directions = if upstream.is_some() { 2 } else { 1 };
    let conn = Arc::new(Conn {
        id: shared.next_id.fetch_add(1, Ordering::SeqCst),
        client,
        upstream,
        dead: AtomicBool::new(false),
        live: AtomicUsize::new(directions),
    });
    shared.register(&conn);
    // A partition or shutdown that started while we connected has already swept the
    // registry: apply it to this connection too.
    if shared.partitioned.load(Ordering::SeqCst) || shared.shutdown.load(Ordering::SeqCst) {
        shared.unregister(conn.id);
        conn.kill(true);
    }
    if conn.upstream.is_none() {
        // Black hole with the target unreachable: swallow the client's bytes.
        let mut sink = [0u8; 16 * 1024];
        while !conn.is_dead() && matches!((&conn.client).read(&mut sink), Ok(n) if n > 0) {}
        finish(shared, &conn);
        return;
    }
    let (up_tx, up_rx) = mpsc::channel();
    let (down_tx, down_rx) = mpsc::channel();
    for (dir, rx) in [(Dir::Up, up_rx), (Dir::Down, down_rx)] {
        let (s, c) = (Arc::clone(shared), Arc::clone(&conn));
        shared.spawn(move || write_loop(&s, &c, dir, &rx));
    }
    let (s, c) = (Arc::clone(shared), Arc::clone(&conn));
    shared.spawn(move || read_loop(&s, &c, Dir::Down, &down_tx));
    read_loop(shared, &conn, Dir::Up, &up_tx);
}

/// Reads chunks and queues them with their due time, until EOF, an error or death.
fn read_loop(shared: &Shared, conn: &Conn, dir: Dir, tx: &Sender<(Instant, Vec<u8>)>) {
    let Some(mut src) = conn.stream(dir, true) else {
        return;
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if conn.is_dead() {
            return;
        }
        if shared.blackhole.load(Ordering::SeqCst) {
            continue;
        }
        let due = Instant::now() + shared.latency(dir);
        if tx.send((due, buf[..n].to_vec())).is_err() {
            return;
        }
    }
}

/// Delivers queued chunks in order, each no earlier than its due time. On the reader's EOF it
/// forwards the half-close; on a write error it kills the connection.
fn write_loop(shared: &Shared, conn: &Conn, dir: Dir, rx: &Receiver<(Instant, Vec<u8>)>) {
    let stop = || conn.is_dead() || shared.shutdown.load(Ordering::SeqCst);
    let Some(mut dst) = conn.stream(dir, false) else {
        return;
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok((due, chunk)) => {
                let wait = due.saturating_duration_since(Instant::now());
                if !sleep_unless(wait, stop) {
                    break;
                }
                if shared.blackhole.load(Ordering::SeqCst) {
                    continue;
                }
                if dst.write_all(&chunk).is_err() {
                    conn.kill(true);
                    break;
                }
                let counter = match dir {
                    Dir::Up => &shared.bytes_up,
                    Dir::Down => &shared.bytes_down,
                };
                counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
            Err(RecvTimeoutError::Timeout) => {
                if stop() {
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                if !conn.is_dead() {
                    let _ = dst.shutdown(Shutdown::Write);
                }
                break;
            }
        }
    }
    finish(shared, conn);
}

/// Called once per direction when it is done; the last one unregisters the connection.
fn finish(shared: &Shared, conn: &Conn) {
    if conn.live.fetch_sub(1, Ordering::SeqCst) == 1 {
        shared.unregister(conn.id);
    }
}
