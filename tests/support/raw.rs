//! `Raw`: a tiny blocking RESP2 client over `std::net::TcpStream`, for assertions on what the
//! lock code left on a node (keys, PTTL, ...). Not the code under test: it uses the crate's
//! sans-IO codec (`resplock::resp`) with permissive limits and converts replies into the owned
//! [`RawReply`].
//!
//! Connect, read and write timeouts are 2 s by default ([`Raw::set_timeout`] changes the read
//! and write ones). A command whose reply timed out leaves the connection out of step (the late
//! reply would answer the next command): open a new `Raw` after a timeout.
//!
//! [`Raw::try_cmd`] returns I/O errors; [`Raw::cmd`] and the helpers panic on I/O errors (with
//! the command in the message), and the helpers also panic on error replies and unexpected
//! reply types, so a test reads as a list of assertions.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use resplock::resp::{self, Limits, Reply, Status};

/// Default connect, read and write timeout of a [`Raw`] connection.
pub const RAW_TIMEOUT: Duration = Duration::from_secs(2);

/// An owned RESP2 reply.
#[derive(Clone, PartialEq, Eq)]
pub enum RawReply {
    /// `+OK` → `Simple("OK")`.
    Simple(String),
    /// `-ERR msg` → `Error("ERR msg")` (the whole line, first word included).
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nfoo` → `Bulk(Some(b"foo"))`; `$-1` → `Bulk(None)`.
    Bulk(Option<Vec<u8>>),
    /// `*N ...`; `*-1` → `Array(None)`.
    Array(Option<Vec<RawReply>>),
}

impl RawReply {
    /// Converts a borrowed reply from `resplock::resp::decode`.
    pub fn from_reply(reply: &Reply<'_>) -> RawReply {
        match reply {
            Reply::Simple(s) => RawReply::Simple(String::from_utf8_lossy(s).into_owned()),
            Reply::Error(s) => RawReply::Error(String::from_utf8_lossy(s).into_owned()),
            Reply::Integer(n) => RawReply::Integer(*n),
            Reply::Bulk(b) => RawReply::Bulk(b.map(<[u8]>::to_vec)),
            Reply::Array(None) => RawReply::Array(None),
            Reply::Array(Some(a)) => {
                RawReply::Array(Some(a.iter().map(|r| RawReply::from_reply(&r)).collect()))
            }
        }
    }

    /// The RESP2 encoding of this reply (what a server would send), e.g. for a
    /// [`FakeServer`](super::FakeServer) script. Simple and error strings must not contain
    /// CR or LF.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            RawReply::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            RawReply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            RawReply::Integer(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            RawReply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            RawReply::Bulk(Some(b)) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            RawReply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            RawReply::Array(Some(items)) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode_into(out);
                }
            }
        }
    }

    /// True for `+OK`.
    pub fn is_ok(&self) -> bool {
        matches!(self, RawReply::Simple(s) if s == "OK")
    }

    /// True for an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, RawReply::Error(_))
    }

    /// The first word of an error reply (`NOSCRIPT`, `WRONGPASS`, ...), if it is one.
    pub fn error_kind(&self) -> Option<&str> {
        match self {
            RawReply::Error(s) => s.split(' ').next(),
            _ => None,
        }
    }

    /// The integer of an integer reply.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            RawReply::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The payload of a non-nil bulk reply.
    pub fn as_bulk(&self) -> Option<&[u8]> {
        match self {
            RawReply::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }
}

impl fmt::Debug for RawReply {
    /// Bulk payloads are shown as escaped text, not as byte lists.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawReply::Simple(s) => write!(f, "Simple({s:?})"),
            RawReply::Error(s) => write!(f, "Error({s:?})"),
            RawReply::Integer(n) => write!(f, "Integer({n})"),
            RawReply::Bulk(None) => write!(f, "Bulk(nil)"),
            RawReply::Bulk(Some(b)) => write!(f, "Bulk(b\"{}\")", b.escape_ascii()),
            RawReply::Array(None) => write!(f, "Array(nil)"),
            RawReply::Array(Some(items)) => f.debug_list().entries(items).finish(),
        }
    }
}

/// Renders a command for panic messages.
fn show(args: &[&[u8]]) -> String {
    args.iter()
        .map(|a| a.escape_ascii().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A blocking RESP2 connection for assertions. See the module docs.
pub struct Raw {
    stream: TcpStream,
    peer: SocketAddr,
    /// Received bytes not yet decoded.
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Raw {
    /// Connects (2 s connect timeout) with 2 s read and write timeouts and `TCP_NODELAY`.
    /// No `AUTH` is sent: see [`RedisNode::raw`](super::RedisNode::raw) for an authenticated one.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Raw> {
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address");
        for peer in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&peer, RAW_TIMEOUT) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(Some(RAW_TIMEOUT))?;
                    stream.set_write_timeout(Some(RAW_TIMEOUT))?;
                    return Ok(Raw {
                        stream,
                        peer,
                        buf: Vec::new(),
                        out: Vec::new(),
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The address this connection was made to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sets the read and write timeouts (a zero duration is rounded up to 1 ms).
    pub fn set_timeout(&mut self, timeout: Duration) {
        let t = Some(timeout.max(Duration::from_millis(1)));
        self.stream
            .set_read_timeout(t)
            .and_then(|()| self.stream.set_write_timeout(t))
            .unwrap_or_else(|e| panic!("rig: set timeouts on {}: {e}", self.peer));
    }

    /// The underlying stream, e.g. to write arbitrary bytes.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Writes `bytes` as they are (pipelining, inline commands, garbage).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes one command (RESP array of bulk strings) without reading the reply.
    pub fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        self.out.clear();
        resp::encode_command(&mut self.out, args);
        self.stream.write_all(&self.out)
    }

    /// Reads one reply. A timeout is an error of kind `WouldBlock` or `TimedOut` (the OS
    /// decides); EOF before a whole reply is `UnexpectedEof`; a malformed reply is
    /// `InvalidData`.
    pub fn read_reply(&mut self) -> io::Result<RawReply> {
        loop {
            match resp::decode(&self.buf, &Limits::PERMISSIVE) {
                Ok(Status::Complete((reply, used))) => {
                    let owned = RawReply::from_reply(&reply);
                    self.buf.drain(..used);
                    return Ok(owned);
                }
                Ok(Status::Incomplete) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("malformed reply from {}: {e}", self.peer),
                    ))
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection to {} closed before a whole reply", self.peer),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one command and reads its reply, returning I/O errors (timeouts included).
    pub fn try_cmd(&mut self, args: &[&[u8]]) -> io::Result<RawReply> {
        self.send(args)?;
        self.read_reply()
    }

    /// Sends one command and reads its reply; panics on an I/O error. Error replies are
    /// returned, not panicked on.
    pub fn cmd(&mut self, args: &[&[u8]]) -> RawReply {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("rig: `{}` to {}: {e}", show(args), self.peer))
    }

    /// [`Raw::cmd`], panicking on an error reply too.
    fn cmd_ok(&mut self, args: &[&[u8]]) -> RawReply {
        let reply = self.cmd(args);
        if let RawReply::Error(e) = &reply {
            panic!("rig: `{}` to {} failed: {e}", show(args), self.peer);
        }
        reply
    }

    fn unexpected(&self, args: &[&[u8]], reply: &RawReply) -> ! {
        panic!(
            "rig: unexpected reply to `{}` from {}: {reply:?}",
            show(args),
            self.peer
        )
    }

    fn int(&mut self, args: &[&[u8]]) -> i64 {
        match self.cmd_ok(args) {
            RawReply::Integer(n) => n,
            other => self.unexpected(args, &other),
        }
    }

    fn simple_ok(&mut self, args: &[&[u8]]) {
        let reply = self.cmd_ok(args);
        if !reply.is_ok() {
            self.unexpected(args, &reply);
        }
    }

    /// `PING`; true when the answer is `+PONG`.
    pub fn ping(&mut self) -> bool {
        matches!(self.cmd(&[b"PING"]), RawReply::Simple(s) if s == "PONG")
    }

    /// `AUTH password` (the default user); returns the reply (`+OK` or an error).
    pub fn auth(&mut self, password: &str) -> RawReply {
        self.cmd(&[b"AUTH", password.as_bytes()])
    }

    /// `AUTH user password` (ACL); returns the reply (`+OK` or an error).
    pub fn auth_user(&mut self, user: &str, password: &str) -> RawReply {
        self.cmd(&[b"AUTH", user.as_bytes(), password.as_bytes()])
    }

    /// `GET key`: the value, or `None` when the key does not exist.
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        let args: &[&[u8]] = &[b"GET", key.as_ref()];
        match self.cmd_ok(args) {
            RawReply::Bulk(v) => v,
            other => self.unexpected(args, &other),
        }
    }

    /// `SET key value`.
    pub fn set(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.simple_ok(&[b"SET", key.as_ref(), value.as_ref()]);
    }

    /// `SET key value PX ms`.
    pub fn set_px(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>, ms: u64) {
        let ms = ms.to_string();
        self.simple_ok(&[b"SET", key.as_ref(), value.as_ref(), b"PX", ms.as_bytes()]);
    }

    /// `PTTL key`: milliseconds left, -1 for a key without expiry, -2 for a missing key.
    pub fn pttl(&mut self, key: impl AsRef<[u8]>) -> i64 {
        self.int(&[b"PTTL", key.as_ref()])
    }

    /// `EXISTS key`.
    pub fn exists(&mut self, key: impl AsRef<[u8]>) -> bool {
        self.int(&[b"EXISTS", key.as_ref()]) == 1
    }

    /// `DEL key`: the number of keys removed (0 or 1).
    pub fn del(&mut self, key: impl AsRef<[u8]>) -> i64 {
        self.int(&[b"DEL", key.as_ref()])
    }

    /// `KEYS pattern`, sorted.
    pub fn keys(&mut self, pattern: impl AsRef<[u8]>) -> Vec<Vec<u8>> {
        let args: &[&[u8]] = &[b"KEYS", pattern.as_ref()];
        match self.cmd_ok(args) {
            RawReply::Array(Some(items)) => {
                let mut keys: Vec<Vec<u8>> = items
                    .into_iter()
                    .map(|item| match item {
                        RawReply::Bulk(Some(k)) => k,
                        other => self.unexpected(args, &other),
                    })
                    .collect();
                keys.sort();
                keys
            }
            other => self.unexpected(args, &other),
        }
    }

    /// `DBSIZE`.
    pub fn dbsize(&mut self) -> i64 {
        self.int(&[b"DBSIZE"])
    }

    /// `FLUSHALL`.
    pub fn flushall(&mut self) {
        self.simple_ok(&[b"FLUSHALL"]);
    }

    /// `SCRIPT FLUSH`: forgets every loaded script, so the next `EVALSHA` gets `NOSCRIPT`.
    pub fn script_flush(&mut self) {
        self.simple_ok(&[b"SCRIPT", b"FLUSH"]);
    }

    /// `SCRIPT EXISTS sha`.
    pub fn script_exists(&mut self, sha: &str) -> bool {
        let args: &[&[u8]] = &[b"SCRIPT", b"EXISTS", sha.as_bytes()];
        match self.cmd_ok(args) {
            RawReply::Array(Some(items)) if items.len() == 1 => items[0] == RawReply::Integer(1),
            other => self.unexpected(args, &other),
        }
    }

    /// `CONFIG SET key value`.
    pub fn config_set(&mut self, key: &str, value: &str) {
        self.simple_ok(&[b"CONFIG", b"SET", key.as_bytes(), value.as_bytes()]);
    }

    /// `CONFIG GET key`: the value, or `None` when there is no such parameter.
    pub fn config_get(&mut self, key: &str) -> Option<String> {
        let args: &[&[u8]] = &[b"CONFIG", b"GET", key.as_bytes()];
        match self.cmd_ok(args) {
            RawReply::Array(Some(items)) => items
                .get(1)
                .and_then(RawReply::as_bulk)
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            other => self.unexpected(args, &other),
        }
    }

    /// `INFO [section]` as text.
    pub fn info(&mut self, section: &str) -> String {
        let args: &[&[u8]] = if section.is_empty() {
            &[b"INFO"]
        } else {
            &[b"INFO", section.as_bytes()]
        };
        match self.cmd_ok(args) {
            RawReply::Bulk(Some(text)) => String::from_utf8_lossy(&text).into_owned(),
            other => self.unexpected(args, &other),
        }
    }
}
