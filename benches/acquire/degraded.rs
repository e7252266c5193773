//! Section 2: five nodes with one faulty (paused, then 5 ms late), against the same manager on
//! healthy nodes and against floors.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use resplock::Redlock;

use crate::baseline::{Baseline, Order};
use crate::interleave::Interleaved;
use crate::machine::load_average;
use crate::ops::lock_release;
use crate::stats::{print_header, print_row, Stats};
use crate::support::{self, Cluster, FaultProxy};
use crate::{Config, WARM_UP};

/// Calls timed one by one right after a fault starts.
const FIRST_CALLS: usize = 20;
/// Untimed operations on a degraded setup before it is measured.
const DEGRADED_WARM_UP: usize = 2000;
/// The lateness of the late node.
const LATE_BY: Duration = Duration::from_millis(5);

/// The variants measured in each degraded case.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    /// The healthy reference manager on the bench's five healthy nodes.
    HealthyResplock,
    /// The manager whose fifth node is faulty.
    FaultyResplock,
    /// The floor on the five healthy nodes.
    HealthyFloor,
    /// The floor on the faulty cluster's four live nodes only.
    LiveFloor,
    /// The floor on the four live nodes that also writes to the late node without waiting for
    /// it (late-node case only).
    SentFloor,
}

impl Variant {
    /// The row label; `case` names the fault.
    fn name(self, case: &str) -> String {
        match self {
            Self::HealthyResplock => "resplock, 5 healthy".to_owned(),
            Self::FaultyResplock => format!("resplock, {case}"),
            Self::HealthyFloor => "floor, 5 healthy".to_owned(),
            Self::LiveFloor => "floor, the 4 live nodes".to_owned(),
            Self::SentFloor => "floor, 4 read + slow 1 sent".to_owned(),
        }
    }
}

/// The healthy references measured alongside each degraded case.
struct Healthy<'a> {
    dlm: &'a Redlock,
    floor: Baseline,
}

/// One degraded case to measure.
struct Case<'a> {
    label: &'static str,
    /// The manager over the faulty cluster.
    dlm: &'a Redlock,
    /// The four nodes that stay healthy.
    live: &'a [SocketAddr],
    /// The late node, written to by an extra floor that does not wait for it.
    slow: Option<SocketAddr>,
}

/// Latencies of one degraded case.
struct Degraded {
    label: &'static str,
    healthy: Stats,
    degraded: Stats,
    live_floor: Stats,
    /// Latency of each of the first calls after the fault started, and whether it succeeded.
    first: Vec<(u64, bool)>,
}

/// Warms the case's manager up on healthy nodes, runs `start_fault`, times the first calls
/// one by one, warms up again, then measures it interleaved with the healthy references and
/// the floor on the live nodes; with a slow node, also a floor that writes to that node too
/// but does not wait for it. The caller ends the fault.
fn measure(
    case: &Case<'_>,
    start_fault: &mut dyn FnMut(),
    healthy: &mut Healthy<'_>,
    config: &Config,
) -> Degraded {
    let label = case.label;
    let dlm = case.dlm;
    let key = format!("bench:degraded:{label}");
    for _ in 0..WARM_UP {
        lock_release(dlm, &key);
    }
    start_fault();
    let first: Vec<(u64, bool)> = (0..FIRST_CALLS)
        .map(|_| {
            let start = Instant::now();
            let done = lock_release(dlm, &key);
            (start.elapsed().as_nanos() as u64, done)
        })
        .collect();
    let warm_started = Instant::now();
    for _ in 0..DEGRADED_WARM_UP {
        lock_release(dlm, &key);
    }
    let warm = warm_started.elapsed();

    let load_before = load_average();
    let mut live_floor = Baseline::connect(
        case.live,
        &format!("bench:floor-live:{label}"),
        b"11fe000000000000",
        Order::AllFirst,
    );
    let mut sent_floor = case.slow.map(|addr| {
        Baseline::connect(
            case.live,
            &format!("bench:floor-sent:{label}"),
            b"5e47000000000000",
            Order::AllFirst,
        )
        .with_unread(addr)
    });
    let healthy_dlm = healthy.dlm;
    let healthy_key = format!("bench:healthy:{label}");
    let name = |variant: Variant| variant.name(label);
    let mut run = Interleaved::new(config.iters);
    run.add(
        Variant::HealthyResplock,
        name(Variant::HealthyResplock),
        || lock_release(healthy_dlm, &healthy_key),
    );
    run.add(
        Variant::FaultyResplock,
        name(Variant::FaultyResplock),
        || lock_release(dlm, &key),
    );
    run.add_baseline(
        Variant::HealthyFloor,
        name(Variant::HealthyFloor),
        &mut healthy.floor,
    );
    run.add_baseline(
        Variant::LiveFloor,
        name(Variant::LiveFloor),
        &mut live_floor,
    );
    if let Some(floor) = &mut sent_floor {
        run.add_baseline(Variant::SentFloor, name(Variant::SentFloor), floor);
    }
    let measured = run.run(config.blocks(), config.block);
    for samples in measured.all() {
        samples.check_timeouts();
    }
    if let Some(floor) = &mut sent_floor {
        floor.finish_unread();
    }

    println!(
        "\n-- {label}: load average {load_before} before, {} after --",
        load_average()
    );
    println!(
        "first {FIRST_CALLS} calls after the fault started (us): {}",
        first
            .iter()
            .map(|&(ns, done)| format!("{:.0}{}", ns as f64 / 1e3, if done { "" } else { "(t/o)" }))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "then {DEGRADED_WARM_UP} untimed calls, {:.1} us each on average; then, interleaved:",
        warm.as_secs_f64() * 1e6 / DEGRADED_WARM_UP as f64,
    );
    print_header("variant");
    for samples in measured.all() {
        print_row(&samples.name, &samples.stats(), samples.timed_out);
    }
    Degraded {
        label,
        healthy: measured.get(Variant::HealthyResplock).stats(),
        degraded: measured.get(Variant::FaultyResplock).stats(),
        live_floor: measured.get(Variant::LiveFloor).stats(),
        first,
    }
}

pub fn section(reference: &Cluster, config: &Config) {
    println!(
        "\n== 2. degraded: 5 nodes, one of them faulty, {} ops per variant in blocks of {}",
        config.iters, config.block
    );
    let healthy_dlm = Redlock::new(reference.urls()).expect("healthy manager");
    let reference_addrs: Vec<SocketAddr> =
        reference.nodes().iter().map(|node| node.addr()).collect();
    let mut healthy = Healthy {
        dlm: &healthy_dlm,
        floor: Baseline::connect(
            &reference_addrs,
            "bench:floor-healthy",
            b"fea1000000000000",
            Order::AllFirst,
        ),
    };
    let mut faulty = Cluster::start(5);
    let live: Vec<SocketAddr> = faulty.nodes()[..4].iter().map(|node| node.addr()).collect();
    let mut results = Vec::new();

    // (a) One node paused with SIGSTOP.
    let dlm = Redlock::new(faulty.urls()).expect("manager over the paused cluster");
    let paused = Case {
        label: "1 of 5 paused",
        dlm: &dlm,
        live: &live,
        slow: None,
    };
    results.push(measure(
        &paused,
        &mut || faulty[4].pause(),
        &mut healthy,
        config,
    ));
    faulty[4].resume();
    drop(dlm);
    println!(
        "connections the paused node had received once resumed (this probe included): {}",
        connections_received(faulty[4].addr())
    );

    // (b) One node answering 5 ms late through a proxy (its connections only go through it).
    let proxy = FaultProxy::for_node(&faulty[4]);
    let mut urls = faulty.urls();
    urls[4] = proxy.url();
    let dlm = Redlock::new(&urls).expect("manager through the proxy");
    let late = Case {
        label: "1 of 5 +5 ms",
        dlm: &dlm,
        live: &live,
        slow: Some(proxy.addr()),
    };
    results.push(measure(
        &late,
        &mut || proxy.set_latency_downstream(LATE_BY),
        &mut healthy,
        config,
    ));
    proxy.heal();
    drop(dlm);
    drop(proxy);
    drop(faulty);

    println!("\nhow far resplock moves from healthy (same interleaved run):");
    for case in &results {
        println!(
            "  {:<14} p50 {:.3}x  p99 {:.3}x  mean {:.3}x of healthy; p50 {:.3}x of the 4-live-node floor; first call {:.0} us",
            case.label,
            case.degraded.p50 / case.healthy.p50,
            case.degraded.p99 / case.healthy.p99,
            case.degraded.mean / case.healthy.mean,
            case.degraded.p50 / case.live_floor.p50,
            case.first[0].0 as f64 / 1e3,
        );
    }
}

/// `total_connections_received` from `INFO stats` on `addr`.
fn connections_received(addr: SocketAddr) -> u64 {
    let mut raw = support::Raw::connect(addr).expect("connect after resume");
    let info = raw.info("stats");
    info.lines()
        .find_map(|line| line.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_connections_received in INFO stats")
}
