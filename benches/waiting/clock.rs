//! Time that two processes can compare: `CLOCK_MONOTONIC` in nanoseconds.
//!
//! On Linux `Instant` is `CLOCK_MONOTONIC`, whose origin is the same for every process of the
//! machine, and its `Debug` output shows the raw `timespec` (`tv_sec`, `tv_nsec`): read that
//! once (`support::measure::monotonic_ns`), check it against `Instant` arithmetic, then convert
//! by offset.

use std::time::{Duration, Instant};

/// `CLOCK_MONOTONIC` in nanoseconds, as `i64` so that differences can be negative.
pub type Ns = i64;

/// The `CLOCK_MONOTONIC` reading inside `instant`.
fn instant_ns(instant: Instant) -> Option<Ns> {
    crate::support::measure::monotonic_ns(instant).and_then(|ns| Ns::try_from(ns).ok())
}

fn nanos(d: Duration) -> Ns {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Converts `Instant`s to [`Ns`] and back.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
    base_ns: Ns,
}

impl Clock {
    /// Anchors the conversion now; panics unless `Instant` reads as `CLOCK_MONOTONIC` and
    /// agrees exactly with `Instant` arithmetic on two readings taken apart.
    pub fn new() -> Clock {
        let base = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        let later = Instant::now();
        match instant_ns(base).zip(instant_ns(later)) {
            Some((a, b)) if b - a == nanos(later - base) => Clock { base, base_ns: a },
            _ => panic!(
                "waiting bench: `Instant` does not read as CLOCK_MONOTONIC here ({base:?}); \
                 the cross-process timings need Linux"
            ),
        }
    }

    pub fn ns(&self, instant: Instant) -> Ns {
        if instant >= self.base {
            self.base_ns + nanos(instant - self.base)
        } else {
            self.base_ns - nanos(self.base - instant)
        }
    }

    pub fn instant(&self, ns: Ns) -> Instant {
        let offset = Duration::from_nanos(ns.abs_diff(self.base_ns));
        if ns >= self.base_ns {
            self.base + offset
        } else {
            self.base - offset
        }
    }
}
