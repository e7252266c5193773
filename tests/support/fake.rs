//! `FakeServer`: a scripted RESP server on a free loopback port, for hostile and slow replies;
//! and `NeverAccepts`: an address whose TCP handshake never completes, for connect timeouts.
//!
//! A fake server parses each incoming command (a RESP array of bulk strings, decoded with
//! `resplock::resp::decode`), records it, and asks the test's handler what to do with it: the
//! handler is `Fn(&Command) -> Action`, called on the connection's own thread, one command at
//! a time per connection (like Redis, a delayed reply also delays the replies after it). A
//! command that is not an array of bulk strings, or a malformed frame, closes the connection.
//! Stateful scripts (answer differently the second time, per connection via
//! [`Command::conn`]/[`Command::seq`]) keep their state in atomics or a `Mutex` captured by
//! the closure. Code under test that sends `AUTH`/`SELECT` on connect sees them too.
//!
//! The connection preamble is answered by the rig itself: resplock loads every one of its
//! scripts (`resplock::script::SCRIPTS`; `SCRIPT LOAD`, replies unread) at the start of every
//! new connection, after asking `INFO server` (answered with a `run_id` unique to the fake and
//! a long uptime). Those commands, up to the
//! first other command after `AUTH`/`SELECT`, get the script's digest from the rig and are
//! neither passed to the handler nor recorded in [`FakeServer::commands`]; they are counted in
//! [`FakeServer::preamble_loads`]. A `SCRIPT LOAD` anywhere else goes to the handler as usual.
//!
//! ```ignore
//! let fake = FakeServer::start(|cmd| {
//!     if cmd.is("SET") { Action::nil() }                         // lock held elsewhere
//!     else if cmd.is("EVALSHA") { Action::error("NOSCRIPT No matching script.") }
//!     else { Action::ReplyAfter(Duration::from_millis(300), b"+OK\r\n".to_vec()) }
//! });
//! // ... point the code under test at fake.url(), then:
//! assert_eq!(fake.command_names(), ["SET"]);
//! ```
//!
//! Why `NeverAccepts` and not a "non-routable" address such as `10.255.255.1`: in this
//! sandbox outbound connections to arbitrary addresses (10.255.255.1, 198.51.100.1,
//! 240.0.0.1, ...) complete instantly through a transparent proxy, and on other networks
//! they may be refused or routed. A loopback listener with a backlog of 0 whose queue is
//! filled by the rig itself and which never calls `accept` makes the kernel drop every
//! further SYN, so `connect` times out the same way everywhere on Linux.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use resplock::resp::{self, Limits, Reply, Status};
use socket2::{Domain, SockRef, Socket, Type};

use super::raw::RawReply;
use super::{local_addr, sleep_unless, wait_until};

/// One command received by a [`FakeServer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Which connection it came on: 0 for the first accepted, then 1, 2, ...
    pub conn: u64,
    /// Its position on that connection: 0 for the first command.
    pub seq: u64,
    /// The arguments as sent, the command name first.
    pub args: Vec<Vec<u8>>,
}

impl Command {
    /// The command name, upper-cased (`"SET"`, `"EVALSHA"`); empty for an empty array.
    pub fn name(&self) -> String {
        self.args
            .first()
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
            .unwrap_or_default()
    }

    /// True when the command name is `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.args
            .first()
            .is_some_and(|a| a.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// True for the two-word command `name sub` (e.g. `SCRIPT LOAD`), ignoring ASCII case.
    pub fn is_sub(&self, name: &str, sub: &str) -> bool {
        self.is(name)
            && self
                .args
                .get(1)
                .is_some_and(|a| a.eq_ignore_ascii_case(sub.as_bytes()))
    }

    /// Argument `i` (0 is the command name).
    pub fn arg(&self, i: usize) -> Option<&[u8]> {
        self.args.get(i).map(Vec::as_slice)
    }
}

/// What a [`FakeServer`] does with one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes at once (any bytes: valid RESP or not).
    Reply(Vec<u8>),
    /// Wait, then write the bytes. Later commands on the connection wait too.
    ReplyAfter(Duration, Vec<u8>),
    /// Write the bytes one at a time (`TCP_NODELAY`), sleeping this long between two bytes.
    ReplyBytewise(Vec<u8>, Duration),
    /// Write the first half of the bytes (at least one byte), then close the connection.
    HalfThenClose(Vec<u8>),
    /// Close the connection without replying (FIN; a RST if unread input remains).
    Close,
    /// Close the connection with `SO_LINGER` 0: the client gets a RST (`ECONNRESET`).
    Reset,
    /// Never reply to this command; keep reading (and recording) what follows.
    Silent,
}

impl Action {
    /// `+OK`.
    pub fn ok() -> Action {
        Action::Reply(b"+OK\r\n".to_vec())
    }

    /// `$-1` (what `SET NX` answers when the key exists).
    pub fn nil() -> Action {
        Action::Reply(b"$-1\r\n".to_vec())
    }

    /// `:n`.
    pub fn int(n: i64) -> Action {
        Action::Reply(format!(":{n}\r\n").into_bytes())
    }

    /// `$len\r\nbytes\r\n`.
    pub fn bulk(bytes: &[u8]) -> Action {
        Action::Reply(RawReply::Bulk(Some(bytes.to_vec())).encode())
    }

    /// `-line` (the line includes the kind: `"NOSCRIPT No matching script."`).
    pub fn error(line: &str) -> Action {
        Action::Reply(format!("-{line}\r\n").into_bytes())
    }

    /// Any reply, encoded.
    pub fn reply(reply: &RawReply) -> Action {
        Action::Reply(reply.encode())
    }
}

/// What a [`FakeServer`] does right after accepting a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnAccept {
    Serve,
    Close,
    Reset,
}

type Handler = dyn Fn(&Command) -> Action + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    on_accept: OnAccept,
    shutdown: AtomicBool,
    connections: AtomicU64,
    commands: Mutex<Vec<Command>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    preamble_loads: AtomicU64,
    /// What this fake says its `run_id` is, unique per fake (its port and this process).
    run_id: String,
}

/// A scripted fake RESP server. See the module docs.
pub struct FakeServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Starts a server that answers each command with `handler(&command)`.
    pub fn start(handler: impl Fn(&Command) -> Action + Send + Sync + 'static) -> FakeServer {
        Self::spawn(OnAccept::Serve, Box::new(handler))
    }

    /// Starts a server that accepts each connection and closes it at once (the client's
    /// connect succeeds; its first read sees EOF, or a reset if it wrote first).
    pub fn accept_then_close() -> FakeServer {
        Self::spawn(OnAccept::Close, Box::new(|_| Action::Close))
    }

    /// Starts a server that accepts each connection and resets it at once (RST).
    pub fn accept_then_reset() -> FakeServer {
        Self::spawn(OnAccept::Reset, Box::new(|_| Action::Reset))
    }

    /// An address whose TCP handshake never completes (connect times out): same as
    /// [`NeverAccepts::start`].
    pub fn never_accepts() -> NeverAccepts {
        NeverAccepts::start()
    }

    /// Starts a server that reads and records everything and never answers.
    pub fn silent() -> FakeServer {
        Self::start(|_| Action::Silent)
    }

    fn spawn(on_accept: OnAccept, handler: Box<Handler>) -> FakeServer {
        let listener = TcpListener::bind(local_addr(0))
            .unwrap_or_else(|e| panic!("rig: fake server cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("rig: fake server local_addr: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("rig: fake server set_nonblocking: {e}"));
        let shared = Arc::new(Shared {
            handler,
            on_accept,
            shutdown: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            commands: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            preamble_loads: AtomicU64::new(0),
            run_id: format!(
                "{:040x}",
                u128::from(addr.port()) << 64 | u128::from(std::process::id())
            ),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("rig-fake-accept".into())
            .spawn(move || accept_loop(&s, &listener))
            .unwrap_or_else(|e| panic!("rig: spawn fake server thread: {e}"));
        FakeServer {
            shared,
            addr,
            accept: Some(accept),
        }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.addr.port())
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// `SCRIPT LOAD`s answered by the rig as a connection preamble (see the module docs).
    pub fn preamble_loads(&self) -> u64 {
        self.shared.preamble_loads.load(Ordering::SeqCst)
    }

    /// Every command received so far, in arrival order (across connections, by time of
    /// arrival).
    pub fn commands(&self) -> Vec<Command> {
        self.shared
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The names of [`FakeServer::commands`], upper-cased.
    pub fn command_names(&self) -> Vec<String> {
        self.commands().iter().map(Command::name).collect()
    }

    /// Waits until at least `n` commands were received (or `timeout` passed) and returns all
    /// received so far.
    pub fn wait_for_commands(&self, n: usize, timeout: Duration) -> Vec<Command> {
        wait_until(timeout, || {
            self.shared
                .commands
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
                >= n
        });
        self.commands()
    }
}

impl Drop for FakeServer {
    /// Closes the listener and every connection, and joins every thread.
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let handles = std::mem::take(
            &mut *self
                .shared
                .threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for h in handles {
            let _ = h.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let conn = shared.connections.fetch_add(1, Ordering::SeqCst);
                match shared.on_accept {
                    OnAccept::Close => drop(stream),
                    OnAccept::Reset => reset(stream),
                    OnAccept::Serve => {
                        let s = Arc::clone(shared);
                        let handle = std::thread::Builder::new()
                            .name("rig-fake-conn".into())
                            .spawn(move || serve(&s, stream, conn))
                            .unwrap_or_else(|e| panic!("rig: spawn fake server thread: {e}"));
                        let mut threads = shared
                            .threads
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        threads.retain(|h| !h.is_finished());
                        threads.push(handle);
                    }
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn reset(stream: TcpStream) {
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// The outcome of parsing the start of a connection's input.
enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A command and the number of bytes it used.
    Command(Vec<Vec<u8>>, usize),
    /// Not an array of bulk strings, or a malformed frame.
    Invalid,
}

fn parse_command(buf: &[u8]) -> Parsed {
    match resp::decode(buf, &Limits::PERMISSIVE) {
        Ok(Status::Incomplete) => Parsed::Incomplete,
        Ok(Status::Complete((Reply::Array(Some(items)), used))) => {
            let mut args = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Reply::Bulk(Some(b)) => args.push(b.to_vec()),
                    _ => return Parsed::Invalid,
                }
            }
            Parsed::Command(args, used)
        }
        _ => Parsed::Invalid,
    }
}

/// True for `INFO server`, which resplock sends on every new connection to learn who the node
/// is.
fn is_info_server(args: &[Vec<u8>]) -> bool {
    matches!(args, [name, section] if name.eq_ignore_ascii_case(b"INFO")
        && section.eq_ignore_ascii_case(b"server"))
}

/// The digest to answer for a `SCRIPT LOAD` of one of resplock's scripts.
fn preamble_digest(args: &[Vec<u8>]) -> Option<&'static str> {
    let [name, sub, body] = args else {
        return None;
    };
    if !name.eq_ignore_ascii_case(b"SCRIPT") || !sub.eq_ignore_ascii_case(b"LOAD") {
        return None;
    }
    resplock::script::SCRIPTS
        .iter()
        .find(|(script, _)| script.as_bytes() == body.as_slice())
        .map(|&(_, digest)| digest)
}

/// Serves one connection until EOF, a protocol error, a closing action or shutdown.
fn serve(shared: &Shared, mut stream: TcpStream, conn: u64) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let stop = || shared.shutdown.load(Ordering::SeqCst);
    let mut buf: Vec<u8> = Vec::new();
    let mut seq = 0u64;
    let mut preamble = true;
    let mut chunk = [0u8; 16 * 1024];
    while !stop() {
        let (args, used) = match parse_command(&buf) {
            Parsed::Invalid => return,
            Parsed::Command(args, used) => (args, used),
            Parsed::Incomplete => {
                match stream.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => return,
                }
                continue;
            }
        };
        buf.drain(..used);
        if preamble {
            if is_info_server(&args) {
                let text = format!(
                    "# Server\r\nredis_version:fake\r\nrun_id:{}\r\nuptime_in_seconds:100000\r\n",
                    shared.run_id
                );
                let reply = format!("${}\r\n{text}\r\n", text.len());
                if stream.write_all(reply.as_bytes()).is_err() {
                    return;
                }
                continue;
            }
            if let Some(digest) = preamble_digest(&args) {
                shared.preamble_loads.fetch_add(1, Ordering::SeqCst);
                let reply = format!("${}\r\n{digest}\r\n", digest.len());
                if stream.write_all(reply.as_bytes()).is_err() {
                    return;
                }
                continue;
            }
            let name = args.first().map(|a| a.to_ascii_uppercase());
            preamble = matches!(name.as_deref(), Some(b"AUTH" | b"SELECT"));
        }
        let command = Command { conn, seq, args };
        seq += 1;
        shared
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(command.clone());
        let keep_open = match (shared.handler)(&command) {
            Action::Reply(bytes) => stream.write_all(&bytes).is_ok(),
            Action::ReplyAfter(delay, bytes) => {
                sleep_unless(delay, stop) && stream.write_all(&bytes).is_ok()
            }
            Action::ReplyBytewise(bytes, gap) => {
                let mut ok = true;
                for (i, byte) in bytes.iter().enumerate() {
                    if i > 0 && !sleep_unless(gap, stop) {
                        ok = false;
                        break;
                    }
                    if stream.write_all(std::slice::from_ref(byte)).is_err() {
                        ok = false;
                        break;
                    }
                }
                ok
            }
            Action::HalfThenClose(bytes) => {
                let half = (bytes.len() / 2).max(1).min(bytes.len());
                let _ = stream.write_all(&bytes[..half]);
                let _ = stream.flush();
                false
            }
            Action::Close => false,
            Action::Reset => {
                reset(stream);
                return;
            }
            Action::Silent => true,
        };
        if !keep_open {
            return;
        }
    }
}

/// A loopback address that never completes a TCP handshake: `connect` to it times out (it is
/// neither refused nor accepted). See the module docs for why this and not an unroutable
/// address. Holds a listening socket with a backlog of 0 that never calls `accept`, plus the
/// connection(s) that fill its queue; everything is closed on drop.
pub struct NeverAccepts {
    _listener: Socket,
    _fillers: Vec<TcpStream>,
    addr: SocketAddr,
}

impl NeverAccepts {
    /// Creates the listener and fills its accept queue, checking that one more `connect`
    /// times out (costs about 100 ms).
    pub fn start() -> NeverAccepts {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None)
            .unwrap_or_else(|e| panic!("rig: socket(): {e}"));
        listener
            .bind(&local_addr(0).into())
            .unwrap_or_else(|e| panic!("rig: bind 127.0.0.1:0: {e}"));
        listener
            .listen(0)
            .unwrap_or_else(|e| panic!("rig: listen(0): {e}"));
        let addr = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or_else(|| panic!("rig: local address of the never-accepting listener"));
        let mut fillers = Vec::new();
        for _ in 0..64 {
            let started = Instant::now();
            match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
                Ok(s) => fillers.push(s),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) && started.elapsed() >= Duration::from_millis(50) =>
                {
                    return NeverAccepts {
                        _listener: listener,
                        _fillers: fillers,
                        addr,
                    };
                }
                Err(e) => panic!("rig: filling the backlog of {addr}: unexpected {e}"),
            }
        }
        panic!("rig: the accept queue of {addr} never filled up after 64 connections")
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.addr.port())
    }
}
