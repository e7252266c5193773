//! Getting, keeping and inspecting the lock: the one module that knows how the library does
//! it (beyond `extend_by` and `release_by`), so API changes land here.
//!
//! Contract:
//! - [`acquire`] waits as `--wait`/`--no-wait` say, ends the wait at once on a caught signal,
//!   gives up early when nodes refuse us for configuration reasons, and warns once on stderr
//!   while waiting through an outage. A failed attempt leaves no key behind (the library
//!   releases it).
//! - [`keep_alive`] has the library renew the lock every ttl/3 until released; the lease's
//!   `lost()` says why it stopped holding: a quorum no longer holds our value (`Taken`), no
//!   renewal reached a quorum before the validity ran out (`Expired`), or the cap was reached
//!   (`MaxHold`: renewal stopped there, and the lock ends within one ttl unless released).

use std::time::{Duration, Instant};

pub use resplock::Lost;
use resplock::{Error, KeepAlive, LockGuard, Redlock};

use crate::args::{format_duration, Wait};
use crate::signals::{exit_status, Signals};
use crate::{Failure, CONFIG, UNAVAILABLE};

/// The guard every subcommand holds.
pub type Guard = LockGuard<Vec<u8>>;

/// A guard being renewed in the background.
pub type Lease = resplock::Lease<Vec<u8>>;

/// Longest single attempt while waiting (a signal is noticed between attempts).
const SLICE: Duration = Duration::from_millis(250);

/// Pause after a failed attempt before the next one, plus [`jitter`].
const PAUSE: Duration = Duration::from_millis(100);

/// Takes the lock on `resource`, waiting as `wait` says. See the module contract.
pub fn acquire(
    dlm: &Redlock,
    resource: &[u8],
    ttl: Duration,
    wait: Wait,
    signals: &mut Signals,
) -> Result<Guard, Failure> {
    let name = String::from_utf8_lossy(resource).into_owned();
    let started = Instant::now();
    let deadline = match wait {
        Wait::No => Some(started),
        Wait::Within(d) => started.checked_add(d),
        Wait::Forever => None,
    };
    let gave_up = match wait {
        Wait::No => format!("{name}: not acquired (--no-wait)"),
        Wait::Within(d) => format!("{name}: not acquired within {}", format_duration(d)),
        Wait::Forever => format!("{name}: not acquired"),
    };
    let mut warned = false;
    loop {
        if let Some(signal) = signals.pending() {
            return Err(interrupted(&name, signal));
        }
        let left = deadline.map_or(SLICE, |d| d.saturating_duration_since(Instant::now()));
        let err = match attempt(dlm, resource, ttl, left.min(SLICE)) {
            Ok(guard) => return Ok(guard),
            Err(err) => err,
        };
        let failure = Failure::from_lib(&err, dlm.nodes().len());
        let retry = matches!(err, Error::NotAcquired { .. }) && failure.status != CONFIG;
        if !retry || deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(failure.context(&gave_up));
        }
        if failure.status == UNAVAILABLE && !warned {
            eprintln!("resplock: {name}: still waiting: {}", failure.message);
            warned = true;
        }
        let pause = deadline.map_or(PAUSE, |d| d.saturating_duration_since(Instant::now()));
        let until = Instant::now() + pause.min(PAUSE) + jitter();
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if let Some(signal) = signals.pending() {
                return Err(interrupted(&name, signal));
            }
            std::thread::sleep(left.min(Duration::from_millis(10)));
        }
    }
}

/// The failure for a signal that ended the wait: status 128+N, nothing run or held.
pub fn interrupted(name: &str, signal: nix::sys::signal::Signal) -> Failure {
    Failure::new(
        exit_status(signal),
        format!(
            "{name}: interrupted by {} while waiting for the lock; nothing was run",
            signal.as_str()
        ),
    )
}

/// A few tens of milliseconds that differ between processes, so waiters do not retry in
/// lockstep (the clock's nanoseconds are random enough for that, and need no generator).
fn jitter() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_nanos(u64::from(nanos % 50_000_000))
}

/// What `resplock` says about each way of losing a lock.
pub fn describe(why: Lost) -> &'static str {
    match why {
        Lost::Taken => "taken: the nodes no longer hold our value (deleted, or expired and taken)",
        Lost::Expired => {
            "expired: it could not be renewed before its validity ran out (nodes down or slow)"
        }
        Lost::MaxHold => "--max-hold reached",
        _ => "lost",
    }
}

/// Renews `guard` every `ttl / 3` in the background, for at most `max_hold`.
pub fn keep_alive(guard: Guard, ttl: Duration, max_hold: Option<Duration>) -> Lease {
    let every = KeepAlive::default().every(ttl / 3);
    guard.keep_alive(max_hold.map_or(every, |cap| every.max_hold(cap)))
}

/// What `inspect` found.
pub struct Seen {
    pub locked: bool,
    pub holder: Option<Vec<u8>>,
    pub remaining: Option<Duration>,
}

/// Who holds `resource`, and for how long.
pub fn inspect(dlm: &Redlock, resource: &[u8]) -> Result<Seen, Failure> {
    let found = dlm.inspect(resource).map_err(|e| {
        Failure::from_lib(&e, dlm.nodes().len()).context(&String::from_utf8_lossy(resource))
    })?;
    Ok(Seen {
        locked: found.is_locked(),
        holder: found.holder().map(<[u8]>::to_vec),
        remaining: found.remaining(),
    })
}

/// The lock manager: one attempt per call, since [`acquire`] does the waiting.
pub fn manager(nodes: &[String], fencing: bool) -> Result<Redlock, Failure> {
    let dlm = Redlock::builder()
        .nodes(nodes)
        .retries(0)
        .fencing(fencing)
        .build();
    dlm.map_err(|e| Failure::from_lib(&e, nodes.len()))
}

/// One attempt, waiting up to `slice` for a release (woken by it, not polling).
fn attempt(dlm: &Redlock, resource: &[u8], ttl: Duration, slice: Duration) -> Result<Guard, Error> {
    if slice.is_zero() {
        dlm.try_lock(resource.to_vec(), ttl)
    } else {
        dlm.lock_within(resource.to_vec(), ttl, slice)
    }
}

/// The guard's fencing token.
pub fn token(guard: &Guard) -> Option<u64> {
    guard.token()
}

/// The lease's fencing token.
pub fn lease_token(lease: &Lease) -> Option<u64> {
    lease.token()
}
