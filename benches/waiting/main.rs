//! `Redlock::lock_within` on real `redis-server` nodes the bench starts itself, across
//! processes: the waiters run in child processes (this binary, re-executed with
//! `RESPLOCK_WAITING_CHILD` set), and times are compared on `CLOCK_MONOTONIC`, which `Instant`
//! reads on Linux and which every process of the machine shares ([`clock`]).
//!
//! `cargo bench --bench waiting` prints four sections:
//!
//! 1. **Handoff** ([`handoff`]): the bench holds a lock, a child process waits for it in
//!    `lock_within`; once the child is asleep (its attempt reached the nodes and it is
//!    subscribed), the bench releases. Measured: from the return of the holder's `release` to
//!    the return of the waiter's `lock_within`, p50 and p99, as a ratio to the p50 of an
//!    uncontended `lock` + `release` measured in the same run, interleaved (a few between every
//!    two handoffs, while the waiter sleeps). On 1, 3 and 5 nodes. Target: p50 within 3x.
//!    Every other handoff goes to a floor waiter instead ([`floor`]: one thread, plain
//!    sockets, no resplock), so the least any client pays is measured in the same loop.
//! 2. **Crash handoff** ([`handoff`]): the holder never releases (`disarm`, then drop); the
//!    waiter must get the lock within the ttl plus two node timeouts of the grant (the return
//!    of the holder's `lock`). Reported: grant-to-acquire minus the ttl, p50 and max, and the
//!    waiter's attempts; the bench fails (after printing every section) when the bound is
//!    broken.
//! 3. **Hot lock** ([`hot`]): 8 workers in 2 child processes (4 threads each, one `Redlock` per
//!    process) take one resource in turn for `RESPLOCK_BENCH_SECS`: acquire, hold 1 ms,
//!    release. Once with `lock_within`, once with a loop around today's polling `lock` (default
//!    3 retries, 200 ms + up to 100 ms jitter). Reported: grants per second, each worker's
//!    share of the grants against a fair share, how long the lock stays free between two
//!    holders, waits, and the commands the nodes served per grant. Every grant's holding
//!    interval, on the shared monotonic clock, must be disjoint from every other one: the
//!    bench fails otherwise.
//! 4. **Server cost** ([`cost`]): the commands per node per second (`INFO commandstats` before
//!    and after on every node, without the probe's own `INFO` calls and the commands the
//!    scripts run inside `EVALSHA`) that 10 callers cost while a lock they want is held for
//!    `RESPLOCK_BENCH_SECS`: 10 `lock_within` waiters sharing one `Redlock`, 10 with one
//!    `Redlock` each (what 10 processes cost), and 10 polling `lock` loops with the default
//!    retry settings. The three run at once, each on its own nodes.
//!
//! Every measured operation is checked: each lock succeeds, each release reports `true`. As in
//! the acquire bench, an operation that failed only because nodes did not answer within the
//! node timeout (a stall of a loaded machine) is counted and reported instead; more than 1% of
//! them fails the bench.
//!
//! Files: `main.rs` (configuration and entry point), [`clock`] (cross-process time),
//! [`floor`] (the floor waiter),
//! [`child`] (the child processes and what they run), [`ops`] (checked operations),
//! [`probe`] (`INFO commandstats` and `PUBSUB NUMSUB` on the nodes), [`stats`] (percentiles),
//! and one file per section; [`machine`] is the acquire bench's (load average, CPU time).
//!
//! Environment (all optional):
//! - `RESPLOCK_BENCH_ITERS`: measured handoffs per node count (default 500);
//! - `RESPLOCK_BENCH_RUNS`: crash handoffs per node count (default 30);
//! - `RESPLOCK_BENCH_SECS`: seconds per hot-lock variant and of the server-cost window
//!   (default 10).

/// The shared test rig (`tests/support/`): `redis-server` nodes and a raw RESP client.
#[path = "../../tests/support/mod.rs"]
mod support;

/// Load average and CPU time from `/proc`, shared with the acquire bench.
#[path = "../acquire/machine.rs"]
mod machine;

mod child;
mod clock;
mod cost;
mod floor;
mod handoff;
mod hot;
mod ops;
mod probe;
mod stats;

use std::time::{Duration, Instant};

use support::Cluster;

/// Ttl of every lock except the crash holder's.
const TTL: Duration = Duration::from_secs(30);
/// The node timeout of every manager: the crate's default.
const NODE_TIMEOUT: Duration = Duration::from_millis(50);

/// Knobs read from the environment.
pub struct Config {
    /// Measured handoffs per node count (`RESPLOCK_BENCH_ITERS`).
    iters: usize,
    /// Crash handoffs per node count (`RESPLOCK_BENCH_RUNS`).
    crash_runs: usize,
    /// Duration of each hot-lock variant and of the server-cost window (`RESPLOCK_BENCH_SECS`).
    secs: Duration,
}

impl Config {
    fn from_env() -> Self {
        let get = support::measure::env_knob;
        Self {
            iters: usize::try_from(get("RESPLOCK_BENCH_ITERS", 500)).unwrap_or(usize::MAX),
            crash_runs: usize::try_from(get("RESPLOCK_BENCH_RUNS", 30)).unwrap_or(usize::MAX),
            secs: Duration::from_secs(get("RESPLOCK_BENCH_SECS", 10)),
        }
    }

    /// The command line that reproduces this run.
    fn command_line(&self) -> String {
        format!(
            "RESPLOCK_BENCH_ITERS={} RESPLOCK_BENCH_RUNS={} RESPLOCK_BENCH_SECS={} \
             cargo bench --bench waiting",
            self.iters,
            self.crash_runs,
            self.secs.as_secs()
        )
    }
}

fn main() {
    if let Ok(role) = std::env::var(child::CHILD_ENV) {
        child::run(&role);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let config = Config::from_env();
    let started = Instant::now();
    println!(
        "resplock waiting bench: {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        machine::load_average()
    );
    println!("command: `{}`", config.command_line());
    println!(
        "every manager: default settings (node timeout {NODE_TIMEOUT:?}, 3 retries, \
         200 ms + up to 100 ms jitter); lock ttl {TTL:?} unless stated\n"
    );
    let cluster = Cluster::start(5);
    handoff::handoff_section(&cluster, &config);
    let crash_broken = handoff::crash_section(&cluster, &config);
    hot::section(&cluster, &config);
    drop(cluster);
    cost::section(&config);
    println!(
        "\ntotal {:.1} s, load average {}",
        started.elapsed().as_secs_f64(),
        machine::load_average()
    );
    assert!(
        crash_broken.is_empty(),
        "crash handoff beyond the ttl plus two node timeouts: {}",
        crash_broken.join(", ")
    );
}
