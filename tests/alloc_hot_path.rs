//! The hot path allocates nothing: after a warm-up, `lock` + `release` (and `lock` + `extend`
//! + `release`) on three healthy real nodes make exactly zero heap allocations.
//!
//! This binary installs the counting global allocator of `support/alloc_counter.rs`. Only
//! allocations made on a thread that switched counting on are counted, in a per-thread
//! counter, so the test harness and tests on other threads add no noise. Set
//! `ALLOC_BACKTRACE=1` to print a backtrace of each of the first few counted allocations (for
//! finding where one comes from).
//!
//! Also prints the mean lock + release latency on 1, 3 and 5 local nodes (informational; run
//! with `--nocapture`).

mod support;

use std::time::{Duration, Instant};

use alloc_counter::{allocations_in, Counted};
use resplock::Redlock;
use support::Cluster;

#[path = "support/alloc_counter.rs"]
mod alloc_counter;

const TTL: Duration = Duration::from_secs(10);

/// Healthy nodes, and a node timeout they meet even on a loaded machine: a timeout would
/// close or mark connections and take the rounds off the steady-state path.
fn manager(cluster: &Cluster) -> Redlock {
    Redlock::builder()
        .nodes(cluster.urls())
        .node_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}
const WARM_UP: usize = 10;
const MEASURED: usize = 200;

fn lock_release(dlm: &Redlock) {
    let guard = dlm
        .lock("hot", TTL)
        .unwrap_or_else(|e| panic!("lock on healthy nodes: {e}"));
    assert_eq!(guard.release(), Ok(true));
}

fn lock_extend_release(dlm: &Redlock) {
    let mut guard = dlm
        .lock("hot", TTL)
        .unwrap_or_else(|e| panic!("lock on healthy nodes: {e}"));
    if let Err(e) = guard.extend(TTL) {
        panic!("extend on healthy nodes: {e}");
    }
    assert_eq!(guard.release(), Ok(true));
}

#[test]
fn the_counter_sees_allocations_on_this_thread_only() {
    let (v, Counted { count: n, bytes }) = allocations_in(|| vec![1u8; 100]);
    assert_eq!(v.len(), 100);
    assert!(n >= 1, "a Vec allocation was not counted");
    assert!(bytes >= 100, "{bytes} bytes counted for a 100-byte Vec");
    // A thread that allocates 1000 times adds (almost) nothing to the count of the thread
    // that spawned it: spawning itself allocates a little, the child's Vecs are not counted.
    let (total, Counted { count: n, .. }) = allocations_in(|| {
        std::thread::spawn(|| (0..1000).map(|i| vec![1u8; 100 + i].len()).sum::<usize>())
            .join()
            .unwrap_or_else(|_| panic!("thread panicked"))
    });
    assert!(total > 0);
    assert!(
        n < 100,
        "{n} allocations counted: the child's were counted too"
    );
}

#[test]
fn lock_then_release_on_three_nodes_allocates_nothing_after_warm_up() {
    let cluster = Cluster::start(3);
    let dlm = manager(&cluster);
    // Control: the first round opens connections and does allocate, on this thread.
    let ((), first) = allocations_in(|| lock_release(&dlm));
    assert!(
        first.count > 0,
        "the counter missed the first round's allocations"
    );
    for _ in 1..WARM_UP {
        lock_release(&dlm);
    }
    let (
        (),
        Counted {
            count: allocations, ..
        },
    ) = allocations_in(|| {
        for _ in 0..MEASURED {
            lock_release(&dlm);
        }
    });
    assert_eq!(
        allocations, 0,
        "{MEASURED} x (lock + release) allocated {allocations} times; rerun with \
         ALLOC_BACKTRACE=1 -- --nocapture to see where"
    );
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert_eq!(node.raw().dbsize(), 0, "node {i}");
    }
}

#[test]
fn lock_extend_release_on_three_nodes_allocates_nothing_after_warm_up() {
    let cluster = Cluster::start(3);
    let dlm = manager(&cluster);
    // Control: the first round opens connections and does allocate, on this thread.
    let ((), first) = allocations_in(|| lock_extend_release(&dlm));
    assert!(
        first.count > 0,
        "the counter missed the first round's allocations"
    );
    for _ in 1..WARM_UP {
        lock_extend_release(&dlm);
    }
    let (
        (),
        Counted {
            count: allocations, ..
        },
    ) = allocations_in(|| {
        for _ in 0..MEASURED {
            lock_extend_release(&dlm);
        }
    });
    assert_eq!(
        allocations, 0,
        "{MEASURED} x (lock + extend + release) allocated {allocations} times; rerun with \
         ALLOC_BACKTRACE=1 -- --nocapture to see where"
    );
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert_eq!(node.raw().dbsize(), 0, "node {i}");
    }
}

/// Informational: the mean lock + release latency on 1, 3 and 5 local nodes. Asserts only
/// that every round succeeded.
#[test]
fn lock_release_latency_on_one_three_and_five_nodes() {
    const ROUNDS: u32 = 500;
    for n in [1, 3, 5] {
        let cluster = Cluster::start(n);
        let dlm = manager(&cluster);
        for _ in 0..WARM_UP {
            lock_release(&dlm);
        }
        let mut each = Vec::with_capacity(ROUNDS as usize);
        let start = Instant::now();
        for _ in 0..ROUNDS {
            let round = Instant::now();
            lock_release(&dlm);
            each.push(round.elapsed());
        }
        let mean = start.elapsed() / ROUNDS;
        each.sort_unstable();
        let median = each[each.len() / 2];
        let p99 = each[each.len() * 99 / 100];
        println!(
            "lock + release on {n} local node(s): mean {mean:?}, median {median:?}, \
             p99 {p99:?} over {ROUNDS} rounds"
        );
    }
}
