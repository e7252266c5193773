//! The driver: runs one [`Round`] over real connections, in one thread, under one deadline.
//!
//! Contract: the driver does the I/O and nothing else. It gets a connection ready for every
//! target node, takes the round's start time, writes the command to every node before reading
//! any reply, then asks the round what to read next until it says `Done`. Every decision (read
//! order, deadlines, reloads, when to stop) is the round's; what the driver adds is what only
//! I/O can tell: a connection that broke is dropped, a reply cut off by a timeout is skipped
//! before the connection's next use, and every connection goes back to its node's pool when
//! the round ends.

use std::time::Instant;

use crate::command::{script_loaded, Exchange};
use crate::conn::Conn;
use crate::error::{NodeError, Phase};
use crate::nodes::{Call, Refusal};
use crate::quorum::{NodeSet, MAX_NODES};
use crate::round::{Answer, Outcome, Round, Setup, Step, Wait};

impl Call<'_> {
    /// Runs one round of `exchange` on `targets`.
    pub fn round<E: Exchange>(
        &mut self,
        exchange: &mut E,
        targets: NodeSet,
        wait: Wait,
    ) -> Outcome {
        let nodes = self.nodes;
        let setup = Setup {
            nodes: nodes.len(),
            quorum: nodes.quorum(),
            node_timeout: nodes.node_timeout(),
            wait,
            scripted: exchange.script().is_some(),
            locking: exchange.locking(),
            replies: exchange.replies(),
        };
        // A snapshot: other callers update the averages meanwhile.
        let mut latency = [0u64; MAX_NODES];
        for (average, node) in latency.iter_mut().zip(nodes.iter()) {
            *average = node.health.latency();
        }
        let mut round = Round::new(
            setup,
            latency.get(..setup.nodes).unwrap_or_default(),
            self.reloaded,
        );
        let slots = &mut self.scratch.slots;
        let encoded = &mut self.scratch.encoded;
        encoded.clear();
        exchange.encode(encoded);
        for node in targets.iter() {
            let Some(slot) = slots.get_mut(node) else {
                debug_assert!(false, "target {node} out of range");
                continue;
            };
            if setup.locking && self.barred.contains(node) {
                round.failed(node, NodeError::Quarantined);
                continue;
            }
            match nodes.prepare(node, self.ticket, &round) {
                Ok(conn) => *slot = Some(conn),
                Err(error) => round.failed(node, error),
            }
        }

        let started = Instant::now();
        round.start(started);
        let deadline = started + setup.node_timeout;
        let script = exchange.script();
        for (node, slot) in slots.iter_mut().enumerate() {
            let Some(conn) = slot.as_mut() else {
                continue;
            };
            if self.not_after.is_some_and(|limit| Instant::now() >= limit) {
                round.failed(node, NodeError::Timeout(Phase::Write));
                continue;
            }
            let preload = script.filter(|_| round.preloads(node, conn.lagging()));
            if let Some(loaded) = preload {
                conn.queue(&[b"SCRIPT", b"LOAD", loaded.source.as_bytes()]);
            }
            match conn.send(encoded, deadline) {
                Ok(()) => round.sent(node, preload.is_some(), conn.stale() > 0),
                Err(error) => {
                    *slot = None;
                    round.failed(node, error);
                }
            }
        }

        let mut now = started;
        while let Step::Read {
            node,
            until,
            reloading,
        } = round.next(now)
        {
            let read_start = Instant::now();
            let answer = match slots.get_mut(node).and_then(Option::as_mut) {
                Some(conn) => {
                    let answer = read_answer(conn, exchange, node, reloading, until);
                    // A new connection's first reply says who the node is: before its
                    // answer counts. A node that is another one's alias never counts.
                    let identified = match conn.take_seen().flatten() {
                        Some(seen) => nodes.identify(node, &seen, setup.locking, exchange.fenced()),
                        None => Ok(()),
                    };
                    match identified.map(|()| nodes.get(node).and_then(|n| n.health.alias())) {
                        _ if matches!(answer, Answer::Broken(_)) => answer,
                        Err(Refusal::Reconnect(error)) => Answer::Broken(error),
                        Err(Refusal::Vote(error)) | Ok(Some(error)) => Answer::Failed(error),
                        Ok(None) => answer,
                    }
                }
                None => {
                    debug_assert!(false, "node {node} was sent to but has no connection");
                    Answer::Broken(NodeError::Closed)
                }
            };
            now = Instant::now();
            let broken = matches!(answer, Answer::Broken(_));
            let heard = round.heard(answer, read_start, now);
            if let (Some(sample), Some(target)) = (heard.sample, nodes.get(node)) {
                target.health.record(sample);
            }
            let Some(slot) = slots.get_mut(node) else {
                continue;
            };
            if broken {
                *slot = None;
            }
            if let Some(until) = heard.reload {
                match (slot.as_mut(), script) {
                    (Some(conn), Some(loaded)) => {
                        conn.queue(&[b"SCRIPT", b"LOAD", loaded.source.as_bytes()]);
                        match conn.send(encoded, until) {
                            Ok(()) => round.reload_sent(node),
                            Err(error) => {
                                *slot = None;
                                round.failed(node, error);
                            }
                        }
                    }
                    _ => round.failed(node, NodeError::UnexpectedReply),
                }
            }
        }

        let outcome = round.finish(now);
        self.reloaded = outcome.reloaded;
        let reserve = self.ticket.filter(|_| !self.closing);
        for (node, slot) in slots.iter_mut().enumerate() {
            if let (Some(mut conn), Some(target)) = (slot.take(), nodes.get(node)) {
                conn.abandon(outcome.unread(node));
                target.pool.give_back(conn, reserve);
            }
        }
        if let Some(ticket) = self.ticket.filter(|_| self.closing) {
            // The lock's last round: a node it skipped (held back) may still keep a
            // connection reserved for it.
            for node in nodes.everywhere().iter().filter(|&n| !targets.contains(n)) {
                if let Some(target) = nodes.get(node) {
                    target.pool.forget(ticket);
                }
            }
        }
        outcome
    }
}

/// Reads `node`'s whole answer (after the `SCRIPT LOAD` reply when `reloading`).
fn read_answer<E: Exchange>(
    conn: &mut Conn,
    exchange: &mut E,
    node: usize,
    reloading: bool,
    until: Instant,
) -> Answer {
    let replies = exchange.replies();
    if let Some(loaded) = exchange.script().filter(|_| reloading) {
        match conn.recv(until, |reply| script_loaded(loaded, reply)) {
            Ok(Answer::Yes) => {}
            Ok(failed) => {
                // The retried command's replies are still owed; skip them.
                conn.abandon(replies);
                return failed;
            }
            Err(error) => return io_failure(conn, error, 1 + replies),
        }
    }
    let mut answer = None;
    for index in 0..replies {
        match conn.recv(until, |reply| exchange.judge(node, index, reply)) {
            Ok(broken @ Answer::Broken(_)) => return broken,
            Ok(judged) => {
                answer.get_or_insert(judged);
            }
            Err(error) => return io_failure(conn, error, replies - index),
        }
    }
    answer.unwrap_or(Answer::Broken(NodeError::UnexpectedReply))
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
