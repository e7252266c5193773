//! What a grant carries besides its times, with no I/O: the call that obtained it ([`Via`])
//! and its fencing token, the record of a waiting call that failed ([`FailedWait`]), and the
//! checks of the two lines built on them: fencing tokens ([`check_tokens`]) and waiting
//! grants ([`WaitStats`]).
//!
//! # Fencing tokens
//! One resource ([`crate::FENCED_RESOURCE`]) is only ever taken through a manager built with
//! `fencing(true)` (the workers of each process share one beside their plain manager, with
//! the same other settings, replaced when it is locked out: see `crate::Managers`), plain
//! locks and leases alike, so every grant of that resource has a token and no grant of
//! another resource has one ([`TokenCheck::missing`], [`TokenCheck::unexpected`]). The worker
//! records `guard.token()` right after the grant (and checks that the lease it may turn the
//! guard into reports the same token).
//!
//! The property (SAFETY.md, "Fencing tokens"): if grant A returned to its caller before grant
//! B's first command was sent, then `token(A) < token(B)`, for one resource. The record has
//! `granted`, read just after `lock()`/`lock_within()` returned (so after A returned), and
//! `requested`, read just before the call started (so before B's first command). Pairs with
//! `A.granted < B.requested` are therefore ordered as the property requires, and it must hold
//! for every one of them; pairs whose calls overlap are not ordered and not compared. This
//! does not rely on clocks: `granted` and `requested` are readings of one `CLOCK_MONOTONIC`,
//! in every process, taken around the calls.
//!
//! # Waiting grants
//! A quarter of the acquisitions call `lock_within(resource, ttl, max_wait)` with `max_wait`
//! drawn from 100 ms – 1.5 s. A grant is an ordinary grant (`via: Via::Within`, with its
//! `max_wait_ms`), covered by the exclusion and token checks like any other. A failure is a
//! [`FailedWait`]: `lock_within` may only fail once `max_wait` has passed, so
//! `returned - requested >= max_wait` must hold ([`WaitStats::early`]); how much later it
//! returned is reported, not checked.

use std::fmt::Write as _;

use crate::model::{Acquisition, Ns, LINE_PREFIX};

/// The call that granted a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `lock()` (a bounded number of retries).
    Lock,
    /// A waiting call (`lock_within`): retries until a deadline.
    Within,
}

impl Via {
    pub const ALL: [(Via, &'static str); 2] = [(Via::Lock, "lock"), (Via::Within, "within")];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(v, _)| *v == self)
            .map_or("?", |&(_, n)| n)
    }

    pub fn from_name(name: &str) -> Option<Via> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|&(v, _)| v)
    }
}

/// Two grants of one resource, one entirely before the other in real time, whose tokens do
/// not increase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInversion {
    pub resource: usize,
    /// Indexes into the checked slice: `earlier` returned from its call before `later`'s call
    /// started, with a token at least `later`'s (the highest such token).
    pub earlier: usize,
    pub later: usize,
}

/// What [`check_tokens`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenCheck {
    /// Grants with a token.
    pub fenced: usize,
    /// Ordered pairs compared: (A, B) of one resource, both with a token, with
    /// `A.granted < B.requested`.
    pub ordered_pairs: u64,
    /// Ordered pairs with `token(A) >= token(B)`.
    pub violating_pairs: u64,
    /// Grants B with at least one such A.
    pub violating_grants: usize,
    /// The first `limit` of those, one per B.
    pub inversions: Vec<TokenInversion>,
    /// Grants of a fenced resource without a token, and grants of another with one.
    pub missing: Vec<usize>,
    pub unexpected: Vec<usize>,
    /// The lowest and highest token seen.
    pub range: Option<(u64, u64)>,
}

impl TokenCheck {
    pub fn violations(&self) -> usize {
        self.violating_grants + self.missing.len() + self.unexpected.len()
    }
}

/// For each resource: if grant `a` returned (`granted`) before grant `b`'s call started
/// (`requested`), then `a.token < b.token` must hold. Grants whose calls overlap are not
/// ordered and not compared; grants without a token are not compared. Grants of the resources
/// in `fenced` must have a token, the others must not. Keeps at most `limit` inversions.
pub fn check_tokens(
    acqs: &[Acquisition],
    resources: usize,
    fenced: &[usize],
    limit: usize,
) -> TokenCheck {
    let mut out = TokenCheck::default();
    for (i, a) in acqs.iter().enumerate() {
        match (fenced.contains(&a.resource), a.token) {
            (true, None) => out.missing.push(i),
            (false, Some(_)) => out.unexpected.push(i),
            _ => {}
        }
        if let Some(t) = a.token {
            out.fenced += 1;
            out.range = Some(out.range.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
        }
    }
    for resource in 0..resources {
        let mut by_grant: Vec<(Ns, u64, usize)> = acqs
            .iter()
            .enumerate()
            .filter(|(_, a)| a.resource == resource)
            .filter_map(|(i, a)| a.token.map(|t| (a.granted, t, i)))
            .collect();
        let mut by_request: Vec<(Ns, u64, usize)> = acqs
            .iter()
            .enumerate()
            .filter(|(_, a)| a.resource == resource)
            .filter_map(|(i, a)| a.token.map(|t| (a.requested, t, i)))
            .collect();
        by_grant.sort_unstable();
        by_request.sort_unstable();
        // Sweep the later grants in call-start order; the grants that returned before that
        // start are a prefix of `by_grant`, whose highest token is kept. (A grant is never in
        // its own prefix: it returned after its call started.)
        let mut next = 0;
        let mut highest: Option<(u64, usize)> = None;
        for &(requested, token, later) in &by_request {
            while next < by_grant.len() && by_grant[next].0 < requested {
                let (_, t, i) = by_grant[next];
                if highest.is_none_or(|(h, _)| t >= h) {
                    highest = Some((t, i));
                }
                next += 1;
            }
            out.ordered_pairs += next as u64;
            let Some((h, earlier)) = highest else {
                continue;
            };
            if h >= token {
                out.violating_grants += 1;
                out.violating_pairs += by_grant[..next]
                    .iter()
                    .filter(|&&(_, t, _)| t >= token)
                    .count() as u64;
                if out.inversions.len() < limit {
                    out.inversions.push(TokenInversion {
                        resource,
                        earlier,
                        later,
                    });
                }
            }
        }
    }
    out
}

/// A `lock_within` call that failed. Times are [`Ns`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedWait {
    pub owner: String,
    pub resource: usize,
    pub ttl_ms: u64,
    pub max_wait_ms: u64,
    /// Just before the call started, and just after it returned.
    pub requested: Ns,
    pub returned: Ns,
    /// `not-acquired`, `expired` (`NotAcquired` with `expired`), or another error's text
    /// (without `|`).
    pub error: String,
}

impl FailedWait {
    pub const NOT_ACQUIRED: &'static str = "not-acquired";
    pub const EXPIRED: &'static str = "expired";

    /// How long the call took beyond its `max_wait` (negative: it returned early).
    pub fn overrun_ns(&self) -> i128 {
        i128::from(self.returned)
            - i128::from(self.requested)
            - i128::from(self.max_wait_ms) * 1_000_000
    }

    /// `CHAOS|wait|owner|resource|ttl|max_wait|requested|returned|error`.
    pub fn to_line(&self) -> String {
        format!(
            "{LINE_PREFIX}wait|{}|{}|{}|{}|{}|{}|{}",
            self.owner,
            self.resource,
            self.ttl_ms,
            self.max_wait_ms,
            self.requested,
            self.returned,
            self.error
        )
    }

    pub fn from_line(line: &str) -> Option<FailedWait> {
        let rest = line.strip_prefix(LINE_PREFIX)?.strip_prefix("wait|")?;
        let f: Vec<&str> = rest.splitn(7, '|').collect();
        if f.len() != 7 {
            return None;
        }
        Some(FailedWait {
            owner: f[0].to_owned(),
            resource: f[1].parse().ok()?,
            ttl_ms: f[2].parse().ok()?,
            max_wait_ms: f[3].parse().ok()?,
            requested: f[4].parse().ok()?,
            returned: f[5].parse().ok()?,
            error: f[6].to_owned(),
        })
    }
}

/// The figures of the waiting line, and its check: no failed `lock_within` returned before its
/// `max_wait` had passed.
#[derive(Clone, Debug, Default)]
pub struct WaitStats {
    /// Grants by `lock_within`.
    pub grants: usize,
    /// Of those, the longest time from the call to the grant, and the grants that returned
    /// after their `max_wait` (an attempt in flight at the deadline may still succeed), with
    /// the largest such overrun.
    pub longest_grant_ns: u64,
    pub grants_past_max_wait: usize,
    pub max_grant_overrun_ns: u64,
    /// Failed calls: `NotAcquired` (`expired` included), and other errors.
    pub not_acquired: usize,
    pub other_errors: usize,
    /// Indexes of the failures that returned before their `max_wait`: violations.
    pub early: Vec<usize>,
    /// The largest time a failure took beyond its `max_wait` (reported, not checked).
    pub max_overrun_ns: u64,
}

impl WaitStats {
    pub fn of(acqs: &[Acquisition], waits: &[FailedWait]) -> WaitStats {
        let mut stats = WaitStats::default();
        for a in acqs.iter().filter(|a| a.via == Via::Within) {
            stats.grants += 1;
            let took = a.granted.saturating_sub(a.requested);
            stats.longest_grant_ns = stats.longest_grant_ns.max(took);
            let max_wait = a.max_wait_ms.unwrap_or(0) * 1_000_000;
            if took > max_wait {
                stats.grants_past_max_wait += 1;
                stats.max_grant_overrun_ns = stats.max_grant_overrun_ns.max(took - max_wait);
            }
        }
        for (i, w) in waits.iter().enumerate() {
            if w.error == FailedWait::NOT_ACQUIRED || w.error == FailedWait::EXPIRED {
                stats.not_acquired += 1;
            } else {
                stats.other_errors += 1;
            }
            let overrun = w.overrun_ns();
            if overrun < 0 {
                stats.early.push(i);
            } else {
                stats.max_overrun_ns = stats
                    .max_overrun_ns
                    .max(u64::try_from(overrun).unwrap_or(u64::MAX));
            }
        }
        stats
    }

    pub fn line(&self) -> String {
        let mut out = format!(
            "{} calls: granted {} (longest call {:.0} ms; {} returned after max_wait, by up to \
             {:.1} ms), NotAcquired after max_wait {}, other errors {}",
            self.grants + self.not_acquired + self.other_errors,
            self.grants,
            self.longest_grant_ns as f64 / 1e6,
            self.grants_past_max_wait,
            self.max_grant_overrun_ns as f64 / 1e6,
            self.not_acquired,
            self.other_errors,
        );
        let _ = write!(
            out,
            "; failures that returned before max_wait: {}, max overrun past max_wait {:.1} ms",
            self.early.len(),
            self.max_overrun_ns as f64 / 1e6
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(resource: usize, requested: Ns, granted: Ns, token: Option<u64>) -> Acquisition {
        let mut a = Acquisition::new("p0t0", 0, resource, 1000, (requested, granted, granted));
        a.token = token;
        a
    }

    #[test]
    fn tokens_must_increase_along_real_time_order() {
        // a returns at 20; b is asked at 30 (after a), c at 10 (concurrent with a).
        let a = grant(0, 0, 20, Some(5));
        let b = grant(0, 30, 40, Some(6));
        let c = grant(0, 10, 50, Some(1));
        let other = grant(1, 100, 110, Some(0));
        let ok = check_tokens(&[a.clone(), b.clone(), c, other], 2, &[0, 1], 10);
        assert_eq!(ok.violations(), 0, "{ok:?}");
        // (a, b) is the only ordered pair: c started before a returned, and b before c did.
        assert_eq!(ok.ordered_pairs, 1);
        assert_eq!(ok.fenced, 4);
        assert_eq!(ok.range, Some((0, 6)));
        // d is asked after a and b returned, with a token below b's (and above a's).
        let d = grant(0, 60, 70, Some(6));
        let bad = check_tokens(&[a.clone(), b, d], 1, &[0], 10);
        assert_eq!(
            bad.inversions,
            vec![TokenInversion {
                resource: 0,
                earlier: 1,
                later: 2
            }]
        );
        assert_eq!((bad.ordered_pairs, bad.violating_pairs), (3, 1));
        assert_eq!(bad.violating_grants, 1);
        // Equal tokens in order are a violation too; the limit only caps what is kept.
        let e = grant(0, 80, 90, Some(5));
        let ties = check_tokens(&[a.clone(), e], 1, &[0], 0);
        assert_eq!((ties.violating_grants, ties.inversions.len()), (1, 0));
        // Without tokens there is nothing to compare, but a fenced resource must have them.
        let f = grant(0, 60, 70, None);
        let missing = check_tokens(&[a.clone(), f], 1, &[0], 10);
        assert_eq!(
            (missing.ordered_pairs, missing.missing.clone()),
            (0, vec![1])
        );
        let unexpected = check_tokens(&[a], 1, &[], 10);
        assert_eq!(unexpected.unexpected, vec![0]);
        assert_eq!(Via::from_name(Via::Within.name()), Some(Via::Within));
    }

    #[test]
    fn failed_waits_round_trip_and_must_not_return_early() {
        let w = FailedWait {
            owner: "p1t1".to_owned(),
            resource: 2,
            ttl_ms: 500,
            max_wait_ms: 100,
            requested: 1_000_000_000,
            returned: 1_100_000_000,
            error: FailedWait::NOT_ACQUIRED.to_owned(),
        };
        assert_eq!(FailedWait::from_line(&w.to_line()), Some(w.clone()));
        let mut early = w.clone();
        early.returned -= 1;
        early.error = "some error: with a colon".to_owned();
        assert_eq!(FailedWait::from_line(&early.to_line()), Some(early.clone()));
        let mut granted = grant(0, 0, 300_000_000, None);
        granted.via = Via::Within;
        granted.max_wait_ms = Some(200);
        let stats = WaitStats::of(&[granted], &[w, early]);
        assert_eq!(stats.early, vec![1]);
        assert_eq!((stats.not_acquired, stats.other_errors), (1, 1));
        assert_eq!(stats.max_overrun_ns, 0);
        assert_eq!((stats.grants, stats.grants_past_max_wait), (1, 1));
        assert_eq!(stats.max_grant_overrun_ns, 100_000_000);
    }
}
