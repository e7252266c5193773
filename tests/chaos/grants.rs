//! What a grant carries besides its times, with no I/O: the call that obtained it ([`Via`])
//! and its fencing token, and the check the tokens must pass ([`check_tokens`]).
//!
//! Both are ready for lines the worker does not take yet:
//! - Fencing tokens: set `Acquisition::token` from the guard right after the grant. The
//!   record line carries it (`token=<n>`) and [`check_tokens`], which the test already runs,
//!   then checks it; until then every token is `None` and the check has nothing to compare.
//! - Waiting grants (`lock_within`): record them with `via: Via::Within`; `requested` is the
//!   instant before the waiting call and `granted` the one after it returned, exactly as for
//!   `lock()`, so the exclusion and token checks need nothing else. The summary counts grants
//!   per path.

use crate::model::{Acquisition, Ns};

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
    /// started.
    pub earlier: usize,
    pub later: usize,
}

/// For each resource: if grant `a` returned (`granted`) before grant `b`'s call started
/// (`requested`), then `a` was granted before `b` in real time and `a.token < b.token` must
/// hold. Grants whose calls overlap are not ordered and not compared. Grants without a token
/// are skipped. Returns at most `limit` inversions (the latest-ending earlier grant for each
/// later one).
pub fn check_tokens(acqs: &[Acquisition], resources: usize, limit: usize) -> Vec<TokenInversion> {
    let mut out = Vec::new();
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
        // Sweep the later grants in request order, keeping the highest token among the grants
        // that returned before that request.
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
            if let Some((h, earlier)) = highest {
                if h >= token && out.len() < limit {
                    out.push(TokenInversion {
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
        assert!(check_tokens(&[a.clone(), b.clone(), c, other], 2, 10).is_empty());
        // d is asked after a and b returned, with a token below b's.
        let d = grant(0, 60, 70, Some(6));
        assert_eq!(
            check_tokens(&[a.clone(), b, d], 1, 10),
            vec![TokenInversion {
                resource: 0,
                earlier: 1,
                later: 2
            }]
        );
        // Without tokens there is nothing to check.
        let e = grant(0, 60, 70, None);
        assert!(check_tokens(&[a, e], 1, 10).is_empty());
        assert_eq!(Via::from_name(Via::Within.name()), Some(Via::Within));
    }
}
