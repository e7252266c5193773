//! Section 3: threads sharing one `Redlock` (clones) on five nodes, for a fixed time per case.

use std::sync::atomic::AtomicBool;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use resplock::Redlock;

use crate::machine::{cpu_ticks, load_average, TICKS_PER_SEC};
use crate::ops::{lock_release, try_lock_release, Outcome};
use crate::support::Cluster;
use crate::{Config, WARM_UP};

/// Threads per case.
const THREADS: [usize; 4] = [1, 2, 4, 8];

/// What the threads do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    /// Each thread locks and releases its own resource with `lock`.
    Distinct,
    /// All threads `try_lock` one resource in a loop.
    Contended,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Distinct => "distinct resources (lock)",
            Self::Contended => "one contended resource",
        }
    }

    /// The resource thread `thread` works on.
    fn key(self, thread: usize) -> String {
        match self {
            Self::Distinct => format!("bench:tp:{thread}"),
            Self::Contended => "bench:tp:contended".to_owned(),
        }
    }

    /// One attempt on `key`.
    fn attempt(self, dlm: &Redlock, key: &str, held: &AtomicBool) -> Outcome {
        match self {
            Self::Distinct => {
                if lock_release(dlm, key) {
                    Outcome::Acquired
                } else {
                    Outcome::TimedOut
                }
            }
            Self::Contended => try_lock_release(dlm, key, held),
        }
    }
}

/// Counts of attempts by outcome.
#[derive(Clone, Copy, Default)]
struct Counts {
    acquired: u64,
    contended: u64,
    /// Attempts that failed on node timeouts (see [`lock_release`]).
    timed_out: u64,
}

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Acquired => self.acquired += 1,
            Outcome::Contended => self.contended += 1,
            Outcome::TimedOut => self.timed_out += 1,
        }
    }

    fn merge(&mut self, other: Counts) {
        self.acquired += other.acquired;
        self.contended += other.contended;
        self.timed_out += other.timed_out;
    }

    fn attempts(&self) -> u64 {
        self.acquired + self.contended + self.timed_out
    }
}

/// Counts of one throughput run, and how long it took.
struct Throughput {
    counts: Counts,
    elapsed: Duration,
}

impl Throughput {
    fn attempts_per_sec(&self) -> f64 {
        self.counts.attempts() as f64 / self.elapsed.as_secs_f64()
    }

    fn acquired_per_sec(&self) -> f64 {
        self.counts.acquired as f64 / self.elapsed.as_secs_f64()
    }
}

/// `threads` threads sharing clones of `dlm` for `secs`, doing `workload`; the contended
/// workload checks that no two threads ever hold the resource at once.
fn throughput(dlm: &Redlock, threads: usize, secs: Duration, workload: Workload) -> Throughput {
    let barrier = Barrier::new(threads + 1);
    let held = AtomicBool::new(false);
    let (counts, elapsed) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let dlm = dlm.clone();
                let (barrier, held) = (&barrier, &held);
                scope.spawn(move || {
                    let key = workload.key(t);
                    let mut counts = Counts::default();
                    barrier.wait();
                    let end = Instant::now() + secs;
                    while Instant::now() < end {
                        counts.add(workload.attempt(&dlm, &key, held));
                    }
                    counts
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut counts = Counts::default();
        for worker in workers {
            counts.merge(worker.join().expect("worker panicked"));
        }
        (counts, start.elapsed())
    });
    Throughput { counts, elapsed }
}

/// CPU ticks used so far by the bench process and by the cluster's nodes.
struct Cpu {
    bench: u64,
    redis: u64,
}

impl Cpu {
    fn now(cluster: &Cluster) -> Self {
        let redis = cluster
            .nodes()
            .iter()
            .filter_map(|node| cpu_ticks(&node.pid()?.to_string()))
            .sum();
        Self {
            bench: cpu_ticks("self").unwrap_or(0),
            redis,
        }
    }
}

pub fn section(cluster: &Cluster, config: &Config) {
    println!(
        "\n== 3. throughput: threads sharing one Redlock on 5 nodes, {} s per case (load average {})",
        config.secs.as_secs(),
        load_average()
    );
    let dlm = Redlock::new(cluster.urls()).expect("manager");
    // Open connections and settle latency averages first.
    for _ in 0..WARM_UP {
        lock_release(&dlm, "bench:tp:warm");
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "{:<26} {:>7} {:>11} {:>8} {:>11} {:>10} {:>8} {:>10} {:>10} {:>8}",
        "case",
        "threads",
        "attempts/s",
        "scaling",
        "acquired/s",
        "contended",
        "timeouts",
        "bench CPU",
        "redis CPU",
        "CPU busy"
    );
    for workload in [Workload::Distinct, Workload::Contended] {
        let mut base = None;
        for threads in THREADS {
            let before = Cpu::now(cluster);
            let run = throughput(&dlm, threads, config.secs, workload);
            let after = Cpu::now(cluster);
            let counts = run.counts;
            assert!(counts.acquired > 0, "nothing acquired");
            assert!(
                counts.timed_out * 100 <= counts.attempts(),
                "{} of {} attempts failed on node timeouts",
                counts.timed_out,
                counts.attempts()
            );
            let rate = run.attempts_per_sec();
            let base = *base.get_or_insert(rate);
            let attempts = counts.attempts() as f64;
            // CPU time per attempt, in microseconds.
            let per_op = |ticks: u64| ticks as f64 * 1e6 / TICKS_PER_SEC / attempts;
            let (bench_cpu, redis_cpu) = (after.bench - before.bench, after.redis - before.redis);
            let busy =
                (bench_cpu + redis_cpu) as f64 / TICKS_PER_SEC / run.elapsed.as_secs_f64() / cpus;
            println!(
                "{:<26} {threads:>7} {rate:>11.0} {:>7.2}x {:>11.0} {:>10} {:>8} {:>7.0} us {:>7.0} us {:>7.0}%",
                workload.name(),
                rate / base,
                run.acquired_per_sec(),
                counts.contended,
                counts.timed_out,
                per_op(bench_cpu),
                per_op(redis_cpu),
                busy * 100.0,
            );
        }
    }
    println!(
        "(bench/redis CPU: CPU time per attempt, from /proc; CPU busy: their share of all {cpus} CPUs)\nload average after: {}",
        load_average()
    );
}
