//! Many threads sharing one `Redlock` through `&self`: mutual exclusion with no lost update,
//! guards that move between threads, and callers that do not wait on each other's I/O.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use resplock::{Error, LockGuard, Redlock};
use support::{wait_until, Cluster, FaultProxy, RedisNode};

const THREADS: usize = 8;
const ROUNDS: usize = 50;
const RESOURCE: &str = "counter-lock";
const COUNTER: &str = "counter";
const TTL: Duration = Duration::from_secs(5);
/// A generous bound on the whole run; a livelock or a hang fails instead of blocking CI.
const GIVE_UP: Duration = Duration::from_secs(40);

fn is_send_sync<T: Send + Sync>() {}
fn is_send<T: Send>() {}

#[test]
fn redlock_is_send_and_sync_and_guards_are_send() {
    // Compile-time checks: this test does not build if they fail.
    is_send_sync::<Redlock>();
    is_send::<LockGuard<&str>>();
    is_send::<LockGuard<&'static [u8]>>();
    is_send::<LockGuard<Vec<u8>>>();
    is_send::<LockGuard<String>>();
    is_send_sync::<Error>();

    // And at run time: a guard taken on one thread is released on another.
    let cluster = Cluster::start(3);
    let dlm = Redlock::builder()
        .nodes(cluster.urls())
        .node_timeout(Duration::from_millis(500))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let guard = dlm.lock("moved", TTL).unwrap_or_else(|e| panic!("{e}"));
    let value = guard.value().to_vec();
    let released = thread::spawn(move || guard.release())
        .join()
        .unwrap_or_else(|_| panic!("releasing thread panicked"));
    assert_eq!(released, Ok(true));
    for (i, node) in cluster.nodes().iter().enumerate() {
        let left = node.raw().get("moved");
        assert!(left.is_none(), "node {i}: {left:?} (ours was {value:?})");
    }
}

/// A pause of 0-1 ms that differs between threads and rounds (no need for real randomness).
fn pause_for(thread: usize, round: usize) -> Duration {
    Duration::from_micros(((thread * 7919 + round * 104_729) % 1000) as u64)
}

/// `THREADS` threads x `ROUNDS` rounds of a read-modify-write on a counter kept on a separate
/// Redis node (GET, sleep, SET: without the lock, updates are lost), each under the lock on an
/// `n`-node cluster, with a holder count that must be exactly 1 inside the critical section.
fn counter_under_lock(n: usize) {
    let cluster = Cluster::start(n);
    let counter_node = RedisNode::start();
    counter_node.raw().set(COUNTER, "0");
    // Single attempts, retried here, so that contention is visible and counted. A generous
    // node timeout: on a loaded machine a 50 ms budget turns slow replies into failures.
    let dlm = Redlock::builder()
        .nodes(cluster.urls())
        .retries(0)
        .node_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let holders = AtomicUsize::new(0);
    let contended = AtomicUsize::new(0);
    let started = Instant::now();

    thread::scope(|s| {
        for t in 0..THREADS {
            let (dlm, holders, contended, counter_node) =
                (&dlm, &holders, &contended, &counter_node);
            s.spawn(move || {
                let mut counter = counter_node.raw();
                for round in 0..ROUNDS {
                    let mut tries = 0;
                    let guard = loop {
                        assert!(started.elapsed() < GIVE_UP, "thread {t}: gave up");
                        match dlm.try_lock(RESOURCE, TTL) {
                            Ok(guard) => break guard,
                            // Contention, or a node too slow for the budget: try again.
                            Err(e @ Error::NotAcquired { .. }) => {
                                if e.is_contention() {
                                    contended.fetch_add(1, Ordering::Relaxed);
                                }
                                tries += 1;
                                thread::sleep(2 * pause_for(t, round + tries));
                            }
                            Err(e) => panic!("thread {t}, round {round}: {e}"),
                        }
                    };
                    let before = holders.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(before, 0, "thread {t}, round {round}: two holders at once");

                    let text = counter
                        .get(COUNTER)
                        .unwrap_or_else(|| panic!("thread {t}: the counter vanished"));
                    let value: u64 = String::from_utf8_lossy(&text)
                        .parse()
                        .unwrap_or_else(|e| panic!("thread {t}: counter {text:?}: {e}"));
                    thread::sleep(pause_for(t, round));
                    counter.set(COUNTER, (value + 1).to_string());

                    // The critical section ended inside the validity: overlap would be a bug.
                    assert!(guard.remaining() > Duration::ZERO, "thread {t}: overran");
                    assert_eq!(
                        holders.load(Ordering::SeqCst),
                        1,
                        "thread {t}, round {round}"
                    );
                    holders.fetch_sub(1, Ordering::SeqCst);
                    assert_eq!(guard.release(), Ok(true), "thread {t}, round {round}");
                }
            });
        }
    });

    let total = counter_node.raw().get(COUNTER);
    assert_eq!(
        total.as_deref(),
        Some((THREADS * ROUNDS).to_string().as_bytes()),
        "lost updates on {n} nodes"
    );
    println!(
        "{n} nodes: {} rounds in {:?}, {} contended acquisitions",
        THREADS * ROUNDS,
        started.elapsed(),
        contended.load(Ordering::Relaxed)
    );
    // Eight threads on one resource do collide: the test exercised exclusion, not a queue.
    assert!(contended.load(Ordering::Relaxed) > 0, "no contention seen");
    // Every guard was released with Ok(true), so no lock key may remain anywhere (this caught
    // releases overtaking their own SET: see `a_release_is_never_overtaken_by_its_own_set`).
    for (i, node) in cluster.nodes().iter().enumerate() {
        let mut raw = node.raw();
        assert_eq!(
            raw.dbsize(),
            0,
            "node {i}: a lock key was left behind: value {:?}, PTTL {} ms",
            raw.get(RESOURCE)
                .map(|v| String::from_utf8_lossy(&v).into_owned()),
            raw.pttl(RESOURCE)
        );
    }
}

#[test]
fn eight_threads_fifty_rounds_on_three_nodes_lose_no_update() {
    counter_under_lock(3);
}

#[test]
fn eight_threads_fifty_rounds_on_five_nodes_lose_no_update() {
    counter_under_lock(5);
}

/// Callers do not queue behind one another's I/O: with 150 ms of latency each way to the only
/// node, 8 threads locking and releasing 8 different resources take about 2 round trips of
/// 300 ms in parallel; one global mutex would make it 8 x 600 ms.
#[test]
fn callers_on_different_resources_run_in_parallel() {
    let node = RedisNode::start();
    let proxy = FaultProxy::for_node(&node);
    let latency = Duration::from_millis(150);
    let dlm = Redlock::builder()
        .nodes([proxy.url()])
        .retries(0)
        .node_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // The script is loaded now, so that the timed part has no NOSCRIPT round trips.
    let warm = dlm.lock("warm", TTL).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(warm.release(), Ok(true));
    proxy.set_latency_upstream(latency);
    proxy.set_latency_downstream(latency);

    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..THREADS {
            let dlm = &dlm;
            s.spawn(move || {
                let resource = format!("parallel-{t}");
                let guard = dlm
                    .lock(resource.as_str(), TTL)
                    .unwrap_or_else(|e| panic!("thread {t}: {e}"));
                assert_eq!(guard.release(), Ok(true), "thread {t}");
            });
        }
    });
    let took = start.elapsed();
    // Lower bound: each thread made two round trips through the proxy.
    assert!(took >= 2 * 2 * latency, "took {took:?}");
    let serialised = THREADS as u32 * 2 * 2 * latency;
    assert!(
        took < serialised / 2,
        "took {took:?}: callers look serialised ({serialised:?} if fully)"
    );
    assert_eq!(node.raw().dbsize(), 0);
}
/// Regression (failed up to b9e7a1f, fixed in 92cd161): a guard's release must not travel on
/// another connection than its `SET` and overtake it.
///
/// `Redlock::acquire` handed its session (its connections) back to the pool as soon as the
/// lock was granted, and `release` borrowed whichever session was on top of the pool. Redis
/// orders commands per connection only, so when a node's `SET` reply was not awaited (the
/// quorum answered first) and another thread's session was on top of the pool, the `EVALSHA`
/// could reach that node first, find no key, and the `SET` then landed and stayed for the
/// whole ttl (seen under load in the 8-thread tests: a key left on one node after every guard
/// was released with `Ok(true)`). Deterministic here: a proxy delays what is sent to node 2,
/// and a second thread holds one pooled session while the main thread locks with the other.
#[test]
fn a_release_is_never_overtaken_by_its_own_set() {
    let cluster = Cluster::start(3);
    let proxy = FaultProxy::for_node(&cluster[2]);
    let urls = [cluster[0].url(), cluster[1].url(), proxy.url()];
    let dlm = Redlock::builder()
        .nodes(urls)
        .retries(0)
        .node_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..3 {
        let warm = dlm.lock("warm", TTL).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(warm.release(), Ok(true));
    }
    // "held" is taken on node 0, so locking it waits for node 2's (delayed) vote, holding a
    // session meanwhile.
    cluster[0].raw().set("held", "someone-else");
    let slow_link = Duration::from_millis(500);
    let lock_held = || {
        let held = dlm.try_lock("held", TTL).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(held.release(), Ok(true));
    };

    // Phase 1: two sessions in the pool, both connected everywhere; node 2 now counts as slow.
    proxy.set_latency_upstream(slow_link);
    thread::scope(|s| {
        s.spawn(lock_held);
        thread::sleep(Duration::from_millis(150));
        let other = dlm.lock("other", TTL).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other.release(), Ok(true));
    });
    proxy.set_latency_upstream(Duration::ZERO);
    thread::sleep(3 * slow_link); // everything delayed has arrived
    assert!(cluster[2].raw().cmd(&[b"CONFIG", b"RESETSTAT"]).is_ok());

    // Phase 2: the other thread holds the top session; we lock with the second one, and our
    // SET to node 2 is delayed by 2 s. Nodes 0 and 1 grant it at once.
    proxy.set_latency_upstream(slow_link);
    let guard = thread::scope(|s| {
        s.spawn(lock_held);
        thread::sleep(Duration::from_millis(150));
        proxy.set_latency_upstream(Duration::from_secs(2));
        let guard = dlm.lock("k", TTL).unwrap_or_else(|e| panic!("{e}"));
        thread::sleep(Duration::from_millis(50));
        proxy.set_latency_upstream(Duration::ZERO);
        guard
    });
    let value = guard.value().to_vec();
    // The other thread's session is now on top of the pool.
    assert_eq!(guard.release(), Ok(true));

    // Wait until node 2 has run both SETs ("held", then ours), then give a release queued
    // behind ours a moment to run too.
    let node2 = &cluster[2];
    assert!(
        wait_until(Duration::from_secs(6), || node2.calls("set") >= 2),
        "node 2 never ran the delayed SET"
    );
    wait_until(Duration::from_secs(1), || !node2.raw().exists("k"));
    let mut raw = node2.raw();
    assert!(
        !raw.exists("k"),
        "node 2 kept our key after a release that returned Ok(true): value {:?} (ours {:?}), \
         PTTL {} ms",
        raw.get("k")
            .map(|v| String::from_utf8_lossy(&v).into_owned()),
        String::from_utf8_lossy(&value),
        raw.pttl("k")
    );
}
