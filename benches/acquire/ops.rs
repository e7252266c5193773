//! resplock operations, each checked, through the crate's public API only.

use std::sync::atomic::{AtomicBool, Ordering};

use resplock::{Error, NodeError, Redlock};

use crate::TTL;

/// How one attempt on a resource ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Locked, then released with `true`.
    Acquired,
    /// `try_lock` found the resource held by someone else.
    Contended,
    /// Failed only because nodes did not answer within the node timeout (see [`lock_release`]).
    TimedOut,
}

/// One `lock` then `release`. Returns false when it failed only because nodes did not answer
/// within the node timeout (50 ms by default): on a loaded machine a stall of the whole VM
/// does that now and then. Such operations are counted and reported, and kept in the
/// latencies. Panics on any other failure, or when the release finds the lock gone.
pub fn lock_release(dlm: &Redlock, key: &str) -> bool {
    let guard = match dlm.lock(key, TTL) {
        Ok(guard) => guard,
        Err(e) if only_timeouts(&e) => return false,
        Err(e) => panic!("lock {key}: {e}"),
    };
    let mut value = [0u8; 32];
    value.copy_from_slice(guard.value());
    match guard.release() {
        Ok(true) => true,
        Ok(false) => panic!("release {key}: the quorum no longer held our value"),
        Err(e) if only_timeouts(&e) => {
            settle(dlm, key, &value);
            false
        }
        Err(e) => panic!("release {key}: {e}"),
    }
}

/// One `try_lock` then, when acquired, `release`. `held` is a mutual-exclusion check shared by
/// every thread contending for `key`: it panics when two holders ever see each other.
pub fn try_lock_release(dlm: &Redlock, key: &str, held: &AtomicBool) -> Outcome {
    match dlm.try_lock(key, TTL) {
        Ok(guard) => {
            assert!(!held.swap(true, Ordering::SeqCst), "two holders at once");
            held.store(false, Ordering::SeqCst);
            let mut value = [0u8; 32];
            value.copy_from_slice(guard.value());
            match guard.release() {
                Ok(true) => Outcome::Acquired,
                Ok(false) => panic!("release {key}: the quorum no longer held our value"),
                Err(e) if only_timeouts(&e) => {
                    settle(dlm, key, &value);
                    Outcome::TimedOut
                }
                Err(e) => panic!("release {key}: {e}"),
            }
        }
        Err(e) if e.is_contention() => Outcome::Contended,
        Err(e) if only_timeouts(&e) => Outcome::TimedOut,
        Err(e) => panic!("try_lock {key}: {e}"),
    }
}

/// Whether `error` failed only because some nodes timed out.
fn only_timeouts(error: &Error) -> bool {
    let failures = error.node_failures();
    !failures.is_empty()
        && failures
            .iter()
            .all(|failure| matches!(failure.error, NodeError::Timeout(_)))
}

/// Releases `(key, value)` until the nodes answer, so a stalled release cannot leave a key
/// that would make the next lock of the same resource wait for its ttl.
fn settle(dlm: &Redlock, key: &str, value: &[u8]) {
    for _ in 0..100 {
        match dlm.release_by(key, value) {
            Ok(_) => return,
            Err(e) if only_timeouts(&e) => {}
            Err(e) => panic!("release {key} again: {e}"),
        }
    }
    panic!("release {key}: nodes kept timing out");
}
