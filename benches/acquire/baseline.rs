//! The baselines: `std::net::TcpStream` and hand-written RESP, no library code.
//!
//! A [`Baseline`] sends `SET key value NX PX <ttl>` then `EVALSHA <release sha> 1 key value`
//! to a set of nodes, in one of three [`Order`]s, and panics unless every reply is exactly
//! `+OK` then `:1`. Only `resplock::script` (the release script and its digest) is taken from
//! the crate.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use resplock::script::{RELEASE_SCRIPT, RELEASE_SHA1};

/// Socket timeout: a baseline never waits on a paused node, so this only bounds a bug.
const TIMEOUT: Duration = Duration::from_secs(2);

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Length of the value of every baseline lock: a 16-byte tag, then a counter in 16 hex digits.
const VALUE_LEN: usize = 32;

/// What a node answers to a successful `SET ... NX`.
const SET_OK: &[u8] = b"+OK\r\n";
/// What a node answers to the release of a value it held.
const RELEASED: &[u8] = b":1\r\n";
/// What a node answers to one whole operation (`SET` then release), when both replies are read
/// together: the unread node, and the nodes past the quorum of the quorum floor.
const BOTH_REPLIES: &[u8] = b"+OK\r\n:1\r\n";

/// How a baseline orders its I/O.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Order {
    /// Write the command to every node, then read every reply (the *floor*).
    AllFirst,
    /// Write to one node, read its reply, then the next node (the *sequential* client).
    NodeByNode,
    /// Like `AllFirst`, but read only the first quorum (`n/2 + 1`) of the `SET` replies, in
    /// node order; the others are read before the release replies (the *quorum floor*). The
    /// early stop resplock makes, without its choice of the fastest nodes.
    Quorum,
}

/// A hand-written client for `SET key value NX PX <ttl>` then `EVALSHA <release> 1 key value`.
pub struct Baseline {
    conns: Vec<TcpStream>,
    order: Order,
    /// The encoded `SET`, and where its value starts.
    set: Vec<u8>,
    set_value_at: usize,
    /// The encoded `EVALSHA`, and where its value starts.
    release: Vec<u8>,
    release_value_at: usize,
    /// A fixed 16-byte tag, then the operation counter in 16 hex digits.
    value: [u8; VALUE_LEN],
    counter: u64,
    /// A node the commands are also written to but whose replies are not waited for (the slow
    /// minority node of a degraded case): drained without blocking after each operation.
    /// Only used with [`Order::AllFirst`].
    unread: Option<Unread>,
}

/// The connection to a node that is written to but not waited for.
struct Unread {
    conn: TcpStream,
    /// Operations sent to it so far.
    ops: u64,
    /// Bytes of its replies drained and checked so far.
    drained: u64,
}

impl Baseline {
    /// Connects to `addrs` and loads the release script on each (checking its digest).
    pub fn connect(addrs: &[SocketAddr], key: &str, tag: &[u8; 16], order: Order) -> Self {
        let mut conns: Vec<TcpStream> = addrs
            .iter()
            .map(|&addr| crate::support::measure::plain_stream(addr, TIMEOUT))
            .collect();
        for conn in &mut conns {
            load_script(conn);
        }
        let mut value = [b'0'; VALUE_LEN];
        value[..16].copy_from_slice(tag);
        let value_text = std::str::from_utf8(&value).expect("hex value");
        let px = crate::TTL.as_millis().to_string();
        let set_head = format!(
            "*6\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${VALUE_LEN}\r\n",
            key.len()
        );
        let set = format!(
            "{set_head}{value_text}\r\n$2\r\nNX\r\n$2\r\nPX\r\n${}\r\n{px}\r\n",
            px.len()
        );
        let release_head = format!(
            "*5\r\n$7\r\nEVALSHA\r\n$40\r\n{RELEASE_SHA1}\r\n$1\r\n1\r\n${}\r\n{key}\r\n${VALUE_LEN}\r\n",
            key.len()
        );
        let release = format!("{release_head}{value_text}\r\n");
        Self {
            conns,
            order,
            set: set.into_bytes(),
            set_value_at: set_head.len(),
            release: release.into_bytes(),
            release_value_at: release_head.len(),
            value,
            counter: 0,
            unread: None,
        }
    }

    /// Also writes every command to `addr` (after loading the script there), without waiting
    /// for its replies. Only for [`Order::AllFirst`].
    pub fn with_unread(mut self, addr: SocketAddr) -> Self {
        assert_eq!(
            self.order,
            Order::AllFirst,
            "baseline: an unread node needs Order::AllFirst"
        );
        let mut conn = crate::support::measure::plain_stream(addr, TIMEOUT);
        load_script(&mut conn);
        conn.set_nonblocking(true).expect("baseline: nonblocking");
        self.unread = Some(Unread {
            conn,
            ops: 0,
            drained: 0,
        });
        self
    }

    /// Reads every reply still owed by the unread node (waiting for them) and checks them.
    pub fn finish_unread(&mut self) {
        if let Some(unread) = &mut self.unread {
            unread
                .conn
                .set_nonblocking(false)
                .expect("baseline: blocking");
            let owed = unread.ops * BOTH_REPLIES.len() as u64;
            while unread.drained < owed {
                unread.drain(true);
            }
        }
    }

    /// One lock and release; panics unless every reply is `+OK` then `:1`.
    pub fn op(&mut self) {
        self.next_value();
        match self.order {
            Order::AllFirst => self.all_first(),
            Order::Quorum => self.quorum(),
            Order::NodeByNode => self.node_by_node(),
        }
    }

    /// The next value, written into both commands.
    fn next_value(&mut self) {
        self.counter += 1;
        for (i, slot) in self.value[16..].iter_mut().enumerate() {
            *slot = HEX[((self.counter >> (60 - 4 * i)) & 0xf) as usize];
        }
        let value = &self.value;
        self.set[self.set_value_at..self.set_value_at + VALUE_LEN].copy_from_slice(value);
        self.release[self.release_value_at..self.release_value_at + VALUE_LEN]
            .copy_from_slice(value);
    }

    fn all_first(&mut self) {
        for conn in &mut self.conns {
            send(conn, &self.set);
        }
        if let Some(unread) = &mut self.unread {
            send(&mut unread.conn, &self.set);
        }
        for conn in &mut self.conns {
            expect_reply(conn, SET_OK);
        }
        for conn in &mut self.conns {
            send(conn, &self.release);
        }
        if let Some(unread) = &mut self.unread {
            send(&mut unread.conn, &self.release);
        }
        for conn in &mut self.conns {
            expect_reply(conn, RELEASED);
        }
        if let Some(unread) = &mut self.unread {
            unread.ops += 1;
            unread.drain(false);
        }
    }

    fn quorum(&mut self) {
        let quorum = self.conns.len() / 2 + 1;
        for conn in &mut self.conns {
            send(conn, &self.set);
        }
        for conn in &mut self.conns[..quorum] {
            expect_reply(conn, SET_OK);
        }
        for conn in &mut self.conns {
            send(conn, &self.release);
        }
        for (i, conn) in self.conns.iter_mut().enumerate() {
            // The nodes past the quorum still owe their `SET` reply.
            let expected: &[u8] = if i < quorum { RELEASED } else { BOTH_REPLIES };
            expect_reply(conn, expected);
        }
    }

    fn node_by_node(&mut self) {
        for conn in &mut self.conns {
            send(conn, &self.set);
            expect_reply(conn, SET_OK);
        }
        for conn in &mut self.conns {
            send(conn, &self.release);
            expect_reply(conn, RELEASED);
        }
    }
}

impl Unread {
    /// Reads what the node has sent (one read; blocking or not) and checks it is the expected
    /// sequence of `+OK` and `:1` replies.
    fn drain(&mut self, blocking: bool) {
        let mut buf = [0u8; 4096];
        let n = match self.conn.read(&mut buf) {
            Ok(0) => panic!("baseline: the unread node closed the connection"),
            Ok(n) => n,
            Err(e) if !blocking && e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => panic!("baseline: read from the unread node: {e}"),
        };
        for &byte in &buf[..n] {
            let at = (self.drained % BOTH_REPLIES.len() as u64) as usize;
            assert_eq!(
                byte, BOTH_REPLIES[at],
                "baseline: unexpected reply from the unread node"
            );
            self.drained += 1;
        }
    }
}

/// `SCRIPT LOAD` of the release script, checking the digest the node returns.
fn load_script(conn: &mut TcpStream) {
    let command = format!(
        "*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n${}\r\n{RELEASE_SCRIPT}\r\n",
        RELEASE_SCRIPT.len()
    );
    send(conn, command.as_bytes());
    expect_reply(conn, format!("$40\r\n{RELEASE_SHA1}\r\n").as_bytes());
}

fn send(conn: &mut TcpStream, bytes: &[u8]) {
    conn.write_all(bytes)
        .unwrap_or_else(|e| panic!("baseline: write: {e}"));
}

/// Reads exactly `expected.len()` bytes and panics unless they are `expected`.
fn expect_reply(conn: &mut TcpStream, expected: &[u8]) {
    let mut buf = [0u8; 64];
    let got = &mut buf[..expected.len()];
    conn.read_exact(got)
        .unwrap_or_else(|e| panic!("baseline: read: {e}"));
    assert!(
        got == expected,
        "baseline: expected {:?}, got {:?}",
        String::from_utf8_lossy(expected),
        String::from_utf8_lossy(got)
    );
}
