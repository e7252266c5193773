//! Sections 1 and 2: one holder (this process), one waiter (a child process in `lock_within`).
//!
//! **Handoff**: per measured handoff, the bench locks the resource, orders the child to wait
//! for it, and waits until the child is asleep: its attempt's `PTTL` reached node 0, every node
//! counts a subscriber on the resource's channel, and node 0 then saw no further attempt for
//! [`QUIET`]. While the waiter sleeps it times [`BASELINE_PER_HANDOFF`] uncontended `lock` +
//! `release` of another resource (the baseline), then releases. The child stamps the return of
//! `lock_within` on `CLOCK_MONOTONIC`, releases the lock and reports; the handoff is that stamp
//! minus the return of the holder's `release`. Rounds alternate between resplock's waiter and
//! the floor waiter ([`crate::floor`]) on a resource of its own; both share the baseline.
//!
//! **Crash handoff**: the bench locks the resource with a short ttl, stamps the grant (the
//! return of `lock`), disarms and drops the guard (the keys stay until they expire), and
//! orders the child to wait. Reported: the child's acquire stamp minus the grant minus the ttl.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use resplock::script::RELEASED_CHANNEL_PREFIX;

use crate::child::{parse_line, ChildProc, FLOOR, WAITER};
use crate::clock::{Clock, Ns};
use crate::machine::load_average;
use crate::ops;
use crate::probe::Probe;
use crate::stats::{ms, us, Dist};
use crate::support::Cluster;
use crate::{Config, NODE_TIMEOUT, TTL};

/// Node counts of both sections.
const NODE_COUNTS: [usize; 3] = [1, 3, 5];
/// Untimed handoffs first (the first one dials the nodes and subscribes).
const WARM_UP: usize = 20;
/// Uncontended lock + release timed between two handoffs.
const BASELINE_PER_HANDOFF: usize = 4;
/// How long node 0 must see no new attempt before the waiter counts as asleep.
const QUIET: Duration = Duration::from_millis(3);
/// The waiter's `max_wait`.
const MAX_WAIT: Duration = Duration::from_secs(10);
/// The crash holder's ttl.
const CRASH_TTL: Duration = Duration::from_millis(200);
/// Handoffs may not exceed the target ratio of the baseline p50.
const TARGET_RATIO: f64 = 3.0;

/// The child's side: for each `wait <resource> <ttl ms> <max_wait ms>` line, `lock_within`,
/// then release, then `got <called ns> <acquired ns> <release timed out 0|1>`.
pub fn waiter_child(urls: &[String]) {
    let dlm = ops::manager(urls);
    let clock = Clock::new();
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap_or_else(|e| panic!("waiter child: stdin: {e}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["wait", resource, ttl, max_wait] = words[..] else {
            panic!("waiter child: bad order {line:?}");
        };
        let millis = |text: &str| {
            Duration::from_millis(
                text.parse()
                    .unwrap_or_else(|_| panic!("waiter child: bad order {line:?}")),
            )
        };
        let (ttl, max_wait) = (millis(ttl), millis(max_wait));
        let called = Instant::now();
        let got = dlm.lock_within(resource, ttl, max_wait);
        let acquired = Instant::now();
        let guard = got.unwrap_or_else(|e| {
            panic!(
                "waiter child: lock_within {resource} after {:?}: {e}",
                acquired - called
            )
        });
        let clean = ops::release(&dlm, guard);
        writeln!(
            out,
            "got {} {} {}",
            clock.ns(called),
            clock.ns(acquired),
            u8::from(!clean)
        )
        .and_then(|()| out.flush())
        .unwrap_or_else(|e| panic!("waiter child: stdout: {e}"));
    }
}

/// Orders the child to wait for `resource`; returns the stamps of its call and acquisition.
struct Waiter {
    child: ChildProc,
    /// Releases of the child that failed on node timeouts (then settled).
    timeouts: u64,
}

impl Waiter {
    fn start(role: &'static str, urls: &[String]) -> Self {
        Self {
            child: ChildProc::spawn(role, urls, &[]),
            timeouts: 0,
        }
    }

    fn order(&mut self, resource: &str, ttl: Duration) {
        self.child.send(&format!(
            "wait {resource} {} {}",
            ttl.as_millis(),
            MAX_WAIT.as_millis()
        ));
    }

    /// The stamp of the return of `lock_within` for the last order.
    fn acquired(&mut self) -> Ns {
        let line = self.child.recv();
        match parse_line(&line) {
            ("got", numbers) if numbers.len() == 3 => {
                self.timeouts += u64::from(numbers[2] != 0);
                numbers[1]
            }
            _ => panic!("waiting bench: unexpected line from the waiter: {line:?}"),
        }
    }

    fn finish(self) -> u64 {
        self.child.finish();
        self.timeouts
    }
}

/// Waits until the waiter sleeps in `lock_within` (see the module docs), subscribed on the
/// first `subscribed_on` nodes; returns the attempts node 0 saw from it.
fn wait_asleep(probe: &mut Probe, pttl_before: u64, channel: &[u8], subscribed_on: usize) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let check = |what: &str| {
        assert!(
            Instant::now() < deadline,
            "waiting bench: the waiter did not {what} within 10 s"
        );
        std::thread::sleep(Duration::from_micros(200));
    };
    while probe.calls(0, "pttl") <= pttl_before {
        check("make its attempt");
    }
    for node in 0..subscribed_on {
        while probe.numsub(node, channel) < 1 {
            check("subscribe");
        }
    }
    let mut seen = probe.calls(0, "pttl");
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < QUIET {
        std::thread::sleep(Duration::from_micros(500));
        let now = probe.calls(0, "pttl");
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
        check("fall asleep");
    }
    seen - pttl_before
}

struct HandoffRun {
    nodes: usize,
    base: Dist,
    handoff: Dist,
    /// The floor waiter's handoffs ([`crate::floor`]), interleaved with resplock's.
    floor: Dist,
    release: Dist,
    /// Attempts the waiter made after the release (node 0's `PTTL` count), per handoff,
    /// next to the handoff.
    attempts: Vec<(u64, Ns)>,
    /// Handoffs where the waiter made more than one attempt before it slept (a fresh
    /// subscription, or a late message from its previous release, woke it once more).
    retried: usize,
    timeouts: u64,
    ops: usize,
}

fn handoff_run(cluster: &Cluster, nodes: usize, config: &Config) -> HandoffRun {
    let urls = cluster.urls()[..nodes].to_vec();
    let holder = ops::manager(&urls);
    let clock = Clock::new();
    let mut probe = Probe::new(&cluster.nodes()[..nodes]);
    // Even rounds hand over to resplock's waiter, odd ones to the floor waiter.
    let mut waiters = [Waiter::start(WAITER, &urls), Waiter::start(FLOOR, &urls)];
    let resources = [
        format!("bench:wait:handoff:{nodes}"),
        format!("bench:wait:floor:{nodes}"),
    ];
    let free = format!("bench:wait:free:{nodes}");
    let mut timeouts = 0;
    let mut base = Vec::with_capacity(config.iters * BASELINE_PER_HANDOFF * 2);
    let mut handoffs = [
        Vec::with_capacity(config.iters),
        Vec::with_capacity(config.iters),
    ];
    let mut release = Vec::with_capacity(config.iters);
    let mut retried = 0;
    let mut tries = Vec::with_capacity(config.iters);
    for i in 0..2 * (WARM_UP + config.iters) {
        let measured = i >= 2 * WARM_UP;
        let which = i % 2;
        let resource = &resources[which];
        let channel = format!("{RELEASED_CHANNEL_PREFIX}{resource}");
        let waiter = &mut waiters[which];
        let guard = ops::lock_free(&holder, &resource.as_str(), TTL, &mut timeouts);
        let pttl_before = probe.calls(0, "pttl");
        waiter.order(resource, TTL);
        let subscribed_on = if which == 0 { nodes } else { 1 };
        let attempts = wait_asleep(&mut probe, pttl_before, channel.as_bytes(), subscribed_on);
        for _ in 0..BASELINE_PER_HANDOFF {
            let started = Instant::now();
            let done = ops::lock_release(&holder, &free, TTL);
            let took = clock.ns(Instant::now()) - clock.ns(started);
            timeouts += u64::from(!done);
            if measured {
                base.push(took);
            }
        }
        let release_started = Instant::now();
        let clean = ops::release(&holder, guard);
        let released = clock.ns(Instant::now());
        timeouts += u64::from(!clean);
        let acquired = waiter.acquired();
        let after = probe.calls(0, "pttl") - pttl_before - attempts;
        if measured {
            handoffs[which].push(acquired - released);
            if which == 0 {
                tries.push((after, acquired - released));
                release.push(released - clock.ns(release_started));
                retried += usize::from(attempts > 1);
            }
        }
    }
    let [ours, floor] = waiters;
    timeouts += ours.finish() + floor.finish();
    let [handoff, floor] = handoffs;
    HandoffRun {
        nodes,
        base: Dist::new(base),
        handoff: Dist::new(handoff),
        floor: Dist::new(floor),
        release: Dist::new(release),
        attempts: tries,
        retried,
        timeouts,
        ops: config.iters * 2 * (BASELINE_PER_HANDOFF + 2),
    }
}

/// Section 1.
pub fn handoff_section(cluster: &Cluster, config: &Config) {
    let load = load_average();
    let runs: Vec<HandoffRun> = NODE_COUNTS
        .iter()
        .map(|&nodes| handoff_run(cluster, nodes, config))
        .collect();
    println!(
        "## 1. Handoff: `release` in one process, `lock_within` returns in another \
         ({} handoffs per row, load {load} → {})",
        config.iters,
        load_average()
    );
    println!();
    println!(
        "Times in µs. Handoff: return of the holder's `release` → return of the waiter's \
         `lock_within` (CLOCK_MONOTONIC in both processes). Baseline: uncontended `lock` + \
         `release` in the holder's process, {BASELINE_PER_HANDOFF} between every two \
         handoffs. Ratios are to the baseline p50."
    );
    println!();
    println!(
        "| nodes | baseline p50 | baseline p99 | handoff p50 | handoff p99 | handoff max | \
         **p50 / baseline p50** | p99 / baseline p50 | holder's `release` p50 | timeouts |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut missed = Vec::new();
    for run in &runs {
        let base = run.base.p50() as f64;
        let ratio = run.handoff.p50() as f64 / base;
        if ratio > TARGET_RATIO {
            let floor = run.floor.p50() as f64 / base;
            missed.push(format!(
                "{} nodes: {ratio:.2}x (the floor waiter's: {floor:.2}x)",
                run.nodes
            ));
        }
        println!(
            "| {} | {} | {} | {} | {} | {} | **{ratio:.2}x** | {:.2}x | {} | {} |",
            run.nodes,
            us(run.base.p50()),
            us(run.base.p99()),
            us(run.handoff.p50()),
            us(run.handoff.p99()),
            us(run.handoff.max()),
            run.handoff.p99() as f64 / base,
            us(run.release.p50()),
            run.timeouts,
        );
    }
    println!();
    println!(
        "The floor: the same handoffs to a waiter with one thread and plain sockets, which \
         sleeps in `read` on its subscription and then sends `SET NX PX` (`floor.rs`), \
         alternating with resplock's handoffs in the same loop. What it pays is the chain of \
         wake-ups (Redis, the waiter, Redis, the waiter) that any client pays; the baseline, \
         timed in a busy loop, pays few of them."
    );
    println!();
    println!(
        "| nodes | floor p50 | floor p99 | **floor p50 / baseline p50** | \
         **resplock p50 / floor p50** | resplock p99 / floor p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for run in &runs {
        println!(
            "| {} | {} | {} | **{:.2}x** | **{:.2}x** | {:.2}x |",
            run.nodes,
            us(run.floor.p50()),
            us(run.floor.p99()),
            run.floor.p50() as f64 / run.base.p50() as f64,
            run.handoff.p50() as f64 / run.floor.p50() as f64,
            run.handoff.p99() as f64 / run.floor.p99() as f64,
        );
    }
    println!();
    println!(
        "Attempts the waiter made after the release (node 0's `PTTL` count; the first can fail \
         when it overtakes the holder's release on another node, and the next ones then wait \
         for later messages and the waiter's backoff):"
    );
    println!();
    println!("| nodes | one attempt | its p50 | its p99 | more attempts | their p50 | their max |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for run in &runs {
        let (one, more): (Vec<_>, Vec<_>) = run.attempts.iter().partition(|(n, _)| *n <= 1);
        let show = |group: &[&(u64, Ns)], p: f64| -> String {
            if group.is_empty() {
                return "-".to_owned();
            }
            let d = Dist::new(group.iter().map(|(_, ns)| *ns).collect());
            if p >= 1.0 {
                us(d.max())
            } else {
                us(d.pct(p))
            }
        };
        println!(
            "| {} | {:.1}% | {} | {} | {} | {} | {} |",
            run.nodes,
            100.0 * one.len() as f64 / run.attempts.len() as f64,
            show(&one, 0.5),
            show(&one, 0.99),
            more.len(),
            show(&more, 0.5),
            show(&more, 1.0),
        );
    }
    println!();
    for run in &runs {
        if run.retried > 0 {
            println!(
                "note: {} nodes: in {} handoffs the waiter made two or more attempts before it \
                 slept (a fresh subscription, or a late message from its own previous release)",
                run.nodes, run.retried
            );
        }
        assert!(
            run.timeouts * 100 <= run.ops as u64,
            "{} nodes: {} of {} operations failed on node timeouts",
            run.nodes,
            run.timeouts,
            run.ops
        );
    }
    if missed.is_empty() {
        println!("target (handoff p50 ≤ {TARGET_RATIO}x the baseline p50): met on every row");
    } else {
        println!(
            "target (handoff p50 ≤ {TARGET_RATIO}x the baseline p50): MISSED on {}",
            missed.join(", ")
        );
    }
    println!();
}

struct CrashRun {
    nodes: usize,
    /// Grant → acquire, minus the ttl.
    late: Dist,
    /// Attempts of the waiter per run (node 0's `PTTL` count).
    attempts: Dist,
    timeouts: u64,
}

fn crash_run(cluster: &Cluster, nodes: usize, runs: usize) -> CrashRun {
    let urls = cluster.urls()[..nodes].to_vec();
    let holder = ops::manager(&urls);
    let clock = Clock::new();
    let mut probe = Probe::new(&cluster.nodes()[..nodes]);
    let mut waiter = Waiter::start(WAITER, &urls);
    let resource = format!("bench:wait:crash:{nodes}");
    let mut timeouts = 0;
    let mut late = Vec::with_capacity(runs);
    let mut attempts = Vec::with_capacity(runs);
    // One untimed run first: the child dials the nodes and subscribes.
    for run in 0..=runs {
        let mut guard = ops::lock_free(&holder, &resource.as_str(), CRASH_TTL, &mut timeouts);
        let granted = clock.ns(Instant::now());
        guard.disarm();
        drop(guard);
        let pttl_before = probe.calls(0, "pttl");
        waiter.order(&resource, TTL);
        let acquired = waiter.acquired();
        if run > 0 {
            late.push(acquired - granted - CRASH_TTL.as_nanos() as Ns);
            attempts.push((probe.calls(0, "pttl") - pttl_before) as Ns);
        }
    }
    timeouts += waiter.finish();
    CrashRun {
        nodes,
        late: Dist::new(late),
        attempts: Dist::new(attempts),
        timeouts,
    }
}

/// Section 2. Returns the rows that broke the bound (the bench fails at the end).
pub fn crash_section(cluster: &Cluster, config: &Config) -> Vec<String> {
    let load = load_average();
    let runs: Vec<CrashRun> = NODE_COUNTS
        .iter()
        .map(|&nodes| crash_run(cluster, nodes, config.crash_runs))
        .collect();
    let bound = 2 * NODE_TIMEOUT.as_nanos() as Ns;
    println!(
        "## 2. Crash handoff: the holder never releases (ttl {CRASH_TTL:?}, {} runs per row, \
         load {load} → {})",
        config.crash_runs,
        load_average()
    );
    println!();
    println!(
        "Times in ms: return of the holder's `lock` (the grant) → return of the waiter's \
         `lock_within` in another process, minus the ttl. Bound: two node timeouts ({}). \
         Attempts: the waiter's, per run (node 0's `PTTL` count; two when it sleeps until the \
         keys expire).",
        ms(bound)
    );
    println!();
    println!("| nodes | min | p50 | mean | max | bound | within bound | attempts p50 | max |");
    println!("|---|---:|---:|---:|---:|---:|---|---:|---:|");
    let mut broken = Vec::new();
    for run in &runs {
        let within = run.late.max() <= bound;
        if !within {
            broken.push(format!(
                "{} nodes: max {} ms",
                run.nodes,
                ms(run.late.max())
            ));
        }
        println!(
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {} |",
            run.nodes,
            ms(run.late.min()),
            ms(run.late.p50()),
            run.late.mean() / 1e6,
            ms(run.late.max()),
            ms(bound),
            if within { "yes" } else { "**NO**" },
            run.attempts.p50(),
            run.attempts.max(),
        );
    }
    println!();
    for run in &runs {
        assert!(
            run.timeouts * 100 <= 2 * run.late.len() as u64,
            "{} nodes: {} operations failed on node timeouts",
            run.nodes,
            run.timeouts
        );
    }
    if !broken.is_empty() {
        println!(
            "BOUND BROKEN (the bench fails once every section has run): {}",
            broken.join(", ")
        );
        println!();
    }
    broken
}
