//! The lock manager: configuration, acquire with retries, extend, release, and the guard.
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
//! - Release and extend compare the value before deleting or resetting the ttl. Extend refuses
//!   locally once the guard's validity is over, never re-creates a key, and computes the new
//!   validity from its own start time. Release reports whether a quorum still held our value.
//! - Arguments are checked before any I/O.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SysRng;
use rand::TryRng;

use crate::conn::ReplyBounds;
use crate::error::Error;
use crate::nodes::{Command, NodeSet, Nodes, Round, Session, Wait, MAX_NODES};
use crate::quorum;
use crate::resp::Limits;
use crate::url::NodeAddr;

/// Longest ttl accepted: `u32::MAX` milliseconds (about 49.7 days).
pub const MAX_TTL: Duration = Duration::from_millis(u32::MAX as u64);

/// Longest timeout or retry delay accepted by the builder.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Bytes of randomness in each lock value.
const VALUE_ENTROPY: usize = 16;

/// A lock value: [`VALUE_ENTROPY`] random bytes, as lowercase hex.
type Value = [u8; 2 * VALUE_ENTROPY];

/// Configures a [`Redlock`]. Every setting has a default; only the nodes are required.
///
/// | setting | default |
/// |---|---|
/// | `retries` | 3 (so 4 attempts) |
/// | `retry_delay` | 200 ms |
/// | `retry_jitter` | 100 ms |
/// | `drift_factor` | 0.01 |
/// | `node_timeout` | 50 ms |
/// | `connect_timeout` | 100 ms |
/// | `reply_limits` | [`Limits::LOCK_CLIENT`] |
#[derive(Clone, Debug)]
pub struct Builder {
    nodes: Vec<String>,
    retries: u32,
    retry_delay: Duration,
    retry_jitter: Duration,
    drift_factor: f64,
    node_timeout: Duration,
    connect_timeout: Duration,
    limits: Limits,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            retries: 3,
            retry_delay: Duration::from_millis(200),
            retry_jitter: Duration::from_millis(100),
            drift_factor: 0.01,
            node_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(100),
            limits: Limits::LOCK_CLIENT,
        }
    }
}

impl Builder {
    /// The nodes, as `redis://[[user]:password@]host[:port][/db]` URLs. Replaces any nodes set
    /// before. Each must be an independent master (no replicas, no cluster).
    pub fn nodes<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.nodes = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        self
    }

    /// Extra attempts after the first for [`Redlock::lock`]; 0 means exactly one attempt.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Fixed part of the pause between attempts.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Upper bound of the uniformly random part of the pause between attempts, so that
    /// contending clients do not retry in lockstep.
    pub fn retry_jitter(mut self, jitter: Duration) -> Self {
        self.retry_jitter = jitter;
        self
    }

    /// Fraction of the ttl assumed lost to clock-rate differences between nodes, in `[0, 1)`.
    /// The margin is `ttl * drift_factor + 2 ms`.
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }

    /// Budget for one round: every reply must arrive within this time after the round's
    /// commands start going out. Keep it small against the ttl (5-50 ms for ttls of seconds).
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// Budget for opening one connection, `AUTH` and `SELECT` included.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Bounds on replies; anything larger or deeper is a protocol error and closes the
    /// connection.
    pub fn reply_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Checks the configuration and builds the lock manager. No I/O: connections open lazily.
    pub fn build(self) -> Result<Redlock, Error> {
        let mut addrs: Vec<NodeAddr> = Vec::with_capacity(self.nodes.len());
        for url in &self.nodes {
            let addr = NodeAddr::parse(url)?;
            if addrs.iter().any(|seen| seen.same_server(&addr)) {
                return Err(Error::InvalidConfig("a node is listed twice"));
            }
            addrs.push(addr);
        }
        if addrs.is_empty() {
            return Err(Error::InvalidConfig("no nodes"));
        }
        if addrs.len() > MAX_NODES {
            return Err(Error::InvalidConfig("more than 64 nodes"));
        }
        if self.retries == u32::MAX {
            return Err(Error::InvalidConfig("retries must be below u32::MAX"));
        }
        if !(self.drift_factor.is_finite() && (0.0..1.0).contains(&self.drift_factor)) {
            return Err(Error::InvalidConfig("drift_factor must be in [0, 1)"));
        }
        let in_range = |d: Duration| !d.is_zero() && d <= MAX_WAIT;
        if !in_range(self.node_timeout) {
            return Err(Error::InvalidConfig("node_timeout must be in (0, 1 h]"));
        }
        if !in_range(self.connect_timeout) {
            return Err(Error::InvalidConfig("connect_timeout must be in (0, 1 h]"));
        }
        if self.retry_delay > MAX_WAIT || self.retry_jitter > MAX_WAIT {
            return Err(Error::InvalidConfig(
                "retry_delay and retry_jitter must be at most 1 h",
            ));
        }
        let nodes = Nodes::new(
            addrs,
            ReplyBounds::new(self.limits),
            self.connect_timeout,
            self.node_timeout,
        );
        Ok(Redlock {
            inner: Arc::new(Inner {
                nodes,
                retries: self.retries,
                retry_delay: self.retry_delay,
                retry_jitter: self.retry_jitter,
                drift_factor: self.drift_factor,
            }),
        })
    }
}

/// A Redlock lock manager over N independent Redis masters.
///
/// Cheap to clone (an `Arc`), `Send + Sync`, and meant to be shared: each concurrent caller
/// borrows its own connections from a pool, so callers never wait on each other's I/O.
#[derive(Clone)]
pub struct Redlock {
    inner: Arc<Inner>,
}

struct Inner {
    nodes: Nodes,
    retries: u32,
    retry_delay: Duration,
    retry_jitter: Duration,
    drift_factor: f64,
}

impl fmt::Debug for Redlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Redlock")
            .field("nodes", &inner.nodes.addrs())
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

    /// Votes needed: `nodes / 2 + 1`.
    pub fn quorum(&self) -> usize {
        self.inner.nodes.quorum()
    }

    /// The configured nodes, in order (node indexes in errors refer to this order).
    pub fn nodes(&self) -> &[NodeAddr] {
        self.inner.nodes.addrs()
    }

    /// Takes the lock on `resource` for `ttl`, with up to `retries` further attempts.
    ///
    /// On the wire: `SET resource value NX PX ttl` to every node per attempt, and
    /// `EVALSHA <release> 1 resource value` to those nodes after a failed attempt. The
    /// resource is the Redis key, verbatim. The returned guard releases the lock when dropped.
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
        let everywhere = NodeSet::all(inner.nodes.len());
        let mut session = inner.nodes.session();
        inner.release(&mut session, everywhere, resource.as_ref(), value.as_ref())
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
        let everywhere = NodeSet::all(inner.nodes.len());
        let mut session = inner.nodes.session();
        let (key, value) = (resource.as_ref(), value.as_ref());
        inner.extend(&mut session, everywhere, key, value, ttl, None)
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
        let key = resource.as_ref();
        let nodes = &inner.nodes;
        let acquire = Command::Acquire {
            key,
            value: &value,
            ttl_ms,
        };
        let release = Command::Release { key, value: &value };
        let mut reloaded = NodeSet::default();
        // The guard keeps these connections: its release and extend then go out behind the
        // SETs on each node, never ahead of a SET still in flight on another connection.
        let mut session = nodes.session();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let round = nodes.round(
                &mut session,
                &acquire,
                NodeSet::all(nodes.len()),
                Wait::UntilDecided,
                &mut reloaded,
            );
            let validity = quorum::validity(ttl, round.finished - round.started, drift);
            if round.yes >= nodes.quorum() && validity.is_some() {
                return Ok(LockGuard {
                    inner: Arc::clone(inner),
                    session: session.take(),
                    reached: round.sent,
                    resource,
                    value,
                    valid_until: end_of_validity(&round, ttl, drift),
                    armed: true,
                });
            }
            let last = attempt >= attempts;
            let failures = if last {
                session.failures(nodes)
            } else {
                Vec::new()
            };
            if !round.sent.is_empty() {
                let cleanup = Wait::AllHealthy;
                nodes.round(&mut session, &release, round.sent, cleanup, &mut reloaded);
            }
            if last {
                return Err(Error::NotAcquired {
                    attempts: attempt,
                    quorum: nodes.quorum(),
                    granted: round.yes,
                    held_elsewhere: round.no,
                    expired: round.yes >= nodes.quorum(),
                    failures,
                });
            }
            let random = SysRng.try_next_u64().unwrap_or(0);
            std::thread::sleep(inner.retry_delay + quorum::jitter(inner.retry_jitter, random));
        }
    }
}

impl Inner {
    /// The ttl in milliseconds and its drift margin, or why it cannot be used.
    fn check_ttl(&self, ttl: Duration) -> Result<(u64, Duration), Error> {
        let fail = |reason| Err(Error::InvalidTtl { ttl, reason });
        if ttl.is_zero() {
            return fail("ttl must be positive");
        }
        if ttl.subsec_nanos() % 1_000_000 != 0 {
            return fail("ttl must be a whole number of milliseconds");
        }
        if ttl > MAX_TTL {
            return fail("ttl above MAX_TTL");
        }
        let drift = quorum::drift(ttl, self.drift_factor);
        if ttl <= drift {
            return fail("ttl not longer than the clock-drift margin");
        }
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        Ok((millis, drift))
    }

    /// Releases on `targets`: every node for a lock known only by value, the nodes its
    /// `SET` reached for a guard.
    fn release(
        &self,
        session: &mut Session,
        targets: NodeSet,
        key: &[u8],
        value: &[u8],
    ) -> Result<bool, Error> {
        let nodes = &self.nodes;
        let command = Command::Release { key, value };
        let round = nodes.round(
            session,
            &command,
            targets,
            Wait::AllHealthy,
            &mut NodeSet::default(),
        );
        if round.yes >= nodes.quorum() {
            return Ok(true);
        }
        if round.yes + session.unheard() < nodes.quorum() {
            return Ok(false);
        }
        Err(Error::ReleaseUncertain {
            quorum: nodes.quorum(),
            released: round.yes,
            failures: session.failures(nodes),
        })
    }

    /// Returns the new validity. `valid_until`, when given, is set to the new end on success;
    /// on a failure after the command went out it is lowered to the end implied by this
    /// round, because nodes that ran the `PEXPIRE` (read or not) now expire by then, maybe
    /// sooner than before.
    fn extend(
        &self,
        session: &mut Session,
        targets: NodeSet,
        key: &[u8],
        value: &[u8],
        ttl: Duration,
        valid_until: Option<&mut Instant>,
    ) -> Result<Duration, Error> {
        let (ttl_ms, drift) = self.check_ttl(ttl)?;
        let nodes = &self.nodes;
        let command = Command::Extend { key, value, ttl_ms };
        let round = nodes.round(
            session,
            &command,
            targets,
            Wait::UntilDecided,
            &mut NodeSet::default(),
        );
        let validity = quorum::validity(ttl, round.finished - round.started, drift);
        let granted = round.yes >= nodes.quorum();
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
                quorum: nodes.quorum(),
                extended: round.yes,
                not_held: round.no,
                expired: round.yes >= nodes.quorum(),
                failures: session.failures(nodes),
            }),
        }
    }
}

/// Keys written after `round.started` with `ttl` outlive `started + ttl - drift` on every
/// node whose clock runs no faster than the drift allows.
fn end_of_validity(round: &Round, ttl: Duration, drift: Duration) -> Instant {
    round
        .started
        .checked_add(ttl.saturating_sub(drift))
        .unwrap_or(round.finished)
}

/// A fresh lock value from the operating system's generator.
fn new_value() -> Result<Value, Error> {
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

/// A held lock. Dropping it releases the lock, best effort and bounded by the node timeout
/// (also while a panic unwinds); [`LockGuard::release`] does the same and reports the outcome.
///
/// The guard knows how long the lock is valid ([`LockGuard::remaining`]), but cannot stop the
/// process from pausing past that point: check `remaining()` before acting, and prefer
/// resources that can reject stale writers.
pub struct LockGuard<R: AsRef<[u8]>> {
    inner: Arc<Inner>,
    /// The connections the SETs went out on; back to the pool on drop.
    session: Session,
    /// The nodes the winning round's `SET` was written to: the only ones that can hold our
    /// key, so the only ones release and extend talk to (a node held back for owing too many
    /// replies gets nothing more).
    reached: NodeSet,
    resource: R,
    value: Value,
    valid_until: Instant,
    /// Whether dropping the guard releases the lock.
    armed: bool,
}

impl<R: AsRef<[u8]>> LockGuard<R> {
    /// The resource, exactly as given (it is the Redis key).
    pub fn resource(&self) -> &[u8] {
        self.resource.as_ref()
    }

    /// The value stored under the key: 32 lowercase hex characters (16 random bytes). With the
    /// resource it identifies this lock, for [`Redlock::release_by`] from another process.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The instant the lock's validity ends, on this process's monotonic clock.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// Validity left: zero once it has run out.
    pub fn remaining(&self) -> Duration {
        self.valid_until.saturating_duration_since(Instant::now())
    }

    /// Resets the lock's ttl to `ttl` on every node its `SET` reached that still holds our value (`PEXPIRE` via
    /// `EVALSHA <extend>`), and returns the new validity: `ttl - elapsed - drift`, counted from
    /// the start of this round. Refused locally with [`Error::Expired`] once the validity is
    /// over, because the lock may then belong to someone else. On failure the guard keeps its
    /// old validity, cut short to what this round implies when the command reached any node:
    /// a failed extend to a shorter ttl may still have shortened the keys it reached.
    pub fn extend(&mut self, ttl: Duration) -> Result<Duration, Error> {
        if Instant::now() >= self.valid_until {
            return Err(Error::Expired);
        }
        let valid_until = Some(&mut self.valid_until);
        self.inner.extend(
            &mut self.session,
            self.reached,
            self.resource.as_ref(),
            &self.value,
            ttl,
            valid_until,
        )
    }

    /// Releases the lock on every node its `SET` reached (`EVALSHA <release>`, which deletes the key only if it
    /// still holds our value). Returns `Ok(true)` when a quorum still held our value,
    /// `Ok(false)` when it did not (the lock had expired or was taken over), and
    /// [`Error::ReleaseUncertain`] when too many nodes failed to tell.
    pub fn release(mut self) -> Result<bool, Error> {
        self.armed = false;
        let (key, value) = (self.resource.as_ref(), &self.value[..]);
        self.inner
            .release(&mut self.session, self.reached, key, value)
    }

    /// Keeps the lock when the guard is dropped: it then stays until its ttl runs out or
    /// someone calls [`Redlock::release_by`] with [`LockGuard::resource`] and
    /// [`LockGuard::value`] (another process, for instance).
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl<R: AsRef<[u8]>> Drop for LockGuard<R> {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: errors cannot be reported from drop, and keys expire on their own.
            let (key, value) = (self.resource.as_ref(), &self.value[..]);
            let _ = self
                .inner
                .release(&mut self.session, self.reached, key, value);
        }
        self.inner.nodes.give_back(self.session.take());
    }
}

impl<R: AsRef<[u8]>> fmt::Debug for LockGuard<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("resource", &String::from_utf8_lossy(self.resource()))
            .field("value", &String::from_utf8_lossy(self.value()))
            .field("remaining", &self.remaining())
            .field("armed", &self.armed)
            .finish()
    }
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
