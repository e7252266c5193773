//! resplock operations, each checked, through the crate's public API only.
//!
//! A failure only because nodes did not answer within the node timeout (a stall of a loaded
//! machine) is not a bug: it is reported to the caller, which counts it. Anything else panics,
//! and so does a release that finds the lock gone.

use std::time::Duration;

use resplock::{Error, LockGuard, NodeError, Redlock};

/// A manager with the crate's default settings on `urls`.
pub fn manager(urls: &[String]) -> Redlock {
    Redlock::builder()
        .nodes(urls)
        .build()
        .unwrap_or_else(|e| panic!("build: {e}"))
}

/// Whether `error` failed only because some nodes timed out.
pub fn only_timeouts(error: &Error) -> bool {
    let failures = error.node_failures();
    !failures.is_empty()
        && failures
            .iter()
            .all(|failure| matches!(failure.error, NodeError::Timeout(_)))
}

/// `lock` of a resource nobody else holds; retries after node timeouts (counted in
/// `timeouts`).
pub fn lock_free<R: AsRef<[u8]> + Clone>(
    dlm: &Redlock,
    resource: &R,
    ttl: Duration,
    timeouts: &mut u64,
) -> LockGuard<R> {
    for _ in 0..100 {
        match dlm.lock(resource.clone(), ttl) {
            Ok(guard) => return guard,
            Err(e) if only_timeouts(&e) => *timeouts += 1,
            Err(e) => panic!("lock {}: {e}", show(resource)),
        }
    }
    panic!("lock {}: nodes kept timing out", show(resource));
}

/// Releases `guard`; false when it failed only on node timeouts (the lock is then released
/// with `release_by` until the nodes answer, so that it cannot block the next lock).
pub fn release<R: AsRef<[u8]>>(dlm: &Redlock, guard: LockGuard<R>) -> bool {
    let resource = guard.resource().to_vec();
    let value = guard.value().to_vec();
    match guard.release() {
        Ok(true) => true,
        Ok(false) => panic!(
            "release {}: the quorum no longer held our value",
            show(&resource)
        ),
        Err(e) if only_timeouts(&e) => {
            settle(dlm, &resource, &value);
            false
        }
        Err(e) => panic!("release {}: {e}", show(&resource)),
    }
}

/// One uncontended `lock` then `release`; false when it failed only on node timeouts.
pub fn lock_release(dlm: &Redlock, key: &str, ttl: Duration) -> bool {
    let guard = match dlm.lock(key, ttl) {
        Ok(guard) => guard,
        Err(e) if only_timeouts(&e) => return false,
        Err(e) => panic!("lock {key}: {e}"),
    };
    release(dlm, guard)
}

/// Releases `(key, value)` until the nodes answer.
fn settle(dlm: &Redlock, key: &[u8], value: &[u8]) {
    for _ in 0..100 {
        match dlm.release_by(key, value) {
            Ok(_) => return,
            Err(e) if only_timeouts(&e) => {}
            Err(e) => panic!("release {} again: {e}", show(&key)),
        }
    }
    panic!("release {}: nodes kept timing out", show(&key));
}

fn show(resource: &impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(resource.as_ref()).into_owned()
}
