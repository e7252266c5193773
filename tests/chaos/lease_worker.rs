//! The lease mode of a worker: what it does with a granted lock kept alive as a `Lease`.
//!
//! Three acquisitions in ten are leases, with a ttl of 300 – 800 ms. `keep_alive` right after
//! the grant, renewing every ttl/4 or ttl/3, and in 35 % of leases with a `max_hold` of
//! ttl/2 – 3·ttl/2, shorter than the planned hold of 2 – 5 ttls (at most 2.5 s, and never
//! past the run's end), so `MaxHold` happens. Every 20 – 50 ms the worker looks at the
//! lease ([`Looker::look`]: one [`Sample`], checked on the spot, see `lease.rs`), and after
//! two looks in five runs a critical section: if held with more than the work time + 100 ms
//! left, `GET` the counter, sleep 2 – 15 ms, and `SET` it + 1 only if a new look finds it held
//! with more than 50 ms left. Once a loss is seen it stops working and looks 2 – 5 more
//! times (stickiness), then, or when the planned hold is over, it audits the nodes and
//! releases (85 %) or drops (15 %) the lease.
//!
//! Leases are taken like the other acquisitions (by `lock()` or `lock_within()`, through the
//! fenced manager for the fenced resource); the lease must report the guard's token.

use std::thread;
use std::time::{Duration, Instant};

use resplock::{KeepAlive, Lease, LockGuard};

use crate::lease::{LeaseRecord, LostKind, Sample};
use crate::model::{nanos, Acquisition, Clock, Counts, Ending, Ns, Rng};
use crate::support::Raw;
use crate::{
    counter_key, lock_key, release_ending, Auditor, WorkerSpec, WORK_MARGIN, WORK_MS, WRITE_MARGIN,
};

/// Share of the acquisitions that become leases (decided before `lock()`).
pub const LEASE_PER_MILLE: u64 = 300;
/// Lease ttls: the shorter ones of the plain list, so that a lease's several ttls do not
/// keep the resources from the plain acquisitions for long (and renewals come often).
pub const LEASE_TTLS_MS: [u64; 3] = [300, 500, 800];
/// Share of leases with a `max_hold`.
const CAP_PER_MILLE: u64 = 350;
/// Planned hold, in ttls, and its ceiling.
const HOLD_TTLS: (u64, u64) = (2, 5);
const MAX_HOLD_TIME: Duration = Duration::from_millis(2500);
/// Between two looks at the lease, in ms.
const LOOK_EVERY_MS: (u64, u64) = (20, 50);
/// Chance per look (when held) of a critical section.
const WORK_PER_MILLE: u64 = 400;
/// Looks after the loss was first seen, before letting go.
const LOOKS_AFTER_LOSS: (u64, u64) = (2, 5);
const DROP_PER_MILLE: u64 = 150;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Looks at one lease and keeps the record.
struct Looker<'a> {
    lease: &'a Lease<String>,
    clock: Clock,
    record: LeaseRecord,
    /// The grant's validity end.
    initial: Ns,
    /// `granted + max_hold + ttl`, with a cap.
    cap_end: Option<Ns>,
}

impl Looker<'_> {
    /// One look, as a holder checks before acting: whether the lease is held, and the validity
    /// left. The observation point is the clock read just before `is_held()`.
    fn look(&mut self) -> (bool, Duration) {
        let before = self.clock.now();
        let held = self.lease.is_held();
        let valid_until = self.clock.ns(self.lease.valid_until());
        let lost = self.lease.lost().map(LostKind::from_lost);
        let remaining = self.lease.remaining();
        let after = self.clock.now();
        let sample = Sample {
            before,
            held,
            valid_until,
            lost,
            remaining_zero: remaining.is_zero(),
            after,
        };
        self.record.observe(&sample, self.initial, self.cap_end);
        (held, remaining)
    }
}

/// Keeps a granted lock alive as a lease, works under it, lets it go. `acq` is the grant's
/// record (times, path, token); returns it completed.
pub fn hold_lease(
    guard: LockGuard<String>,
    mut acq: Acquisition,
    spec: &WorkerSpec,
    rng: &mut Rng,
    (counter, auditor): (&mut Raw, &mut Auditor),
    counts: &mut Counts,
) -> Acquisition {
    let clock = spec.clock;
    let (resource, ttl_ms, granted, valid_until) =
        (acq.resource, acq.ttl_ms, acq.granted, acq.valid_until);
    let granted_at = clock.instant(granted);
    let ttl = Duration::from_millis(ttl_ms);
    let every = if rng.chance(500) { ttl / 4 } else { ttl / 3 };
    let cap = rng
        .chance(CAP_PER_MILLE)
        .then(|| rng.millis(ttl_ms / 2, ttl_ms * 3 / 2));
    let mut options = KeepAlive::default().every(every);
    if let Some(cap) = cap {
        options = options.max_hold(cap);
    }
    let planned = rng
        .millis(HOLD_TTLS.0 * ttl_ms, HOLD_TTLS.1 * ttl_ms)
        .min(MAX_HOLD_TIME);
    let until = (granted_at + planned).min(spec.end);
    let lease = guard.keep_alive(options);
    // The lease carries the guard's token (the fencing line checks the token recorded from
    // the guard).
    if lease.token() != acq.token {
        counts.bump("token.lease-differs");
    }

    let mut looker = Looker {
        lease: &lease,
        clock,
        record: LeaseRecord::new(millis(every), cap.map(millis)),
        initial: valid_until,
        cap_end: cap.map(|cap| granted + nanos(cap) + nanos(ttl)),
    };
    let lock_key = lock_key(resource);
    looker.look();
    acq.audit_grant = Some(auditor.audit(&lock_key, lease.value(), &clock));
    let mut looks_left =
        rng.below(LOOKS_AFTER_LOSS.1 - LOOKS_AFTER_LOSS.0 + 1) + LOOKS_AFTER_LOSS.0;
    loop {
        thread::sleep(rng.millis(LOOK_EVERY_MS.0, LOOK_EVERY_MS.1));
        let (held, _) = looker.look();
        if Instant::now() >= until {
            break;
        }
        if !held {
            if looks_left == 0 {
                break;
            }
            looks_left -= 1;
        } else if rng.chance(WORK_PER_MILLE) {
            critical_section(&mut looker, resource, rng, counter, &mut acq, counts);
        }
    }
    thread::sleep(rng.millis(0, 20));
    looker.look();
    acq.audit_end = Some(auditor.audit(&lock_key, lease.value(), &clock));
    let Looker { record, .. } = looker;
    acq.lease = Some(record);

    acq.release_start = Some(clock.now());
    if rng.chance(DROP_PER_MILLE) {
        drop(lease);
        acq.release_end = Some(clock.now());
        acq.ending = Ending::Dropped;
    } else {
        let result = lease.release();
        acq.release_end = Some(clock.now());
        acq.ending = release_ending(result, counts);
    }
    acq
}

/// A read-modify-write of the counter that loses updates if two holders overlap, done only
/// while the lease is held with time to spare.
fn critical_section(
    looker: &mut Looker<'_>,
    resource: usize,
    rng: &mut Rng,
    counter: &mut Raw,
    acq: &mut Acquisition,
    counts: &mut Counts,
) {
    let key = counter_key(resource);
    let work = rng.millis(WORK_MS.0, WORK_MS.1);
    let (held, remaining) = looker.look();
    if !held || remaining <= work + WORK_MARGIN {
        counts.bump("lease-cs.skipped-short");
        return;
    }
    let before: u64 = counter.get(&key).map_or(0, |v| {
        String::from_utf8_lossy(&v)
            .parse()
            .unwrap_or_else(|e| panic!("chaos: counter {key} holds {v:?}: {e}"))
    });
    thread::sleep(work);
    let (held, remaining) = looker.look();
    if !held || remaining <= WRITE_MARGIN {
        counts.bump("lease-cs.skipped-late");
        return;
    }
    counter.set(&key, (before + 1).to_string());
    acq.increments += 1;
    counts.bump("lease-cs.increment");
    let (still, _) = looker.look();
    if !still {
        acq.overran = true;
        counts.bump("lease-cs.overran");
    }
}
