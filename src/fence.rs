//! Taking a lock, with or without a fencing token: the rounds of one attempt.
//!
//! Contract:
//! - Without fencing an attempt is one round of `SET key value NX PX ttl` (with `PTTL key`
//!   pipelined behind it for waiters), exactly as before fencing existed.
//! - With fencing, round 1 runs [`crate::script::FENCED_ACQUIRE_SCRIPT`] on every node: `SET
//!   NX PX`, and only where it succeeded `INCR resplock:fence:<resource>`. The candidate token
//!   is the largest count among the nodes that granted. Round 2 runs
//!   [`crate::script::FENCE_CONFIRM_SCRIPT`] on every node: raise the counter to at least the
//!   token, and confirm where our value still holds the key. The grant needs a quorum in
//!   round 1 *and* a quorum of confirmations in round 2, with validity left after round 2
//!   (counted from round 1's start).
//! - Why tokens grow: a grant A returns only after a quorum Q raised its counter to T(A). A
//!   grant B whose first command is sent after that needs a quorum in its round 1; it meets Q
//!   on at least one node, where its `INCR` returns at least T(A) + 1; so T(B) > T(A). This
//!   needs counters that never go back: nodes that keep acknowledged writes, and no node
//!   counted while its counter may have been lost. A node that restarted (its `run_id`
//!   changed) is therefore barred from round 1 for a resource until a round 2 has raised its
//!   counter for that resource to a token computed from a quorum of trusted nodes
//!   (`identity.rs`). SAFETY.md states the conditions and what breaks without each.

use std::time::Duration;

use crate::command::{other_reply, script_verdict, unscripted, Exchange};
use crate::error::NodeError;
use crate::nodes::Call;
use crate::quorum::{self, NodeSet, MAX_NODES};
use crate::redlock::{end_of_validity, Inner, Validity};
use crate::resp::{encode_command, DecimalBuf, Reply};
use crate::round::{Answer, Outcome, Wait};
use crate::script::{self, Script, FENCE_COUNTER_PREFIX};

/// The counter key of a fenced resource.
pub(crate) fn counter_key(resource: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(FENCE_COUNTER_PREFIX.len() + resource.len());
    key.extend_from_slice(FENCE_COUNTER_PREFIX.as_bytes());
    key.extend_from_slice(resource);
    key
}

/// Round 1: take the lock (and draw a token), optionally reading the key's ttl behind it.
pub(crate) struct Take<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub ttl_ms: u64,
    /// The counter key, with fencing.
    pub counter: Option<&'a [u8]>,
    /// Pipeline `PTTL key` behind (for waiters).
    pub with_ttl: bool,
    /// Per node, the count its `INCR` returned.
    pub tokens: [Option<u64>; MAX_NODES],
    /// Per node, the `PTTL` reply: -2 gone, -1 no expiry, else milliseconds left.
    pub ttls: [Option<i64>; MAX_NODES],
}

impl<'a> Take<'a> {
    pub fn new(key: &'a [u8], value: &'a [u8], ttl_ms: u64) -> Self {
        Self {
            key,
            value,
            ttl_ms,
            counter: None,
            with_ttl: false,
            tokens: [None; MAX_NODES],
            ttls: [None; MAX_NODES],
        }
    }

    /// The token of a granted round 1: the largest count among the nodes that said yes.
    fn token(&self, round: &Outcome) -> Option<u64> {
        self.tokens
            .iter()
            .enumerate()
            .filter(|&(node, _)| round.said_yes(node))
            .filter_map(|(_, token)| *token)
            .max()
    }
}

impl Exchange for Take<'_> {
    fn script(&self) -> Option<Script> {
        self.counter.map(|_| script::FENCED_ACQUIRE)
    }

    fn locking(&self) -> bool {
        true
    }

    fn fenced(&self) -> bool {
        self.counter.is_some()
    }

    fn replies(&self) -> u32 {
        1 + u32::from(self.with_ttl)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut digits = DecimalBuf::new();
        let ttl = digits.format(self.ttl_ms);
        match self.counter {
            None => encode_command(out, &[b"SET", self.key, self.value, b"NX", b"PX", ttl]),
            Some(counter) => {
                let sha1 = script::FENCED_ACQUIRE.sha1.as_bytes();
                let args: [&[u8]; 7] = [b"EVALSHA", sha1, b"2", self.key, counter, self.value, ttl];
                encode_command(out, &args);
            }
        }
        if self.with_ttl {
            encode_command(out, &[b"PTTL", self.key]);
        }
    }

    fn judge(&mut self, node: usize, index: u32, reply: Reply<'_>) -> Answer {
        match (index, self.counter, reply) {
            (0, None, Reply::Simple(b"OK")) => Answer::Yes,
            (0, _, Reply::Bulk(None)) => Answer::No,
            (0, None, other) => unscripted(other),
            (0, Some(_), Reply::Integer(token)) => match u64::try_from(token) {
                Ok(token) if token > 0 => {
                    if let Some(slot) = self.tokens.get_mut(node) {
                        *slot = Some(token);
                    }
                    Answer::Yes
                }
                _ => Answer::Broken(NodeError::UnexpectedReply),
            },
            (0, Some(_), other) => other_reply(other),
            (_, _, Reply::Integer(ttl)) => {
                if let Some(slot) = self.ttls.get_mut(node) {
                    *slot = Some(ttl);
                }
                Answer::Yes
            }
            (_, _, other) => unscripted(other),
        }
    }
}

/// Round 2 of a fenced grant: publish the token, confirm the key.
struct Confirm<'a> {
    key: &'a [u8],
    counter: &'a [u8],
    value: &'a [u8],
    token: u64,
    /// Nodes whose reply was read (their counter is now at least the token).
    raised: NodeSet,
}

impl Exchange for Confirm<'_> {
    fn script(&self) -> Option<Script> {
        Some(script::FENCE_CONFIRM)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut digits = DecimalBuf::new();
        let token = digits.format(self.token);
        let sha1 = script::FENCE_CONFIRM.sha1.as_bytes();
        let args: [&[u8]; 7] = [
            b"EVALSHA",
            sha1,
            b"2",
            self.key,
            self.counter,
            self.value,
            token,
        ];
        encode_command(out, &args);
    }

    fn judge(&mut self, node: usize, _index: u32, reply: Reply<'_>) -> Answer {
        let answer = script_verdict(reply);
        if matches!(answer, Answer::Yes | Answer::No) {
            self.raised.insert(node);
        }
        answer
    }
}

/// How an attempt ended.
// The failure carries its rounds' outcomes by value: boxing them would allocate on every
// failed attempt, and the value lives on the stack for one attempt only.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Attempt {
    /// Granted: the nodes its round 1 reached, its validity, its token (with fencing).
    Granted {
        reached: NodeSet,
        validity: Validity,
        token: Option<u64>,
    },
    /// Not granted: round 1, and round 2 when fencing got that far.
    Failed {
        first: Outcome,
        second: Option<Outcome>,
    },
}

impl Inner {
    /// One attempt: round 1, and with fencing round 2. `take` carries round 1's answers out
    /// (the waiters read its ttls).
    pub(crate) fn attempt(
        &self,
        call: &mut Call<'_>,
        take: &mut Take<'_>,
        ttl: Duration,
        drift: Duration,
    ) -> Attempt {
        let nodes = &self.nodes;
        let barred = match take.counter {
            Some(_) => self.untrusted(take.key),
            None => NodeSet::default(),
        };
        call.barred = barred;
        let first = call.round(take, nodes.everywhere(), Wait::UntilDecided);
        call.barred = NodeSet::default();
        let sent = first.sent;
        if !first.granted() || quorum::validity(ttl, first.elapsed(), drift).is_none() {
            return Attempt::Failed {
                first,
                second: None,
            };
        }
        let (Some(counter), Some(token)) = (take.counter, take.token(&first)) else {
            let until = end_of_validity(&first, ttl, drift);
            return Attempt::Granted {
                reached: sent,
                validity: Validity {
                    ttl,
                    acquired: first.started,
                    until,
                },
                token: None,
            };
        };
        let mut confirm = Confirm {
            key: take.key,
            counter,
            value: take.value,
            token,
            raised: NodeSet::default(),
        };
        // A barred node is re-seeded only if its reply is read: then read every healthy node.
        let wait = if barred.is_empty() {
            Wait::UntilDecided
        } else {
            Wait::AllHealthy
        };
        let second = call.round(&mut confirm, nodes.everywhere(), wait);
        self.reseeded(take.key, confirm.raised);
        let elapsed = second.finished.saturating_duration_since(first.started);
        if !second.granted() || quorum::validity(ttl, elapsed, drift).is_none() {
            return Attempt::Failed {
                first,
                second: Some(second),
            };
        }
        Attempt::Granted {
            reached: sent,
            validity: Validity {
                ttl,
                acquired: first.started,
                until: end_of_validity(&first, ttl, drift),
            },
            token: Some(token),
        }
    }

    /// Nodes whose counter for `resource` cannot be trusted (restarted, not re-seeded).
    fn untrusted(&self, resource: &[u8]) -> NodeSet {
        let mut barred = NodeSet::default();
        for (index, node) in self.nodes.iter().enumerate() {
            if !crate::sync::lock(&node.health.identity).fence_trusted(resource) {
                barred.insert(index);
            }
        }
        barred
    }

    /// Round 2 raised these nodes' counters for `resource` to a token drawn from a quorum of
    /// trusted nodes: they can be trusted for it again.
    fn reseeded(&self, resource: &[u8], raised: NodeSet) {
        for index in raised.iter() {
            if let Some(node) = self.nodes.get(index) {
                crate::sync::lock(&node.health.identity).seeded(resource);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{decode, Limits, Status};

    fn reply(bytes: &[u8]) -> Reply<'_> {
        match decode(bytes, &Limits::LOCK_CLIENT) {
            Ok(Status::Complete((reply, _))) => reply,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unfenced_take_is_the_plain_set() {
        let mut take = Take::new(b"k", b"v", 1000);
        let mut out = Vec::new();
        take.encode(&mut out);
        assert_eq!(
            out,
            b"*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n$2\r\nPX\r\n$4\r\n1000\r\n"
        );
        assert!(take.script().is_none() && take.replies() == 1);
        assert_eq!(take.judge(0, 0, reply(b"+OK\r\n")), Answer::Yes);
        assert_eq!(take.judge(0, 0, reply(b"$-1\r\n")), Answer::No);
        assert!(matches!(
            take.judge(0, 0, reply(b":3\r\n")),
            Answer::Broken(_)
        ));
    }

    #[test]
    fn fenced_take_reads_tokens_and_ttls() {
        let counter = counter_key(b"k");
        assert_eq!(counter, b"resplock:fence:k");
        let mut take = Take::new(b"k", b"v", 1000);
        take.counter = Some(&counter);
        take.with_ttl = true;
        let mut out = Vec::new();
        take.encode(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(text.contains(script::FENCED_ACQUIRE_SHA1) && text.contains("PTTL"));
        assert_eq!(take.replies(), 2);
        assert_eq!(take.judge(1, 0, reply(b":7\r\n")), Answer::Yes);
        assert_eq!(take.judge(1, 1, reply(b":900\r\n")), Answer::Yes);
        assert_eq!((take.tokens[1], take.ttls[1]), (Some(7), Some(900)));
        assert!(matches!(
            take.judge(2, 0, reply(b":0\r\n")),
            Answer::Broken(_)
        ));
        assert!(matches!(
            take.judge(2, 0, reply(b"-NOSCRIPT x\r\n")),
            Answer::Failed(_)
        ));
    }
}
