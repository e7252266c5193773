//! The lock manager: acquire with retries, extend, release.
//!
//! Contract (the distlock algorithm):
//! - One acquisition uses one value: 16 bytes from the operating system's generator (a system
//!   call each time, so a forked child never repeats its parent's values), hex-encoded.
//! - An attempt is one round of `SET key value NX PX ttl` on every node. It succeeds when a
//!   quorum (`N/2 + 1`) granted it and `ttl - elapsed - (ttl * drift_factor + 2 ms)` is still
//!   positive, `elapsed` running on the monotonic clock from just before the first `SET` was
//!   written to just after the last reply used.
//! - A failed attempt releases the lock on every node the `SET` was written to (a timed-out
//!   `SET` may still have run), then sleeps `retry_delay` plus uniform jitter in
//!   `[0, retry_jitter]`, but never after the last attempt.
//! - Release and extend compare the value before deleting or resetting the ttl. Extend never
//!   re-creates a key and computes the new validity from its own start time. Release reports
//!   whether a quorum still held our value.
//! - Arguments are checked before any I/O.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SysRng;
use rand::TryRng;

use crate::builder::Builder;
use crate::command::Command;
use crate::error::{Error, TtlRule};
use crate::fence::{counter_key, Attempt, Take};
use crate::guard::LockGuard;
use crate::keeper::Keeper;
use crate::listen::Listener;
use crate::nodes::{Call, Nodes};
use crate::quorum::{self, NodeSet};
use crate::round::{Outcome, Wait};
use crate::url::NodeAddr;

/// Longest ttl accepted: `u32::MAX` milliseconds (about 49.7 days).
pub const MAX_TTL: Duration = Duration::from_millis(u32::MAX as u64);

/// How long a lock lasts: its ttl, when its winning round started, and when its validity
/// ends.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Validity {
    pub ttl: Duration,
    pub acquired: Instant,
    pub until: Instant,
}

/// Bytes of randomness in each lock value.
const VALUE_ENTROPY: usize = 16;

/// A lock value: [`VALUE_ENTROPY`] random bytes, as lowercase hex.
pub(crate) type Value = [u8; 2 * VALUE_ENTROPY];

/// A Redlock lock manager over N independent Redis masters.
///
/// Cheap to clone (an `Arc`), `Send + Sync`, and meant to be shared: each concurrent caller
/// borrows its own connections from a pool, so callers never wait on each other's I/O.
#[derive(Clone)]
pub struct Redlock {
    inner: Arc<Inner>,
}

/// What every clone of a manager shares.
pub(crate) struct Inner {
    pub nodes: Nodes,
    /// The keep-alive worker and its leases.
    pub keeper: Keeper,
    /// The subscriber connections that wake waiters.
    pub listener: Listener,
    /// The configured nodes, in order, as [`Redlock::nodes`] shows them.
    pub addrs: Vec<NodeAddr>,
    pub retries: u32,
    pub retry_delay: Duration,
    pub retry_jitter: Duration,
    pub drift_factor: f64,
    /// Grants carry fencing tokens.
    pub fencing: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.keeper.shutdown();
        self.listener.shutdown();
    }
}

impl fmt::Debug for Redlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Redlock")
            .field("nodes", &inner.addrs)
            .field("quorum", &inner.nodes.quorum())
            .field("retries", &inner.retries)
            .field("retry_delay", &inner.retry_delay)
            .field("retry_jitter", &inner.retry_jitter)
            .field("drift_factor", &inner.drift_factor)
            .finish_non_exhaustive()
    }
}

impl Redlock {
    /// A lock manager over `urls` with default settings. No I/O.
    pub fn new<I, S>(urls: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::builder().nodes(urls).build()
    }

    /// A [`Builder`] with default settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub(crate) fn inner_arc(&self) -> Arc<Inner> {
        Arc::clone(&self.inner)
    }

    /// Votes needed: `nodes / 2 + 1`.
    pub fn quorum(&self) -> usize {
        self.inner.nodes.quorum()
    }

    /// The configured nodes, in order (node indexes in errors refer to this order).
    pub fn nodes(&self) -> &[NodeAddr] {
        &self.inner.addrs
    }

    /// Connections to the nodes that sit idle in the pool right now (for monitoring: a held
    /// lock keeps none of its own).
    pub fn idle_connections(&self) -> usize {
        self.inner.nodes.idle_connections()
    }

    /// Takes the lock on `resource` for `ttl`, with up to `retries` further attempts.
    ///
    /// On the wire: `SET resource value NX PX ttl` to every node per attempt, and
    /// `EVALSHA <release> 1 resource value 0` to those nodes after a failed attempt (the `0`:
    /// publish nothing, that key was never anyone's lock). With [`Builder::fencing`]`(true)`
    /// an attempt is `EVALSHA <fenced acquire> 2 resource resplock:fence:<resource> value ttl`
    /// on every node, then, if a quorum granted it, `EVALSHA <fence confirm>` with the token.
    /// The resource is the Redis key, verbatim. The returned guard releases the lock when
    /// dropped.
    pub fn lock<R: AsRef<[u8]>>(&self, resource: R, ttl: Duration) -> Result<LockGuard<R>, Error> {
        self.acquire(resource, ttl, self.inner.retries + 1)
    }

    /// Like [`Redlock::lock`], with exactly one attempt.
    pub fn try_lock<R: AsRef<[u8]>>(
        &self,
        resource: R,
        ttl: Duration,
    ) -> Result<LockGuard<R>, Error> {
        self.acquire(resource, ttl, 1)
    }

    /// Releases a lock known by its resource and value (for example, taken by another
    /// process). Returns whether a quorum still held that value; see [`LockGuard::release`].
    pub fn release_by(
        &self,
        resource: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<bool, Error> {
        let inner = &self.inner;
        let mut call = inner.nodes.call(None);
        let everywhere = inner.nodes.everywhere();
        inner.release(&mut call, everywhere, resource.as_ref(), value.as_ref())
    }

    /// Resets the ttl of a lock known by its resource and value, on the nodes where that value
    /// still holds the key. Returns the new validity; see [`LockGuard::extend`]. Unlike the
    /// guard's method there is no local check of the old validity: the caller owns that, and
    /// after a failure it must assume the lock ends no later than `ttl` minus the drift margin
    /// after the call began, since the nodes it reached may have shortened their keys.
    pub fn extend_by(
        &self,
        resource: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<Duration, Error> {
        let inner = &self.inner;
        let mut call = inner.nodes.call(None);
        let everywhere = inner.nodes.everywhere();
        let (key, value) = (resource.as_ref(), value.as_ref());
        inner.extend(&mut call, everywhere, key, value, ttl, None)
    }

    fn acquire<R: AsRef<[u8]>>(
        &self,
        resource: R,
        ttl: Duration,
        attempts: u32,
    ) -> Result<LockGuard<R>, Error> {
        let inner = &self.inner;
        let (ttl_ms, drift) = inner.check_ttl(ttl)?;
        let value = new_value()?;
        let nodes = &inner.nodes;
        let ticket = nodes.ticket();
        // The ticket keeps this lock's commands to each node in order, across its attempts
        // and its guard's life: a release never overtakes its own SET.
        let mut call = nodes.call(Some(ticket));
        let counter = inner.fencing.then(|| counter_key(resource.as_ref()));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let key = resource.as_ref();
            let mut take = Take::new(key, &value, ttl_ms);
            take.counter = counter.as_deref();
            let (first, second) = match inner.attempt(&mut call, &mut take, ttl, drift) {
                Attempt::Granted {
                    reached,
                    validity,
                    token,
                } => {
                    let pid = call.pid;
                    drop(call);
                    let inner = Arc::clone(inner);
                    let guard =
                        LockGuard::new(inner, ticket, reached, resource, value, validity, pid);
                    return Ok(guard.with_token(token));
                }
                Attempt::Failed { first, second } => (first, second),
            };
            let last = attempt >= attempts;
            if !first.sent.is_empty() {
                if last {
                    call.closing();
                }
                let mut cleanup = Command::Cleanup { key, value: &value };
                call.round(&mut cleanup, first.sent, Wait::AllHealthy);
            }
            if last {
                return Err(inner.not_acquired(attempt, second.as_ref().unwrap_or(&first)));
            }
            let random = SysRng.try_next_u64().unwrap_or(0);
            std::thread::sleep(inner.retry_delay + quorum::jitter(inner.retry_jitter, random));
        }
    }
}

impl Inner {
    /// The ttl in milliseconds and its drift margin, or why it cannot be used.
    pub fn check_ttl(&self, ttl: Duration) -> Result<(u64, Duration), Error> {
        let fail = |reason| Err(Error::InvalidTtl { ttl, reason });
        if ttl.is_zero() {
            return fail(TtlRule::Zero);
        }
        if ttl.subsec_nanos() % 1_000_000 != 0 {
            return fail(TtlRule::SubMillisecond);
        }
        if ttl > MAX_TTL {
            return fail(TtlRule::TooLong);
        }
        let drift = quorum::drift(ttl, self.drift_factor);
        if ttl <= drift {
            return fail(TtlRule::WithinDrift);
        }
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        Ok((millis, drift))
    }

    /// The error for an acquisition whose last attempt ended in `round`.
    pub(crate) fn not_acquired(&self, attempts: u32, round: &Outcome) -> Error {
        Error::NotAcquired {
            attempts,
            quorum: self.nodes.quorum(),
            granted: round.yes,
            held_elsewhere: round.no,
            expired: round.granted(),
            failures: round.failures(|node| self.nodes.addr_text(node)),
        }
    }

    /// Releases on `targets`: every node for a lock known only by value, the nodes its
    /// `SET` reached for a guard.
    pub fn release(
        &self,
        call: &mut Call<'_>,
        targets: NodeSet,
        key: &[u8],
        value: &[u8],
    ) -> Result<bool, Error> {
        let mut release = Command::Release { key, value };
        let round = call.round(&mut release, targets, Wait::AllHealthy);
        let quorum = self.nodes.quorum();
        if round.yes >= quorum {
            return Ok(true);
        }
        if round.yes + round.unheard() < quorum {
            return Ok(false);
        }
        Err(Error::ReleaseUncertain {
            quorum,
            released: round.yes,
            failures: round.failures(|node| self.nodes.addr_text(node)),
        })
    }

    /// Returns the new validity. `valid_until`, when given, is set to the new end on success;
    /// on a failure after the command went out it is lowered to the end implied by this
    /// round, because nodes that ran the `PEXPIRE` (read or not) now expire by then, maybe
    /// sooner than before.
    pub fn extend(
        &self,
        call: &mut Call<'_>,
        targets: NodeSet,
        key: &[u8],
        value: &[u8],
        ttl: Duration,
        valid_until: Option<&mut Instant>,
    ) -> Result<Duration, Error> {
        let (ttl_ms, drift) = self.check_ttl(ttl)?;
        let mut extend = Command::Extend { key, value, ttl_ms };
        let round = call.round(&mut extend, targets, Wait::UntilDecided);
        let validity = quorum::validity(ttl, round.elapsed(), drift);
        let granted = round.granted();
        if let Some(until) = valid_until {
            let new_end = end_of_validity(&round, ttl, drift);
            match validity {
                Some(_) if granted => *until = new_end,
                _ if !round.sent.is_empty() => *until = (*until).min(new_end),
                _ => {}
            }
        }
        match validity {
            Some(validity) if granted => Ok(validity),
            _ => Err(Error::NotExtended {
                quorum: self.nodes.quorum(),
                extended: round.yes,
                not_held: round.no,
                expired: granted,
                failures: round.failures(|node| self.nodes.addr_text(node)),
            }),
        }
    }
}

/// Keys written after `round.started` with `ttl` outlive `started + ttl - drift` on every
/// node whose clock runs no faster than the drift allows.
pub(crate) fn end_of_validity(round: &Outcome, ttl: Duration, drift: Duration) -> Instant {
    end_of_validity_from(round.started, round.finished, ttl, drift)
}

/// [`end_of_validity`] of a round that ran from `started` to `finished`.
pub(crate) fn end_of_validity_from(
    started: Instant,
    finished: Instant,
    ttl: Duration,
    drift: Duration,
) -> Instant {
    started
        .checked_add(ttl.saturating_sub(drift))
        .unwrap_or(finished)
}

/// A fresh lock value from the operating system's generator.
pub(crate) fn new_value() -> Result<Value, Error> {
    let mut raw = [0u8; VALUE_ENTROPY];
    SysRng
        .try_fill_bytes(&mut raw)
        .map_err(|_| Error::Entropy)?;
    let mut value = [0u8; 2 * VALUE_ENTROPY];
    for (pair, byte) in value.chunks_exact_mut(2).zip(raw) {
        for (slot, nibble) in pair.iter_mut().zip([byte >> 4, byte & 0x0f]) {
            *slot = if nibble < 10 {
                b'0' + nibble
            } else {
                b'a' + nibble - 10
            };
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_hex_and_distinct() {
        let a = new_value().map_err(|e| e.to_string());
        let b = new_value().map_err(|e| e.to_string());
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("no entropy");
        };
        assert_ne!(a, b);
        assert!(a
            .iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
}
