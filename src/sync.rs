//! Mutex helpers shared by the pool, node health and the keep-alive worker.
//!
//! Contract: nothing in the crate panics while holding one of its locks, so a poisoned lock can
//! only come from a panic in a caller's code elsewhere, and the data behind it is consistent.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking the data back from a poisoned lock.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
