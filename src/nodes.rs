//! The nodes of one lock manager: their configuration, and each node's health and pool in one
//! struct.
//!
//! Contract:
//! - [`Nodes`] is fixed at build time: the addresses, the quorum, the timeouts and the reply
//!   bounds. What changes at run time lives per node in [`Node`] (health and idle connections)
//!   and per public call in [`Call`] (the lock's ticket, the nodes that had their one script
//!   reload, and scratch space borrowed from a pool so that steady-state calls allocate nothing).
//! - Getting a connection ready for a round ([`Nodes::prepare`]) takes one from the node's pool,
//!   holds back a node that owes too many replies from new locks, settles a connection with
//!   many unread replies, revalidates one that sat idle, and dials where there is none, unless
//!   a recent connect timed out ([`CONNECT_BACKOFF`]).
//! - A process that forked after using the manager never touches a connection inherited from
//!   the other process: the first call in the new process drops (without shutting down) every
//!   idle connection.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::conn::{Conn, ReplyBounds};
use crate::error::{NodeError, ServerError};
use crate::health::Health;
use crate::identity::{Change, Seen};
use crate::pool::{Pool, Ticket};
use crate::quorum::{self, NodeSet};
use crate::resolve::{Lookup, Resolver};
use crate::round::Round;
use crate::script::{self, Script};
use crate::sync::lock;
use crate::url::NodeAddr;

pub use crate::health::CONNECT_BACKOFF;
pub use crate::quorum::MAX_NODES;

/// Idle scratch spaces kept for reuse: more concurrent calls than this allocate their own.
const MAX_IDLE_SCRATCH: usize = 64;

/// A connection owing this many replies is drained (without waiting) before it is used, so
/// nodes that are never read in a round do not pile up unread replies.
const SETTLE_AT: u32 = 16;

/// One node: where it is, how it has been answering, and its idle connections.
#[derive(Debug)]
pub(crate) struct Node {
    pub addr: NodeAddr,
    pub health: Health,
    pub pool: Pool,
    /// Its host name's addresses, looked up off the caller's thread.
    pub lookup: Arc<Lookup>,
}

/// Scratch space for one call: a slot per node for the connections of the current round, and
/// the round's command, encoded once for every node.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub slots: Vec<Option<Box<Conn>>>,
    pub encoded: Vec<u8>,
}

/// The nodes of a lock manager.
#[derive(Debug)]
pub(crate) struct Nodes {
    list: Vec<Node>,
    quorum: usize,
    connect_timeout: Duration,
    node_timeout: Duration,
    bounds: ReplyBounds,
    scratch: Mutex<Vec<Scratch>>,
    tickets: AtomicU64,
    /// The process that owns the pooled connections.
    pid: AtomicU32,
    /// How long a restarted node is kept from voting on grants.
    quarantine: Duration,
    /// The scripts every new connection loads (the fencing ones only with fencing).
    preload: &'static [Script],
    /// New connections ask `INFO persistence` too (with fencing: a restarted node that keeps
    /// an append-only file keeps its counters).
    ask_persistence: bool,
    /// Serialises identity checks, so two names of one server are never both admitted.
    identities: Mutex<()>,
    /// Turns host names into addresses (the system resolver unless configured).
    resolver: Resolver,
}

impl Nodes {
    pub fn new(
        addrs: Vec<NodeAddr>,
        bounds: ReplyBounds,
        connect_timeout: Duration,
        node_timeout: Duration,
        quarantine: Duration,
        fencing: bool,
        resolver: Option<Resolver>,
    ) -> Self {
        Self {
            quorum: quorum::quorum(addrs.len()),
            list: addrs
                .into_iter()
                .map(|addr| Node {
                    addr,
                    health: Health::default(),
                    pool: Pool::default(),
                    lookup: Arc::default(),
                })
                .collect(),
            connect_timeout,
            node_timeout,
            bounds,
            scratch: Mutex::new(Vec::new()),
            tickets: AtomicU64::new(1),
            pid: AtomicU32::new(std::process::id()),
            quarantine,
            preload: if fencing {
                &script::ALL
            } else {
                script::UNFENCED
            },
            ask_persistence: fencing,
            identities: Mutex::new(()),
            resolver: resolver.unwrap_or_default(),
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn quorum(&self) -> usize {
        self.quorum
    }

    pub fn node_timeout(&self) -> Duration {
        self.node_timeout
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// How host names become addresses.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    pub fn everywhere(&self) -> NodeSet {
        NodeSet::all(self.len())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        self.list.iter()
    }

    pub fn get(&self, node: usize) -> Option<&Node> {
        self.list.get(node)
    }

    /// `host:port` of `node`, for error reports.
    pub fn addr_text(&self, node: usize) -> String {
        self.list
            .get(node)
            .map_or_else(String::new, |n| n.addr.to_string())
    }

    /// A fresh ticket: it names one lock from its first `SET` to its release.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.tickets.fetch_add(1, Ordering::Relaxed))
    }

    /// Starts a public call for the lock named by `ticket` (`None`: no order to keep across
    /// calls, as for a lock known only by its value).
    pub fn call(&self, ticket: Option<Ticket>) -> Call<'_> {
        let pid = self.adopt_process();
        let scratch = lock(&self.scratch).pop().unwrap_or_else(|| Scratch {
            slots: (0..self.len()).map(|_| None).collect(),
            encoded: Vec::new(),
        });
        Call {
            nodes: self,
            pid,
            ticket,
            closing: false,
            barred: NodeSet::default(),
            not_after: None,
            reloaded: NodeSet::default(),
            scratch,
        }
    }

    /// Ends every reservation of `ticket` (its guard is gone without a release round).
    pub fn forget(&self, ticket: Ticket) {
        for node in &self.list {
            node.pool.forget(ticket);
        }
    }

    /// Idle connections across all nodes.
    pub fn idle_connections(&self) -> usize {
        self.list.iter().map(|node| node.pool.idle()).sum()
    }

    /// After a fork, the first call in the new process forgets the pooled connections: the
    /// other process may be using them.
    fn adopt_process(&self) -> u32 {
        let pid = std::process::id();
        if self.pid.swap(pid, Ordering::AcqRel) != pid {
            for node in &self.list {
                node.pool.abandon_all();
            }
        }
        pid
    }

    /// A connection to `node` ready for `round`'s command, or why there is none.
    pub fn prepare(
        &self,
        node: usize,
        ticket: Option<Ticket>,
        round: &Round,
    ) -> Result<Box<Conn>, NodeError> {
        let Some(target) = self.list.get(node) else {
            debug_assert!(false, "node {node} out of range");
            return Err(NodeError::Unresolvable);
        };
        if round.locking() {
            if let Some(alias) = target.health.alias() {
                return Err(alias);
            }
            if !self.quarantine.is_zero() && target.health.quarantined(Instant::now()) {
                return Err(NodeError::Quarantined);
            }
        }
        let mut taken = target.pool.take(ticket);
        if let Some((conn, mine)) = taken.as_mut() {
            if round.holds_back(conn.stale()) || conn.stale() >= SETTLE_AT {
                // Catch up on what has arrived; a node still this far behind gets no new lock
                // (redialling a stopped server would only fill its accept backlog). Releases
                // and extends still go out, so every SET it was sent is followed by its
                // release.
                conn.drain()?;
                if round.holds_back(conn.stale()) {
                    let keep = ticket.filter(|_| *mine);
                    if let Some((conn, _)) = taken {
                        target.pool.give_back(conn, keep);
                    }
                    return Err(NodeError::HeldBack);
                }
            }
        }
        match taken {
            Some((mut conn, _)) => match conn.revalidate() {
                Ok(()) => Ok(conn),
                Err(_) => self.dial(target),
            },
            None => self.dial(target),
        }
    }

    /// Opens a connection, unless a recent attempt timed out: a black-holed host would
    /// otherwise cost every round a whole connect timeout.
    ///
    /// Every script goes ahead of the first command, unanswered (their replies are skipped):
    /// an EVALSHA on this connection then finds its script even when nobody waits to see a
    /// NOSCRIPT, as for a release queued behind a SET on a paused node. Then (with fencing)
    /// `INFO persistence` and `INFO server`, whose replies are read before the first command's
    /// and tell who the node is and whether it keeps an append-only file ([`Nodes::identify`]). Nothing is waited for here: a slow node costs no extra round trip.
    fn dial(&self, target: &Node) -> Result<Box<Conn>, NodeError> {
        let now = Instant::now();
        if let Some(error) = target.health.backing_off(now) {
            return Err(error);
        }
        let deadline = now + self.connect_timeout;
        let resolved = match target.addr.unix_path() {
            Some(_) => Ok(Vec::new()),
            None => target.lookup.addresses(
                &self.resolver,
                target.addr.host(),
                target.addr.port(),
                deadline,
            ),
        };
        match resolved.and_then(|addrs| Conn::connect(&target.addr, &addrs, deadline, self.bounds))
        {
            Ok(mut conn) => {
                for loaded in self.preload {
                    conn.queue(&[b"SCRIPT", b"LOAD", loaded.source.as_bytes()]);
                }
                if self.ask_persistence {
                    conn.queue(&[b"INFO", b"persistence"]);
                }
                conn.queue(&[b"INFO", b"server"]);
                let preloads = u32::try_from(self.preload.len()).unwrap_or(u32::MAX);
                conn.expect_identity(preloads, self.ask_persistence);
                Ok(Box::new(conn))
            }
            Err(error) => {
                target.health.dial_failed(&error, Instant::now());
                Err(error)
            }
        }
    }

    /// Records who `node` said it is on a new connection, before its first answer counts.
    /// Marks it as an alias when another configured node is the same server (its votes never
    /// count, and it is sent no new lock; releases still reach it). In a round that takes a
    /// lock, refuses its vote while it is quarantined, and in a fenced one right after a
    /// restart (its counter cannot be trusted until it is re-seeded, unless it keeps an
    /// append-only file). A node still loading its data cannot say whether it keeps one: its
    /// answer does not count and the connection is closed, so that the next one asks again.
    pub fn identify(
        &self,
        node: usize,
        seen: &Seen,
        locking: bool,
        fenced: bool,
    ) -> Result<(), Refusal> {
        let Some(target) = self.list.get(node) else {
            return Ok(());
        };
        let _serial = lock(&self.identities);
        for (other, named) in self.list.iter().enumerate() {
            if other != node && lock(&named.health.identity).run_id() == Some(&seen.run_id) {
                let error = NodeError::SameServer {
                    node: other,
                    addr: named.addr.to_string(),
                };
                target.health.set_alias(Some(error.clone()));
                return Err(Refusal::Vote(error));
            }
        }
        target.health.set_alias(None);
        if seen.persistence.loading {
            let loading = ServerError::from_line(b"LOADING the node reported loading:1");
            return Err(Refusal::Reconnect(NodeError::Server(loading)));
        }
        let now = Instant::now();
        let mut identity = lock(&target.health.identity);
        let change = identity.observe(seen, now, self.quarantine);
        let distrusted = fenced && change == Change::Restarted && !seen.keeps_writes();
        if locking && (distrusted || identity.quarantined(now)) {
            return Err(Refusal::Vote(NodeError::Quarantined));
        }
        Ok(())
    }
}

/// Why [`Nodes::identify`] refused a node's answer.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Its vote does not count, for this reason.
    Vote(NodeError),
    /// Nor does it, and the connection must be closed: the next one asks again.
    Reconnect(NodeError),
}

/// One public call's working state.
pub(crate) struct Call<'a> {
    pub(crate) nodes: &'a Nodes,
    /// The process making the call.
    pub(crate) pid: u32,
    /// The lock this call works for: connections that owe it replies stay reserved for it.
    pub(crate) ticket: Option<Ticket>,
    /// Set before the lock's last round: its connections are then given back unreserved.
    pub(crate) closing: bool,
    /// Nodes that may not vote on this call's next lock-taking round (a fencing counter that
    /// cannot be trusted yet): they count as quarantined.
    pub(crate) barred: NodeSet,
    /// No command of a round may be written at or after this instant (a lease's renewal must
    /// not start after its cap): a node it would reach later gets nothing.
    pub(crate) not_after: Option<Instant>,
    /// Nodes that had their one `SCRIPT LOAD` in this call.
    pub(crate) reloaded: NodeSet,
    pub(crate) scratch: Scratch,
}

impl Call<'_> {
    /// Marks the lock's last round: nothing after it needs to be ordered behind it.
    pub fn closing(&mut self) {
        self.closing = true;
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        let scratch = std::mem::take(&mut self.scratch);
        debug_assert!(
            scratch.slots.iter().all(Option::is_none),
            "a round left a connection"
        );
        if scratch.slots.len() != self.nodes.len() {
            return;
        }
        let mut idle = lock(&self.nodes.scratch);
        if idle.len() < MAX_IDLE_SCRATCH {
            idle.push(scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;
    use std::time::Duration;

    use super::*;
    use crate::round::{Setup, Wait};

    /// An extend round: not locking, decided at the first answer of one node.
    fn extend_round() -> Round {
        let setup = Setup {
            nodes: 1,
            quorum: 1,
            node_timeout: Duration::from_millis(50),
            wait: Wait::UntilDecided,
            scripted: true,
            locking: false,
            replies: 1,
        };
        Round::new(setup, &[0], NodeSet::default())
    }

    fn seen(run_id: &str, aof: Option<bool>, loading: bool) -> Seen {
        Seen {
            run_id: run_id.as_bytes().to_vec(),
            uptime: Duration::from_secs(1),
            persistence: crate::identity::Persistence { aof, loading },
        }
    }

    /// With fencing, a restart is judged once the node is done loading: while it loads it
    /// reports `aof_enabled:0` whatever its configuration, so its answer is refused and the
    /// connection closed (the next one asks again); loaded, a node with AOF keeps its counters'
    /// trust and one without loses it until re-seeded.
    #[test]
    fn a_restart_is_judged_once_the_node_is_done_loading() {
        let dlm = crate::Redlock::builder()
            .nodes(["redis://127.0.0.1:1"])
            .fencing(true)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let nodes = &dlm.inner().nodes;
        let trusted = || {
            nodes
                .get(0)
                .is_some_and(|n| lock(&n.health.identity).fence_trusted(b"r"))
        };
        let vote = |seen: &Seen| nodes.identify(0, seen, true, true);
        assert!(vote(&seen("a", Some(true), false)).is_ok());
        let loading = vote(&seen("b", Some(false), true));
        assert!(
            matches!(loading, Err(Refusal::Reconnect(NodeError::Server(ref e))) if e.kind.is_transient()),
            "{loading:?}"
        );
        assert!(trusted(), "nothing judged while loading");
        assert!(vote(&seen("b", Some(true), false)).is_ok(), "AOF: trusted");
        assert!(trusted());
        let lost = vote(&seen("c", Some(false), false));
        assert!(matches!(lost, Err(Refusal::Vote(NodeError::Quarantined))));
        assert!(!trusted(), "no AOF: distrusted until re-seeded");
    }

    /// A node beyond the quorum in every round of a guard's extends is never read: each round
    /// leaves one more reply unread on its connection. Once [`SETTLE_AT`] have piled up, the
    /// replies that arrived are skipped before the connection is used again.
    #[test]
    fn a_connection_owing_many_unread_replies_is_settled_before_use() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let local = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let dlm =
            crate::Redlock::new([format!("redis://{local}")]).unwrap_or_else(|e| panic!("{e}"));
        let nodes = &dlm.inner().nodes;
        let Some(node) = nodes.get(0) else {
            panic!("one node configured");
        };
        for (owed, left) in [(SETTLE_AT - 1, SETTLE_AT - 1), (3 * SETTLE_AT, 0)] {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut conn = Conn::connect(&node.addr, &[local], deadline, nodes.bounds)
                .unwrap_or_else(|e| panic!("{e}"));
            let (mut server, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
            conn.abandon(owed);
            let replies = b":1\r\n".repeat(usize::try_from(owed).unwrap_or(0));
            server.write_all(&replies).unwrap_or_else(|e| panic!("{e}"));
            std::thread::sleep(Duration::from_millis(50));
            node.pool.give_back(Box::new(conn), None);
            let conn = nodes
                .prepare(0, None, &extend_round())
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(conn.stale(), left, "{owed} replies owed");
        }
    }
}
