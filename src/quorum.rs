//! Redlock's arithmetic, with no sockets and no clock: quorum size, drift margin, validity,
//! when a round is decided, retry jitter, and the node sets that rounds count with. Time comes
//! in as durations already measured.

use std::time::Duration;

/// Most nodes a lock manager may have: a set of nodes is one `u64`.
pub const MAX_NODES: usize = 64;

/// A set of node indexes below [`MAX_NODES`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct NodeSet(u64);

impl NodeSet {
    /// Nodes `0..nodes`.
    pub fn all(nodes: usize) -> Self {
        match nodes {
            0 => Self(0),
            n if n >= MAX_NODES => Self(u64::MAX),
            n => Self((1u64 << n) - 1),
        }
    }

    pub fn contains(self, node: usize) -> bool {
        node < MAX_NODES && self.0 & (1 << node) != 0
    }

    pub fn insert(&mut self, node: usize) {
        debug_assert!(node < MAX_NODES, "node {node} out of range");
        if node < MAX_NODES {
            self.0 |= 1 << node;
        }
    }

    pub fn remove(&mut self, node: usize) {
        if node < MAX_NODES {
            self.0 &= !(1 << node);
        }
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    #[cfg(test)]
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The members, in increasing order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            let node = rest.trailing_zeros();
            // Clears the lowest member.
            rest &= rest.wrapping_sub(1);
            (node < u64::BITS).then_some(node as usize)
        })
    }
}

/// Expiry resolution of Redis (1 ms) plus one: added to every drift margin, as the distlock
/// page prescribes.
pub const DRIFT_FLOOR: Duration = Duration::from_millis(2);

/// Votes needed among `nodes`: a strict majority, `nodes / 2 + 1`.
pub fn quorum(nodes: usize) -> usize {
    nodes / 2 + 1
}

/// The clock-drift margin for `ttl`: `ttl * drift_factor + 2 ms`, saturating.
pub fn drift(ttl: Duration, drift_factor: f64) -> Duration {
    let scaled = ttl.as_secs_f64() * drift_factor;
    Duration::try_from_secs_f64(scaled)
        .unwrap_or(Duration::MAX)
        .saturating_add(DRIFT_FLOOR)
}

/// What is left of a lock whose keys were written with `ttl` after a round that took
/// `elapsed`: `ttl - elapsed - drift`, or `None` when nothing is left.
pub fn validity(ttl: Duration, elapsed: Duration, drift: Duration) -> Option<Duration> {
    ttl.checked_sub(elapsed)?
        .checked_sub(drift)
        .filter(|left| !left.is_zero())
}

/// True once the votes so far settle the round: a quorum said yes, or even if every node
/// still pending said yes there would be no quorum.
pub fn decided(yes: usize, pending: usize, quorum: usize) -> bool {
    yes >= quorum || yes.saturating_add(pending) < quorum
}

/// A uniformly distributed delay in `[0, max]`, from 64 random bits.
pub fn jitter(max: Duration, random: u64) -> Duration {
    let span = max.as_nanos().saturating_add(1);
    let nanos = (span.saturating_mul(u128::from(random))) >> 64;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_sets_hold_up_to_64_nodes() {
        let all = NodeSet::all(64);
        assert!(all.contains(0) && all.contains(63) && !all.contains(64));
        assert_eq!(all.len(), 64);
        let five = NodeSet::all(5);
        assert!(five.contains(4) && !five.contains(5));
        assert_eq!(five.iter().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert!(NodeSet::all(0).is_empty());
        let mut set = NodeSet::default();
        set.insert(3);
        set.insert(1);
        assert_eq!(set.iter().collect::<Vec<_>>(), [1, 3]);
        set.insert(63);
        set.remove(1);
        assert_eq!(set.iter().collect::<Vec<_>>(), [3, 63]);
        assert_eq!(all.iter().count(), 64);
        assert_eq!(all.iter().last(), Some(63));
    }

    #[test]
    fn quorum_is_an_integer_majority() {
        let expected = [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)];
        for (nodes, q) in expected {
            assert_eq!(quorum(nodes), q, "{nodes} nodes");
            assert!(2 * quorum(nodes) > nodes, "two quorums must intersect");
        }
    }

    #[test]
    fn drift_is_one_percent_plus_two_ms() {
        assert_eq!(
            drift(Duration::from_secs(10), 0.01),
            Duration::from_millis(102)
        );
        assert_eq!(drift(Duration::from_millis(1), 0.0), DRIFT_FLOOR);
        assert_eq!(drift(Duration::MAX, 2.0), Duration::MAX);
    }

    #[test]
    fn validity_subtracts_elapsed_and_drift_and_is_never_zero() {
        let ttl = Duration::from_millis(1000);
        let d = drift(ttl, 0.01);
        assert_eq!(
            validity(ttl, Duration::from_millis(8), d),
            Some(Duration::from_millis(980))
        );
        assert_eq!(validity(ttl, Duration::from_millis(988), d), None);
        assert_eq!(validity(ttl, Duration::from_millis(2000), d), None);
        assert_eq!(
            validity(ttl, Duration::from_millis(987), d),
            Some(Duration::from_millis(1))
        );
    }

    #[test]
    fn a_round_is_decided_by_quorum_or_by_impossibility() {
        assert!(decided(3, 2, 3));
        assert!(!decided(2, 1, 3));
        assert!(decided(1, 1, 3));
        assert!(!decided(0, 5, 3));
        assert!(decided(0, 0, 1));
    }

    #[test]
    fn jitter_stays_in_range_and_spans_it() {
        let max = Duration::from_millis(100);
        assert_eq!(jitter(max, 0), Duration::ZERO);
        assert_eq!(jitter(max, u64::MAX), max);
        assert_eq!(jitter(max, 1 << 63), Duration::from_nanos(50_000_000));
        assert_eq!(jitter(Duration::ZERO, u64::MAX), Duration::ZERO);
    }
}
