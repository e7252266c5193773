//! Section 4: what callers that wait for a held lock cost the servers. Three setups run at
//! once, each on its own three nodes: a holder takes the lock, then [`CALLERS`] threads want
//! it for the whole window; `INFO commandstats` on every node before and after the window
//! gives the commands they sent (the probe's own `INFO` calls, and the commands the scripts run
//! inside `EVALSHA`, left out: [`crate::probe::SCRIPT_INTERNAL`]). After the window the holder
//! releases and every waiter must get the lock in turn (and release it); no caller may get it
//! before. The polling loops stop at the end of the window: only those whose last `lock` call
//! was still retrying get the lock after the release.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use resplock::Redlock;

use crate::machine::load_average;
use crate::ops::{self, only_timeouts};
use crate::probe::{delta_all, sent, total, CommandStats, Probe, SCRIPT_INTERNAL};
use crate::support::Cluster;
use crate::{Config, TTL};

/// Callers per setup.
const CALLERS: usize = 10;
/// Nodes per setup.
const NODES: usize = 3;
const RESOURCE: &str = "bench:wait:cost";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    /// `lock_within` from threads sharing one `Redlock`.
    SharedWaiters,
    /// `lock_within` from threads with one `Redlock` each (as separate processes would).
    OwnWaiters,
    /// `lock` in a loop, default retry settings, threads sharing one `Redlock`.
    Polling,
}

impl Setup {
    fn label(self) -> String {
        match self {
            Self::SharedWaiters => format!("{CALLERS} `lock_within` waiters, one `Redlock`"),
            Self::OwnWaiters => format!("{CALLERS} `lock_within` waiters, one `Redlock` each"),
            Self::Polling => format!("{CALLERS} polling `lock` loops (3 retries, 200 + ≤100 ms)"),
        }
    }
}

struct CostRun {
    setup: Setup,
    window: Duration,
    /// Calls per command, summed over the nodes.
    calls: CommandStats,
    /// Calls after the first [`settle`] of the window (arrival, dialling, subscribing), and
    /// how long that part lasted.
    steady: (u64, Duration),
    /// Callers that got the lock after the holder released.
    acquired: usize,
}

fn run(setup: Setup, cluster: &Cluster, secs: Duration, barrier: &Barrier) -> CostRun {
    let urls = cluster.urls();
    let holder = ops::manager(&urls);
    let mut timeouts = 0;
    let guard = ops::lock_free(&holder, &RESOURCE, secs + TTL, &mut timeouts);
    let mut probe = Probe::new(cluster.nodes());
    let managers: Vec<Redlock> = match setup {
        Setup::OwnWaiters => (0..CALLERS).map(|_| ops::manager(&urls)).collect(),
        Setup::SharedWaiters | Setup::Polling => vec![ops::manager(&urls); CALLERS],
    };
    let released = AtomicBool::new(false);
    let acquired = AtomicUsize::new(0);
    barrier.wait();
    let before = probe.all_stats();
    let start = Instant::now();
    let end = start + secs;
    let settled_at = start + settle(secs);
    let (settled, after, window) = std::thread::scope(|scope| {
        for dlm in &managers {
            let (released, acquired) = (&released, &acquired);
            scope.spawn(move || {
                let got = match setup {
                    Setup::SharedWaiters | Setup::OwnWaiters => {
                        let max_wait = secs + Duration::from_secs(60);
                        match dlm.lock_within(RESOURCE, TTL, max_wait) {
                            Ok(guard) => Some(guard),
                            Err(e) => panic!("{}: lock_within: {e}", setup.label()),
                        }
                    }
                    Setup::Polling => loop {
                        match dlm.lock(RESOURCE, TTL) {
                            Ok(guard) => break Some(guard),
                            Err(e) if e.is_contention() || only_timeouts(&e) => {}
                            Err(e) => panic!("{}: lock: {e}", setup.label()),
                        }
                        if Instant::now() >= end {
                            break None;
                        }
                    },
                };
                if let Some(guard) = got {
                    assert!(
                        released.load(Ordering::SeqCst),
                        "{}: got the lock while the holder held it",
                        setup.label()
                    );
                    acquired.fetch_add(1, Ordering::SeqCst);
                    ops::release(dlm, guard);
                }
            });
        }
        std::thread::sleep(settled_at.saturating_duration_since(Instant::now()));
        let settled = (probe.all_stats(), Instant::now());
        std::thread::sleep(end.saturating_duration_since(Instant::now()));
        let after = probe.all_stats();
        let window = start.elapsed();
        released.store(true, Ordering::SeqCst);
        ops::release(&holder, guard);
        (settled, after, window)
    });
    let acquired = acquired.load(Ordering::SeqCst);
    if setup != Setup::Polling {
        assert_eq!(
            acquired,
            CALLERS,
            "{}: every waiter gets the lock",
            setup.label()
        );
    }
    CostRun {
        setup,
        window,
        calls: delta_all(&before, &after),
        steady: (
            sent(&delta_all(&settled.0, &after)),
            (start + window).saturating_duration_since(settled.1),
        ),
        acquired,
    }
}

/// The first part of the window, left out of the steady rate.
fn settle(secs: Duration) -> Duration {
    (secs / 4).min(Duration::from_secs(1))
}

/// Section 4.
pub fn section(config: &Config) {
    let load = load_average();
    let setups = [Setup::SharedWaiters, Setup::OwnWaiters, Setup::Polling];
    let clusters: Vec<Cluster> = setups.iter().map(|_| Cluster::start(NODES)).collect();
    let barrier = Barrier::new(setups.len());
    let runs: Vec<CostRun> = std::thread::scope(|scope| {
        let handles: Vec<_> = setups
            .iter()
            .zip(&clusters)
            .map(|(&setup, cluster)| {
                let barrier = &barrier;
                scope.spawn(move || run(setup, cluster, config.secs, barrier))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("cost thread"))
            .collect()
    });
    println!(
        "## 4. Server cost: {CALLERS} callers wanting a lock held for {:?} ({NODES} nodes per \
         setup, the three setups at once, load {load} → {})",
        config.secs,
        load_average()
    );
    println!();
    println!(
        "Commands the callers sent, as each node counted them (`INFO commandstats` after − \
         before; the probe's own `INFO` calls and the commands scripts run inside `EVALSHA` — \
         {} — left out), \
         averaged over the {NODES} nodes: per second over the whole window, per second after \
         its first {:?} (arrival, dialling, subscribing), and in the whole window by command.",
        SCRIPT_INTERNAL.join(", ").to_uppercase(),
        settle(config.secs)
    );
    println!();
    println!(
        "| callers | commands per node per s | after the first {:?} | per node in the window: \
         sent | SET | PTTL | SUBSCRIBE | SCRIPT LOAD | EVALSHA | INFO | other | run inside \
         scripts | got the lock after the release |",
        settle(config.secs)
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let per_node = |calls: &CommandStats, name: &str| -> f64 {
        calls.get(name).copied().unwrap_or(0) as f64 / NODES as f64
    };
    let mut rates = Vec::new();
    for run in &runs {
        let all = sent(&run.calls) as f64 / NODES as f64;
        let inside = (total(&run.calls) - sent(&run.calls)) as f64 / NODES as f64;
        let named = ["set", "pttl", "subscribe", "script|load", "evalsha", "info"];
        let other = (all - named.iter().map(|n| per_node(&run.calls, n)).sum::<f64>()).max(0.0);
        let rate = all / run.window.as_secs_f64();
        let (steady, steady_for) = run.steady;
        let steady = steady as f64 / NODES as f64 / steady_for.as_secs_f64();
        rates.push((rate, steady));
        println!(
            "| {} | {rate:.2} | {steady:.2} | {all:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | \
             {:.1} | {other:.1} | {inside:.1} | {}/{CALLERS} |",
            run.setup.label(),
            per_node(&run.calls, "set"),
            per_node(&run.calls, "pttl"),
            per_node(&run.calls, "subscribe"),
            per_node(&run.calls, "script|load"),
            per_node(&run.calls, "evalsha"),
            per_node(&run.calls, "info"),
            run.acquired,
        );
    }
    println!();
    let others: Vec<String> = runs
        .iter()
        .flat_map(|run| {
            let named = ["set", "pttl", "subscribe", "script|load", "evalsha", "info"];
            run.calls
                .iter()
                .filter(move |(name, _)| {
                    !named.contains(&name.as_str()) && !SCRIPT_INTERNAL.contains(&name.as_str())
                })
                .map(move |(name, calls)| format!("{name} {calls} ({:?})", run.setup))
        })
        .collect();
    if !others.is_empty() {
        println!("other commands sent, all nodes: {}", others.join(", "));
    }
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.0}x", a / b)
        } else {
            "∞ (the waiters sent nothing)".to_owned()
        }
    };
    println!(
        "polling / waiting, whole window: {} (one `Redlock`), {} (one each); after the first \
         {:?}: {}, {}",
        ratio(rates[2].0, rates[0].0),
        ratio(rates[2].0, rates[1].0),
        settle(config.secs),
        ratio(rates[2].1, rates[0].1),
        ratio(rates[2].1, rates[1].1),
    );
    println!();
}
