//! Assertions on the crate's lock errors, shared by the fault and hostile-reply tests.

use resplock::{Error, NodeFailure};

/// The fields of a `NotAcquired` as `(attempts, granted, held_elsewhere, expired, failures)`,
/// or a panic naming what came instead.
pub fn not_acquired(err: &Error) -> (u32, usize, usize, bool, Vec<NodeFailure>) {
    match err {
        Error::NotAcquired {
            attempts,
            granted,
            held_elsewhere,
            expired,
            failures,
            ..
        } => (
            *attempts,
            *granted,
            *held_elsewhere,
            *expired,
            failures.clone(),
        ),
        other => panic!("expected NotAcquired, got {other:?}"),
    }
}

/// The failures of a `NotAcquired` after checking it was an outage: nothing granted, nothing
/// held elsewhere, not expired, not contention.
pub fn outage(err: &Error) -> Vec<NodeFailure> {
    match err {
        Error::NotAcquired {
            granted: 0,
            held_elsewhere: 0,
            expired: false,
            failures,
            ..
        } if !err.is_contention() => failures.clone(),
        other => panic!("expected an outage NotAcquired, got {other:?}"),
    }
}
