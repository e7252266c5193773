//! Many renewals in one round: one pipelined write per node, and what each lease learned.
//!
//! Contract: [`Renewals`] is an [`Exchange`] that sends one `EVALSHA <extend>` per lease, in
//! order, to every node of the round, and records each reply per (lease, node). A node's answer
//! as the round sees it is only whether it answered (a `NOSCRIPT` makes the round reload the
//! script and send the whole batch again to that node, which is harmless: extend is
//! idempotent). [`Renewals::tally`] then counts, per lease, the nodes that extended, the nodes
//! that said "not ours", and the nodes not heard from; [`verdict`] turns that into what
//! happened to the lease. Pure: no socket, no clock.

use std::time::Duration;

use crate::command::{script_verdict, Exchange};
use crate::quorum;
use crate::resp::{encode_command, DecimalBuf, Reply};
use crate::round::Answer;
use crate::script::{self, Script};

/// One lease to renew: its key, its value, and the ttl to reset it to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Item<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub ttl_ms: u64,
}

/// What one node said about one lease.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Said {
    /// No reply read.
    #[default]
    Nothing,
    Extended,
    NotOurs,
    /// An error reply or a reply of the wrong type.
    Failed,
}

/// The batch: items, and per (item, node) what was said.
#[derive(Debug)]
pub(crate) struct Renewals<'a> {
    items: &'a [Item<'a>],
    nodes: usize,
    said: Vec<Said>,
}

/// Per lease, after a batch round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub extended: usize,
    pub not_ours: usize,
    /// Target nodes whose answer about this lease is unknown.
    pub unheard: usize,
}

/// What a renewal round means for one lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A quorum extended it with validity left: this much.
    Renewed(Duration),
    /// Fewer nodes than a quorum can still hold our value: the lock is gone.
    Taken,
    /// Neither: try again soon, while the old validity lasts.
    Undecided,
}

impl<'a> Renewals<'a> {
    pub fn new(items: &'a [Item<'a>], nodes: usize) -> Self {
        Self {
            items,
            nodes,
            said: vec![Said::Nothing; items.len().saturating_mul(nodes)],
        }
    }

    /// Counts, for item `index`, over the `targets` nodes.
    pub fn tally(&self, index: usize, targets: quorum::NodeSet) -> Tally {
        let mut tally = Tally::default();
        for node in targets.iter() {
            match self.said.get(index * self.nodes + node) {
                Some(Said::Extended) => tally.extended += 1,
                Some(Said::NotOurs) => tally.not_ours += 1,
                _ => tally.unheard += 1,
            }
        }
        tally
    }
}

impl Exchange for Renewals<'_> {
    fn script(&self) -> Option<Script> {
        Some(script::EXTEND)
    }

    fn replies(&self) -> u32 {
        u32::try_from(self.items.len()).unwrap_or(u32::MAX)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let sha1 = script::EXTEND.sha1.as_bytes();
        for item in self.items {
            let mut digits = DecimalBuf::new();
            let ttl = digits.format(item.ttl_ms);
            encode_command(out, &[b"EVALSHA", sha1, b"1", item.key, item.value, ttl]);
        }
    }

    fn judge(&mut self, node: usize, index: u32, reply: Reply<'_>) -> Answer {
        let answer = script_verdict(reply);
        let said = match answer {
            Answer::Yes => Said::Extended,
            Answer::No => Said::NotOurs,
            Answer::Failed(_) | Answer::Broken(_) => Said::Failed,
        };
        let slot = usize::try_from(index)
            .ok()
            .and_then(|i| self.said.get_mut(i * self.nodes + node));
        if let Some(slot) = slot {
            *slot = said;
        }
        // The round only needs to know that the node answered (or why not).
        match answer {
            Answer::No => Answer::Yes,
            other => other,
        }
    }
}

/// What `tally` means for a lease renewed with `ttl` in a round that took `elapsed`.
pub(crate) fn verdict(
    tally: Tally,
    quorum: usize,
    ttl: Duration,
    elapsed: Duration,
    drift: Duration,
) -> Verdict {
    match quorum::validity(ttl, elapsed, drift) {
        Some(validity) if tally.extended >= quorum => Verdict::Renewed(validity),
        _ if tally.extended + tally.unheard < quorum => Verdict::Taken,
        _ => Verdict::Undecided,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::NodeSet;
    use crate::resp::{decode, Limits, Status};

    fn reply(bytes: &[u8]) -> Reply<'_> {
        match decode(bytes, &Limits::LOCK_CLIENT) {
            Ok(Status::Complete((reply, _))) => reply,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_write_carries_every_lease_and_replies_are_kept_per_lease_and_node() {
        let items = [
            Item {
                key: b"a",
                value: b"1",
                ttl_ms: 100,
            },
            Item {
                key: b"b",
                value: b"2",
                ttl_ms: 200,
            },
        ];
        let mut batch = Renewals::new(&items, 3);
        assert_eq!(batch.replies(), 2);
        let mut out = Vec::new();
        batch.encode(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("EVALSHA").count(), 2);
        assert!(text.contains("$3\r\n100\r\n") && text.contains("$3\r\n200\r\n"));
        // Node 0 extends both; node 1 extends a, b is not ours; node 2 is not heard.
        assert_eq!(batch.judge(0, 0, reply(b":1\r\n")), Answer::Yes);
        assert_eq!(batch.judge(0, 1, reply(b":1\r\n")), Answer::Yes);
        assert_eq!(batch.judge(1, 0, reply(b":1\r\n")), Answer::Yes);
        assert_eq!(batch.judge(1, 1, reply(b":0\r\n")), Answer::Yes);
        let all = NodeSet::all(3);
        let a = batch.tally(0, all);
        let b = batch.tally(1, all);
        assert_eq!((a.extended, a.not_ours, a.unheard), (2, 0, 1));
        assert_eq!((b.extended, b.not_ours, b.unheard), (1, 1, 1));
        // A target set of nodes 0 and 1 only.
        let mut two = NodeSet::default();
        two.insert(0);
        two.insert(1);
        assert_eq!(batch.tally(1, two).unheard, 0);
        assert!(matches!(
            batch.judge(2, 0, reply(b"+OK\r\n")),
            Answer::Broken(_)
        ));
        assert_eq!(
            batch.tally(0, all).unheard,
            1,
            "a broken reply is not a vote"
        );
    }

    #[test]
    fn verdicts_need_a_quorum_with_validity_left_and_taken_needs_certainty() {
        let ttl = Duration::from_secs(10);
        let drift = quorum::drift(ttl, 0.01);
        let fast = Duration::from_millis(1);
        let tally = |extended, not_ours, unheard| Tally {
            extended,
            not_ours,
            unheard,
        };
        assert!(matches!(
            verdict(tally(2, 0, 1), 2, ttl, fast, drift),
            Verdict::Renewed(_)
        ));
        assert_eq!(
            verdict(tally(2, 0, 1), 2, ttl, ttl, drift),
            Verdict::Undecided,
            "no validity left"
        );
        assert_eq!(verdict(tally(0, 3, 0), 2, ttl, fast, drift), Verdict::Taken);
        assert_eq!(verdict(tally(1, 2, 0), 2, ttl, fast, drift), Verdict::Taken);
        assert_eq!(
            verdict(tally(1, 1, 1), 2, ttl, fast, drift),
            Verdict::Undecided
        );
        assert_eq!(
            verdict(tally(0, 0, 3), 2, ttl, fast, drift),
            Verdict::Undecided
        );
    }
}
