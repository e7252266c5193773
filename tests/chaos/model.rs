//! The parts of the chaos test that do no I/O: the shared monotonic clock, the seeded PRNG,
//! the records workers keep (with their one-line text form, which child processes print), and
//! the exclusion checker. Unit tests at the bottom check the checker itself. A record's lease
//! part lives in `lease.rs`, its grant path and fencing token in `grants.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::grants::Via;
use crate::lease::LeaseRecord;

/// Nanoseconds on the operating system's monotonic clock (`CLOCK_MONOTONIC` on Linux).
pub type Ns = u64;

/// Reads an `Instant` as nanoseconds of `CLOCK_MONOTONIC` (`support::measure::monotonic_ns`):
/// one clock for the whole machine, so child processes and the parent put their records on one
/// timeline without `libc` and without `unsafe`. The reading relies on `Instant`'s `Debug`
/// output, which is not a stable API, so [`Clock::new`] verifies it and the test falls back to
/// threads only when it does not hold.
pub fn instant_ns(instant: Instant) -> Option<Ns> {
    crate::support::measure::monotonic_ns(instant)
}

/// Converts `Instant`s to [`Ns`] and back. With `shared`, the numbers are `CLOCK_MONOTONIC`
/// itself (comparable across processes); without, they only make sense in this process.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
    base_ns: Ns,
    shared: bool,
}

impl Clock {
    /// A clock anchored now. It is `shared` when [`instant_ns`] parses and agrees exactly with
    /// `Instant` arithmetic on two readings taken apart.
    pub fn new() -> Clock {
        let base = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        let later = Instant::now();
        let parsed = instant_ns(base).zip(instant_ns(later));
        match parsed {
            Some((a, b))
                if b.checked_sub(a).map(u128::from)
                    == Some(later.duration_since(base).as_nanos()) =>
            {
                Clock {
                    base,
                    base_ns: a,
                    shared: true,
                }
            }
            // Any positive origin works within one process.
            _ => Clock {
                base,
                base_ns: 1 << 50,
                shared: false,
            },
        }
    }

    /// True when [`Ns`] values from this clock can be compared with other processes' values.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    pub fn ns(&self, instant: Instant) -> Ns {
        if instant >= self.base {
            self.base_ns + nanos(instant - self.base)
        } else {
            self.base_ns.saturating_sub(nanos(self.base - instant))
        }
    }

    pub fn now(&self) -> Ns {
        self.ns(Instant::now())
    }

    pub fn instant(&self, ns: Ns) -> Instant {
        if ns >= self.base_ns {
            self.base + Duration::from_nanos(ns - self.base_ns)
        } else {
            self.base - Duration::from_nanos(self.base_ns - ns)
        }
    }
}

pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// xorshift64* seeded through splitmix64: small, deterministic, no dependency. One stream per
/// worker and one for the nemesis, all derived from the run's seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut z = seed
            .wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // Zero is xorshift's fixed point.
        Rng(if z == 0 { 1 } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, n)` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        let wide = u128::from(self.next_u64()) * u128::from(n);
        u64::try_from(wide >> 64).unwrap_or(0)
    }

    pub fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// Uniform in `[lo, hi]` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo) + 1))
    }

    /// A name drawn with the given weights.
    pub fn weighted<T: Copy>(&mut self, table: &[(T, u64)]) -> T {
        let total: u64 = table.iter().map(|&(_, w)| w).sum();
        let mut roll = self.below(total);
        for &(item, weight) in table {
            if roll < weight {
                return item;
            }
            roll -= weight;
        }
        table[table.len() - 1].0
    }
}

/// Named event counters (acquisitions, failures by kind, node causes, ...), mergeable across
/// threads and processes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts(pub BTreeMap<String, u64>);

impl Counts {
    pub fn bump(&mut self, name: impl Into<String>) {
        self.add(name, 1);
    }

    pub fn add(&mut self, name: impl Into<String>, n: u64) {
        *self.0.entry(name.into()).or_default() += n;
    }

    pub fn merge(&mut self, other: &Counts) {
        for (name, n) in &other.0 {
            self.add(name.clone(), *n);
        }
    }

    /// `name=n` for every counter whose name starts with `prefix` (prefix stripped).
    pub fn list(&self, prefix: &str) -> String {
        let items: Vec<String> = self
            .0
            .iter()
            .filter_map(|(name, n)| Some(format!("{}={n}", name.strip_prefix(prefix)?)))
            .collect();
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(" ")
        }
    }
}

/// How an acquisition ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// `release()` returned `Ok(true)`.
    Released,
    /// `release()` returned `Ok(false)`: a quorum no longer held our value.
    Lost,
    /// `release()` returned `Err(ReleaseUncertain)`.
    Uncertain,
    /// `release()` returned another error.
    Failed,
    /// The guard was dropped (best-effort release).
    Dropped,
    /// Disarmed and dropped: never released, the keys expire (a crashed client).
    Abandoned,
}

impl Ending {
    pub const EVERY: [Ending; 6] = [
        Ending::Released,
        Ending::Lost,
        Ending::Uncertain,
        Ending::Failed,
        Ending::Dropped,
        Ending::Abandoned,
    ];

    const ALL: [(Ending, char); 6] = [
        (Ending::Released, 'R'),
        (Ending::Lost, 'L'),
        (Ending::Uncertain, 'U'),
        (Ending::Failed, 'F'),
        (Ending::Dropped, 'D'),
        (Ending::Abandoned, 'A'),
    ];

    fn code(self) -> char {
        Self::ALL
            .iter()
            .find(|(e, _)| *e == self)
            .map_or('?', |&(_, c)| c)
    }

    fn from_code(code: &str) -> Option<Ending> {
        Self::ALL
            .iter()
            .find(|(_, c)| code.len() == 1 && code.starts_with(*c))
            .map(|&(e, _)| e)
    }
}

/// One `extend` call on a held lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// The ttl asked for.
    pub ttl_ms: u64,
    /// Just before the call.
    pub start: Ns,
    /// Just after it returned.
    pub returned: Ns,
    /// `guard.valid_until()` after the call: the new validity on success, the unchanged old
    /// one on failure (that is what the guard then tells its holder).
    pub valid_until: Ns,
    pub ok: bool,
    /// On `NotExtended`: nodes that answered that they did not hold our value.
    pub not_held: u64,
}

/// What each node held under the lock's key, read directly (not through the proxies) by the
/// worker itself: one character per node, `O` our value, `x` another value, `-` no key, `?`
/// could not tell (paused, down, loading, timed out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audit {
    /// When the last node had been asked.
    pub at: Ns,
    pub seen: String,
}

impl Audit {
    /// Nodes that hold our value or may (could not tell).
    pub fn backing(&self) -> u64 {
        self.seen.chars().filter(|&c| c == 'O' || c == '?').count() as u64
    }

    fn to_field(audit: Option<&Audit>) -> String {
        audit.map_or_else(|| "-".to_owned(), |a| format!("{}:{}", a.at, a.seen))
    }

    fn from_field(field: &str) -> Option<Option<Audit>> {
        if field == "-" {
            return Some(None);
        }
        let (at, seen) = field.split_once(':')?;
        Some(Some(Audit {
            at: at.parse().ok()?,
            seen: seen.to_owned(),
        }))
    }
}

/// One successful acquisition and what its holder did with it. Times are [`Ns`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acquisition {
    /// `p<process>t<thread>`.
    pub owner: String,
    /// Per owner, in order.
    pub seq: u64,
    pub resource: usize,
    pub ttl_ms: u64,
    /// Just before `lock()` / `lock_within()` was called: the call start, before its first
    /// command was sent (a long call had failed attempts before the grant).
    pub requested: Ns,
    /// Just after `lock()` / `lock_within()` returned the guard.
    pub granted: Ns,
    /// `guard.valid_until()` at that moment.
    pub valid_until: Ns,
    pub extensions: Vec<Extension>,
    /// Just before `release()` / the drop; `None` for an abandoned lock.
    pub release_start: Option<Ns>,
    /// Just after `release()` / the drop returned.
    pub release_end: Option<Ns>,
    pub ending: Ending,
    /// The nodes right after the grant, and just before the release (or drop, or walking
    /// away).
    pub audit_grant: Option<Audit>,
    pub audit_end: Option<Audit>,
    /// Counter increments done under this lock (0 or 1; any number under a lease).
    pub increments: u64,
    /// An increment's write finished after the validity had run out (for a lease: after it,
    /// `is_held()` returned false).
    pub overran: bool,
    /// The call that granted the lock.
    pub via: Via,
    /// The grant's fencing token (`guard.token()`; only grants through a fenced manager
    /// have one).
    pub token: Option<u64>,
    /// The `max_wait` of a grant by `lock_within`.
    pub max_wait_ms: Option<u64>,
    /// The lock's value (hex, unique per acquisition): to follow its keys on the nodes
    /// (`monitor.rs`). Empty when unknown.
    pub value: String,
    /// Set when the guard was kept alive as a lease: what its holder saw.
    pub lease: Option<LeaseRecord>,
}

impl Acquisition {
    /// A fresh record of a grant by `lock()`: not released yet (so `Abandoned` until told
    /// otherwise), nothing done under it.
    pub fn new(
        owner: &str,
        seq: u64,
        resource: usize,
        ttl_ms: u64,
        (requested, granted, valid_until): (Ns, Ns, Ns),
    ) -> Acquisition {
        Acquisition {
            owner: owner.to_owned(),
            seq,
            resource,
            ttl_ms,
            requested,
            granted,
            valid_until,
            extensions: Vec::new(),
            release_start: None,
            release_end: None,
            ending: Ending::Abandoned,
            audit_grant: None,
            audit_end: None,
            increments: 0,
            overran: false,
            via: Via::Lock,
            token: None,
            max_wait_ms: None,
            value: String::new(),
            lease: None,
        }
    }

    /// The validity the guard reported last (for a lease: the last one seen while held).
    pub fn final_valid_until(&self) -> Ns {
        if let Some(lease) = &self.lease {
            return lease.last_validity(self.valid_until);
        }
        self.extensions
            .last()
            .map_or(self.valid_until, |e| e.valid_until)
    }

    /// Evidence that a node which granted this lock lost the key before it could have
    /// expired: while the validity the guard reported still ran, an audit found fewer than
    /// `quorum` nodes that held our value or could not tell, or a quorum answered "not our
    /// value" to an `extend`. Each granting quorum and each "not ours" quorum share a node,
    /// and keys outlive `valid_until`. (`release()` returning `Ok(false)` is not used as
    /// evidence: see [`Acquisition::release_misreported`].)
    pub fn lost_while_valid(&self, quorum: u64) -> Option<String> {
        if let Some(audit) = &self.audit_grant {
            if audit.at < self.valid_until && audit.backing() < quorum {
                return Some(format!(
                    "right after the grant only {} nodes held our value or could not tell \
                     (nodes: {})",
                    audit.backing(),
                    audit.seen
                ));
            }
        }
        let mut valid_until = self.valid_until;
        for e in &self.extensions {
            if !e.ok && e.not_held >= quorum && e.returned < valid_until {
                return Some(format!(
                    "extend({}ms) found {} nodes without our value",
                    e.ttl_ms, e.not_held
                ));
            }
            valid_until = e.valid_until;
        }
        // A lease's audit is held to the validity its holder had seen by then.
        if let (Some(lease), Some(audit)) = (&self.lease, &self.audit_end) {
            valid_until = lease.validity_at(audit.at, valid_until);
        }
        match &self.audit_end {
            Some(audit) if audit.at < valid_until && audit.backing() < quorum => Some(format!(
                "before the release only {} nodes held our value or could not tell (nodes: {})",
                audit.backing(),
                audit.seen
            )),
            _ => None,
        }
    }

    /// `release()` returned `Ok(false)` ("a quorum no longer held our value") while the
    /// validity ran, although just before it at least `quorum` nodes held our value or could
    /// not tell: either the release misread the nodes, or keys vanished in between (which
    /// keys that outlive the validity cannot do on their own).
    pub fn release_misreported(&self, quorum: u64) -> Option<String> {
        let (Ending::Lost, Some(end), Some(audit)) =
            (self.ending, self.release_end, self.audit_end.as_ref())
        else {
            return None;
        };
        (end < self.final_valid_until() && audit.backing() >= quorum).then(|| {
            format!(
                "release() returned Ok(false) although just before it the nodes showed {}",
                audit.seen
            )
        })
    }

    /// The intervals during which the holder may act on the resource: from the grant to the
    /// validity end, cut at the release start, and with a hole while each `extend` call is in
    /// flight (the holder cannot act then, and afterwards it acts on the validity the call
    /// left in the guard). Half-open `[start, end)`, empty ones dropped.
    ///
    /// A lease is one segment, from the grant to the later of the grant's validity and the
    /// last observation point of an `is_held()` that returned true, cut at the release start
    /// (see `lease.rs`).
    pub fn segments(&self) -> Vec<(Ns, Ns)> {
        if let Some(lease) = &self.lease {
            let end = lease.holder_end(self.valid_until);
            let end = self.release_start.map_or(end, |r| end.min(r));
            return if end > self.granted {
                vec![(self.granted, end)]
            } else {
                Vec::new()
            };
        }
        let mut out = Vec::with_capacity(self.extensions.len() + 1);
        let mut from = self.granted;
        let mut until = self.valid_until;
        for ext in &self.extensions {
            out.push((from, until.min(ext.start)));
            from = ext.returned;
            until = ext.valid_until;
        }
        let end = self.release_start.map_or(until, |r| until.min(r));
        out.push((from, end));
        out.retain(|&(s, e)| e > s);
        out
    }

    /// One line, `CHAOS|acq|...`, parsed back by [`Acquisition::from_line`]: 15 positional
    /// fields, then optional `name=value` fields for what not every record has (`via=` when
    /// not `lock`, `token=`, `wait=`, `value=`, `lease=`). A new optional part is one more name here and in
    /// [`Acquisition::from_line`].
    pub fn to_line(&self) -> String {
        let opt = |v: Option<Ns>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        let mut exts = String::new();
        for (i, e) in self.extensions.iter().enumerate() {
            if i > 0 {
                exts.push(';');
            }
            let _ = write!(
                exts,
                "{}:{}:{}:{}:{}:{}",
                e.ttl_ms,
                e.start,
                e.returned,
                e.valid_until,
                u8::from(e.ok),
                e.not_held
            );
        }
        if exts.is_empty() {
            exts.push('-');
        }
        format!(
            "{LINE_PREFIX}acq|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.owner,
            self.seq,
            self.resource,
            self.ttl_ms,
            self.requested,
            self.granted,
            self.valid_until,
            opt(self.release_start),
            opt(self.release_end),
            self.ending.code(),
            self.increments,
            u8::from(self.overran),
            exts,
            Audit::to_field(self.audit_grant.as_ref()),
            Audit::to_field(self.audit_end.as_ref()),
        ) + &self.optional_fields()
    }

    fn optional_fields(&self) -> String {
        let mut out = String::new();
        if self.via != Via::Lock {
            let _ = write!(out, "|via={}", self.via.name());
        }
        if let Some(token) = self.token {
            let _ = write!(out, "|token={token}");
        }
        if let Some(ms) = self.max_wait_ms {
            let _ = write!(out, "|wait={ms}");
        }
        if !self.value.is_empty() {
            let _ = write!(out, "|value={}", self.value);
        }
        if let Some(lease) = &self.lease {
            let _ = write!(out, "|lease={}", lease.to_field());
        }
        out
    }

    pub fn from_line(line: &str) -> Option<Acquisition> {
        let rest = line.strip_prefix(LINE_PREFIX)?.strip_prefix("acq|")?;
        let f: Vec<&str> = rest.split('|').collect();
        if f.len() < 15 {
            return None;
        }
        let opt = |s: &str| -> Option<Option<Ns>> {
            if s == "-" {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        let mut extensions = Vec::new();
        if f[12] != "-" {
            for item in f[12].split(';') {
                let p: Vec<&str> = item.split(':').collect();
                if p.len() != 6 {
                    return None;
                }
                extensions.push(Extension {
                    ttl_ms: p[0].parse().ok()?,
                    start: p[1].parse().ok()?,
                    returned: p[2].parse().ok()?,
                    valid_until: p[3].parse().ok()?,
                    ok: p[4] == "1",
                    not_held: p[5].parse().ok()?,
                });
            }
        }
        let mut acq = Acquisition {
            owner: f[0].to_owned(),
            seq: f[1].parse().ok()?,
            resource: f[2].parse().ok()?,
            ttl_ms: f[3].parse().ok()?,
            requested: f[4].parse().ok()?,
            granted: f[5].parse().ok()?,
            valid_until: f[6].parse().ok()?,
            release_start: opt(f[7])?,
            release_end: opt(f[8])?,
            ending: Ending::from_code(f[9])?,
            increments: f[10].parse().ok()?,
            overran: f[11] == "1",
            extensions,
            audit_grant: Audit::from_field(f[13])?,
            audit_end: Audit::from_field(f[14])?,
            via: Via::Lock,
            token: None,
            max_wait_ms: None,
            value: String::new(),
            lease: None,
        };
        for field in &f[15..] {
            match field.split_once('=')? {
                ("via", name) => acq.via = Via::from_name(name)?,
                ("token", token) => acq.token = Some(token.parse().ok()?),
                ("wait", ms) => acq.max_wait_ms = Some(ms.parse().ok()?),
                ("value", value) => acq.value = value.to_owned(),
                ("lease", lease) => acq.lease = Some(LeaseRecord::from_field(lease)?),
                _ => return None,
            }
        }
        Some(acq)
    }
}

/// Every line a child prints for the parent starts with this.
pub const LINE_PREFIX: &str = "CHAOS|";

/// `CHAOS|count|name|n` lines for `counts`.
pub fn counts_to_lines(counts: &Counts) -> String {
    let mut out = String::new();
    for (name, n) in &counts.0 {
        let _ = writeln!(out, "{LINE_PREFIX}count|{name}|{n}");
    }
    out
}

/// Parses one `CHAOS|count|name|n` line.
pub fn count_from_line(line: &str) -> Option<(String, u64)> {
    let rest = line.strip_prefix(LINE_PREFIX)?.strip_prefix("count|")?;
    let (name, n) = rest.rsplit_once('|')?;
    Some((name.to_owned(), n.parse().ok()?))
}

/// Two acquisitions of one resource whose holder intervals overlap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlap {
    pub resource: usize,
    /// Indexes into the checked slice; `first` started first.
    pub first: usize,
    pub second: usize,
    /// When the second holder's overlapping segment started.
    pub at: Ns,
    pub overlap_ns: u64,
}

/// What the exclusion check found for all resources.
#[derive(Clone, Debug, Default)]
pub struct Exclusion {
    pub overlaps: Vec<Overlap>,
    /// Per resource: the smallest gap between one holder's end and the next holder's start
    /// (how tight the hand-overs were), when there were two holders.
    pub closest_handover: Vec<Option<u64>>,
    /// Per resource: holder segments checked.
    pub segments: Vec<usize>,
}

impl Exclusion {
    pub fn max_overlap_ns(&self) -> u64 {
        self.overlaps
            .iter()
            .map(|o| o.overlap_ns)
            .max()
            .unwrap_or(0)
    }
}

/// For each resource, checks that no two acquisitions' [`Acquisition::segments`] overlap.
pub fn check_exclusion(acqs: &[Acquisition], resources: usize) -> Exclusion {
    let mut result = Exclusion::default();
    for resource in 0..resources {
        let mut segs: Vec<(Ns, Ns, usize)> = acqs
            .iter()
            .enumerate()
            .filter(|(_, a)| a.resource == resource)
            .flat_map(|(i, a)| a.segments().into_iter().map(move |(s, e)| (s, e, i)))
            .collect();
        segs.sort_unstable();
        result.segments.push(segs.len());
        let mut active: Vec<(Ns, usize)> = Vec::new();
        // The latest end so far, and whose it was.
        let mut latest: Option<(Ns, usize)> = None;
        let mut closest: Option<u64> = None;
        let mut seen_pairs: Vec<(usize, usize)> = Vec::new();
        for &(start, end, who) in &segs {
            active.retain(|&(e, _)| e > start);
            for &(other_end, other) in &active {
                if other != who && !seen_pairs.contains(&(other, who)) {
                    seen_pairs.push((other, who));
                    result.overlaps.push(Overlap {
                        resource,
                        first: other,
                        second: who,
                        at: start,
                        overlap_ns: other_end.min(end) - start,
                    });
                }
            }
            if let Some((latest_end, owner)) = latest {
                if owner != who && latest_end <= start {
                    let gap = start - latest_end;
                    closest = Some(closest.map_or(gap, |c| c.min(gap)));
                }
            }
            if latest.is_none_or(|(e, _)| end >= e) {
                latest = Some((end, who));
            }
            active.push((end, who));
        }
        result.closest_handover.push(closest);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acq(owner: &str, resource: usize, granted: Ns, valid_until: Ns) -> Acquisition {
        Acquisition::new(owner, 0, resource, 1000, (granted, granted, valid_until))
    }

    #[test]
    fn checker_accepts_hand_overs_and_flags_overlaps() {
        // a holds [100, 200) (released at 150), b takes over at 150: touching is fine.
        let mut a = acq("a", 0, 100, 200);
        a.release_start = Some(150);
        a.ending = Ending::Released;
        let b = acq("b", 0, 150, 400);
        // c holds another resource at the same time.
        let c = acq("c", 1, 120, 300);
        let ok = check_exclusion(&[a.clone(), b.clone(), c], 2);
        assert!(ok.overlaps.is_empty(), "{:?}", ok.overlaps);
        assert_eq!(ok.closest_handover[0], Some(0));
        assert_eq!(ok.segments, vec![2, 1]);

        // d starts while b is valid: 50 ns of overlap, reported once.
        let d = acq("d", 0, 350, 500);
        let bad = check_exclusion(&[a, b, d], 1);
        assert_eq!(bad.overlaps.len(), 1, "{:?}", bad.overlaps);
        assert_eq!(
            bad.overlaps[0],
            Overlap {
                resource: 0,
                first: 1,
                second: 2,
                at: 350,
                overlap_ns: 50
            }
        );
        assert_eq!(bad.max_overlap_ns(), 50);
    }

    #[test]
    fn segments_follow_extensions_and_release() {
        let mut a = acq("a", 0, 100, 200);
        // Extended at 150..160 to 400, then a failed extend at 300..310 keeps 400; released at 350.
        a.extensions.push(Extension {
            ttl_ms: 100,
            start: 150,
            returned: 160,
            valid_until: 400,
            ok: true,
            not_held: 0,
        });
        a.extensions.push(Extension {
            ttl_ms: 100,
            start: 300,
            returned: 310,
            valid_until: 400,
            ok: false,
            not_held: 0,
        });
        a.release_start = Some(350);
        assert_eq!(a.segments(), vec![(100, 150), (160, 300), (310, 350)]);
        assert_eq!(a.final_valid_until(), 400);
        // An extension that returns after the validity: the gap is not held.
        let mut b = acq("b", 0, 100, 200);
        b.extensions.push(Extension {
            ttl_ms: 100,
            start: 190,
            returned: 260,
            valid_until: 500,
            ok: true,
            not_held: 0,
        });
        assert_eq!(b.segments(), vec![(100, 190), (260, 500)]);
        // Someone holding [200, 250) does not overlap b, someone at [180, 195) does.
        let c = acq("c", 0, 200, 250);
        assert!(check_exclusion(&[b.clone(), c], 1).overlaps.is_empty());
        let d = acq("d", 0, 180, 195);
        assert_eq!(check_exclusion(&[b, d], 1).overlaps.len(), 1);
    }

    #[test]
    fn lost_while_valid_needs_a_quorum_saying_not_ours_in_time() {
        let mut a = acq("a", 0, 100, 200);
        a.ending = Ending::Lost;
        a.release_start = Some(150);
        a.release_end = Some(160);
        a.audit_end = Some(Audit {
            at: 149,
            seen: "OO?--".to_owned(),
        });
        assert!(a.lost_while_valid(3).is_none());
        assert!(a.release_misreported(3).is_some());
        a.audit_end = Some(Audit {
            at: 149,
            seen: "OO---".to_owned(),
        });
        assert!(a.lost_while_valid(3).is_some());
        assert!(a.release_misreported(3).is_none());
        a.audit_end = None;
        a.release_end = Some(210);
        assert!(a.release_misreported(3).is_none());
        a.extensions.push(Extension {
            ttl_ms: 100,
            start: 120,
            returned: 130,
            valid_until: 200,
            ok: false,
            not_held: 2,
        });
        assert!(a.lost_while_valid(3).is_none());
        a.extensions[0].not_held = 3;
        assert!(a.lost_while_valid(3).is_some());

        let mut b = acq("b", 0, 100, 200);
        b.audit_grant = Some(Audit {
            at: 110,
            seen: "OO?x-".to_owned(),
        });
        b.audit_end = Some(Audit {
            at: 150,
            seen: "O??--".to_owned(),
        });
        assert!(b.lost_while_valid(3).is_none());
        b.audit_end = Some(Audit {
            at: 150,
            seen: "O?x--".to_owned(),
        });
        assert!(b.lost_while_valid(3).is_some());
        // After the validity, keys may expire.
        b.audit_end = Some(Audit {
            at: 250,
            seen: "O----".to_owned(),
        });
        assert!(b.lost_while_valid(3).is_none());
    }

    #[test]
    fn records_round_trip_through_lines() {
        let mut a = acq("p1t0", 2, 123, 456);
        a.seq = 7;
        a.release_start = Some(400);
        a.release_end = Some(410);
        a.ending = Ending::Uncertain;
        a.increments = 1;
        a.overran = true;
        a.audit_grant = Some(Audit {
            at: 125,
            seen: "OOO?-".to_owned(),
        });
        a.extensions.push(Extension {
            ttl_ms: 100,
            start: 200,
            returned: 210,
            valid_until: 900,
            ok: true,
            not_held: 0,
        });
        assert_eq!(Acquisition::from_line(&a.to_line()), Some(a.clone()));
        a.via = Via::Within;
        a.token = Some(42);
        a.max_wait_ms = Some(750);
        assert!(a.to_line().ends_with("|via=within|token=42|wait=750"));
        a.value = "0123456789abcdef0123456789abcdef".to_owned();
        assert_eq!(Acquisition::from_line(&a.to_line()), Some(a.clone()));
        a.extensions.clear();
        a.release_start = None;
        a.release_end = None;
        a.ending = Ending::Abandoned;
        assert_eq!(Acquisition::from_line(&a.to_line()), Some(a));
        let mut counts = Counts::default();
        counts.add("lock.ok", 3);
        counts.bump("node.timeout-read");
        let parsed: Vec<_> = counts_to_lines(&counts)
            .lines()
            .filter_map(count_from_line)
            .collect();
        assert_eq!(
            parsed,
            vec![
                ("lock.ok".to_owned(), 3),
                ("node.timeout-read".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = Rng::new(42, 1);
        let mut b = Rng::new(42, 1);
        let mut c = Rng::new(42, 2);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        for _ in 0..1000 {
            assert!(a.below(3) < 3);
            let d = a.millis(5, 7);
            assert!(d >= Duration::from_millis(5) && d <= Duration::from_millis(7));
        }
    }

    #[test]
    fn the_monotonic_clock_is_read_from_instant() {
        let clock = Clock::new();
        if cfg!(target_os = "linux") {
            assert!(clock.is_shared(), "Instant's Debug format changed");
            let now = Instant::now();
            assert_eq!(instant_ns(now), Some(clock.ns(now)));
        }
        let now = Instant::now();
        assert_eq!(clock.instant(clock.ns(now)), now);
    }
}
