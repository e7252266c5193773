//! Fan-out: one command to many nodes in one round, under one deadline, in one thread.
//!
//! Contract:
//! - A round connects where needed (each connect bounded by the connect timeout), then takes
//!   its start time, writes the command to every target node, and only then reads replies, so
//!   it costs one round trip to the slowest node that is waited for, not one per node.
//! - Every read shares the round's deadline (`start + node_timeout`). A node that fails, times
//!   out or answers with an error is a non-vote with a typed cause; it never aborts the round.
//! - Replies are read fastest node first (by a moving average of each node's latency). Nodes
//!   much slower than the quorum, or that timed out, are *slow*: once the round is decided (a
//!   quorum said yes, or can no longer) they are only polled without waiting. Other nodes are
//!   read until decided, or all of them with [`Wait::AllHealthy`]. Replies not read are marked
//!   stale on their connection and skipped before its next use, so a slow minority costs no
//!   waiting once a quorum has answered, and a late reply never answers a later command.
//! - A script command answered `NOSCRIPT` gets one `SCRIPT LOAD` (digest checked) and one
//!   retry on that node, pipelined, within the same deadline. Never a loop.
//! - Connections that saw an I/O error, EOF, a protocol error or a reply of the wrong type are
//!   dropped; they reconnect on the next round that needs them, except that a node whose
//!   connect timed out is not dialled again for [`CONNECT_BACKOFF`].
//! - Sessions (one connection per node, plus scratch space) are pooled, so a steady stream of
//!   rounds allocates nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::conn::{Conn, ReplyBounds};
use crate::error::{NodeError, NodeFailure, Phase, ServerError, ServerErrorKind};
use crate::quorum;
use crate::resp::{encode_command, DecimalBuf, Reply};
use crate::script::{self, Script};
use crate::url::NodeAddr;

/// Most nodes a lock manager may have: rounds track node sets in one `u64`.
pub const MAX_NODES: usize = 64;

/// A node whose connection owes this many unread replies gets no new `SET` until it has
/// answered them (a paused node gathers two or three per lock and release). It is neither closed nor
/// redialled meanwhile: connecting to a stopped server still succeeds, and every such
/// connection would sit in its accept backlog until that fills and connects start to hang.
const MAX_STALE: u32 = 256;

/// After a connect or handshake times out, the node is not dialled again for this long; rounds
/// meanwhile count it as failed with that timeout. Refused connections fail fast and are
/// retried every round.
pub const CONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// A node is slow when its average latency exceeds `SLOW_FACTOR` times that of the
/// quorum-th fastest node plus `SLOW_MARGIN_NANOS`.
const SLOW_FACTOR: u64 = 4;
const SLOW_MARGIN_NANOS: u64 = 1_000_000;

/// A read that waited this long means the round stalled on that node.
const STALL: Duration = Duration::from_millis(1);

/// Idle sessions kept for reuse; more concurrent callers than this pay for new connections.
const MAX_IDLE_SESSIONS: usize = 64;

/// A set of node indexes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeSet(u64);

impl NodeSet {
    pub fn all(nodes: usize) -> Self {
        match nodes {
            0 => Self(0),
            n if n >= 64 => Self(u64::MAX),
            n => Self((1u64 << n) - 1),
        }
    }

    pub fn contains(self, node: usize) -> bool {
        node < 64 && self.0 & (1 << node) != 0
    }

    fn insert(&mut self, node: usize) {
        if node < 64 {
            self.0 |= 1 << node;
        }
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// A command sent to each node of a round.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Command<'a> {
    /// `SET key value NX PX ttl`.
    Acquire {
        key: &'a [u8],
        value: &'a [u8],
        ttl_ms: u64,
    },
    /// `EVALSHA <release> 1 key value`.
    Release { key: &'a [u8], value: &'a [u8] },
    /// `EVALSHA <extend> 1 key value ttl`.
    Extend {
        key: &'a [u8],
        value: &'a [u8],
        ttl_ms: u64,
    },
}

impl Command<'_> {
    fn script(&self) -> Option<Script> {
        match self {
            Self::Acquire { .. } => None,
            Self::Release { .. } => Some(script::RELEASE),
            Self::Extend { .. } => Some(script::EXTEND),
        }
    }

    /// Appends the command's RESP encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>) {
        let mut digits = DecimalBuf::new();
        match *self {
            Self::Acquire { key, value, ttl_ms } => {
                let ttl = digits.format(ttl_ms);
                encode_command(out, &[b"SET", key, value, b"NX", b"PX", ttl]);
            }
            Self::Release { key, value } => {
                let sha1 = script::RELEASE.sha1.as_bytes();
                encode_command(out, &[b"EVALSHA", sha1, b"1", key, value]);
            }
            Self::Extend { key, value, ttl_ms } => {
                let sha1 = script::EXTEND.sha1.as_bytes();
                let ttl = digits.format(ttl_ms);
                encode_command(out, &[b"EVALSHA", sha1, b"1", key, value, ttl]);
            }
        }
    }

    /// What a reply to this command means for the lock.
    fn interpret(&self, reply: Reply<'_>) -> Answer {
        match (self, reply) {
            (Self::Acquire { .. }, Reply::Simple(b"OK")) => Answer::Vote(true),
            (Self::Acquire { .. }, Reply::Bulk(None)) => Answer::Vote(false),
            (_, Reply::Error(line)) => {
                let error = ServerError::from_line(line);
                match (self, error.kind) {
                    // The key holds another type: whatever it is, it is not our lock.
                    (Self::Release { .. } | Self::Extend { .. }, ServerErrorKind::WrongType) => {
                        Answer::Vote(false)
                    }
                    _ => Answer::Failed(NodeError::Server(error)),
                }
            }
            (Self::Release { .. } | Self::Extend { .. }, Reply::Integer(1)) => Answer::Vote(true),
            (Self::Release { .. } | Self::Extend { .. }, Reply::Integer(0)) => Answer::Vote(false),
            _ => Answer::Broken(NodeError::UnexpectedReply),
        }
    }
}

/// A reply, judged.
enum Answer {
    Vote(bool),
    /// A non-vote; the connection is fine.
    Failed(NodeError),
    /// A non-vote; the connection must be closed.
    Broken(NodeError),
}

/// One node's state in the current round.
#[derive(Debug, Default)]
pub(crate) enum Vote {
    /// Not a target of this round.
    #[default]
    Untouched,
    /// Sent; reply not read yet.
    Pending,
    /// `SCRIPT LOAD` and the command were re-sent after `NOSCRIPT`; two replies to read.
    Reloading,
    /// Granted / deleted / extended.
    Yes,
    /// Held by another value, or not ours any more.
    No,
    /// Did not vote.
    Failed(NodeError),
    /// Sent, but the round was decided and the reply had not arrived when polled; it will be
    /// skipped before the connection's next use. Not a failure.
    NotAwaited,
}

/// How long a round keeps reading once it is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Stop as soon as the outcome is known.
    UntilDecided,
    /// Read every node that is not slow (so each `NOSCRIPT` is seen and handled), and slow
    /// ones only while undecided.
    AllHealthy,
}

/// Counts and timing of a finished round.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Round {
    /// Taken after connecting, before the first byte of the command was written.
    pub started: Instant,
    /// Taken after the last reply read.
    pub finished: Instant,
    pub yes: usize,
    pub no: usize,
    /// Nodes the whole command was written to (the only ones where it may have run).
    pub sent: NodeSet,
}

/// Per-caller state: one connection per node and the votes of the current round.
pub(crate) struct Session {
    conns: Vec<Option<Conn>>,
    votes: Vec<Vote>,
    /// Read order of the current round; a reloading node is appended a second time.
    order: Vec<usize>,
    /// The current round's command, encoded once for every node.
    encoded: Vec<u8>,
}

impl Session {
    /// Moves the session out, leaving a placeholder that owns (and allocates) nothing.
    pub fn take(&mut self) -> Self {
        std::mem::replace(
            self,
            Self {
                conns: Vec::new(),
                votes: Vec::new(),
                order: Vec::new(),
                encoded: Vec::new(),
            },
        )
    }

    /// Number of nodes sent to in the last round whose answer is unknown: failed, not
    /// awaited, or still owing a reply.
    pub fn unheard(&self) -> usize {
        self.votes
            .iter()
            .filter(|vote| {
                matches!(
                    vote,
                    Vote::Failed(_) | Vote::NotAwaited | Vote::Pending | Vote::Reloading
                )
            })
            .count()
    }

    /// The failures of the last round, with node addresses. Fast nodes left unread once the
    /// round was decided are not failures; slow nodes that were only polled are.
    pub fn failures(&self, nodes: &Nodes) -> Vec<NodeFailure> {
        let mut out = Vec::new();
        for (node, vote) in self.votes.iter().enumerate() {
            let error = match vote {
                Vote::Failed(error) => error.clone(),
                Vote::NotAwaited => NodeError::NotAwaited,
                _ => continue,
            };
            if let Some(addr) = nodes.addrs.get(node) {
                out.push(NodeFailure {
                    node,
                    addr: addr.to_string(),
                    error,
                });
            }
        }
        out
    }
}

/// The nodes of a lock manager and the pool of sessions talking to them.
pub(crate) struct Nodes {
    addrs: Vec<NodeAddr>,
    bounds: ReplyBounds,
    connect_timeout: Duration,
    node_timeout: Duration,
    quorum: usize,
    idle: Mutex<Vec<Session>>,
    /// Per node, shared by every session: a moving average of the reply latency in
    /// nanoseconds, raised towards the node timeout by a timeout. Orders reads fastest first
    /// and says which nodes are slow.
    latency: Vec<AtomicU64>,
    /// Per node: after a connect that timed out, when to dial again and what to report until
    /// then. Only touched when a connection has to be opened.
    backoff: Mutex<Vec<Option<(Instant, NodeError)>>>,
}

/// A session borrowed from the pool; returned on drop.
pub(crate) struct Borrowed<'a> {
    nodes: &'a Nodes,
    session: Session,
}

impl std::ops::Deref for Borrowed<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

impl std::ops::DerefMut for Borrowed<'_> {
    fn deref_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        self.nodes.give_back(self.session.take());
    }
}

fn lock_ignoring_poison<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding the pool lock; if a panic elsewhere ever poisoned it, the
    // pool itself is still consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Nodes {
    pub fn new(
        addrs: Vec<NodeAddr>,
        bounds: ReplyBounds,
        connect_timeout: Duration,
        node_timeout: Duration,
    ) -> Self {
        let quorum = quorum::quorum(addrs.len());
        let n = addrs.len();
        Self {
            addrs,
            bounds,
            connect_timeout,
            node_timeout,
            quorum,
            idle: Mutex::new(Vec::new()),
            latency: (0..n).map(|_| AtomicU64::new(0)).collect(),
            backoff: Mutex::new(Vec::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn quorum(&self) -> usize {
        self.quorum
    }

    pub fn addrs(&self) -> &[NodeAddr] {
        &self.addrs
    }

    /// Gets a target node's connection ready for this round: drains or holds back a node that
    /// owes too many replies, reconnects a connection that went bad while idle, dials where
    /// there is none. Returns `Pending` when a command may be sent, or the failure.
    fn prepare(&self, node: usize, slot: &mut Option<Conn>, command: &Command<'_>) -> Vote {
        let acquiring = matches!(command, Command::Acquire { .. });
        if let Some(conn) = slot
            .as_mut()
            .filter(|c| acquiring && c.stale() >= MAX_STALE)
        {
            // A node this far behind gets no new SET until it has answered what it owes:
            // redialling a stopped server would only fill its accept backlog. Releases and
            // extends still go out, so every SET it was sent is followed by its release.
            match conn.drain() {
                Ok(()) if conn.stale() >= MAX_STALE => {
                    return Vote::Failed(NodeError::Timeout(Phase::Read))
                }
                Ok(()) => {}
                Err(error) => {
                    *slot = None;
                    return Vote::Failed(error);
                }
            }
        }
        if slot.as_mut().is_some_and(|conn| conn.revalidate().is_err()) {
            *slot = None;
        }
        if slot.is_none() {
            let Some(addr) = self.addrs.get(node) else {
                return Vote::Untouched;
            };
            match self.dial(node, addr) {
                Ok(conn) => *slot = Some(conn),
                Err(error) => return Vote::Failed(error),
            }
        }
        Vote::Pending
    }

    /// Opens a connection to `node`, unless a recent attempt timed out: a black-holed host
    /// would otherwise cost every round a whole connect timeout.
    fn dial(&self, node: usize, addr: &NodeAddr) -> Result<Conn, NodeError> {
        let now = Instant::now();
        if let Some(Some((until, error))) = lock_ignoring_poison(&self.backoff).get(node) {
            if now < *until {
                return Err(error.clone());
            }
        }
        let mut result = Conn::connect(addr, now + self.connect_timeout, self.bounds);
        if let Ok(conn) = &mut result {
            // Both scripts go ahead of the first command, unanswered (their replies are
            // skipped): an EVALSHA on this connection then finds its script even when nobody
            // waits to see a NOSCRIPT, as for a release queued behind a SET on a paused node.
            conn.queue(&[b"SCRIPT", b"LOAD", script::RELEASE.source.as_bytes()]);
            conn.queue(&[b"SCRIPT", b"LOAD", script::EXTEND.source.as_bytes()]);
            conn.abandon(2);
        }
        if let Err(error @ NodeError::Timeout(_)) = &result {
            let mut backoff = lock_ignoring_poison(&self.backoff);
            if backoff.len() < self.addrs.len() {
                backoff.resize(self.addrs.len(), None);
            }
            if let Some(entry) = backoff.get_mut(node) {
                *entry = Some((Instant::now() + CONNECT_BACKOFF, error.clone()));
            }
        }
        result
    }

    /// Nodes much slower than the quorum: their average latency is above four times that of
    /// the quorum-th fastest node plus a millisecond. A node that timed out weighs in with the
    /// whole node timeout, so it turns slow as long as a quorum answers quickly.
    fn slow_nodes(&self, latency: &[u64; MAX_NODES]) -> NodeSet {
        let n = self.addrs.len().min(MAX_NODES);
        let mut sorted = *latency;
        let Some(active) = sorted.get_mut(..n) else {
            return NodeSet::default();
        };
        active.sort_unstable();
        let Some(&reference) = active.get(self.quorum.saturating_sub(1)) else {
            return NodeSet::default();
        };
        let threshold = reference
            .saturating_mul(SLOW_FACTOR)
            .saturating_add(SLOW_MARGIN_NANOS);
        let mut slow = NodeSet::default();
        for (node, &average) in latency.iter().enumerate().take(n) {
            if average > threshold {
                slow.insert(node);
            }
        }
        slow
    }

    /// Folds one reply latency into the node's moving average (weight 1/8). Concurrent
    /// updates may lose one another's sample; the average only steers read order.
    fn record_latency(&self, node: usize, sample: Duration) {
        let Some(average) = self.latency.get(node) else {
            return;
        };
        let sample = u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX);
        let old = average.load(Ordering::Relaxed);
        let new = if sample >= old {
            old + (sample - old) / 8
        } else {
            old - (old - sample) / 8
        };
        average.store(new, Ordering::Relaxed);
    }

    /// Borrows a session for the current scope.
    pub fn session(&self) -> Borrowed<'_> {
        Borrowed {
            nodes: self,
            session: self.take_session(),
        }
    }

    /// Takes an idle session, or makes a new one (no connection is opened here). Give it
    /// back with [`Nodes::give_back`].
    pub fn take_session(&self) -> Session {
        let reused = lock_ignoring_poison(&self.idle).pop();
        reused.unwrap_or_else(|| {
            let n = self.addrs.len();
            Session {
                conns: (0..n).map(|_| None).collect(),
                votes: (0..n).map(|_| Vote::Untouched).collect(),
                order: Vec::with_capacity(2 * n),
                encoded: Vec::new(),
            }
        })
    }

    /// Returns a session to the pool (an empty placeholder is dropped instead).
    pub fn give_back(&self, session: Session) {
        if session.conns.is_empty() {
            return;
        }
        let mut idle = lock_ignoring_poison(&self.idle);
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push(session);
        }
    }

    /// Runs one round of `command` on the `targets` and leaves each node's vote in the
    /// session.
    ///
    /// `reloaded` holds the nodes that already had their one `SCRIPT LOAD` during the caller's
    /// public call; a node in it that answers `NOSCRIPT` again is a failure.
    pub fn round(
        &self,
        session: &mut Session,
        command: &Command<'_>,
        targets: NodeSet,
        wait: Wait,
        reloaded: &mut NodeSet,
    ) -> Round {
        let Session {
            conns,
            votes,
            order,
            encoded,
        } = session;
        encoded.clear();
        command.encode(encoded);
        // A snapshot: other callers update the latencies meanwhile.
        let mut latency = [0u64; MAX_NODES];
        for (slot, average) in latency.iter_mut().zip(&self.latency) {
            *slot = average.load(Ordering::Relaxed);
        }
        let slow = self.slow_nodes(&latency);
        for (node, (slot, vote)) in conns.iter_mut().zip(votes.iter_mut()).enumerate() {
            *vote = if targets.contains(node) {
                self.prepare(node, slot, command)
            } else {
                Vote::Untouched
            };
        }

        let started = Instant::now();
        let deadline = started + self.node_timeout;
        let mut sent = NodeSet::default();
        for (node, (slot, vote)) in conns.iter_mut().zip(votes.iter_mut()).enumerate() {
            if !matches!(vote, Vote::Pending) {
                continue;
            }
            let Some(conn) = slot.as_mut() else {
                continue;
            };
            // A node that is slow, or whose last reply timed out, may well not be heard from
            // in this round, so a NOSCRIPT would go unseen (say the node restarted while
            // paused): load the script in the same pipeline, as its one reload.
            let preload = command
                .script()
                .filter(|_| slow.contains(node) || conn.lagging());
            if let Some(script) = preload {
                conn.queue(&[b"SCRIPT", b"LOAD", script.source.as_bytes()]);
                reloaded.insert(node);
                *vote = Vote::Reloading;
            }
            match conn.send(encoded, deadline) {
                Ok(()) => sent.insert(node),
                Err(error) => {
                    *slot = None;
                    *vote = Vote::Failed(error);
                }
            }
        }

        // Fastest first, so a round usually decides without waiting for a slow node at all;
        // a node that still owes earlier replies cannot answer this one before them.
        order.clear();
        order.extend((0..votes.len()).filter(|&n| sent.contains(n)));
        order.sort_unstable_by_key(|&n| {
            let owes = conns
                .get(n)
                .and_then(Option::as_ref)
                .is_some_and(|conn| conn.stale() > 0);
            (owes, latency.get(n).copied().unwrap_or(u64::MAX))
        });
        // Reloads get one node timeout of their own, from the first one, so a round lasts at
        // most two node timeouts even when NOSCRIPT arrives late.
        let mut reload_deadline: Option<Instant> = None;
        let mut yes = 0;
        let mut no = 0;
        let mut awaiting = order.len();
        let mut last_used = None;
        let mut stalled = false;
        let mut next = 0;
        while let Some(&node) = order.get(next) {
            next += 1;
            let undecided = !quorum::decided(yes, awaiting, self.quorum);
            let awaited = undecided || (wait == Wait::AllHealthy && !slow.contains(node));
            let reloading = matches!(votes.get(node), Some(Vote::Reloading));
            let read_until = if awaited {
                match reload_deadline {
                    Some(extended) if reloading => extended.max(deadline),
                    _ => deadline,
                }
            } else if slow.contains(node) {
                // Not needed, but collect a reply that has already arrived: that is how a
                // slow node is noticed to be fast again.
                Instant::now()
            } else {
                continue;
            };
            let (Some(slot), Some(vote)) = (conns.get_mut(node), votes.get_mut(node)) else {
                continue;
            };
            let Some(conn) = slot.as_mut() else {
                continue;
            };
            let read_start = Instant::now();
            let answer = read_answer(conn, command, reloading, read_until);
            awaiting -= 1;
            let now = Instant::now();
            if undecided {
                last_used = Some(now);
            }
            // A reply found waiting after the round stalled on another node tells nothing
            // about this node's latency; any other read bounds it from above.
            let waited = now.saturating_duration_since(read_start);
            let timed_out = matches!(answer, Answer::Failed(NodeError::Timeout(_)));
            if timed_out && awaited {
                self.record_latency(node, self.node_timeout);
            } else if !timed_out && (!stalled || waited >= STALL) {
                self.record_latency(node, now.saturating_duration_since(started));
            }
            stalled |= waited >= STALL;
            *vote = match answer {
                Answer::Failed(NodeError::Timeout(_)) if !awaited => Vote::NotAwaited,
                Answer::Vote(granted) => {
                    if granted {
                        yes += 1;
                        Vote::Yes
                    } else {
                        no += 1;
                        Vote::No
                    }
                }
                Answer::Failed(NodeError::Server(error))
                    if error.kind == ServerErrorKind::NoScript && !reloaded.contains(node) =>
                {
                    reloaded.insert(node);
                    let until =
                        *reload_deadline.get_or_insert_with(|| Instant::now() + self.node_timeout);
                    match reload(conn, command, encoded, until.max(deadline)) {
                        Ok(()) => {
                            awaiting += 1;
                            order.push(node);
                            Vote::Reloading
                        }
                        Err(error) => {
                            *slot = None;
                            Vote::Failed(error)
                        }
                    }
                }
                Answer::Failed(error) => Vote::Failed(error),
                Answer::Broken(error) => {
                    *slot = None;
                    Vote::Failed(error)
                }
            };
        }
        let finished = last_used.unwrap_or_else(Instant::now);

        // Whatever was not read is skipped before the connection's next use.
        for (slot, vote) in conns.iter_mut().zip(votes.iter()) {
            let unread = match vote {
                Vote::Pending => 1,
                Vote::Reloading => 2,
                _ => 0,
            };
            if let Some(conn) = slot.as_mut() {
                conn.abandon(unread);
            }
        }
        Round {
            started,
            finished,
            yes,
            no,
            sent,
        }
    }
}

/// Reads the reply to `command` (after the `SCRIPT LOAD` reply when reloading).
fn read_answer(
    conn: &mut Conn,
    command: &Command<'_>,
    reloading: bool,
    deadline: Instant,
) -> Answer {
    if reloading {
        let sha1 = command.script().map(|s| s.sha1.as_bytes());
        let loaded = conn.recv(deadline, |reply| match reply {
            Reply::Bulk(Some(digest)) if Some(digest) == sha1 => Answer::Vote(true),
            Reply::Bulk(Some(_)) => Answer::Failed(NodeError::ScriptDigestMismatch),
            Reply::Error(line) => Answer::Failed(NodeError::Server(ServerError::from_line(line))),
            _ => Answer::Broken(NodeError::UnexpectedReply),
        });
        match loaded {
            Ok(Answer::Vote(_)) => {}
            Ok(failed) => {
                // The retried command's reply is still owed; skip it.
                conn.abandon(1);
                return failed;
            }
            Err(error) => return io_failure(conn, error, 2),
        }
    }
    match conn.recv(deadline, |reply| command.interpret(reply)) {
        Ok(answer) => answer,
        Err(error) => io_failure(conn, error, 1),
    }
}

/// A timeout leaves the connection usable with `unread` replies skipped later; anything else
/// breaks it.
fn io_failure(conn: &mut Conn, error: NodeError, unread: u32) -> Answer {
    match error {
        NodeError::Timeout(_) => {
            conn.abandon(unread);
            Answer::Failed(error)
        }
        error => Answer::Broken(error),
    }
}

/// Pipelines `SCRIPT LOAD` and the (already encoded) command again after a `NOSCRIPT`.
fn reload(
    conn: &mut Conn,
    command: &Command<'_>,
    encoded: &[u8],
    deadline: Instant,
) -> Result<(), NodeError> {
    let Some(script) = command.script() else {
        return Err(NodeError::UnexpectedReply);
    };
    conn.queue(&[b"SCRIPT", b"LOAD", script.source.as_bytes()]);
    conn.send(encoded, deadline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::Limits;

    fn nodes(n: usize) -> Nodes {
        let addrs = (0..n)
            .map(|i| NodeAddr::parse(&format!("redis://127.0.0.1:{}", 7000 + i)))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_default();
        assert_eq!(addrs.len(), n);
        let timeout = Duration::from_millis(50);
        Nodes::new(
            addrs,
            ReplyBounds::new(Limits::LOCK_CLIENT),
            timeout,
            timeout,
        )
    }

    fn latencies(values_us: &[u64]) -> [u64; MAX_NODES] {
        let mut out = [0; MAX_NODES];
        for (slot, us) in out.iter_mut().zip(values_us) {
            *slot = us * 1000;
        }
        out
    }

    #[test]
    fn node_sets_hold_up_to_64_nodes() {
        let all = NodeSet::all(64);
        assert!(all.contains(0) && all.contains(63) && !all.contains(64));
        let five = NodeSet::all(5);
        assert!(five.contains(4) && !five.contains(5));
        assert!(NodeSet::all(0).is_empty());
        let mut set = NodeSet::default();
        set.insert(70);
        assert!(set.is_empty());
    }

    #[test]
    fn a_node_is_slow_only_against_the_quorum() {
        let five = nodes(5);
        // Quorum of 3: the third fastest is 50 us, so the threshold is 1.2 ms.
        let slow = five.slow_nodes(&latencies(&[40, 45, 50, 1100, 5000]));
        assert_eq!(slow, NodeSet(0b10000));
        // Two slow nodes of five: the quorum is still fast, both are slow.
        let slow = five.slow_nodes(&latencies(&[40, 6250, 50, 45, 6250]));
        assert_eq!(slow, NodeSet(0b10010));
        // Three slow nodes: the quorum itself is slow, so nobody is skipped.
        let slow = five.slow_nodes(&latencies(&[40, 6250, 6250, 45, 6250]));
        assert!(slow.is_empty());
        // One node: never slow against itself.
        assert!(nodes(1).slow_nodes(&latencies(&[50_000])).is_empty());
    }

    #[test]
    fn latency_moves_an_eighth_of_the_way() {
        let three = nodes(3);
        three.record_latency(1, Duration::from_nanos(8000));
        assert_eq!(three.latency[1].load(Ordering::Relaxed), 1000);
        three.record_latency(1, Duration::ZERO);
        assert_eq!(three.latency[1].load(Ordering::Relaxed), 875);
        three.record_latency(9, Duration::from_secs(1));
        assert_eq!(three.latency.len(), 3);
    }
}
