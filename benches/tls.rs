//! Lock + release over TLS against plaintext TCP (and a Unix socket), in the same run, on the
//! same three `redis-server` processes: each node listens on a plaintext port, a TLS port and
//! a Unix socket, so the transports differ and nothing else does.
//!
//! `cargo bench --features tls --bench tls` prints, per transport, the latency percentiles of
//! one `lock` + `release`, and the ratio of TLS (and Unix) to TCP: over all samples, and as the
//! median of the per-block ratios (the variants run in interleaved blocks in rotating order, so
//! load from other processes hits all alike). Then the cost of a manager's first lock + release
//! (connect, TLS handshake and `PING`, `SCRIPT LOAD`s).
//!
//! Every operation is checked: each lock succeeds and its release reports `true`.
//!
//! Environment (optional): `RESPLOCK_BENCH_ITERS` (timed operations per transport, default
//! 5000), `RESPLOCK_BENCH_BLOCK` (operations per interleaved block, default 250).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use resplock::Redlock;
use support::measure;
use support::tls::{Pki, TlsNode, TlsOptions};
use support::{unique_temp_dir, RedisOptions};

const TTL: Duration = Duration::from_secs(30);
const WARM_UP: usize = 500;
const FIRST_LOCKS: usize = 30;

struct Variant {
    name: &'static str,
    urls: Vec<String>,
    ns: Vec<u64>,
    block_p50: Vec<u64>,
}

fn manager(variant: &Variant, pki: &Pki) -> Redlock {
    Redlock::builder()
        .nodes(&variant.urls)
        .node_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_secs(2))
        .tls_ca_file(pki.ca())
        .build()
        .unwrap_or_else(|e| panic!("{}: {e}", variant.name))
}

fn lock_release(dlm: &Redlock, name: &str) {
    let guard = dlm
        .lock("bench:tls", TTL)
        .unwrap_or_else(|e| panic!("{name}: lock: {e}"));
    assert_eq!(guard.release(), Ok(true), "{name}: release");
}

fn percentile(sorted: &[u64], p: usize) -> f64 {
    let index = (sorted.len() * p / 100).min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or(0) as f64 / 1000.0
}

fn mean(ns: &[u64]) -> f64 {
    ns.iter().sum::<u64>() as f64 / ns.len().max(1) as f64 / 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let iters = measure::env_count("RESPLOCK_BENCH_ITERS", 5000);
    let block = measure::env_count("RESPLOCK_BENCH_BLOCK", 250).min(iters);
    let blocks = iters.div_ceil(block);
    let pki = Pki::generate();
    let socket_dir = unique_temp_dir("bench-unix");
    let nodes: Vec<TlsNode> = (0..3)
        .map(|i| {
            let path = socket_dir.join(format!("redis-{i}.sock"));
            let opts = TlsOptions {
                redis: RedisOptions::new()
                    .config("unixsocket", &path.to_string_lossy())
                    .config("unixsocketperm", "700"),
                ..TlsOptions::default()
            };
            TlsNode::start(&pki, &opts)
        })
        .collect();
    let mut variants = vec![
        Variant {
            name: "tcp",
            urls: nodes.iter().map(|n| n.node().url()).collect(),
            ns: Vec::new(),
            block_p50: Vec::new(),
        },
        Variant {
            name: "tls",
            urls: nodes.iter().map(TlsNode::url).collect(),
            ns: Vec::new(),
            block_p50: Vec::new(),
        },
        Variant {
            name: "unix",
            urls: (0..3)
                .map(|i| format!("unix://{}/redis-{i}.sock", socket_dir.display()))
                .collect(),
            ns: Vec::new(),
            block_p50: Vec::new(),
        },
    ];
    println!(
        "resplock tls bench: lock + release on 3 local nodes, the same redis-server processes \
         for every transport; {} timed operations per transport in blocks of {block}",
        blocks * block
    );

    let managers: Vec<Redlock> = variants.iter().map(|v| manager(v, &pki)).collect();
    for (variant, dlm) in variants.iter().zip(&managers) {
        for _ in 0..WARM_UP {
            lock_release(dlm, variant.name);
        }
    }
    let mut times = vec![0u64; block];
    for round in 0..blocks {
        for offset in 0..variants.len() {
            let index = (round + offset) % variants.len();
            let (variant, dlm) = (&mut variants[index], &managers[index]);
            for slot in times.iter_mut() {
                let started = Instant::now();
                lock_release(dlm, variant.name);
                *slot = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            }
            variant.ns.extend_from_slice(&times);
            times.sort_unstable();
            variant.block_p50.push(times[times.len() / 2]);
        }
    }

    println!(
        "\n{:<6} {:>9} {:>9} {:>9} {:>9}",
        "", "p50 us", "p90 us", "p99 us", "mean us"
    );
    for variant in &mut variants {
        variant.ns.sort_unstable();
        println!(
            "{:<6} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            variant.name,
            percentile(&variant.ns, 50),
            percentile(&variant.ns, 90),
            percentile(&variant.ns, 99),
            mean(&variant.ns),
        );
    }
    let tcp = &variants[0];
    for other in &variants[1..] {
        let block_ratios: Vec<f64> = other
            .block_p50
            .iter()
            .zip(&tcp.block_p50)
            .map(|(&o, &t)| o as f64 / t.max(1) as f64)
            .collect();
        println!(
            "{} / tcp: p50 {:.2}x, mean {:.2}x, median of per-block p50 ratios {:.2}x",
            other.name,
            percentile(&other.ns, 50) / percentile(&tcp.ns, 50),
            mean(&other.ns) / mean(&tcp.ns),
            median(block_ratios),
        );
    }

    println!(
        "\nfirst lock + release of a fresh manager (connect, tls handshake + PING, \
         SCRIPT LOADs), {FIRST_LOCKS} managers per transport:"
    );
    let mut first_tcp = f64::NAN;
    for variant in &variants {
        let mut ns: Vec<u64> = (0..FIRST_LOCKS)
            .map(|_| {
                let dlm = manager(variant, &pki);
                let started = Instant::now();
                lock_release(&dlm, variant.name);
                u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
            })
            .collect();
        ns.sort_unstable();
        let p50 = percentile(&ns, 50);
        if variant.name == "tcp" {
            first_tcp = p50;
        }
        println!(
            "{:<6} p50 {:>8.1} us ({:.2}x tcp)",
            variant.name,
            p50,
            p50 / first_tcp
        );
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(socket_dir);
}
