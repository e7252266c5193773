//! What benchmarks and cross-process timelines share: knobs read from the environment, plain
//! sockets for hand-written floors, percentiles, and readings of the machine-wide monotonic
//! clock.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A positive integer from the environment variable `name`, or `default` when it is unset.
/// Panics, naming the variable, on anything else: a typo must not silently run the default.
pub fn env_knob(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .ok()
            .filter(|&v| v > 0)
            .unwrap_or_else(|| panic!("{name}={text:?} is not a positive integer")),
        Err(_) => default,
    }
}

/// [`env_knob`] as a `usize`.
pub fn env_count(name: &str, default: usize) -> usize {
    let default = u64::try_from(default).unwrap_or(u64::MAX);
    usize::try_from(env_knob(name, default)).unwrap_or(usize::MAX)
}

/// A plain connection for a floor: `TCP_NODELAY`, and read and write timeouts of `timeout`
/// that only bound a bug.
pub fn plain_stream(addr: SocketAddr, timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .unwrap_or_else(|e| panic!("floor: connect {addr}: {e}"));
    stream
        .set_nodelay(true)
        .unwrap_or_else(|e| panic!("floor: TCP_NODELAY: {e}"));
    stream
        .set_read_timeout(Some(timeout))
        .unwrap_or_else(|e| panic!("floor: read timeout: {e}"));
    stream
        .set_write_timeout(Some(timeout))
        .unwrap_or_else(|e| panic!("floor: write timeout: {e}"));
    stream
}

/// The `q` quantile (0.0 to 1.0) of `sorted`, nearest rank; zero when it is empty.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

/// Reads an `Instant` as nanoseconds of `CLOCK_MONOTONIC`, from its `Debug` output.
///
/// On Linux `std::time::Instant` is a `timespec` taken with `clock_gettime(CLOCK_MONOTONIC)`,
/// and its `Debug` output shows it verbatim: `Instant { tv_sec: 1365, tv_nsec: 801906759 }`.
/// `CLOCK_MONOTONIC` is one clock for the whole machine, so these numbers from different
/// processes are directly comparable, without `libc` and without `unsafe`. The format is not a
/// stable API: callers check a reading against `Instant` arithmetic before trusting it.
/// `None` off Linux or when the format is not the expected one.
pub fn monotonic_ns(instant: Instant) -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let text = format!("{instant:?}");
    let secs = number_after(&text, "tv_sec: ")?;
    let nanos = number_after(&text, "tv_nsec: ")?;
    if nanos >= 1_000_000_000 {
        return None;
    }
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

fn number_after(text: &str, label: &str) -> Option<u64> {
    let rest = text.get(text.find(label)? + label.len()..)?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest.get(..digits)?.parse().ok()
}
