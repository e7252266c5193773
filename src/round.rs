//! One round's decisions: a state machine with no sockets and no clock of its own.
//!
//! Contract:
//! - The driver (`drive.rs`) reports which target nodes the command was written to
//!   ([`Round::sent`], [`Round::failed`]), then asks [`Round::next`] what to do, passing the
//!   current time, and reports what each read gave ([`Round::heard`]). The round never blocks,
//!   never reads a clock and never touches a socket, so each decision is unit-tested below with
//!   scripted answers and times.
//! - Reads go fastest node first (by the latency averages the driver passes in); a node that
//!   still owes replies to earlier commands goes last, since it cannot answer this one first.
//! - Every read shares one deadline, `started + node_timeout`. A node's first `NOSCRIPT` in a
//!   public call gets one reload (`SCRIPT LOAD` and the command again); reloads share a second
//!   deadline, `first reload + node_timeout`, so a round lasts at most two node timeouts.
//! - The round is decided once a quorum said yes, or no longer can. From then on slow nodes
//!   are only polled (read without waiting); the others are not read with
//!   [`Wait::UntilDecided`] and are still read to the deadline with [`Wait::AllHealthy`].
//! - A node whose connection owes [`MAX_OWED`] replies is held back from new locks.
//! - [`Round::finish`] gives the [`Outcome`]: counts, timing, each node's vote with its cause,
//!   and the replies each node still owes.

use std::time::{Duration, Instant};

use crate::error::{NodeError, NodeFailure, ServerErrorKind};
use crate::quorum::{self, NodeSet, MAX_NODES};

/// A connection that owes this many unread replies gets no new lock until it has answered
/// them (a paused node gathers two or three per lock and release). It is neither closed nor
/// redialled meanwhile: connecting to a stopped server still succeeds, and every such
/// connection would sit in its accept backlog until that fills and connects start to hang.
pub(crate) const MAX_OWED: u32 = 256;

/// A node is slow when its average latency exceeds `SLOW_FACTOR` times that of the
/// quorum-th fastest node plus `SLOW_MARGIN`.
const SLOW_FACTOR: u64 = 4;
const SLOW_MARGIN_NANOS: u64 = 1_000_000;

/// A read that waited this long means the round stalled on that node.
const STALL: Duration = Duration::from_millis(1);

/// How long a round keeps reading once it is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Stop as soon as the outcome is known.
    UntilDecided,
    /// Read every node that is not slow (so each `NOSCRIPT` is seen and handled), and slow
    /// ones only while undecided.
    AllHealthy,
}

/// The fixed facts of one round.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Setup {
    pub nodes: usize,
    pub quorum: usize,
    pub node_timeout: Duration,
    pub wait: Wait,
    /// The command runs a script, so a node may answer `NOSCRIPT`.
    pub scripted: bool,
    /// The command takes a lock: a node that owes too many replies is held back from it.
    pub locking: bool,
    /// Replies that one sending of the command produces (a `SCRIPT LOAD` adds one).
    pub replies: u32,
}

/// One node's part in a round. One byte: a round carries one per possible node, and the
/// causes of failures (rare) are kept apart in [`Failed`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Mark {
    /// Not a target of this round.
    #[default]
    Untouched,
    /// Sent; answer not read yet.
    Pending,
    /// Sent behind a `SCRIPT LOAD`; both answers not read yet.
    Reloading,
    /// Granted, deleted, extended: whatever "yes" means for the command.
    Yes,
    /// Held by another value, or not ours.
    No,
    /// Did not vote; the cause is in the round's [`Failed`].
    Failed,
    /// Sent, but the round was decided and the answer had not arrived when polled; it is
    /// skipped before the connection's next use. A failure only for slow nodes.
    NotAwaited,
}

/// The cause of each failed vote, by node. Empty (and so not allocated) in a round where
/// every node answered.
#[derive(Clone, Debug, Default)]
struct Failed(Vec<(usize, NodeError)>);

impl Failed {
    fn set(&mut self, node: usize, error: NodeError) {
        match self.0.iter_mut().find(|(failed, _)| *failed == node) {
            Some(slot) => slot.1 = error,
            None => self.0.push((node, error)),
        }
    }

    fn get(&self, node: usize) -> Option<&NodeError> {
        self.0
            .iter()
            .find(|(failed, _)| *failed == node)
            .map(|(_, error)| error)
    }
}

/// One node's part in a round with its cause, as tests look at it.
#[cfg(test)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Vote {
    Untouched,
    Pending,
    Reloading,
    Yes,
    No,
    Failed(NodeError),
    NotAwaited,
}

/// A node's answer, judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Yes,
    No,
    /// A non-vote; the connection stays usable.
    Failed(NodeError),
    /// A non-vote; the driver closes the connection.
    Broken(NodeError),
}

/// What the driver does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Read `node`'s answer until `until`; with `until` already past, take only what has
    /// arrived. `reloading`: a `SCRIPT LOAD` reply comes first.
    Read {
        node: usize,
        until: Instant,
        reloading: bool,
    },
    /// The round is over: call [`Round::finish`].
    Done,
}

/// What the driver does with an answer it has just reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Heard {
    /// Fold this into the node's latency average.
    pub sample: Option<Duration>,
    /// Send `SCRIPT LOAD` and the command again to that node, with this deadline, then call
    /// [`Round::reload_sent`] (or [`Round::failed`]).
    pub reload: Option<Instant>,
}

/// The read in progress: what [`Round::next`] decided about it.
#[derive(Clone, Copy, Debug)]
struct Current {
    node: usize,
    awaited: bool,
    undecided: bool,
}

/// One round in progress.
#[derive(Debug)]
pub(crate) struct Round {
    setup: Setup,
    /// The nodes, fastest first by the latency averages the round started with.
    by_speed: [u8; MAX_NODES],
    slow: NodeSet,
    /// Sent nodes whose connection still owes replies to earlier commands.
    owes: NodeSet,
    marks: [Mark; MAX_NODES],
    failed: Failed,
    /// Nodes that had their one reload in this public call (carried across its rounds).
    reloaded: NodeSet,
    started: Option<Instant>,
    reload_deadline: Option<Instant>,
    sent: NodeSet,
    /// Read order; a reloading node is appended a second time.
    order: [u8; 2 * MAX_NODES],
    order_len: usize,
    ordered: bool,
    next: usize,
    current: Option<Current>,
    yes: usize,
    no: usize,
    /// Answers sent for and not yet read.
    awaiting: usize,
    last_used: Option<Instant>,
    stalled: bool,
}

impl Round {
    /// A round over `setup.nodes` nodes whose latency averages (nanoseconds, 0 before the
    /// first sample) are `latency`; `reloaded` holds the nodes that already had their reload
    /// in this public call.
    pub fn new(setup: Setup, latency: &[u64], reloaded: NodeSet) -> Self {
        debug_assert_eq!(latency.len(), setup.nodes, "one latency per node");
        let by_speed = by_speed(latency);
        Self {
            slow: slow_nodes(latency, &by_speed, setup.quorum),
            by_speed,
            setup,
            owes: NodeSet::default(),
            marks: [Mark::Untouched; MAX_NODES],
            failed: Failed::default(),
            reloaded,
            started: None,
            reload_deadline: None,
            sent: NodeSet::default(),
            order: [0; 2 * MAX_NODES],
            order_len: 0,
            ordered: false,
            next: 0,
            current: None,
            yes: 0,
            no: 0,
            awaiting: 0,
            last_used: None,
            stalled: false,
        }
    }

    /// Nodes much slower than the quorum, not waited for once the round is decided.
    #[cfg(test)]
    pub fn slow(&self) -> NodeSet {
        self.slow
    }

    /// True when the round takes a lock (a restarted node may not vote on it).
    pub fn locking(&self) -> bool {
        self.setup.locking
    }

    /// True when a connection owing `owed` replies must get no new command in this round.
    pub fn holds_back(&self, owed: u32) -> bool {
        self.setup.locking && owed >= MAX_OWED
    }

    /// Marks the start: taken after connecting, before the first byte is written.
    pub fn start(&mut self, now: Instant) {
        self.started = Some(now);
    }

    /// True when `node`'s command should carry its own `SCRIPT LOAD`: it is slow, or `lagging`
    /// (its last awaited reply timed out), so it may not be heard from in this round and a
    /// `NOSCRIPT` would go unseen (say it restarted while paused). That counts as its one
    /// reload.
    pub fn preloads(&self, node: usize, lagging: bool) -> bool {
        self.setup.scripted && (self.slow.contains(node) || lagging)
    }

    /// The command (after a `SCRIPT LOAD` when `preloaded`) was written to `node`, whose
    /// connection `owes` replies to earlier commands or not.
    pub fn sent(&mut self, node: usize, preloaded: bool, owes: bool) {
        let Some(mark) = self.marks.get_mut(node) else {
            debug_assert!(false, "node {node} out of range");
            return;
        };
        *mark = if preloaded {
            self.reloaded.insert(node);
            Mark::Reloading
        } else {
            Mark::Pending
        };
        self.sent.insert(node);
        if owes {
            self.owes.insert(node);
        }
        self.awaiting += 1;
    }

    /// `node` did not vote: it could not be prepared or written to, or a reload could not be
    /// sent.
    pub fn failed(&mut self, node: usize, error: NodeError) {
        let Some(mark) = self.marks.get_mut(node) else {
            debug_assert!(false, "node {node} out of range");
            return;
        };
        // A `Reloading` mark here is a reload that `heard` asked for and could not be sent:
        // it was never counted as awaited.
        *mark = Mark::Failed;
        self.failed.set(node, error);
    }

    /// What to do next, at `now`.
    pub fn next(&mut self, now: Instant) -> Step {
        debug_assert!(self.current.is_none(), "next() before heard()");
        if !self.ordered {
            self.order_reads();
        }
        let Some(started) = self.started else {
            debug_assert!(false, "next() before start()");
            return Step::Done;
        };
        let deadline = started + self.setup.node_timeout;
        while let Some(&node) = self
            .order
            .get(self.next)
            .filter(|_| self.next < self.order_len)
        {
            self.next += 1;
            let node = usize::from(node);
            let undecided = !quorum::decided(self.yes, self.awaiting, self.setup.quorum);
            let slow = self.slow.contains(node);
            let awaited = undecided || (self.setup.wait == Wait::AllHealthy && !slow);
            let reloading = matches!(self.marks.get(node), Some(Mark::Reloading));
            let until = if awaited {
                match self.reload_deadline {
                    Some(extended) if reloading => extended.max(deadline),
                    _ => deadline,
                }
            } else if slow {
                // Not needed, but collect an answer that has already arrived: that is how a
                // slow node is noticed to be fast again.
                now
            } else {
                continue;
            };
            self.current = Some(Current {
                node,
                awaited,
                undecided,
            });
            return Step::Read {
                node,
                until,
                reloading,
            };
        }
        Step::Done
    }

    /// The answer of the read that [`Round::next`] asked for, which started at `read_start`
    /// and ended at `now`.
    pub fn heard(&mut self, answer: Answer, read_start: Instant, now: Instant) -> Heard {
        let Some(Current {
            node,
            awaited,
            undecided,
        }) = self.current.take()
        else {
            debug_assert!(false, "heard() without a read");
            return Heard::default();
        };
        let started = self.started.unwrap_or(read_start);
        self.awaiting = self.awaiting.saturating_sub(1);
        if undecided {
            self.last_used = Some(now);
        }
        // A reply found waiting after the round stalled on another node tells nothing about
        // this node's latency; any other read bounds it from above.
        let waited = now.saturating_duration_since(read_start);
        let timed_out = matches!(answer, Answer::Failed(NodeError::Timeout(_)));
        let sample = if timed_out && awaited {
            Some(self.setup.node_timeout)
        } else if !timed_out && (!self.stalled || waited >= STALL) {
            Some(now.saturating_duration_since(started))
        } else {
            None
        };
        self.stalled |= waited >= STALL;
        let mut reload = None;
        let mark = match answer {
            Answer::Failed(NodeError::Timeout(_)) if !awaited => Mark::NotAwaited,
            Answer::Yes => {
                self.yes += 1;
                Mark::Yes
            }
            Answer::No => {
                self.no += 1;
                Mark::No
            }
            Answer::Failed(NodeError::Server(error))
                if error.kind == ServerErrorKind::NoScript
                    && self.setup.scripted
                    && !self.reloaded.contains(node) =>
            {
                self.reloaded.insert(node);
                let until = *self
                    .reload_deadline
                    .get_or_insert(now + self.setup.node_timeout);
                reload = Some(until.max(started + self.setup.node_timeout));
                Mark::Reloading
            }
            Answer::Failed(error) | Answer::Broken(error) => {
                self.failed.set(node, error);
                Mark::Failed
            }
        };
        if let Some(slot) = self.marks.get_mut(node) {
            *slot = mark;
        }
        Heard { sample, reload }
    }

    /// The reload that [`Round::heard`] asked for went out: `node` is read again.
    pub fn reload_sent(&mut self, node: usize) {
        debug_assert!(matches!(self.marks.get(node), Some(Mark::Reloading)));
        self.awaiting += 1;
        if let (Some(slot), Ok(node)) = (self.order.get_mut(self.order_len), u8::try_from(node)) {
            *slot = node;
            self.order_len += 1;
        }
    }

    /// Ends the round at `now`.
    pub fn finish(self, now: Instant) -> Outcome {
        Outcome {
            started: self.started.unwrap_or(now),
            finished: self.last_used.unwrap_or(now),
            yes: self.yes,
            no: self.no,
            sent: self.sent,
            reloaded: self.reloaded,
            nodes: self.setup.nodes,
            quorum: self.setup.quorum,
            replies: self.setup.replies,
            marks: self.marks,
            failed: self.failed,
        }
    }

    /// Sent nodes, fastest first; a node that still owes earlier replies after the others.
    fn order_reads(&mut self) {
        self.ordered = true;
        let mut len = 0;
        let ranked = self.by_speed.get(..self.setup.nodes).unwrap_or_default();
        for owing in [false, true] {
            for &node in ranked {
                let index = usize::from(node);
                if !self.sent.contains(index) || self.owes.contains(index) != owing {
                    continue;
                }
                if let Some(slot) = self.order.get_mut(len) {
                    *slot = node;
                    len += 1;
                }
            }
        }
        self.order_len = len;
    }
}

/// The nodes of `latency` (one average per node), fastest first; ties by position.
fn by_speed(latency: &[u64]) -> [u8; MAX_NODES] {
    let mut ranked = [0u8; MAX_NODES];
    let n = latency.len().min(MAX_NODES);
    for (slot, node) in ranked.iter_mut().zip(0u8..).take(n) {
        *slot = node;
    }
    if let Some(active) = ranked.get_mut(..n) {
        active.sort_unstable_by_key(|&node| {
            let average = latency.get(usize::from(node)).copied();
            (average.unwrap_or(u64::MAX), node)
        });
    }
    ranked
}

/// Nodes much slower than the quorum: their average latency is above four times that of the
/// quorum-th fastest node plus a millisecond. A node that timed out weighs in with the whole
/// node timeout, so it turns slow as long as a quorum answers quickly.
fn slow_nodes(latency: &[u64], by_speed: &[u8; MAX_NODES], quorum: usize) -> NodeSet {
    let reference = by_speed
        .get(quorum.saturating_sub(1))
        .filter(|_| quorum <= latency.len())
        .and_then(|&node| latency.get(usize::from(node)));
    let Some(&reference) = reference else {
        return NodeSet::default();
    };
    let threshold = reference
        .saturating_mul(SLOW_FACTOR)
        .saturating_add(SLOW_MARGIN_NANOS);
    let mut slow = NodeSet::default();
    for (node, &average) in latency.iter().enumerate().take(MAX_NODES) {
        if average > threshold {
            slow.insert(node);
        }
    }
    slow
}

/// How a round ended: the counts, the timing, and each node's vote with its cause.
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    /// Taken after connecting, before the first byte was written.
    pub started: Instant,
    /// Taken after the last answer that decided the round.
    pub finished: Instant,
    pub yes: usize,
    pub no: usize,
    /// Nodes the whole command was written to (the only ones where it may have run).
    pub sent: NodeSet,
    /// Nodes that have had their one reload in this public call.
    pub reloaded: NodeSet,
    nodes: usize,
    quorum: usize,
    /// Replies that one sending of the command produces.
    replies: u32,
    marks: [Mark; MAX_NODES],
    failed: Failed,
}

impl Outcome {
    /// How long the round took, as the validity arithmetic counts it.
    pub fn elapsed(&self) -> Duration {
        self.finished.saturating_duration_since(self.started)
    }

    /// True when a quorum said yes.
    pub fn granted(&self) -> bool {
        self.yes >= self.quorum
    }

    /// True when `node` said yes.
    pub fn said_yes(&self, node: usize) -> bool {
        matches!(self.marks.get(node), Some(Mark::Yes))
    }

    /// `node`'s answer: `Some(true)` yes, `Some(false)` no, `None` for no vote.
    pub fn answer(&self, node: usize) -> Option<bool> {
        match self.marks.get(node) {
            Some(Mark::Yes) => Some(true),
            Some(Mark::No) => Some(false),
            _ => None,
        }
    }

    /// `node`'s vote with its cause (`Untouched` for a node out of range).
    #[cfg(test)]
    pub fn vote(&self, node: usize) -> Vote {
        match self.marks.get(node).copied().unwrap_or_default() {
            Mark::Untouched => Vote::Untouched,
            Mark::Pending => Vote::Pending,
            Mark::Reloading => Vote::Reloading,
            Mark::Yes => Vote::Yes,
            Mark::No => Vote::No,
            Mark::NotAwaited => Vote::NotAwaited,
            Mark::Failed => Vote::Failed(
                self.failed
                    .get(node)
                    .cloned()
                    .unwrap_or(NodeError::UnexpectedReply),
            ),
        }
    }

    /// Replies `node` still owes for this round: the driver skips them before reusing its
    /// connection.
    pub fn unread(&self, node: usize) -> u32 {
        match self.marks.get(node) {
            Some(Mark::Pending) => self.replies,
            Some(Mark::Reloading) => self.replies + 1,
            _ => 0,
        }
    }

    /// Nodes sent to whose answer is unknown: failed, not awaited, or not read.
    pub fn unheard(&self) -> usize {
        self.marks
            .iter()
            .take(self.nodes)
            .filter(|mark| {
                matches!(
                    mark,
                    Mark::Failed | Mark::NotAwaited | Mark::Pending | Mark::Reloading
                )
            })
            .count()
    }

    /// The failures, with `addr(node)` for each node's address. Fast nodes left unread once
    /// the round was decided are not failures; slow nodes that were only polled are.
    pub fn failures(&self, addr: impl Fn(usize) -> String) -> Vec<NodeFailure> {
        let mut out = Vec::new();
        for (node, mark) in self.marks.iter().enumerate().take(self.nodes) {
            let error = match mark {
                Mark::Failed => self
                    .failed
                    .get(node)
                    .cloned()
                    .unwrap_or(NodeError::UnexpectedReply),
                Mark::NotAwaited => NodeError::NotAwaited,
                _ => continue,
            };
            out.push(NodeFailure {
                node,
                addr: addr(node),
                error,
            });
        }
        out
    }
}

#[cfg(test)]
#[path = "round_tests.rs"]
mod tests;
