//! The lease part of a record, with no I/O: what a worker saw each time it looked at a lease
//! ([`Sample`]), what it keeps of that ([`LeaseRecord`]: the holder's last observation point,
//! the validities seen, the loss, and the contract violations found on the spot), its one-field
//! text form inside a `CHAOS|acq|...` line, and the figures of the summary ([`LeaseStats`]).
//!
//! # The holder interval of a lease
//! `Lease::is_held` reads the monotonic clock itself, under the lease's lock, and answers for
//! that instant `T`: true means the validity ran past `T` and no loss was recorded, so the lock
//! has been ours without a break from the grant until `T` (a renewal is applied only while
//! the validity it extends still runs, and can only push the end later). `T` is unknown to
//! the caller but lies between a clock reading taken just before the call and one taken just
//! after it returned. The reading before the call is the safe observation point: the claim
//! holds at `T >= before`, so it holds at `before` too. The reading after the call is not: a
//! pause between the computation and the return could push it past the validity, and an
//! interval ending there would claim time the lease never vouched for.
//!
//! So a lease's holder interval is `[granted, end)` where `end` is the later of the validity
//! `lock()` reported (the guard's own contract, which the lease starts from) and the last
//! observation point at which `is_held()` returned true, cut at the release start. A lease is
//! one segment: nothing like an `extend` call leaves a hole in it.
//!
//! # Checked on the spot, for every sample
//! - Validity consistency: `valid_until()` read right after an `is_held()` that returned true
//!   is not earlier than that call's observation point (the latest instant at which the lease
//!   was seen held); with `max_hold`, it is no later than `granted + max_hold + ttl` (no
//!   renewal starts after the cap); a loss reported as `Expired` or `MaxHold` comes with a
//!   validity that has ended; `MaxHold` only with a cap.
//! - Stickiness: once `lost()` returned a loss, every later look sees the same loss, `is_held()`
//!   false and `remaining()` zero; `is_held()` false always comes with a loss.

use std::fmt::Write as _;

use crate::model::{Acquisition, Ending, Ns};

/// Why a lease was lost, as `resplock::Lost` says (which is `#[non_exhaustive]`: `Other` is
/// whatever a later version adds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostKind {
    Expired,
    Taken,
    MaxHold,
    Other,
}

impl LostKind {
    pub const ALL: [(LostKind, char, &'static str); 4] = [
        (LostKind::Expired, 'E', "expired"),
        (LostKind::Taken, 'T', "taken"),
        (LostKind::MaxHold, 'M', "max-hold"),
        (LostKind::Other, 'O', "other"),
    ];

    pub fn from_lost(lost: resplock::Lost) -> LostKind {
        match lost {
            resplock::Lost::Expired => LostKind::Expired,
            resplock::Lost::Taken => LostKind::Taken,
            resplock::Lost::MaxHold => LostKind::MaxHold,
            _ => LostKind::Other,
        }
    }

    fn code(self) -> char {
        Self::ALL
            .iter()
            .find(|(k, _, _)| *k == self)
            .map_or('?', |&(_, c, _)| c)
    }

    fn from_code(code: &str) -> Option<LostKind> {
        Self::ALL
            .iter()
            .find(|(_, c, _)| code.len() == 1 && code.starts_with(*c))
            .map(|&(k, _, _)| k)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _, _)| *k == self)
            .map_or("?", |&(_, _, n)| n)
    }
}

/// One look at a lease, in this order: the clock, `is_held()`, `valid_until()`, `lost()`,
/// `remaining()`, the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Just before `is_held()`: the observation point.
    pub before: Ns,
    pub held: bool,
    pub valid_until: Ns,
    pub lost: Option<LostKind>,
    pub remaining_zero: bool,
    /// Just after `remaining()` returned.
    pub after: Ns,
}

/// A contract violation seen in one sample. `at` is the sample's observation point (for
/// `Expired`-style losses, the reading after it); `value` is a validity end, or for
/// [`Violation::STICKY`] what was seen ([`Violation::HELD_AFTER_LOSS`], ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: char,
    pub at: Ns,
    pub value: Ns,
}

impl Violation {
    /// Stickiness: `value` says how.
    pub const STICKY: char = 'S';
    /// `valid_until()` (`value`) earlier than the observation point of a true `is_held()`.
    pub const BEHIND: char = 'V';
    /// Lost as `Expired`/`MaxHold` while the reported validity (`value`) had not ended.
    pub const EARLY_EXPIRY: char = 'E';
    /// A validity (`value`) beyond `granted + max_hold + ttl`.
    pub const PAST_CAP: char = 'C';
    /// `MaxHold` without a cap.
    pub const UNCAPPED_MAX_HOLD: char = 'M';

    pub const HELD_AFTER_LOSS: Ns = 1;
    pub const NOT_HELD_WITHOUT_LOSS: Ns = 2;
    pub const LOSS_CHANGED: Ns = 3;
    pub const REMAINING_AFTER_LOSS: Ns = 4;

    pub fn is_sticky(&self) -> bool {
        self.kind == Self::STICKY
    }

    pub fn describe(&self, rel: &dyn Fn(Ns) -> f64) -> String {
        match self.kind {
            Self::STICKY => format!(
                "not sticky at {:.3}ms: {}",
                rel(self.at),
                match self.value {
                    Self::HELD_AFTER_LOSS => "is_held() true after a loss",
                    Self::NOT_HELD_WITHOUT_LOSS => "is_held() false but lost() None",
                    Self::LOSS_CHANGED => "lost() changed its kind",
                    Self::REMAINING_AFTER_LOSS => "remaining() above zero after a loss",
                    _ => "?",
                }
            ),
            Self::BEHIND => format!(
                "held at {:.3}ms but valid_until() was {:.3}ms",
                rel(self.at),
                rel(self.value)
            ),
            Self::EARLY_EXPIRY => format!(
                "reported expired at {:.3}ms with valid_until() {:.3}ms",
                rel(self.at),
                rel(self.value)
            ),
            Self::PAST_CAP => format!(
                "at {:.3}ms valid_until() was {:.3}ms, past granted + max_hold + ttl",
                rel(self.at),
                rel(self.value)
            ),
            Self::UNCAPPED_MAX_HOLD => format!("MaxHold without a cap at {:.3}ms", rel(self.at)),
            _ => format!("{self:?}"),
        }
    }
}

/// What the holder of a lease saw. Times are [`Ns`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseRecord {
    /// `KeepAlive::every`, and `max_hold` when set.
    pub every_ms: u64,
    pub max_hold_ms: Option<u64>,
    /// Looks at the lease, and how many of them found it held.
    pub samples: u64,
    pub held_samples: u64,
    /// The observation point of the last `is_held()` that returned true.
    pub last_held: Option<Ns>,
    /// Each new validity end seen while held, with the observation point it was first seen
    /// at: one per renewal the holder noticed (the grant's own validity is not repeated).
    pub validity: Vec<(Ns, Ns)>,
    /// The loss: when first seen (just after the look that found it) and why.
    pub lost: Option<(Ns, LostKind)>,
    pub violations: Vec<Violation>,
    /// Looks that found `valid_until()` below a validity seen before. Not a violation (the
    /// contract lets a renewal that reached some nodes but no quorum cut the validity to what
    /// it implies), but with one ttl per lease it should not happen: a write that overran
    /// with no cut validity means the worker stalled between its check and its write.
    pub cut_looks: u64,
}

impl LeaseRecord {
    pub fn new(every_ms: u64, max_hold_ms: Option<u64>) -> LeaseRecord {
        LeaseRecord {
            every_ms,
            max_hold_ms,
            ..LeaseRecord::default()
        }
    }

    /// The last validity end seen while held, or `initial` (the grant's).
    pub fn last_validity(&self, initial: Ns) -> Ns {
        self.validity
            .iter()
            .fold(initial, |end, &(_, v)| end.max(v))
    }

    /// The validity known at `at`: the grant's, or a later one seen by then.
    pub fn validity_at(&self, at: Ns, initial: Ns) -> Ns {
        self.validity
            .iter()
            .filter(|&&(seen, _)| seen <= at)
            .fold(initial, |end, &(_, v)| end.max(v))
    }

    /// Where the holder interval ends before the release cut (see the module docs).
    pub fn holder_end(&self, initial: Ns) -> Ns {
        self.last_held.map_or(initial, |t| t.max(initial))
    }

    /// Takes one look into the record and checks it. `initial` is the grant's validity end,
    /// `cap_end` is `granted + max_hold + ttl` when a cap is set.
    pub fn observe(&mut self, s: &Sample, initial: Ns, cap_end: Option<Ns>) {
        self.samples += 1;
        if s.valid_until < self.last_validity(initial) {
            self.cut_looks += 1;
        }
        let mut flag = |kind: char, at: Ns, value: Ns| {
            self.violations.push(Violation { kind, at, value });
        };
        if s.held {
            if self.lost.is_some() {
                flag(Violation::STICKY, s.before, Violation::HELD_AFTER_LOSS);
            }
            if s.valid_until < s.before {
                flag(Violation::BEHIND, s.before, s.valid_until);
            }
            if cap_end.is_some_and(|cap| s.valid_until > cap) {
                flag(Violation::PAST_CAP, s.before, s.valid_until);
            }
        } else if s.lost.is_none() {
            flag(
                Violation::STICKY,
                s.before,
                Violation::NOT_HELD_WITHOUT_LOSS,
            );
        }
        if let (Some(now), Some((_, was))) = (s.lost, self.lost) {
            if now != was {
                flag(Violation::STICKY, s.before, Violation::LOSS_CHANGED);
            }
        }
        if (s.lost.is_some() || self.lost.is_some()) && !s.remaining_zero {
            flag(Violation::STICKY, s.before, Violation::REMAINING_AFTER_LOSS);
        }
        if let (Some(kind), None) = (s.lost, self.lost) {
            if matches!(kind, LostKind::Expired | LostKind::MaxHold) && s.valid_until > s.after {
                flag(Violation::EARLY_EXPIRY, s.after, s.valid_until);
            }
            if kind == LostKind::MaxHold && self.max_hold_ms.is_none() {
                flag(Violation::UNCAPPED_MAX_HOLD, s.after, s.valid_until);
            }
            self.lost = Some((s.after, kind));
        }
        if s.held {
            self.held_samples += 1;
            self.last_held = Some(self.last_held.map_or(s.before, |t| t.max(s.before)));
            if s.valid_until != self.last_validity(initial) {
                self.validity.push((s.before, s.valid_until));
            }
        }
    }

    /// The lease's field in a record line: `lease=` followed by this (no `|`).
    pub fn to_field(&self) -> String {
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        let list = |items: Vec<String>| {
            if items.is_empty() {
                "-".to_owned()
            } else {
                items.join(";")
            }
        };
        let mut out = String::new();
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            self.every_ms,
            opt(self.max_hold_ms),
            self.samples,
            self.held_samples,
            opt(self.last_held),
            self.lost
                .map_or_else(|| "-".to_owned(), |(at, k)| format!("{}:{at}", k.code())),
            list(
                self.validity
                    .iter()
                    .map(|(at, v)| format!("{at}:{v}"))
                    .collect()
            ),
            list(
                self.violations
                    .iter()
                    .map(|v| format!("{}:{}:{}", v.kind, v.at, v.value))
                    .collect()
            ),
            self.cut_looks,
        );
        out
    }

    pub fn from_field(field: &str) -> Option<LeaseRecord> {
        let f: Vec<&str> = field.split(',').collect();
        if f.len() != 9 {
            return None;
        }
        let opt = |s: &str| -> Option<Option<u64>> {
            if s == "-" {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        let items = |s: &'_ str| -> Vec<Vec<String>> {
            if s == "-" {
                return Vec::new();
            }
            s.split(';')
                .map(|item| item.split(':').map(str::to_owned).collect())
                .collect()
        };
        let lost = match f[5] {
            "-" => None,
            text => {
                let (kind, at) = text.split_once(':')?;
                Some((at.parse().ok()?, LostKind::from_code(kind)?))
            }
        };
        let mut validity = Vec::new();
        for p in items(f[6]) {
            match p.as_slice() {
                [at, v] => validity.push((at.parse().ok()?, v.parse().ok()?)),
                _ => return None,
            }
        }
        let mut violations = Vec::new();
        for p in items(f[7]) {
            match p.as_slice() {
                [kind, at, value] if kind.chars().count() == 1 => violations.push(Violation {
                    kind: kind.chars().next()?,
                    at: at.parse().ok()?,
                    value: value.parse().ok()?,
                }),
                _ => return None,
            }
        }
        Some(LeaseRecord {
            every_ms: f[0].parse().ok()?,
            max_hold_ms: opt(f[1])?,
            samples: f[2].parse().ok()?,
            held_samples: f[3].parse().ok()?,
            last_held: opt(f[4])?,
            lost,
            validity,
            violations,
            cut_looks: f[8].parse().ok()?,
        })
    }

    /// For failure reports.
    pub fn describe(&self, initial: Ns, rel: &dyn Fn(Ns) -> f64) -> String {
        let validity: Vec<String> = self
            .validity
            .iter()
            .map(|&(at, v)| format!("{:.3}->{:.3}", rel(at), rel(v)))
            .collect();
        let mut violations: Vec<String> = self
            .violations
            .iter()
            .take(4)
            .map(|v| v.describe(rel))
            .collect();
        if self.violations.len() > 4 {
            violations.push(format!("{} more", self.violations.len() - 4));
        }
        format!(
            "lease every={}ms max_hold={} samples={} (held {}) last held at {} validity seen \
             [{}] (grant's {:.3}ms, cut in {} looks) lost {} violations [{}]",
            self.every_ms,
            self.max_hold_ms
                .map_or_else(|| "-".to_owned(), |c| format!("{c}ms")),
            self.samples,
            self.held_samples,
            self.last_held
                .map_or_else(|| "-".to_owned(), |t| format!("{:.3}ms", rel(t))),
            validity.join(" "),
            rel(initial),
            self.cut_looks,
            self.lost.map_or_else(
                || "-".to_owned(),
                |(at, k)| format!("{} (seen {:.3}ms)", k.name(), rel(at))
            ),
            violations.join("; "),
        )
    }
}

/// The summary's lease figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseStats {
    pub leases: usize,
    pub capped: usize,
    /// Holder interval (to the last true `is_held()`) longer than one ttl / two ttls: the
    /// lease outlived its first validity thanks to renewals.
    pub past_one_ttl: usize,
    pub past_two_ttls: usize,
    /// New validities seen while held (renewals the holders noticed).
    pub renewals_seen: usize,
    pub longest_held_ns: u64,
    pub samples: u64,
    pub held_samples: u64,
    /// By [`LostKind::name`], plus `held-to-the-end`.
    pub losses: Vec<(&'static str, usize)>,
    /// Leases lost as `Expired` whose grant audit found our value on no more than a quorum
    /// of nodes: renewals only go to the nodes the grant reached, so one more faulty node
    /// among those leaves no quorum to renew on, however many nodes are healthy.
    pub expired_on_bare_quorum: usize,
    pub endings: Vec<(Ending, usize)>,
    pub increments: u64,
    pub overran: usize,
    pub sticky_violations: usize,
    pub validity_violations: usize,
    /// Leases whose validity was cut at least once ([`LeaseRecord::cut_looks`]).
    pub cut: usize,
}

impl LeaseStats {
    pub fn of(acqs: &[Acquisition], quorum: u64) -> LeaseStats {
        let mut stats = LeaseStats::default();
        let leases: Vec<(&Acquisition, &LeaseRecord)> = acqs
            .iter()
            .filter_map(|a| a.lease.as_ref().map(|l| (a, l)))
            .collect();
        stats.leases = leases.len();
        for &(a, l) in &leases {
            stats.capped += usize::from(l.max_hold_ms.is_some());
            let held = l.last_held.map_or(0, |t| t.saturating_sub(a.granted));
            let ttl = a.ttl_ms * 1_000_000;
            stats.past_one_ttl += usize::from(held > ttl);
            stats.past_two_ttls += usize::from(held > 2 * ttl);
            stats.longest_held_ns = stats.longest_held_ns.max(held);
            stats.renewals_seen += l.validity.len();
            stats.samples += l.samples;
            stats.held_samples += l.held_samples;
            stats.increments += a.increments;
            stats.overran += usize::from(a.overran);
            stats.cut += usize::from(l.cut_looks > 0);
            stats.sticky_violations += l.violations.iter().filter(|v| v.is_sticky()).count();
            stats.validity_violations += l.violations.iter().filter(|v| !v.is_sticky()).count();
        }
        for &(kind, _, name) in &LostKind::ALL {
            let n = leases
                .iter()
                .filter(|(_, l)| l.lost.is_some_and(|(_, k)| k == kind))
                .count();
            stats.losses.push((name, n));
        }
        stats.expired_on_bare_quorum = leases
            .iter()
            .filter(|(a, l)| {
                l.lost.is_some_and(|(_, k)| k == LostKind::Expired)
                    && a.audit_grant.as_ref().is_some_and(|audit| {
                        audit.seen.chars().filter(|&c| c == 'O').count() as u64 <= quorum
                    })
            })
            .count();
        let kept = leases.iter().filter(|(_, l)| l.lost.is_none()).count();
        stats.losses.push(("held-to-the-end", kept));
        for ending in Ending::EVERY {
            let n = leases.iter().filter(|(a, _)| a.ending == ending).count();
            if n > 0 {
                stats.endings.push((ending, n));
            }
        }
        stats
    }

    /// The summary's `leases:` line.
    pub fn line(&self) -> String {
        let losses: Vec<String> = self
            .losses
            .iter()
            .map(|(name, n)| format!("{name}={n}"))
            .collect();
        let endings: Vec<String> = self
            .endings
            .iter()
            .map(|(e, n)| format!("{}={n}", format!("{e:?}").to_lowercase()))
            .collect();
        format!(
            "{} ({} with max_hold), held past 1 ttl {}, past 2 ttls {}, longest held {:.0} ms, \
             renewals seen {}, is_held() samples {} ({} true); losses: {} (expired after a \
             grant seen on a bare quorum: {}); endings: {}; \
             increments {} ({} overran), validity cut short in {} leases; sticky violations {}, \
             validity-consistency violations {}",
            self.leases,
            self.capped,
            self.past_one_ttl,
            self.past_two_ttls,
            self.longest_held_ns as f64 / 1e6,
            self.renewals_seen,
            self.samples,
            self.held_samples,
            losses.join(" "),
            self.expired_on_bare_quorum,
            if endings.is_empty() {
                "none".to_owned()
            } else {
                endings.join(" ")
            },
            self.increments,
            self.overran,
            self.cut,
            self.sticky_violations,
            self.validity_violations,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::Via;
    use crate::model::{check_exclusion, Audit};

    fn acq(owner: &str, resource: usize, granted: Ns, valid_until: Ns) -> Acquisition {
        Acquisition::new(owner, 0, resource, 1000, (granted, granted, valid_until))
    }

    fn sample(before: Ns, held: bool, valid_until: Ns, lost: Option<LostKind>) -> Sample {
        Sample {
            before,
            held,
            valid_until,
            lost,
            remaining_zero: lost.is_some() || !held,
            after: before + 1,
        }
    }

    #[test]
    fn a_clean_lease_records_renewals_and_its_loss_without_violations() {
        let mut l = LeaseRecord::new(100, Some(500));
        let cap_end = Some(100 + 500 + 300);
        l.observe(&sample(110, true, 400, None), 400, cap_end);
        l.observe(&sample(150, true, 480, None), 400, cap_end);
        l.observe(&sample(200, true, 480, None), 400, cap_end);
        l.observe(&sample(600, true, 800, None), 400, cap_end);
        l.observe(
            &sample(820, false, 800, Some(LostKind::MaxHold)),
            400,
            cap_end,
        );
        l.observe(
            &sample(850, false, 800, Some(LostKind::MaxHold)),
            400,
            cap_end,
        );
        assert!(l.violations.is_empty(), "{:?}", l.violations);
        assert_eq!(l.validity, vec![(150, 480), (600, 800)]);
        assert_eq!(l.last_held, Some(600));
        assert_eq!(l.lost, Some((821, LostKind::MaxHold)));
        assert_eq!((l.samples, l.held_samples), (6, 4));
        assert_eq!(l.holder_end(400), 600);
        assert_eq!(l.holder_end(700), 700, "the grant's validity counts");
        assert_eq!(l.validity_at(599, 400), 480);
        assert_eq!(l.last_validity(400), 800);
        assert_eq!(l.cut_looks, 0);
        // A validity below one seen before is counted, not flagged.
        l.observe(
            &sample(860, false, 700, Some(LostKind::MaxHold)),
            400,
            cap_end,
        );
        assert_eq!(l.cut_looks, 1);
        assert!(l.violations.is_empty(), "{:?}", l.violations);
    }

    #[test]
    fn violations_are_flagged() {
        let kinds = |l: &LeaseRecord| -> Vec<(char, Ns)> {
            l.violations.iter().map(|v| (v.kind, v.value)).collect()
        };
        // Held, but the validity it reports has already ended.
        let mut l = LeaseRecord::new(100, None);
        l.observe(&sample(500, true, 450, None), 400, None);
        assert_eq!(kinds(&l), vec![(Violation::BEHIND, 450)]);
        // Held again after a loss; a loss that changes kind; a loss without is_held() false.
        let mut l = LeaseRecord::new(100, None);
        l.observe(&sample(450, false, 400, Some(LostKind::Expired)), 400, None);
        l.observe(&sample(460, true, 900, None), 400, None);
        l.observe(&sample(470, false, 400, Some(LostKind::Taken)), 400, None);
        assert_eq!(
            kinds(&l),
            vec![
                (Violation::STICKY, Violation::HELD_AFTER_LOSS),
                (Violation::STICKY, Violation::REMAINING_AFTER_LOSS),
                (Violation::STICKY, Violation::LOSS_CHANGED),
            ]
        );
        assert_eq!(
            l.last_held,
            Some(460),
            "a claim after the loss still counts"
        );
        let mut l = LeaseRecord::new(100, None);
        l.observe(&sample(450, false, 900, None), 400, None);
        let mut s = sample(460, false, 900, Some(LostKind::Taken));
        s.remaining_zero = false;
        l.observe(&s, 400, None);
        assert_eq!(
            kinds(&l),
            vec![
                (Violation::STICKY, Violation::NOT_HELD_WITHOUT_LOSS),
                (Violation::STICKY, Violation::REMAINING_AFTER_LOSS),
            ]
        );
        // Expired with validity left; MaxHold without a cap; a validity beyond the cap.
        let mut l = LeaseRecord::new(100, None);
        l.observe(&sample(300, false, 400, Some(LostKind::Expired)), 400, None);
        let mut m = LeaseRecord::new(100, None);
        m.observe(&sample(500, false, 400, Some(LostKind::MaxHold)), 400, None);
        let mut c = LeaseRecord::new(100, Some(200));
        c.observe(&sample(300, true, 700, None), 400, Some(600));
        assert_eq!(kinds(&l), vec![(Violation::EARLY_EXPIRY, 400)]);
        assert_eq!(kinds(&m), vec![(Violation::UNCAPPED_MAX_HOLD, 400)]);
        assert_eq!(kinds(&c), vec![(Violation::PAST_CAP, 700)]);
        // A Taken loss may come with validity left.
        let mut t = LeaseRecord::new(100, None);
        t.observe(&sample(300, false, 400, Some(LostKind::Taken)), 400, None);
        assert!(t.violations.is_empty());
    }

    #[test]
    fn lease_fields_round_trip() {
        let mut l = LeaseRecord::new(75, Some(450));
        assert_eq!(LeaseRecord::from_field(&l.to_field()), Some(l.clone()));
        l.samples = 9;
        l.held_samples = 7;
        l.last_held = Some(1234);
        l.validity = vec![(100, 400), (200, 500)];
        l.lost = Some((1300, LostKind::Taken));
        l.cut_looks = 2;
        l.violations.push(Violation {
            kind: Violation::STICKY,
            at: 1310,
            value: Violation::HELD_AFTER_LOSS,
        });
        l.violations.push(Violation {
            kind: Violation::BEHIND,
            at: 1320,
            value: 1000,
        });
        assert_eq!(LeaseRecord::from_field(&l.to_field()), Some(l.clone()));
        assert_eq!(LeaseRecord::from_field("1,2,3"), None);
        let mut stats = LeaseStats::of(&[], 3);
        assert_eq!((stats.leases, stats.cut), (0, 0));
        let mut a = Acquisition::new("p0t0", 0, 0, 300, (0, 10, 300_000_000));
        a.lease = Some(l);
        a.ending = Ending::Released;
        a.increments = 4;
        stats = LeaseStats::of(&[a], 3);
        assert_eq!(
            (
                stats.leases,
                stats.cut,
                stats.increments,
                stats.sticky_violations
            ),
            (1, 1, 4, 1)
        );
        assert_eq!(stats.validity_violations, 1);
        assert!(stats.losses.contains(&("taken", 1)), "{:?}", stats.losses);
        assert_eq!(stats.endings, vec![(Ending::Released, 1)]);
    }

    #[test]
    fn a_lease_holds_to_its_last_true_is_held_and_round_trips() {
        let mut a = acq("p0t0", 1, 100, 400);
        let mut lease = LeaseRecord::new(100, None);
        lease.last_held = Some(900);
        lease.validity = vec![(300, 600), (700, 1000)];
        a.lease = Some(lease);
        assert_eq!(a.segments(), vec![(100, 900)]);
        assert_eq!(a.final_valid_until(), 1000);
        a.release_start = Some(800);
        assert_eq!(a.segments(), vec![(100, 800)], "cut at the release");
        a.release_start = None;
        // Another holder from 850 overlaps; one from 900 does not.
        let b = acq("p1t0", 1, 850, 2000);
        let c = acq("p1t0", 1, 900, 2000);
        assert_eq!(check_exclusion(&[a.clone(), b], 2).overlaps.len(), 1);
        assert!(check_exclusion(&[a.clone(), c], 2).overlaps.is_empty());
        // Without a true is_held() past it, the grant's validity still counts.
        let mut d = acq("p0t1", 1, 100, 400);
        d.lease = Some(LeaseRecord::new(100, Some(50)));
        assert_eq!(d.segments(), vec![(100, 400)]);
        // The end audit is held to the validity seen by then.
        a.audit_end = Some(Audit {
            at: 550,
            seen: "OO---".to_owned(),
        });
        assert!(a.lost_while_valid(3).is_some(), "valid until 600 by then");
        a.audit_end = Some(Audit {
            at: 1100,
            seen: "O----".to_owned(),
        });
        assert!(a.lost_while_valid(3).is_none(), "after the validity");
        a.via = Via::Within;
        a.token = Some(42);
        assert_eq!(Acquisition::from_line(&a.to_line()), Some(a.clone()));
        let line = a.to_line();
        assert!(line.contains("|via=within|token=42|lease="), "{line}");
        assert_eq!(Acquisition::from_line(&format!("{line}|color=red")), None);
    }
}
