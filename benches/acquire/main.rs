//! Lock-and-release benchmarks on real `redis-server` nodes that the bench starts itself.
//!
//! `cargo bench --bench acquire` prints three sections:
//!
//! 1. **Acquire** ([`acquire`]): one `lock` then `release` of one resource on 1, 3 and 5 nodes,
//!    next to two baselines over plain `std::net::TcpStream` with hand-written RESP bytes and
//!    no library code (`TCP_NODELAY` set, see [`baseline`]): the *floor* writes
//!    `SET key value NX PX 30000` to every node, then reads every reply, then does the same
//!    with `EVALSHA <release> 1 key value`; the *sequential* client does the same commands node
//!    by node (write, read, next node). A third baseline, the *quorum floor*, is the floor with
//!    resplock's early stop: it reads only the first `n/2 + 1` `SET` replies (in node order)
//!    and the rest before the release replies. The variants run in interleaved blocks
//!    (rotating order, see [`interleave`]), so load from other processes hits all of them
//!    alike. Ratios to the floor are printed both over all samples and as the median of the
//!    per-block ratios (each block's resplock p50 over the floor p50 of the same round of
//!    blocks), which cancels slow drifts in machine load.
//! 2. **Degraded** ([`degraded`]): five nodes with one paused (`SIGSTOP`), then with one
//!    answering 5 ms late through a fault proxy. The lock manager is warmed up on the healthy
//!    nodes, the fault is switched on, the first calls are timed one by one, then it warms up
//!    again (slow-node detection needs a few rounds) and is measured interleaved with the same
//!    manager on a healthy five-node cluster and with floors: five healthy nodes, and the four
//!    live nodes only (the physical floor with a dead minority: a client that waits for every
//!    node would block for its timeout on the paused one). For the late node, also a floor
//!    that writes to it as well but never waits for it, draining its replies without blocking:
//!    that isolates the cost of the proxy's own threads on this machine from resplock's.
//! 3. **Throughput** ([`throughput`]): 1, 2, 4 and 8 threads sharing one `Redlock` (clones) on
//!    five nodes, on distinct resources (`lock`) and all contending for one resource
//!    (`try_lock` in a loop, with a mutual-exclusion check), for a fixed time each.
//!
//! Every measured operation is checked: each lock succeeds and its release reports `true`
//! ([`ops`]), each baseline reply is exactly `+OK` and `:1` (also the unread node's, drained at
//! the end), and no two threads ever hold the contended lock at once. One exception, counted in
//! the `timeouts` columns: an operation that failed only because nodes did not answer within
//! the node timeout (50 ms), which a stall of a loaded machine causes now and then; the bench
//! fails when that happens to more than 1% of a variant's operations.
//!
//! The bench uses only the crate's public API (`Redlock`, `Error`, `NodeError`,
//! `resplock::script`). The `redis-server` nodes and the fault proxy come from the test rig in
//! `tests/support/`, which integration tests, benches and examples share; it is included here
//! by `#[path]` (see [`support`]), so a change to the rig also changes this bench.
//!
//! Files: `main.rs` (configuration and entry point), [`baseline`] (the hand-written clients),
//! [`ops`] (checked resplock operations), [`interleave`] (interleaved timing), [`stats`]
//! (percentiles, ratios, tables), [`machine`] (load average and CPU time from `/proc`), and
//! one file per section.
//!
//! Environment (all optional):
//! - `RESPLOCK_BENCH_ITERS`: measured lock+release per variant and case (default 10000);
//! - `RESPLOCK_BENCH_BLOCK`: operations per interleaved block (default 250: a block of the
//!   slowest variant then lasts about a tenth of a second, so bursts of load from other
//!   processes land on every variant alike);
//! - `RESPLOCK_BENCH_SECS`: seconds per throughput case (default 3).

/// The shared test rig (`tests/support/`): `redis-server` nodes, the fault proxy and a raw
/// RESP client. Included by path because tests, benches and examples all use it.
#[path = "../../tests/support/mod.rs"]
mod support;

mod acquire;
mod baseline;
mod degraded;
mod interleave;
mod machine;
mod ops;
mod stats;
mod throughput;

use std::time::{Duration, Instant};

use support::Cluster;

/// Lock ttl of every measured operation (the baselines send the same ttl as `PX`).
const TTL: Duration = Duration::from_secs(30);
/// Untimed operations per variant before a measurement.
const WARM_UP: usize = 1000;

/// Knobs read from the environment.
struct Config {
    /// Timed operations per variant (`RESPLOCK_BENCH_ITERS`).
    iters: usize,
    /// Operations per interleaved block (`RESPLOCK_BENCH_BLOCK`, at most `iters`).
    block: usize,
    /// Duration of each throughput case (`RESPLOCK_BENCH_SECS`).
    secs: Duration,
}

impl Config {
    fn from_env() -> Self {
        let get = support::measure::env_knob;
        let iters = usize::try_from(get("RESPLOCK_BENCH_ITERS", 10_000)).unwrap_or(usize::MAX);
        let block = usize::try_from(get("RESPLOCK_BENCH_BLOCK", 250)).unwrap_or(usize::MAX);
        Self {
            iters,
            block: block.min(iters),
            secs: Duration::from_secs(get("RESPLOCK_BENCH_SECS", 3)),
        }
    }

    /// Rounds of interleaved blocks. Each variant runs `blocks() * block` timed operations,
    /// which is `iters` rounded up to a whole number of blocks.
    fn blocks(&self) -> usize {
        self.iters.div_ceil(self.block)
    }
}

fn main() {
    let config = Config::from_env();
    let started = Instant::now();
    println!(
        "resplock acquire bench: {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        machine::load_average()
    );
    let cluster = Cluster::start(5);
    acquire::section(&cluster, &config);
    degraded::section(&cluster, &config);
    throughput::section(&cluster, &config);
    println!("\ntotal {:.1} s", started.elapsed().as_secs_f64());
}
