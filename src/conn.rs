//! One blocking connection to one node: socket setup, deadlines, reusable buffers, and the
//! bookkeeping that keeps late replies from answering later commands. The transport under it
//! (TCP, a Unix socket, TLS over TCP) is a [`Stream`]; everything below holds for all three.
//!
//! Contract:
//! - Every blocking step takes a deadline. With no time left a step fails with
//!   [`NodeError::Timeout`] naming its phase, and never passes a zero timeout to the OS (which
//!   would mean "wait forever"). Socket timeouts are only changed when the whole-millisecond
//!   budget changes, so the steady state makes no `setsockopt` calls.
//! - Replies are read in order. A reply that a caller stopped waiting for (a timeout, or a
//!   round that had its answer already) is recorded as *stale* and skipped, frame by frame,
//!   before the next reply is handed out: a late `+OK` can never be taken for the answer to a
//!   later command.
//! - After an I/O error, EOF, a protocol error or a partial write the caller must drop the
//!   connection: its byte stream can no longer be trusted.
//! - Buffers are allocated once per connection and reused; the read buffer grows on demand up
//!   to a fixed bound, past which a reply is a [`ProtocolError::TooLarge`].
//! - Connecting is bounded by one deadline: name resolution aside, the TCP or Unix connect,
//!   the TLS handshake and `AUTH`/`SELECT` all share it. A Unix connect blocks with
//!   `SO_SNDTIMEO` set to the time left, which bounds the wait when the server's listen
//!   backlog is full (a non-blocking connect would fail at once instead of waiting).
//! - A TLS connection makes one round trip before it is used (`AUTH`/`SELECT`, or `PING` when
//!   there is neither), so a server that refuses our client certificate after the TLS 1.3
//!   handshake is known at connect time, not in the middle of a round.

use std::io;
use std::net::{SocketAddr, TcpStream};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
#[cfg(unix)]
use std::path::Path;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, TcpKeepalive, Type};

use crate::error::{NodeError, Phase, ProtocolError, ServerError};
use crate::identity::{parse_info, parse_persistence, Persistence, Seen};
use crate::resp::{self, Limits, Reply, Status};
use crate::stream::Stream;
use crate::url::{NodeAddr, Transport};

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("stream", &self.stream)
            .field("stale", &self.stale)
            .field("lagging", &self.lagging)
            .finish_non_exhaustive()
    }
}

/// Initial size of the read and write buffers: every reply a lock sees fits.
const INITIAL_BUFFER: usize = 512;

/// A connection idle this long is checked for a close before it is reused. Below it, a
/// server restart cannot have happened in between; above it, the check costs three system
/// calls, negligible next to the idle time.
const IDLE_CHECK: Duration = Duration::from_millis(10);

/// Idle time before TCP keepalive probes start, so a dead peer is noticed on idle connections.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// Size and shape limits for one connection's replies.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReplyBounds {
    pub limits: Limits,
    /// Largest number of bytes buffered for one reply.
    pub max_reply_bytes: usize,
}

impl ReplyBounds {
    pub fn new(limits: Limits) -> Self {
        let max_reply_bytes = limits
            .max_bulk_len
            .saturating_add(limits.max_line_len)
            .saturating_add(64);
        Self {
            limits,
            max_reply_bytes,
        }
    }
}

pub(crate) struct Conn {
    stream: Stream,
    read_buf: Vec<u8>,
    /// Unconsumed bytes are `read_buf[start..end]`.
    start: usize,
    end: usize,
    write_buf: Vec<u8>,
    /// Replies owed by the server that nobody will read: skipped before the next one.
    stale: u32,
    /// Replies owed ahead of the identity reply (the scripts loaded on connect).
    preamble: u32,
    /// Identity replies not read yet, after the preamble: `INFO persistence` (with fencing),
    /// then `INFO server`, always last.
    identity_left: u8,
    /// What `INFO persistence` said, until the `INFO server` reply completes the [`Seen`].
    persistence: Persistence,
    /// What that reply said, until [`Conn::take_seen`].
    seen: Option<Option<Seen>>,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    bounds: ReplyBounds,
    /// When a command was last sent: a connection idle longer than [`IDLE_CHECK`] is
    /// revalidated before reuse.
    last_active: Instant,
    /// The last reply awaited on this connection timed out, and none has been read since.
    lagging: bool,
}

/// What an identity reply said.
enum Said {
    /// `INFO server`: who the node is, if it said.
    Server(Option<Seen>),
    /// `INFO persistence`: whether it keeps an append-only file, and whether it is loading.
    Persistence(Persistence),
}

impl Conn {
    /// Connects: over TCP (trying each resolved address in turn, with `TCP_NODELAY` and
    /// keepalive), then the TLS handshake for `rediss://`; or to the Unix socket. Then sends
    /// `AUTH` and `SELECT` when the URL asks for them (`PING` over TLS when it asks for
    /// neither) and checks the replies. All before `deadline`.
    pub fn connect(
        addr: &NodeAddr,
        resolved: &[SocketAddr],
        deadline: Instant,
        bounds: ReplyBounds,
    ) -> Result<Conn, NodeError> {
        let (stream, round_trip) = match addr.transport() {
            Transport::Tcp => (Stream::Tcp(connect_tcp(resolved, deadline)?), false),
            #[cfg(feature = "tls")]
            Transport::Tls(connector) => {
                let connector = connector
                    .clone()
                    .or_else(crate::tls::Connector::default_shared)
                    .ok_or(NodeError::Tls(crate::error::TlsError::Other))?;
                let tcp = connect_tcp(resolved, deadline)?;
                let session =
                    crate::tls::TlsStream::connect(tcp, &connector, addr.host(), deadline)?;
                (Stream::Tls(Box::new(session)), true)
            }
            #[cfg(unix)]
            Transport::Unix(path) => (Stream::Unix(connect_unix(path, deadline)?), false),
        };
        Self::handshake(stream, addr, deadline, bounds, round_trip)
    }

    /// `AUTH` and `SELECT` as the URL asks; `PING` when it asks for neither but `round_trip`
    /// is set.
    fn handshake(
        stream: Stream,
        addr: &NodeAddr,
        deadline: Instant,
        bounds: ReplyBounds,
        round_trip: bool,
    ) -> Result<Conn, NodeError> {
        let mut conn = Conn {
            stream,
            read_buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            write_buf: Vec::with_capacity(INITIAL_BUFFER),
            stale: 0,
            preamble: 0,
            identity_left: 0,
            persistence: Persistence::default(),
            seen: None,
            read_timeout: None,
            write_timeout: None,
            bounds,
            last_active: Instant::now(),
            lagging: false,
        };
        let mut expected = 0;
        if let Some(password) = addr.password() {
            match addr.user() {
                Some(user) => conn.queue(&[b"AUTH", user, password]),
                None => conn.queue(&[b"AUTH", password]),
            }
            expected += 1;
        }
        if addr.db() != 0 {
            let mut digits = resp::DecimalBuf::new();
            conn.queue(&[b"SELECT", digits.format(u64::from(addr.db()))]);
            expected += 1;
        }
        let mut wanted: &[u8] = b"OK";
        if expected == 0 {
            if !round_trip {
                return Ok(conn);
            }
            conn.queue(&[b"PING"]);
            expected = 1;
            wanted = b"PONG";
        }
        let handshake_phase = |e: NodeError| match e {
            NodeError::Timeout(_) => NodeError::Timeout(Phase::Handshake),
            NodeError::Io { kind, .. } => NodeError::Io {
                phase: Phase::Handshake,
                kind,
            },
            other => other,
        };
        conn.flush(deadline).map_err(handshake_phase)?;
        // Read every reply even after a failure, so the first error is the one reported.
        let mut first_error = None;
        for _ in 0..expected {
            let outcome = conn
                .recv(deadline, |reply| match reply {
                    Reply::Simple(status) if status == wanted => Ok(()),
                    Reply::Error(line) => Err(NodeError::Server(ServerError::from_line(line))),
                    _ => Err(NodeError::UnexpectedReply),
                })
                .map_err(handshake_phase)?;
            if let Err(e) = outcome {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(conn),
        }
    }

    /// When a command was last sent (or the connection last checked).
    pub fn last_used(&self) -> Instant {
        self.last_active
    }

    /// Replies that will be read and set aside before the next one is handed out.
    pub fn stale(&self) -> u32 {
        self.stale + self.preamble + u32::from(self.identity_left)
    }

    /// Records that the commands already queued were `preloads` unanswered script loads, then
    /// `INFO persistence` when `persistence`, then `INFO server`: what they say is kept for
    /// [`Conn::take_seen`] once the last has been read.
    pub fn expect_identity(&mut self, preloads: u32, persistence: bool) {
        self.preamble = self.preamble.saturating_add(preloads);
        self.identity_left = 1 + u8::from(persistence);
    }

    /// What the node said about itself in `INFO server`, once that reply has been read (and
    /// only once): `Some(None)` when it did not say.
    pub fn take_seen(&mut self) -> Option<Option<Seen>> {
        self.seen.take()
    }

    /// Records that the replies to `count` commands already sent will not be read.
    pub fn abandon(&mut self, count: u32) {
        self.stale = self.stale.saturating_add(count);
    }

    /// What a reply says about the node, when it is an awaited identity reply.
    fn identity_in(&self, reply: Reply<'_>) -> Option<Said> {
        if self.preamble > 0 || self.identity_left == 0 {
            return None;
        }
        // An ACL user may not run INFO: such a node is simply not identified.
        let text = match reply {
            Reply::Bulk(Some(text)) => Some(text),
            _ => None,
        };
        Some(match self.identity_left {
            1 => Said::Server(text.and_then(parse_info)),
            _ => Said::Persistence(text.map(parse_persistence).unwrap_or_default()),
        })
    }

    /// Sets aside the next reply, which nobody waits for (`stale() > 0`): a preamble reply, an
    /// identity reply (what it `said` is kept), or a stale one.
    fn set_aside(&mut self, said: Option<Said>, used: usize) {
        if self.preamble > 0 {
            self.preamble -= 1;
        } else if self.identity_left > 0 {
            self.identity_left -= 1;
            match said {
                Some(Said::Persistence(said)) => self.persistence = said,
                Some(Said::Server(seen)) => {
                    let persistence = std::mem::take(&mut self.persistence);
                    self.seen = Some(seen.map(|seen| Seen {
                        persistence,
                        ..seen
                    }));
                }
                None => debug_assert!(false, "an identity reply was not recognised"),
            }
        } else {
            self.stale = self.stale.saturating_sub(1);
        }
        self.consume(used);
    }

    /// True when the last reply awaited here timed out and nothing was read since.
    pub fn lagging(&self) -> bool {
        self.lagging
    }

    /// Appends a command to the write buffer without sending it.
    pub fn queue(&mut self, args: &[&[u8]]) {
        resp::encode_command(&mut self.write_buf, args);
    }

    /// Writes the whole write buffer. On error the connection must be dropped: part of a
    /// command may have been sent.
    pub fn flush(&mut self, deadline: Instant) -> Result<(), NodeError> {
        write_fully(
            &mut self.stream,
            &mut self.write_timeout,
            &self.write_buf,
            deadline,
        )?;
        self.write_buf.clear();
        Ok(())
    }

    /// Sends already-encoded commands, after anything queued. Encoded once, the same bytes can
    /// go to every node of a round without copying. On error the connection must be dropped.
    pub fn send(&mut self, encoded: &[u8], deadline: Instant) -> Result<(), NodeError> {
        self.last_active = Instant::now();
        if self.write_buf.is_empty() {
            write_fully(&mut self.stream, &mut self.write_timeout, encoded, deadline)
        } else {
            self.write_buf.extend_from_slice(encoded);
            self.flush(deadline)
        }
    }

    /// Checks, without waiting, that a connection idle for a while is still usable: a server
    /// that restarted or dropped it while idle has closed it, and the next round would
    /// otherwise spend its only chance on a dead socket. Busy connections are not checked.
    pub fn revalidate(&mut self) -> Result<(), NodeError> {
        let now = Instant::now();
        if now.saturating_duration_since(self.last_active) < IDLE_CHECK {
            return Ok(());
        }
        self.last_active = now;
        match self.fill(now) {
            Err(NodeError::Timeout(_)) => Ok(()),
            // Late replies arrived meanwhile; they will be skipped in order.
            Ok(()) if self.stale() > 0 => Ok(()),
            Ok(()) => Err(NodeError::UnexpectedReply),
            Err(error) => Err(error),
        }
    }

    /// Skips, without waiting, the stale replies that have already arrived.
    pub fn drain(&mut self) -> Result<(), NodeError> {
        while self.stale() > 0 {
            let buffered = self.read_buf.get(self.start..self.end).unwrap_or_default();
            match resp::decode(buffered, &self.bounds.limits).map_err(NodeError::Protocol)? {
                Status::Complete((reply, used)) => {
                    let identity = self.identity_in(reply);
                    self.set_aside(identity, used);
                }
                Status::Incomplete => match self.fill(Instant::now()) {
                    Ok(()) => {}
                    Err(NodeError::Timeout(_)) => return Ok(()),
                    Err(error) => return Err(error),
                },
            }
        }
        Ok(())
    }

    /// Skips stale replies, then decodes the next reply and hands it to `interpret`.
    ///
    /// A reply already buffered is returned even after the deadline, and with no time left
    /// one last non-blocking read collects what the kernel already holds. On a timeout the
    /// reply is not lost: the caller should [`Conn::abandon`] it (partial bytes stay
    /// buffered and are skipped in order).
    pub fn recv<T>(
        &mut self,
        deadline: Instant,
        interpret: impl FnOnce(Reply<'_>) -> T,
    ) -> Result<T, NodeError> {
        loop {
            let buffered = self.read_buf.get(self.start..self.end).unwrap_or_default();
            match resp::decode(buffered, &self.bounds.limits).map_err(NodeError::Protocol)? {
                Status::Complete((reply, used)) => {
                    if self.stale() > 0 {
                        let identity = self.identity_in(reply);
                        self.set_aside(identity, used);
                        continue;
                    }
                    let outcome = interpret(reply);
                    self.consume(used);
                    self.lagging = false;
                    return Ok(outcome);
                }
                Status::Incomplete => {
                    if let Err(error) = self.fill(deadline) {
                        self.lagging |= matches!(error, NodeError::Timeout(_));
                        return Err(error);
                    }
                }
            }
        }
    }

    fn consume(&mut self, used: usize) {
        self.start += used;
        if self.start >= self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes into the buffer, making room first.
    fn fill(&mut self, deadline: Instant) -> Result<(), NodeError> {
        if self.end == self.read_buf.len() {
            if self.start > 0 {
                self.read_buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.read_buf.len() < self.bounds.max_reply_bytes {
                let grown = self
                    .read_buf
                    .len()
                    .saturating_mul(2)
                    .min(self.bounds.max_reply_bytes);
                self.read_buf.resize(grown, 0);
            } else {
                return Err(NodeError::Protocol(ProtocolError::TooLarge));
            }
        }
        let Some(room) = self.read_buf.get_mut(self.end..) else {
            return Err(NodeError::Protocol(ProtocolError::TooLarge));
        };
        let result = match time_left(deadline, Phase::Read) {
            Ok(budget) => {
                set_timeout(&mut self.read_timeout, budget, |t| {
                    self.stream.set_read_timeout(t)
                })
                .map_err(|e| io_error(Phase::Read, &e))?;
                self.stream.read(room)
            }
            // Out of time: take only what has already arrived.
            Err(timeout) => match without_blocking(&mut self.stream, |s| s.read(room)) {
                Err(e) if is_timeout(&e) => return Err(timeout),
                other => other,
            },
        };
        match result {
            Ok(0) => Err(NodeError::Closed),
            Ok(n) => {
                self.end += n;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            // A socket timeout may fire before the deadline (timeouts are whole milliseconds);
            // the next call waits for the rest or reports the timeout.
            Err(e) if is_timeout(&e) => Ok(()),
            Err(e) => Err(io_error(Phase::Read, &e)),
        }
    }
}

/// A TCP connection to the first resolved address that accepts one before `deadline`, with
/// `TCP_NODELAY` and keepalive set.
fn connect_tcp(resolved: &[SocketAddr], deadline: Instant) -> Result<TcpStream, NodeError> {
    let mut last = NodeError::Unresolvable;
    for &socket_addr in resolved {
        let budget = time_left(deadline, Phase::Connect)?;
        let socket = Socket::new(
            Domain::for_address(socket_addr),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .map_err(|e| io_error(Phase::Connect, &e))?;
        match socket.connect_timeout(&SockAddr::from(socket_addr), budget) {
            Ok(()) => {
                let setup = |e: io::Error| io_error(Phase::Connect, &e);
                socket.set_tcp_nodelay(true).map_err(setup)?;
                socket
                    .set_tcp_keepalive(&TcpKeepalive::new().with_time(KEEPALIVE_IDLE))
                    .map_err(setup)?;
                return Ok(TcpStream::from(socket));
            }
            Err(e) => last = io_error(Phase::Connect, &e),
        }
    }
    Err(last)
}

/// A Unix-socket connection before `deadline`. The connect blocks with `SO_SNDTIMEO` set to
/// the time left: when the server's listen backlog is full, Linux makes a blocking connect
/// wait for room up to that timeout (then `EAGAIN`, a connect timeout), where a non-blocking
/// one would fail at once and `std`'s would wait for ever.
#[cfg(unix)]
fn connect_unix(path: &Path, deadline: Instant) -> Result<UnixStream, NodeError> {
    let budget = time_left(deadline, Phase::Connect)?;
    let fail = |e: io::Error| io_error(Phase::Connect, &e);
    let address = SockAddr::unix(path).map_err(fail)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(fail)?;
    socket.set_write_timeout(Some(budget)).map_err(fail)?;
    socket.connect(&address).map_err(fail)?;
    Ok(UnixStream::from(std::os::fd::OwnedFd::from(socket)))
}

/// [`NodeError::io`], or the TLS check that failed when the error carries one.
fn io_error(phase: Phase, e: &io::Error) -> NodeError {
    #[cfg(feature = "tls")]
    if let Some(tls) = crate::tls::from_io(e) {
        return NodeError::Tls(tls);
    }
    NodeError::io(phase, e)
}

/// Writes all of `bytes` before `deadline` (and, over TLS, all the ciphertext they became).
fn write_fully(
    stream: &mut Stream,
    timeout: &mut Option<Duration>,
    bytes: &[u8],
    deadline: Instant,
) -> Result<(), NodeError> {
    let mut written = 0;
    loop {
        let rest = bytes.get(written..).unwrap_or_default();
        // Ciphertext already queued goes first: bytes leave in order.
        let pending = stream.pending();
        if rest.is_empty() && !pending {
            return Ok(());
        }
        let step = |s: &mut Stream| {
            if pending {
                s.write_pending()
            } else {
                s.write(rest)
            }
        };
        let result = match time_left(deadline, Phase::Write) {
            Ok(budget) => {
                set_timeout(timeout, budget, |t| stream.set_write_timeout(t))
                    .map_err(|e| io_error(Phase::Write, &e))?;
                step(stream)
            }
            // Out of time: a small command still fits an idle socket's buffer at once, so
            // try once without blocking rather than give up on the node unheard.
            Err(timeout) => match without_blocking(stream, step) {
                Err(e) if is_timeout(&e) => return Err(timeout),
                other => other,
            },
        };
        match result {
            Ok(0) => return Err(NodeError::Closed),
            Ok(_) if pending => {}
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => time_left(deadline, Phase::Write).map(drop)?,
            Err(e) => return Err(io_error(Phase::Write, &e)),
        }
    }
}

/// Runs one read or write in non-blocking mode (a `WouldBlock` when nothing can move).
fn without_blocking(
    stream: &mut Stream,
    io: impl FnOnce(&mut Stream) -> io::Result<usize>,
) -> io::Result<usize> {
    stream.set_nonblocking(true)?;
    let result = io(stream);
    stream.set_nonblocking(false)?;
    result
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Time until `deadline`, or a timeout in `phase` when none is left.
pub(crate) fn time_left(deadline: Instant, phase: Phase) -> Result<Duration, NodeError> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or(NodeError::Timeout(phase))
}

/// Sets a socket timeout no longer than `budget`, rounded down to whole milliseconds when
/// the budget allows, and skips the system call when the socket already has that value.
fn set_timeout(
    current: &mut Option<Duration>,
    budget: Duration,
    apply: impl FnOnce(Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    let millis = Duration::from_millis(u64::try_from(budget.as_millis()).unwrap_or(u64::MAX));
    let wanted = if millis.is_zero() { budget } else { millis };
    if *current != Some(wanted) {
        apply(Some(wanted))?;
        *current = Some(wanted);
    }
    Ok(())
}
