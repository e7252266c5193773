//! What the crate remembers about each node between rounds: how fast it answers, and whether
//! dialling it is on hold after a connect timed out.
//!
//! Contract: shared by every caller of one lock manager, lock-free on the hot path (the latency
//! is one atomic), and only ever a hint: a lost update can reorder reads, never change a vote.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::NodeError;
use crate::identity::Identity;
use crate::sync::lock;

/// After a connect or handshake times out, the node is not dialled again for this long; rounds
/// meanwhile count it as failed with that timeout. Refused connections fail fast and are
/// retried every round.
pub const CONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// One node's health.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// A moving average of the reply latency in nanoseconds, raised towards the node timeout
    /// by a timeout. Orders reads fastest first and says which nodes are slow.
    latency: AtomicU64,
    /// After a connect that timed out: when to dial again, and what to report until then.
    backoff: Mutex<Option<(Instant, NodeError)>>,
    /// Who the node said it is on its last new connection.
    pub identity: Mutex<Identity>,
    /// The node turned out to be another configured node under a second name: set with the
    /// error that says which, and its votes never count.
    alias: Mutex<Option<NodeError>>,
    is_alias: AtomicBool,
}

impl Health {
    /// The latency average, in nanoseconds (0 before the first sample).
    pub fn latency(&self) -> u64 {
        self.latency.load(Ordering::Relaxed)
    }

    /// Folds one reply latency into the average (weight 1/8). Concurrent updates may lose one
    /// another's sample; the average only steers read order.
    pub fn record(&self, sample: Duration) {
        let sample = u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX);
        let old = self.latency.load(Ordering::Relaxed);
        let new = if sample >= old {
            old + (sample - old) / 8
        } else {
            old - (old - sample) / 8
        };
        self.latency.store(new, Ordering::Relaxed);
    }

    /// Marks the node as another name of a configured node (`Some(error)` names it), or clears
    /// the mark.
    pub fn set_alias(&self, error: Option<NodeError>) {
        let mut alias = lock(&self.alias);
        self.is_alias.store(error.is_some(), Ordering::Relaxed);
        *alias = error;
    }

    /// The error that names the node this one is another name of, if it is.
    pub fn alias(&self) -> Option<NodeError> {
        if !self.is_alias.load(Ordering::Relaxed) {
            return None;
        }
        lock(&self.alias).clone()
    }

    /// True while the node may not vote on grants (it restarted recently).
    pub fn quarantined(&self, now: Instant) -> bool {
        lock(&self.identity).quarantined(now)
    }

    /// The error to report instead of dialling, while a backoff runs.
    pub fn backing_off(&self, now: Instant) -> Option<NodeError> {
        match &*lock(&self.backoff) {
            Some((until, error)) if now < *until => Some(error.clone()),
            _ => None,
        }
    }

    /// Records a failed dial: a timeout or a failed TLS check starts a backoff (a
    /// certificate does not fix itself within a round), anything else does not.
    pub fn dial_failed(&self, error: &NodeError, now: Instant) {
        if matches!(error, NodeError::Timeout(_) | NodeError::Tls(_)) {
            *lock(&self.backoff) = Some((now + CONNECT_BACKOFF, error.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Phase;

    #[test]
    fn latency_moves_an_eighth_of_the_way() {
        let health = Health::default();
        health.record(Duration::from_nanos(8000));
        assert_eq!(health.latency(), 1000);
        health.record(Duration::ZERO);
        assert_eq!(health.latency(), 875);
    }

    #[test]
    fn only_a_timeout_backs_off_and_only_for_a_while() {
        let health = Health::default();
        let now = Instant::now();
        let refused = NodeError::Io {
            phase: Phase::Connect,
            kind: std::io::ErrorKind::ConnectionRefused,
        };
        health.dial_failed(&refused, now);
        assert_eq!(health.backing_off(now), None);
        let timeout = NodeError::Timeout(Phase::Connect);
        health.dial_failed(&timeout, now);
        assert_eq!(health.backing_off(now), Some(timeout));
        assert_eq!(health.backing_off(now + CONNECT_BACKOFF), None);
    }
}
