//! A lock held for as long as the work needs: renewed in the background, with a cap, and a
//! signal the moment it may be gone.
//!
//! Contract:
//! - [`LockGuard::keep_alive`] turns a guard into a [`Lease`]. The manager's one keep-alive
//!   worker renews it every `every` (default ttl / 3) with the guard's own compare-and-`PEXPIRE`
//!   and the original ttl; the new validity runs from the renewal round's own start.
//! - [`Lease::is_held`] is computed from the validity at the moment it is called, plus the
//!   sticky loss: a stalled worker, a paused process or a starved thread can never make it say
//!   `true` after the validity ends. A renewal that completes after the validity it was meant
//!   to extend has ended is not applied: once lost, a lease stays lost.
//! - A renewal never re-creates a key and never starts after the validity ended. A failed one
//!   (no quorum, timeouts) is retried soon while validity remains; one in which fewer nodes
//!   than a quorum can still hold our value is [`Lost::Taken`] at once.
//! - With `max_hold`, no renewal starts after `acquired + max_hold`, so the validity ends no
//!   later than one ttl after that; then [`Lost::MaxHold`].
//! - [`Lease::release`] and dropping the lease stop renewal first: no renewal command is sent
//!   after either returns.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::guard::LockGuard;
use crate::redlock::Redlock;
use crate::sync::lock;

/// Shortest renewal period: below it, renewals would only load the nodes.
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// How a [`Lease`] is kept alive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepAlive {
    every: Option<Duration>,
    max_hold: Option<Duration>,
}

impl KeepAlive {
    /// Renew this often (default: a third of the ttl). Kept between 10 ms and half the ttl,
    /// so that a failed renewal still leaves time for retries.
    pub fn every(mut self, period: Duration) -> Self {
        self.every = Some(period);
        self
    }

    /// Stop renewing this long after the lock was granted; the lock then ends within one ttl
    /// and the lease reports [`Lost::MaxHold`]. Default: no cap.
    pub fn max_hold(mut self, cap: Duration) -> Self {
        self.max_hold = Some(cap);
        self
    }

    /// The renewal period for a lock of `ttl`.
    pub(crate) fn period(&self, ttl: Duration) -> Duration {
        let half = ttl / 2;
        self.every
            .unwrap_or(ttl / 3)
            .min(half)
            .max(MIN_PERIOD.min(half))
    }

    pub(crate) fn cap(&self) -> Option<Duration> {
        self.max_hold
    }
}

/// Why a lease is no longer held. Final: a lost lease never becomes held again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lost {
    /// No renewal reached a quorum before the validity ran out.
    Expired,
    /// A quorum no longer holds our value (it expired on the nodes, was deleted, or another
    /// owner has the key).
    Taken,
    /// The `max_hold` cap was reached: renewal stopped and the validity has now run out.
    MaxHold,
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Expired => "the lock expired: no renewal reached a quorum in time",
            Self::Taken => "the lock was taken: a quorum no longer holds our value",
            Self::MaxHold => "the lock reached its max_hold and has expired",
        })
    }
}

/// A callback run once when a lease is lost.
pub(crate) type OnLost = Box<dyn FnOnce(Lost) + Send>;

/// What the lease and the keep-alive worker share about one lease.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub changed: Condvar,
}

/// The mutable part, behind one lock.
pub(crate) struct State {
    pub valid_until: Instant,
    pub lost: Option<Lost>,
    /// Set by release or drop: the worker sends nothing more.
    pub stopped: bool,
    /// A renewal round for this lease is on the wire.
    pub renewing: bool,
    /// No renewal may start at or after this instant (`acquired + max_hold`).
    pub hold_until: Option<Instant>,
    pub next_renewal: Instant,
    pub callbacks: Vec<OnLost>,
}

impl State {
    /// The loss at `now`, recorded if it is new: a validity that has run out is a loss even
    /// before the worker notices.
    pub fn lost_at(&mut self, now: Instant) -> Option<Lost> {
        if self.lost.is_none() && now >= self.valid_until {
            // The lock outlived its cap: renewal stopped because of it.
            let capped = self.hold_until.is_some_and(|hold| hold <= self.valid_until);
            self.lost = Some(if capped { Lost::MaxHold } else { Lost::Expired });
        }
        self.lost
    }
}

/// A lock kept alive in the background by the manager's keep-alive worker.
///
/// Check [`Lease::is_held`] right before each side effect, or register [`Lease::on_lost`] to
/// cancel work. No lease can stop a process that pauses between the check and the write: for
/// that, the resource must check a fencing token.
pub struct Lease<R: AsRef<[u8]>> {
    guard: LockGuard<R>,
    shared: Arc<Shared>,
}

impl<R: AsRef<[u8]>> LockGuard<R> {
    /// Keeps the lock alive in the background until the lease is released or dropped, or
    /// the lock is lost (see [`Lease`]). The guard's validity carries over.
    pub fn keep_alive(self, options: KeepAlive) -> Lease<R> {
        let shared = self.start_keeping(options);
        Lease {
            guard: self,
            shared,
        }
    }
}

impl<R: AsRef<[u8]>> Lease<R> {
    /// True while the lock is ours: validity is left and no loss was seen. Computed now,
    /// from the validity, not from the worker's last report.
    pub fn is_held(&self) -> bool {
        self.lost().is_none()
    }

    /// Why the lock is no longer held, or `None` while it is. Sticky once set.
    pub fn lost(&self) -> Option<Lost> {
        let mut state = lock(&self.shared.state);
        state.lost_at(Instant::now())
    }

    /// Blocks until the lease is lost or `timeout` has passed; returns the loss, if any.
    pub fn wait_lost(&self, timeout: Duration) -> Option<Lost> {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = lock(&self.shared.state);
        loop {
            let now = Instant::now();
            if let Some(loss) = state.lost_at(now) {
                return Some(loss);
            }
            // Wake at the validity's end even if the worker is stalled.
            let wake = match deadline {
                Some(deadline) if deadline <= now => return None,
                Some(deadline) => deadline.min(state.valid_until),
                None => state.valid_until,
            };
            let wait = wake.saturating_duration_since(now);
            state = self
                .shared
                .changed
                .wait_timeout(state, wait)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard);
        }
    }

    /// Runs `callback` once when the lease is lost, on the keep-alive worker's thread, as soon
    /// as the loss is seen (at the latest when the validity ends); at once, on this thread, if
    /// it is lost already. It should be quick: cancel work, do not do it.
    pub fn on_lost(&self, callback: impl FnOnce(Lost) + Send + 'static) {
        let mut state = lock(&self.shared.state);
        match state.lost_at(Instant::now()) {
            Some(loss) => {
                drop(state);
                callback(loss);
            }
            None => state.callbacks.push(Box::new(callback)),
        }
    }

    /// Validity left: zero once it has run out.
    pub fn remaining(&self) -> Duration {
        let state = lock(&self.shared.state);
        match state.lost {
            Some(_) => Duration::ZERO,
            None => state.valid_until.saturating_duration_since(Instant::now()),
        }
    }

    /// The instant the current validity ends, on this process's monotonic clock.
    pub fn valid_until(&self) -> Instant {
        lock(&self.shared.state).valid_until
    }

    /// The resource, exactly as given (it is the Redis key).
    pub fn resource(&self) -> &[u8] {
        self.guard.resource()
    }

    /// The value stored under the key (see [`LockGuard::value`]).
    pub fn value(&self) -> &[u8] {
        self.guard.value()
    }

    /// The grant's fencing token (see [`LockGuard::token`]): renewals keep it.
    pub fn token(&self) -> Option<u64> {
        self.guard.token()
    }

    /// Stops renewal (waiting for a renewal in flight to finish), then releases the lock as
    /// [`LockGuard::release`] does.
    pub fn release(mut self) -> Result<bool, Error> {
        self.stop();
        self.guard.release_in_place()
    }

    /// Stops renewal: afterwards the worker sends nothing more for this lease.
    fn stop(&self) {
        if self.guard.forked() {
            // A forked child's copy: the worker is a thread of the parent, which keeps renewing
            // the parent's lease. Nothing here would ever clear `renewing`.
            return;
        }
        let mut state = lock(&self.shared.state);
        state.stopped = true;
        while state.renewing {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

impl<R: AsRef<[u8]>> Drop for Lease<R> {
    /// Stops renewal; the guard then releases the lock, best effort.
    fn drop(&mut self) {
        self.stop();
    }
}

impl<R: AsRef<[u8]>> fmt::Debug for Lease<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("resource", &String::from_utf8_lossy(self.resource()))
            .field("value", &String::from_utf8_lossy(self.value()))
            .field("remaining", &self.remaining())
            .field("lost", &self.lost())
            .finish()
    }
}

/// What [`Redlock::using`] hands back once the work is done and the lock released.
#[derive(Debug)]
#[must_use = "check `held_throughout()` before trusting what the work did"]
pub struct Held<T> {
    /// What the closure returned.
    pub value: T,
    /// `None` when the lock was held until the closure returned; otherwise how it was lost.
    pub lost: Option<Lost>,
    /// How the release after the work went (`Ok(true)`: it was still ours).
    pub released: Result<bool, Error>,
}

impl<T> Held<T> {
    /// True when the lock was held from the grant until the closure returned.
    pub fn held_throughout(&self) -> bool {
        self.lost.is_none()
    }
}

impl Redlock {
    /// Runs `work` under the lock on `resource`: takes it as [`Redlock::lock`] does (with
    /// retries), keeps it alive with `options` while `work` runs, then releases it. `work` gets
    /// the lease, to check [`Lease::is_held`] before each side effect or register
    /// [`Lease::on_lost`]. Returns what `work` returned and whether the lock held throughout;
    /// an `Err` only when the lock was not acquired. A panic in `work` releases the lock as the
    /// lease is dropped.
    pub fn using<R, T>(
        &self,
        resource: R,
        ttl: Duration,
        options: KeepAlive,
        work: impl FnOnce(&Lease<R>) -> T,
    ) -> Result<Held<T>, Error>
    where
        R: AsRef<[u8]>,
    {
        let lease = self.lock(resource, ttl)?.keep_alive(options);
        let value = work(&lease);
        let lost = lease.lost();
        let released = lease.release();
        Ok(Held {
            value,
            lost,
            released,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_defaults_to_a_third_and_stays_within_half_the_ttl() {
        let ttl = Duration::from_secs(9);
        assert_eq!(KeepAlive::default().period(ttl), Duration::from_secs(3));
        let every = |d| KeepAlive::default().every(d).period(ttl);
        assert_eq!(every(Duration::from_secs(1)), Duration::from_secs(1));
        assert_eq!(every(Duration::from_secs(60)), ttl / 2);
        assert_eq!(every(Duration::ZERO), MIN_PERIOD);
        // Below 20 ms the floor is half the ttl.
        let tiny = Duration::from_millis(6);
        assert_eq!(KeepAlive::default().period(tiny), Duration::from_millis(3));
    }

    #[test]
    fn a_validity_that_ran_out_is_a_loss_and_the_loss_sticks() {
        let now = Instant::now();
        let mut state = State {
            valid_until: now + Duration::from_secs(1),
            lost: None,
            stopped: false,
            renewing: false,
            hold_until: None,
            next_renewal: now,
            callbacks: Vec::new(),
        };
        assert_eq!(state.lost_at(now), None);
        assert_eq!(
            state.lost_at(now + Duration::from_secs(1)),
            Some(Lost::Expired)
        );
        state.valid_until = now + Duration::from_secs(60);
        assert_eq!(state.lost_at(now), Some(Lost::Expired), "final");
        let mut capped = State {
            lost: None,
            hold_until: Some(now),
            ..state
        };
        assert_eq!(
            capped.lost_at(now + Duration::from_secs(60)),
            Some(Lost::MaxHold)
        );
        let mut failing = State {
            lost: None,
            valid_until: now,
            hold_until: Some(now + Duration::from_secs(1)),
            callbacks: Vec::new(),
            ..capped
        };
        assert_eq!(
            failing.lost_at(now),
            Some(Lost::Expired),
            "ran out before the cap"
        );
    }
}
