//! What keeping locks alive and inspecting them cost, on real `redis-server` nodes the bench
//! starts itself (through the test rig, `tests/support/`).
//!
//! `cargo bench --bench lease` prints two sections:
//!
//! 1. **Keep-alive**: 1,000 leases with a 10 s ttl, kept by one `Redlock` on 3 nodes for
//!    `RESPLOCK_BENCH_SECS` (default 12, so every lease is renewed three or four times). It
//!    reports renewals per second, this process's CPU time while it holds them (summed over
//!    its threads from `/proc/self/task/*/schedstat`, nanoseconds), the CPU per renewal, the
//!    threads and connections it added, and as a baseline in the same run the CPU per
//!    renewal of one `LockGuard::extend` call per lease (what a client without batching
//!    spends). Every lease must still be held at the end.
//! 2. **Inspect**: `Redlock::inspect` latency (p50, p99) on 1, 3 and 5 nodes against a floor
//!    measured in the same run: a plain `TcpStream` client that writes the same
//!    `EVALSHA <inspect> 1 key` to every node, then reads every reply. Interleaved in blocks so
//!    that load from other processes hits both alike.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use resplock::script::INSPECT_SHA1;
use resplock::{KeepAlive, Redlock};
use support::{measure, Cluster};

const LEASES: usize = 1000;
const LEASE_TTL: Duration = Duration::from_secs(10);
const INSPECT_ITERS: usize = 4000;
const BLOCK: usize = 200;

/// CPU time of this process so far, summed over its threads (nanoseconds).
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

fn connections(cluster: &Cluster) -> usize {
    cluster
        .nodes()
        .iter()
        .map(|node| {
            let info = node.raw().info("clients");
            let clients = info
                .lines()
                .find_map(|l| l.strip_prefix("connected_clients:"))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(1);
            clients - 1
        })
        .sum()
}

fn keep_alive(secs: u64) {
    let cluster = Cluster::start(3);
    let dlm = Redlock::builder()
        .nodes(cluster.urls())
        .node_timeout(Duration::from_millis(200))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let threads_before = threads();
    let guards: Vec<_> = (0..LEASES)
        .map(|i| {
            dlm.lock(format!("bench:lease:{i}"), LEASE_TTL)
                .unwrap_or_else(|e| panic!("lock {i}: {e}"))
        })
        .collect();

    // Baseline: one extend round per lease, as a client without batching renews.
    let mut guards = guards;
    let cpu = cpu_ns();
    let started = Instant::now();
    for guard in &mut guards {
        guard
            .extend(LEASE_TTL)
            .unwrap_or_else(|e| panic!("extend: {e}"));
    }
    let single_cpu = cpu_ns() - cpu;
    let single_wall = started.elapsed();

    let leases: Vec<_> = guards
        .into_iter()
        .map(|guard| guard.keep_alive(KeepAlive::default()))
        .collect();
    let hold = Duration::from_secs(secs);
    let period = LEASE_TTL / 3;
    let cpu = cpu_ns();
    let started = Instant::now();
    std::thread::sleep(hold);
    let kept_cpu = cpu_ns() - cpu;
    let elapsed = started.elapsed();
    assert!(
        leases.iter().all(resplock::Lease::is_held),
        "a lease was lost"
    );
    let renewals = (elapsed.as_secs_f64() / period.as_secs_f64()).floor() * LEASES as f64;
    let added_threads = threads() - threads_before;
    let conns = connections(&cluster);
    drop(leases);

    let per_renewal = kept_cpu as f64 / renewals.max(1.0);
    let per_extend = single_cpu as f64 / LEASES as f64;
    println!(
        "## Keep-alive: {LEASES} leases, ttl {LEASE_TTL:?}, renewed every {period:?}, 3 nodes"
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| held for | {:.1} s |", elapsed.as_secs_f64());
    println!(
        "| renewals (at least) | {renewals:.0} ({:.0}/s) |",
        renewals / elapsed.as_secs_f64()
    );
    println!(
        "| client CPU while holding | {:.1} ms ({:.2} % of one core) |",
        kept_cpu as f64 / 1e6,
        100.0 * kept_cpu as f64 / elapsed.as_nanos() as f64
    );
    println!(
        "| client CPU per renewal, batched | {:.2} µs |",
        per_renewal / 1e3
    );
    println!(
        "| client CPU per renewal, one `extend` per lease (baseline, same run) | {:.2} µs ({:.0} ms wall for {LEASES}) |",
        per_extend / 1e3,
        single_wall.as_secs_f64() * 1e3
    );
    println!("| batched / baseline | {:.3}x |", per_renewal / per_extend);
    println!(
        "| leases kept per second of client CPU | {:.0} |",
        LEASES as f64 * elapsed.as_secs_f64() / (kept_cpu as f64 / 1e9)
    );
    println!("| threads added | {added_threads} |");
    println!("| connections to the 3 nodes | {conns} |");
    println!();
}

/// The floor for inspect: the same `EVALSHA` written to every node, then every reply read.
struct Floor {
    conns: Vec<TcpStream>,
    command: Vec<u8>,
    buf: Vec<u8>,
}

impl Floor {
    fn new(cluster: &Cluster, key: &str) -> Self {
        let conns = cluster
            .nodes()
            .iter()
            .map(|node| measure::plain_stream(node.addr(), Duration::from_secs(2)))
            .collect();
        let mut command = Vec::new();
        resplock::resp::encode_command(
            &mut command,
            &[b"EVALSHA", INSPECT_SHA1.as_bytes(), b"1", key.as_bytes()],
        );
        Self {
            conns,
            command,
            buf: vec![0; 4096],
        }
    }

    /// One round; checks each reply is a two-element array (the key is held everywhere).
    fn run(&mut self) {
        for conn in &mut self.conns {
            conn.write_all(&self.command)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        for conn in &mut self.conns {
            let mut have = 0;
            loop {
                let n = conn
                    .read(&mut self.buf[have..])
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(n > 0, "closed");
                have += n;
                match resplock::resp::decode(
                    &self.buf[..have],
                    &resplock::resp::Limits::LOCK_CLIENT,
                ) {
                    Ok(resplock::resp::Status::Complete((
                        resplock::resp::Reply::Array(Some(a)),
                        _,
                    ))) if a.len() == 2 => break,
                    Ok(resplock::resp::Status::Incomplete) => {}
                    other => panic!("unexpected reply {other:?}"),
                }
            }
        }
    }
}

fn inspect(nodes: usize) -> (Duration, Duration, Duration, Duration) {
    let cluster = Cluster::start(nodes);
    let dlm = Redlock::builder()
        .nodes(cluster.urls())
        .node_timeout(Duration::from_millis(200))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let guard = dlm
        .lock("bench:inspect", Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut floor = Floor::new(&cluster, "bench:inspect");
    for _ in 0..500 {
        floor.run();
        let seen = dlm
            .inspect("bench:inspect")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(seen.holder(), Some(guard.value()));
    }
    let mut ours = Vec::with_capacity(INSPECT_ITERS);
    let mut base = Vec::with_capacity(INSPECT_ITERS);
    for block in 0..INSPECT_ITERS / BLOCK {
        for turn in 0..2 {
            let ours_first = (block + turn) % 2 == 0;
            for _ in 0..BLOCK {
                let started = Instant::now();
                if ours_first {
                    let seen = dlm
                        .inspect("bench:inspect")
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert!(seen.is_locked());
                    ours.push(started.elapsed());
                } else {
                    floor.run();
                    base.push(started.elapsed());
                }
            }
        }
    }
    ours.sort_unstable();
    base.sort_unstable();
    (
        measure::percentile(&ours, 0.5),
        measure::percentile(&ours, 0.99),
        measure::percentile(&base, 0.5),
        measure::percentile(&base, 0.99),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs = measure::env_knob("RESPLOCK_BENCH_SECS", 12);
    keep_alive(secs);
    println!("## Inspect vs the floor (write all, read all), p50 and p99");
    println!("| nodes | inspect p50 | floor p50 | ratio p50 | inspect p99 | floor p99 |");
    println!("|---|---|---|---|---|---|");
    for nodes in [1, 3, 5] {
        let (p50, p99, f50, f99) = inspect(nodes);
        println!(
            "| {nodes} | {p50:?} | {f50:?} | {:.2}x | {p99:?} | {f99:?} |",
            p50.as_secs_f64() / f50.as_secs_f64()
        );
    }
}
