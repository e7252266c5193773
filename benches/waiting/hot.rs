//! Section 3: a hot lock. [`PROCESSES`] child processes of [`THREADS`] workers each (one
//! `Redlock` per process, cloned into its threads) take one resource in turn on three nodes
//! until a common end time: acquire, hold [`HOLD`] (a sleep), release. Each worker stamps, on
//! `CLOCK_MONOTONIC`, when it started to acquire (`t0`), when it got the lock (`t1`) and when
//! it started to release (`t2`).
//!
//! Checked: the holding intervals `[t1, t2]` of all grants, of every worker in both processes,
//! never overlap (each lies inside the real holding period, so an overlap means two holders at
//! once; the bench fails). Every lock succeeds and every release reports `true`.
//!
//! Reported, over the grants with `t1` inside the run: grants per second, waits (`t1 - t0`),
//! how long the lock stays free between two holders (`t1` of the next minus `t2` of the
//! previous: the release round, the wake-up and the next acquire), each worker's share of the
//! grants against a fair share (total / workers), runs of consecutive grants by one process,
//! the commands the three nodes served per grant (`INFO commandstats`), and CPU per grant
//! (the children's own, plus the nodes').

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::child::{parse_line, var, ChildProc, HOT};
use crate::clock::{Clock, Ns};
use crate::machine::{cpu_ticks, load_average, TICKS_PER_SEC};
use crate::ops::{self, only_timeouts};
use crate::probe::{delta_all, sent, Probe};
use crate::stats::{ms, us, Dist};
use crate::support::Cluster;
use crate::{Config, TTL};

/// Nodes of the hot lock.
const NODES: usize = 3;
/// Child processes, and worker threads in each.
const PROCESSES: usize = 2;
const THREADS: usize = 4;
/// The critical section.
const HOLD: Duration = Duration::from_millis(1);
/// From spawning the children to the start of the run.
const STARTUP: Duration = Duration::from_millis(300);
/// A worker below this fraction of its fair share is reported.
const MIN_SHARE: f64 = 0.25;

const MODE_ENV: &str = "RESPLOCK_WAITING_MODE";
const PROCESS_ENV: &str = "RESPLOCK_WAITING_PROCESS";
const START_ENV: &str = "RESPLOCK_WAITING_START_NS";
const END_ENV: &str = "RESPLOCK_WAITING_END_NS";
const RESOURCE_ENV: &str = "RESPLOCK_WAITING_RESOURCE";

/// How workers wait for the lock.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// `lock_within(resource, ttl, max_wait)`.
    Within,
    /// `lock(resource, ttl)` in a loop until it succeeds (default: 4 attempts per call, 200 ms
    /// + up to 100 ms apart).
    Poll,
}

impl Mode {
    fn env(self) -> &'static str {
        match self {
            Self::Within => "within",
            Self::Poll => "poll",
        }
    }

    fn from_env(text: &str) -> Self {
        match text {
            "within" => Self::Within,
            "poll" => Self::Poll,
            other => panic!("hot child: unknown mode {other:?}"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Within => "`lock_within`",
            Self::Poll => "`lock` in a loop (polling)",
        }
    }
}

/// What one worker did.
#[derive(Default)]
struct WorkerLog {
    /// `(t0, t1, t2)` of each grant.
    grants: Vec<(Ns, Ns, Ns)>,
    /// `lock` calls that returned `NotAcquired` (polling only).
    failed_calls: u64,
    /// Operations that failed only on node timeouts.
    timeouts: u64,
}

/// The child's side: [`THREADS`] workers until the end time, then one line per grant
/// (`grant <worker> <t0> <t1> <t2>`), per worker (`worker <worker> <failed calls> <timeouts>`)
/// and the process's CPU time (`cpu <ticks>`).
pub fn workers_child(urls: &[String]) {
    let mode = Mode::from_env(&var(MODE_ENV));
    let process: usize = var(PROCESS_ENV).parse().expect("process index");
    let resource = var(RESOURCE_ENV);
    let clock = Clock::new();
    let start = clock.instant(var(START_ENV).parse().expect("start"));
    let end = clock.instant(var(END_ENV).parse().expect("end"));
    let max_wait = end.saturating_duration_since(Instant::now()) + Duration::from_secs(30);
    let dlm = ops::manager(urls);
    let logs: Vec<WorkerLog> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let dlm = dlm.clone();
                let resource = resource.as_str();
                scope.spawn(move || {
                    std::thread::sleep(start.saturating_duration_since(Instant::now()));
                    work(&dlm, mode, resource, end, max_wait, &clock)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker thread"))
            .collect()
    });
    let mut out = String::new();
    for (t, log) in logs.iter().enumerate() {
        let worker = process * THREADS + t;
        for (t0, t1, t2) in &log.grants {
            out.push_str(&format!("grant {worker} {t0} {t1} {t2}\n"));
        }
        out.push_str(&format!(
            "worker {worker} {} {}\n",
            log.failed_calls, log.timeouts
        ));
    }
    out.push_str(&format!("cpu {}\n", cpu_ticks("self").unwrap_or(0)));
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .expect("hot child: stdout");
}

fn work(
    dlm: &resplock::Redlock,
    mode: Mode,
    resource: &str,
    end: Instant,
    max_wait: Duration,
    clock: &Clock,
) -> WorkerLog {
    let mut log = WorkerLog::default();
    while Instant::now() < end {
        let t0 = Instant::now();
        let guard = match mode {
            Mode::Within => match dlm.lock_within(resource, TTL, max_wait) {
                Ok(guard) => guard,
                Err(e) => panic!("hot child: lock_within after {:?}: {e}", t0.elapsed()),
            },
            Mode::Poll => loop {
                match dlm.lock(resource, TTL) {
                    Ok(guard) => break guard,
                    Err(e) if e.is_contention() => log.failed_calls += 1,
                    Err(e) if only_timeouts(&e) => log.timeouts += 1,
                    Err(e) => panic!("hot child: lock: {e}"),
                }
                if Instant::now() >= end {
                    return log;
                }
            },
        };
        let t1 = Instant::now();
        let until = t1 + HOLD;
        while Instant::now() < until {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        let t2 = Instant::now();
        log.timeouts += u64::from(!ops::release(dlm, guard));
        log.grants.push((clock.ns(t0), clock.ns(t1), clock.ns(t2)));
    }
    log
}

/// One grant, as the parent sees it.
#[derive(Clone, Copy)]
struct Grant {
    worker: usize,
    t0: Ns,
    t1: Ns,
    t2: Ns,
}

impl Grant {
    fn process(&self) -> usize {
        self.worker / THREADS
    }
}

struct HotRun {
    mode: Mode,
    elapsed: Duration,
    /// Grants with `t1` inside the run, by `t1`.
    grants: Vec<Grant>,
    /// Grants after the end (the workers' last calls), checked but not counted.
    after_end: usize,
    /// The longest wait of any grant, those after the end included.
    longest_wait: Ns,
    failed_calls: u64,
    timeouts: u64,
    commands: u64,
    cpu_ticks: u64,
}

fn run(cluster: &Cluster, mode: Mode, secs: Duration) -> HotRun {
    let nodes = &cluster.nodes()[..NODES];
    let urls = cluster.urls()[..NODES].to_vec();
    let clock = Clock::new();
    let mut probe = Probe::new(nodes);
    let resource = format!("bench:wait:hot:{}", mode.env());
    let redis_cpu = || -> u64 {
        nodes
            .iter()
            .filter_map(|n| cpu_ticks(&n.pid()?.to_string()))
            .sum()
    };
    let before = probe.all_stats();
    let redis_before = redis_cpu();
    let start = Instant::now() + STARTUP;
    let end = start + secs;
    let (start_ns, end_ns) = (clock.ns(start), clock.ns(end));
    let children: Vec<ChildProc> = (0..PROCESSES)
        .map(|process| {
            ChildProc::spawn(
                HOT,
                &urls,
                &[
                    (MODE_ENV, mode.env().to_owned()),
                    (PROCESS_ENV, process.to_string()),
                    (START_ENV, start_ns.to_string()),
                    (END_ENV, end_ns.to_string()),
                    (RESOURCE_ENV, resource.clone()),
                ],
            )
        })
        .collect();
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let after = probe.all_stats();
    let redis_after = redis_cpu();
    let mut all = Vec::new();
    let (mut failed_calls, mut timeouts, mut cpu) = (0, 0, 0);
    for child in children {
        for line in child.finish() {
            match parse_line(&line) {
                ("grant", n) if n.len() == 4 => all.push(Grant {
                    worker: n[0] as usize,
                    t0: n[1],
                    t1: n[2],
                    t2: n[3],
                }),
                ("worker", n) if n.len() == 3 => {
                    failed_calls += n[1] as u64;
                    timeouts += n[2] as u64;
                }
                ("cpu", n) if n.len() == 1 => cpu += n[0] as u64,
                _ => panic!("waiting bench: unexpected line from a hot child: {line:?}"),
            }
        }
    }
    all.sort_unstable_by_key(|g| g.t1);
    for pair in all.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            b.t1 >= a.t2,
            "{}: two holders at once: worker {} held from {} to {} ns, worker {} got the lock at \
             {} ns",
            mode.label(),
            a.worker,
            a.t1,
            a.t2,
            b.worker,
            b.t1
        );
    }
    let total_grants = all.len();
    let longest_wait = all.iter().map(|g| g.t1 - g.t0).max().unwrap_or(0);
    let grants: Vec<Grant> = all
        .into_iter()
        .filter(|g| g.t1 >= start_ns && g.t1 < end_ns)
        .collect();
    assert!(!grants.is_empty(), "{}: no grant in the run", mode.label());
    assert!(
        timeouts * 100 <= total_grants as u64,
        "{}: {timeouts} of {total_grants} operations failed on node timeouts",
        mode.label()
    );
    HotRun {
        mode,
        elapsed: secs,
        after_end: total_grants - grants.len(),
        longest_wait,
        grants,
        failed_calls,
        timeouts,
        commands: sent(&delta_all(&before, &after)),
        cpu_ticks: cpu + (redis_after - redis_before),
    }
}

/// Fairness figures of one run.
struct Fairness {
    /// Grants per worker.
    per_worker: Vec<usize>,
    min_share: f64,
    max_share: f64,
    /// Share of the grants of each process.
    per_process: Vec<f64>,
    /// Longest run of consecutive grants by one process, and the mean run.
    longest_run: usize,
    mean_run: f64,
    /// Grants that went to the worker that held the lock just before.
    same_worker_again: usize,
}

impl Fairness {
    fn of(grants: &[Grant]) -> Self {
        let workers = PROCESSES * THREADS;
        let mut per_worker = vec![0usize; workers];
        for g in grants {
            per_worker[g.worker] += 1;
        }
        let fair = grants.len() as f64 / workers as f64;
        let min = *per_worker.iter().min().unwrap_or(&0);
        let max = *per_worker.iter().max().unwrap_or(&0);
        let per_process = (0..PROCESSES)
            .map(|p| {
                per_worker[p * THREADS..(p + 1) * THREADS]
                    .iter()
                    .sum::<usize>() as f64
                    / grants.len() as f64
            })
            .collect();
        let mut runs = Vec::new();
        let mut current = 1;
        for pair in grants.windows(2) {
            if pair[0].process() == pair[1].process() {
                current += 1;
            } else {
                runs.push(current);
                current = 1;
            }
        }
        runs.push(current);
        let same_worker_again = grants
            .windows(2)
            .filter(|p| p[0].worker == p[1].worker)
            .count();
        Self {
            min_share: min as f64 / fair,
            max_share: max as f64 / fair,
            per_worker,
            per_process,
            longest_run: runs.iter().copied().max().unwrap_or(0),
            mean_run: runs.iter().sum::<usize>() as f64 / runs.len() as f64,
            same_worker_again,
        }
    }
}

/// Section 3.
pub fn section(cluster: &Cluster, config: &Config) {
    let load = load_average();
    let runs: Vec<HotRun> = [Mode::Within, Mode::Poll]
        .into_iter()
        .map(|mode| run(cluster, mode, config.secs))
        .collect();
    println!(
        "## 3. Hot lock: {} workers in {PROCESSES} processes, acquire + {HOLD:?} held + \
         release, {NODES} nodes, {:?} per variant (load {load} → {})",
        PROCESSES * THREADS,
        config.secs,
        load_average()
    );
    println!();
    println!(
        "Wait: call → lock returned. Free between holders: next holder's acquire-return − \
         previous holder's release-call (the release round, the wake-up and the next acquire \
         round). Commands: every command the {NODES} nodes ran (`INFO commandstats`, without those \
         run inside scripts), per grant. \
         CPU: both child processes plus the {NODES} `redis-server`s, per grant."
    );
    println!();
    println!(
        "| waiting with | grants/s | wait p50 ms | wait p99 ms | wait max ms | free between \
         holders p50 µs | p99 µs | held mean µs | commands per grant | CPU per grant µs | \
         failed `lock` calls | timeouts |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut fairness = BTreeMap::new();
    for run in &runs {
        let grants = run.grants.len();
        let waits = Dist::new(run.grants.iter().map(|g| g.t1 - g.t0).collect());
        let held = Dist::new(run.grants.iter().map(|g| g.t2 - g.t1).collect());
        let free = if grants > 1 {
            let gaps = run.grants.windows(2).map(|p| p[1].t1 - p[0].t2).collect();
            Some(Dist::new(gaps))
        } else {
            None
        };
        let (free50, free99) = free
            .as_ref()
            .map_or(("-".into(), "-".into()), |d| (us(d.p50()), us(d.p99())));
        println!(
            "| {} | {:.0} | {} | {} | {} | {free50} | {free99} | {:.0} | {:.1} | {:.0} | {} | {} |",
            run.mode.label(),
            grants as f64 / run.elapsed.as_secs_f64(),
            ms(waits.p50()),
            ms(waits.p99()),
            ms(waits.max()),
            held.mean() / 1e3,
            run.commands as f64 / grants as f64,
            run.cpu_ticks as f64 / TICKS_PER_SEC * 1e6 / grants as f64,
            run.failed_calls,
            run.timeouts,
        );
        fairness.insert(run.mode.env(), Fairness::of(&run.grants));
    }
    println!();
    println!(
        "Shares are of the grants inside the run, against a fair share (grants / {} workers); \
         runs are consecutive grants by one process. The longest wait includes the grants \
         after the end (a worker still waiting when the run ended).",
        PROCESSES * THREADS
    );
    println!();
    println!(
        "| waiting with | grants | smallest worker share | largest | per process | longest \
         run | mean run | same worker twice in a row | grants per worker | longest wait, \
         any grant (s) |"
    );
    println!("|---|---:|---:|---:|---|---:|---:|---:|---|---:|");
    let mut unfair = Vec::new();
    for run in &runs {
        let f = &fairness[run.mode.env()];
        let flag = if f.min_share < MIN_SHARE {
            unfair.push(format!("{}: {:.2}x", run.mode.label(), f.min_share));
            " (**below 1/4**)"
        } else {
            ""
        };
        let per_process: Vec<String> = f
            .per_process
            .iter()
            .map(|s| format!("{:.0}%", s * 100.0))
            .collect();
        let per_worker: Vec<String> = f.per_worker.iter().map(usize::to_string).collect();
        println!(
            "| {} | {} | {:.2}x{flag} | {:.2}x | {} | {} | {:.1} | {} | {} | {:.2} |",
            run.mode.label(),
            run.grants.len(),
            f.min_share,
            f.max_share,
            per_process.join(" / "),
            f.longest_run,
            f.mean_run,
            f.same_worker_again,
            per_worker.join(" "),
            run.longest_wait as f64 / 1e9,
        );
    }
    println!();
    for run in &runs {
        println!(
            "{}: holding intervals of all {} grants disjoint ({} after the end, not counted)",
            run.mode.label(),
            run.grants.len() + run.after_end,
            run.after_end
        );
    }
    if unfair.is_empty() {
        println!("fairness: every worker got at least 1/4 of its fair share in both variants");
    } else {
        println!(
            "fairness: a worker got LESS than 1/4 of its fair share: {}",
            unfair.join(", ")
        );
    }
    println!();
}
