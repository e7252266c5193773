//! A held lock: what it knows (resource, value, validity, the nodes its `SET` reached) and what
//! it can do (extend, release, keep the lock on drop).
//!
//! Contract: a guard talks only to the nodes its winning `SET` was written to, and its
//! commands to each node stay behind the ones before them (its ticket reserves the connections
//! that still owe it replies); it holds no connection of its own. Extend refuses locally once
//! the validity is over. Dropping an armed guard releases the lock, best effort and bounded by
//! one round (SAFETY.md, Time bounds), also while a panic unwinds.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::keeper::Entry;
use crate::lease::{KeepAlive, Shared, State};
use crate::pool::Ticket;
use crate::quorum::NodeSet;
use crate::redlock::{Inner, Validity, Value};

/// A held lock. Dropping it releases the lock, best effort and bounded by one round (see
/// SAFETY.md, Time bounds; also while a panic unwinds); [`LockGuard::release`] does the same and reports the outcome.
///
/// The guard knows how long the lock is valid ([`LockGuard::remaining`]), but cannot stop the
/// process from pausing past that point: check `remaining()` before acting, and prefer
/// resources that can reject stale writers.
pub struct LockGuard<R: AsRef<[u8]>> {
    inner: Arc<Inner>,
    /// Keeps this lock's commands to each node in order.
    ticket: Ticket,
    /// The nodes the winning round's `SET` was written to: the only ones that can hold our
    /// key, so the only ones release and extend talk to (a node held back for owing too many
    /// replies gets nothing more).
    reached: NodeSet,
    resource: R,
    value: Value,
    /// The ttl the lock was taken with.
    ttl: Duration,
    /// When the winning round started.
    acquired: Instant,
    valid_until: Instant,
    /// The fencing token, on a manager with fencing.
    token: Option<u64>,
    /// The process that took the lock: a forked child leaves it alone.
    pid: u32,
    /// Whether dropping the guard releases the lock.
    armed: bool,
}

impl<R: AsRef<[u8]>> LockGuard<R> {
    pub(crate) fn new(
        inner: Arc<Inner>,
        ticket: Ticket,
        reached: NodeSet,
        resource: R,
        value: Value,
        validity: Validity,
        pid: u32,
    ) -> Self {
        Self {
            inner,
            ticket,
            reached,
            resource,
            value,
            ttl: validity.ttl,
            acquired: validity.acquired,
            valid_until: validity.until,
            token: None,
            pid,
            armed: true,
        }
    }

    pub(crate) fn with_token(mut self, token: Option<u64>) -> Self {
        self.token = token;
        self
    }

    /// The fencing token of this grant, on a manager built with
    /// [`crate::Builder::fencing`]`(true)`; `None` otherwise. It is larger than the token of
    /// every grant of this resource that returned before this one's first command was sent:
    /// hand it to the protected resource with every write, and have the resource reject a
    /// token lower than the highest it has seen (SAFETY.md states the conditions).
    pub fn token(&self) -> Option<u64> {
        self.token
    }

    /// The resource, exactly as given (it is the Redis key).
    pub fn resource(&self) -> &[u8] {
        self.resource.as_ref()
    }

    /// The value stored under the key: 32 lowercase hex characters (16 random bytes). With the
    /// resource it identifies this lock, for [`crate::Redlock::release_by`] from another
    /// process.
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

    /// Resets the lock's ttl to `ttl` on every node its `SET` reached that still holds our
    /// value (`PEXPIRE` via `EVALSHA <extend>`), and returns the new validity:
    /// `ttl - elapsed - drift`, counted from the start of this round. Refused locally with
    /// [`Error::Expired`] once the validity is over, because the lock may then belong to
    /// someone else. On failure the guard keeps its old validity, cut short to what this round
    /// implies when the command reached any node: a failed extend to a shorter ttl may still
    /// have shortened the keys it reached.
    pub fn extend(&mut self, ttl: Duration) -> Result<Duration, Error> {
        if Instant::now() >= self.valid_until {
            return Err(Error::Expired);
        }
        if self.forked() {
            return Err(Error::WrongProcess);
        }
        let inner = &self.inner;
        let mut call = inner.nodes.call(Some(self.ticket));
        let key = self.resource.as_ref();
        let valid_until = Some(&mut self.valid_until);
        inner.extend(&mut call, self.reached, key, &self.value, ttl, valid_until)
    }

    /// Releases the lock on every node its `SET` reached (`EVALSHA <release>`, which deletes
    /// the key only if it still holds our value). Returns `Ok(true)` when a quorum still held
    /// our value, `Ok(false)` when it did not (the lock had expired or was taken over), and
    /// [`Error::ReleaseUncertain`] when too many nodes failed to tell.
    pub fn release(mut self) -> Result<bool, Error> {
        self.armed = false;
        self.release_now()
    }

    /// Keeps the lock when the guard is dropped: it then stays until its ttl runs out or
    /// someone calls [`crate::Redlock::release_by`] with [`LockGuard::resource`] and
    /// [`LockGuard::value`] (another process, for instance).
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// True in a process forked from the one that took the lock.
    pub(crate) fn forked(&self) -> bool {
        std::process::id() != self.pid
    }

    /// Releases now, whatever happens to the guard later (a lease's release).
    pub(crate) fn release_in_place(&mut self) -> Result<bool, Error> {
        self.armed = false;
        self.release_now()
    }

    /// Hands the lock to the manager's keep-alive worker; the returned state is shared with
    /// it.
    pub(crate) fn start_keeping(&self, options: KeepAlive) -> Arc<Shared> {
        let period = options.period(self.ttl);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                valid_until: self.valid_until,
                lost: None,
                stopped: false,
                renewing: false,
                hold_until: options.cap().and_then(|cap| self.acquired.checked_add(cap)),
                next_renewal: self.acquired + period,
                callbacks: Vec::new(),
            }),
            changed: Condvar::new(),
        });
        // The ttl was checked when the lock was taken.
        let checked = self.inner.check_ttl(self.ttl);
        debug_assert!(checked.is_ok(), "a granted ttl is valid");
        if let Ok((ttl_ms, drift)) = checked {
            let entry = Entry {
                key: self.resource.as_ref().to_vec(),
                value: self.value,
                reached: self.reached,
                ttl: self.ttl,
                ttl_ms,
                drift,
                period,
                shared: Arc::clone(&shared),
            };
            self.inner.keeper.keep(&self.inner, entry);
        }
        shared
    }

    /// The lock's last round: its connections go back to the pool unreserved.
    fn release_now(&mut self) -> Result<bool, Error> {
        if self.forked() {
            // A forked child: the lock is its parent's. Nothing shared is touched (another
            // thread of the parent may have held one of the crate's locks at the fork).
            self.reached = NodeSet::default();
            return Err(Error::WrongProcess);
        }
        let inner = &self.inner;
        let mut call = inner.nodes.call(Some(self.ticket));
        call.closing();
        let key = self.resource.as_ref();
        let result = inner.release(&mut call, self.reached, key, &self.value);
        // Nothing else will be sent for this lock.
        self.reached = NodeSet::default();
        result
    }
}

impl<R: AsRef<[u8]>> Drop for LockGuard<R> {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: errors cannot be reported from drop, and keys expire on their own.
            let _ = self.release_now();
        } else if !self.reached.is_empty() && !self.forked() {
            self.inner.nodes.forget(self.ticket);
        }
    }
}

impl<R: AsRef<[u8]>> fmt::Debug for LockGuard<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("resource", &String::from_utf8_lossy(self.resource()))
            .field("value", &String::from_utf8_lossy(self.value()))
            .field("remaining", &self.remaining())
            .field("token", &self.token)
            .field("armed", &self.armed)
            .finish()
    }
}
