//! Waiting for a lock with a deadline, woken by the release instead of polling.
//!
//! Contract of [`Redlock::lock_within`]:
//! - An attempt is one round of `SET key value NX PX ttl` with `PTTL key` pipelined behind it
//!   on every node, so a failed attempt also tells how long the holder's keys have left, at
//!   no extra round trip. One value for every attempt of the call, as with [`Redlock::lock`];
//!   a failed attempt is released on every node it reached.
//! - After a failed attempt the caller joins this process's queue for the resource (FIFO) and
//!   sleeps until: the holder's release is published (the release script publishes on
//!   `resplock:released:<resource>`), its subscription is confirmed (it then tries once more:
//!   a release between the attempt and the subscription is never missed), the holder's keys
//!   run out on enough nodes for a quorum (from the `PTTL`s, plus jitter: this is how locks of
//!   clients that do not publish are handed over), or `max_wait`.
//! - Only the front waiter of a resource in a process tries; the others sleep until it leaves,
//!   so a release costs one attempt per waiting process, not one per waiting thread. A newcomer
//!   queues behind this process's waiters rather than barging in, and a release by this
//!   process gives the other processes' waiters a head start (`schedule.rs`), so a hot lock
//!   goes round the processes instead of staying in one. Tries woken by messages back off when
//!   the same holder keeps the lock (judged by its shortest-lived key, which one node among
//!   others cannot push later), so a node that floods the channel cannot make a waiter spin. A
//!   failed attempt's own cleanup publishes nothing.
//! - It returns [`Error::NotAcquired`] once `max_wait` has passed (after at least one attempt),
//!   never sooner.

use std::time::{Duration, Instant};

use rand::rngs::SysRng;
use rand::TryRng;

use crate::command::Command;
use crate::error::Error;
use crate::fence::{counter_key, Attempt, Take};
use crate::guard::LockGuard;
use crate::listen::{channel_of, Spot};
use crate::quorum::{self, MAX_NODES};
use crate::redlock::{new_value, Redlock};
use crate::round::{Outcome, Wait};
use crate::schedule::Schedule;

/// Longest sleep between attempts when the holder's keys never expire (or nodes are down).
const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// How long until enough nodes are free for a quorum, given `free_now` nodes free already and
/// the remaining ttls (ms) of the nodes where another value holds the key (-1: no expiry).
/// `None` when no ttl tells (keys that never expire, nodes that did not answer).
fn free_in(free_now: usize, held_ttls: &mut [i64], quorum: usize) -> Option<Duration> {
    let needed = quorum.saturating_sub(free_now);
    if needed == 0 {
        return Some(Duration::ZERO);
    }
    held_ttls.sort_unstable_by_key(|&ttl| if ttl < 0 { i64::MAX } else { ttl });
    let ttl = *held_ttls.get(needed - 1)?;
    u64::try_from(ttl).ok().map(Duration::from_millis)
}

/// After the failed attempt `round` of `probe`: how long the holder's shortest-lived key has
/// left (`None` when no ttl tells), and when to try again: when the holder's keys run out on
/// enough nodes for a quorum, plus Redis' expiry resolution and jitter that spreads waiters of
/// several processes (within a node timeout, so a crashed holder's lock is taken within its
/// ttl plus two node timeouts).
///
/// The shortest-lived key tells one holder from the next: it does not depend on which nodes
/// answered before the round was decided (the quorum-th ttl does, as soon as one node's key
/// outlives the others), and one node that inflates its ttl cannot move it.
fn retry_after(
    round: &Outcome,
    probe: &Take<'_>,
    quorum: usize,
    node_timeout: Duration,
) -> (Option<Duration>, Duration) {
    let mut free_now = 0;
    let mut held = [0i64; MAX_NODES];
    let mut count = 0;
    for node in 0..MAX_NODES {
        let ttl = probe.ttls.get(node).copied().flatten();
        match (round.answer(node), ttl) {
            (Some(true), _) | (Some(false), Some(-2)) => free_now += 1,
            (Some(false), Some(ttl)) => {
                if let Some(slot) = held.get_mut(count) {
                    *slot = ttl;
                    count += 1;
                }
            }
            _ => {}
        }
    }
    let held = held.get_mut(..count).unwrap_or_default();
    let soonest = held
        .iter()
        .filter_map(|&ttl| u64::try_from(ttl).ok())
        .min()
        .map(Duration::from_millis);
    let retry = match free_in(free_now, held, quorum) {
        Some(wait) => {
            let spread = (wait / 8).clamp(
                Duration::from_millis(1),
                node_timeout.max(Duration::from_millis(1)),
            );
            let random = SysRng.try_next_u64().unwrap_or(0);
            wait + quorum::DRIFT_FLOOR + quorum::jitter(spread, random)
        }
        None => FALLBACK_POLL,
    };
    (soonest, retry)
}

impl Redlock {
    /// Takes the lock on `resource` for `ttl`, waiting up to `max_wait` for it: tries now,
    /// and on contention sleeps until the holder releases it (the release publishes to the
    /// waiters), its keys expire, or `max_wait` has passed, then tries again. Returns
    /// [`Error::NotAcquired`] once `max_wait` has passed, never sooner.
    ///
    /// On the wire, per attempt: `SET resource value NX PX ttl` (the fenced acquire script
    /// with [`crate::Builder::fencing`], then the confirm round as for [`Redlock::lock`]) and
    /// `PTTL resource` to every node, and `EVALSHA <release> 1 resource value 0` after a
    /// failed attempt to the nodes it was sent to that did not answer "held by another";
    /// while waiting, one `SUBSCRIBE resplock:released:<resource>` per node on a connection
    /// shared by every waiter of this manager. Waiters in one process are served in order.
    pub fn lock_within<R: AsRef<[u8]>>(
        &self,
        resource: R,
        ttl: Duration,
        max_wait: Duration,
    ) -> Result<LockGuard<R>, Error> {
        let inner = self.inner();
        let (ttl_ms, drift) = inner.check_ttl(ttl)?;
        let value = new_value()?;
        let nodes = &inner.nodes;
        let start = Instant::now();
        let deadline = start.checked_add(max_wait);
        let ticket = nodes.ticket();
        let mut call = nodes.call(Some(ticket));
        let channel = channel_of(resource.as_ref());
        let counter = inner.fencing.then(|| counter_key(resource.as_ref()));
        let mut spot: Option<Spot> = inner
            .listener
            .has_waiters(&channel)
            .then(|| inner.listener.join(nodes, channel.clone()));
        let first_in_line = spot.as_ref().is_none_or(Spot::is_front);
        let mut schedule = Schedule::new(start, first_in_line);
        let mut attempts = 0u32;
        let mut last: Option<Outcome> = None;
        loop {
            let now = Instant::now();
            let expired = deadline.is_some_and(|d| now >= d);
            if let Some(round) = last.as_ref().filter(|_| expired) {
                nodes.forget(ticket);
                return Err(inner.not_acquired(attempts, round));
            }
            // At the deadline a waiter that never had its turn tries once, so that the error
            // tells what it found.
            if expired || schedule.due(now) {
                attempts += 1;
                schedule.trying(now);
                let key = resource.as_ref();
                let mut take = Take::new(key, &value, ttl_ms);
                take.counter = counter.as_deref();
                take.with_ttl = true;
                let (first, second) = match inner.attempt(&mut call, &mut take, ttl, drift) {
                    Attempt::Granted {
                        reached,
                        validity,
                        token,
                    } => {
                        let pid = call.pid;
                        drop(call);
                        if let Some(queued) = spot {
                            queued.leave(Some(validity.until));
                        }
                        let guard = LockGuard::new(
                            self.inner_arc(),
                            ticket,
                            reached,
                            resource,
                            value,
                            validity,
                            pid,
                        );
                        return Ok(guard.with_token(token));
                    }
                    Attempt::Failed { first, second } => (first, second),
                };
                // Nodes that answered "held" never set our key: only the others are released.
                let mut cleanup = first.sent;
                for node in first.sent.iter() {
                    if first.answer(node) == Some(false) {
                        cleanup.remove(node);
                    }
                }
                if !cleanup.is_empty() {
                    let mut release = Command::Cleanup { key, value: &value };
                    call.round(&mut release, cleanup, Wait::AllHealthy);
                }
                let (holder_left, retry) =
                    retry_after(&first, &take, nodes.quorum(), nodes.node_timeout());
                schedule.failed(Instant::now(), holder_left, retry);
                last = Some(second.unwrap_or(first));
                if spot.is_none() {
                    spot = Some(inner.listener.join(nodes, channel.clone()));
                }
            }
            let Some(queued) = &spot else {
                continue;
            };
            let wake = schedule.wake_at(deadline, Instant::now() + FALLBACK_POLL);
            let woke = queued.wait(wake);
            schedule.woke(woke, Instant::now(), queued.is_front());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_in_waits_for_the_quorum_th_expiry() {
        let ms = Duration::from_millis;
        // 3 nodes, quorum 2, none free: the second-shortest ttl frees a quorum.
        assert_eq!(free_in(0, &mut [900, 300, 600], 2), Some(ms(600)));
        // One free already: the shortest ttl is enough.
        assert_eq!(free_in(1, &mut [900, 300], 2), Some(ms(300)));
        assert_eq!(free_in(2, &mut [900], 2), Some(Duration::ZERO));
        // Keys that never expire do not count; not enough finite ttls: no answer.
        assert_eq!(free_in(0, &mut [-1, 300, -1], 2), None);
        assert_eq!(free_in(1, &mut [-1, 300, -1], 2), Some(ms(300)));
        assert_eq!(free_in(0, &mut [], 1), None);
    }
}
