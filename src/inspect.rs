//! "Is it locked, and for how long?": one read-only round, advisory by nature.
//!
//! Contract: [`crate::Redlock::inspect`] runs [`crate::script::INSPECT_SCRIPT`] on every node
//! (value and remaining ttl read atomically per node), reads every healthy node, and needs a
//! quorum of answers, else [`Error::NoQuorum`]. The resource is locked when a quorum of nodes
//! holds one value; the remaining time is the smallest ttl among those nodes. It changes
//! nothing on any node. The answer can be stale by the time it returns: never use it to decide
//! that a lock is yours or free to take, only to observe.

use std::time::Duration;

use crate::command::{other_reply, Exchange};
use crate::error::Error;
use crate::redlock::Redlock;
use crate::resp::{encode_command, Reply};
use crate::round::{Answer, Wait};
use crate::script::{self, Script};

/// What [`crate::Redlock::inspect`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    holder: Option<Vec<u8>>,
    remaining: Option<Duration>,
    held_on: usize,
    answered: usize,
}

impl Inspection {
    /// True when a quorum of nodes holds one value.
    pub fn is_locked(&self) -> bool {
        self.holder.is_some()
    }

    /// The value a quorum holds (the holder's lock value), when locked.
    pub fn holder(&self) -> Option<&[u8]> {
        self.holder.as_deref()
    }

    /// The smallest remaining ttl among the nodes holding that value, when locked. A node
    /// where the key has no expiry (not a lock this crate set) does not bound it.
    pub fn remaining(&self) -> Option<Duration> {
        self.remaining
    }

    /// Nodes holding the most common value (0 when the key is free everywhere).
    pub fn held_on(&self) -> usize {
        self.held_on
    }

    /// Nodes that answered.
    pub fn answered(&self) -> usize {
        self.answered
    }
}

/// One node's view: the value under the key and its ttl in milliseconds (-1: no expiry).
type Seen = Option<(Vec<u8>, i64)>;

/// The inspect round: `EVALSHA <inspect> 1 key` to every node.
struct Inspect<'a> {
    key: &'a [u8],
    seen: Vec<Seen>,
}

impl Exchange for Inspect<'_> {
    fn script(&self) -> Option<Script> {
        Some(script::INSPECT)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let sha1 = script::INSPECT.sha1.as_bytes();
        encode_command(out, &[b"EVALSHA", sha1, b"1", self.key]);
    }

    fn judge(&mut self, node: usize, _index: u32, reply: Reply<'_>) -> Answer {
        let Reply::Array(Some(array)) = reply else {
            return other_reply(reply);
        };
        let mut items = array.iter();
        let seen = match (items.next(), items.next(), items.next()) {
            (None, _, _) => None,
            (Some(Reply::Bulk(Some(value))), Some(Reply::Integer(ttl)), None) => {
                Some((value.to_vec(), ttl))
            }
            _ => return Answer::Broken(crate::error::NodeError::UnexpectedReply),
        };
        if let Some(slot) = self.seen.get_mut(node) {
            *slot = seen;
        }
        Answer::Yes
    }
}

/// What the answers say: the value held by the most nodes, and on how many.
fn read_answers(seen: &[Seen], answered: &[bool], quorum: usize) -> Inspection {
    let mut best: Option<(&[u8], usize)> = None;
    for (value, _) in seen.iter().flatten() {
        let count = seen
            .iter()
            .flatten()
            .filter(|(other, _)| other == value)
            .count();
        if best.is_none_or(|(_, most)| count > most) {
            best = Some((value, count));
        }
    }
    let held_on = best.map_or(0, |(_, count)| count);
    let holder = best.filter(|&(_, count)| count >= quorum).map(|(v, _)| v);
    let remaining = holder.and_then(|value| {
        seen.iter()
            .flatten()
            .filter(|(other, _)| other.as_slice() == value)
            .filter_map(|&(_, ttl)| u64::try_from(ttl).ok())
            .min()
            .map(Duration::from_millis)
    });
    Inspection {
        holder: holder.map(<[u8]>::to_vec),
        remaining,
        held_on,
        answered: answered.iter().filter(|&&a| a).count(),
    }
}

impl Redlock {
    /// Reads who holds `resource` and for how long, without changing anything: one round of
    /// `EVALSHA <inspect> 1 resource` on every node. Needs a quorum of answers
    /// ([`Error::NoQuorum`] otherwise). Advisory: the lock may change hands before this
    /// returns.
    pub fn inspect(&self, resource: impl AsRef<[u8]>) -> Result<Inspection, Error> {
        let nodes = &self.inner().nodes;
        let mut inspect = Inspect {
            key: resource.as_ref(),
            seen: vec![None; nodes.len()],
        };
        let round = nodes
            .call(None)
            .round(&mut inspect, nodes.everywhere(), Wait::AllHealthy);
        if round.yes < nodes.quorum() {
            return Err(Error::NoQuorum {
                quorum: nodes.quorum(),
                answered: round.yes,
                failures: round.failures(|node| nodes.addr_text(node)),
            });
        }
        let answered: Vec<bool> = (0..nodes.len()).map(|n| round.said_yes(n)).collect();
        Ok(read_answers(&inspect.seen, &answered, nodes.quorum()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(value: &str, ttl: i64) -> Seen {
        Some((value.as_bytes().to_vec(), ttl))
    }

    #[test]
    fn a_quorum_of_one_value_is_locked_with_the_smallest_ttl() {
        let answers = [seen("a", 900), seen("a", 800), seen("b", 5000)];
        let result = read_answers(&answers, &[true; 3], 2);
        assert_eq!(result.holder(), Some(&b"a"[..]));
        assert_eq!(result.remaining(), Some(Duration::from_millis(800)));
        assert_eq!((result.held_on(), result.answered()), (2, 3));
    }

    #[test]
    fn a_minority_or_nothing_is_not_locked() {
        let minority = read_answers(&[seen("a", 900), None, None], &[true; 3], 2);
        assert!(!minority.is_locked());
        assert_eq!((minority.held_on(), minority.remaining()), (1, None));
        let free = read_answers(&[None, None, None], &[true; 3], 2);
        assert!(!free.is_locked() && free.held_on() == 0);
        let split = read_answers(&[seen("a", 1), seen("b", 1), seen("c", 1)], &[true; 3], 2);
        assert!(!split.is_locked());
    }

    #[test]
    fn a_key_without_expiry_does_not_bound_the_remaining_time() {
        let answers = [seen("a", -1), seen("a", 700), None];
        let result = read_answers(&answers, &[true; 3], 2);
        assert_eq!(result.remaining(), Some(Duration::from_millis(700)));
        let forever = read_answers(&[seen("a", -1), seen("a", -1)], &[true; 2], 2);
        assert!(forever.is_locked() && forever.remaining().is_none());
    }
}
