//! Quorum behaviour against real `redis-server` nodes that are killed, pre-locked by another
//! owner, or paused with `SIGSTOP`; and exact attempt counts for `retries(n)`.
//!
//! A failed acquisition must say whether it met contention or an outage, and must leave no key
//! of ours on any node it can reach, including paused nodes once they resume and work through
//! the commands queued for them. Timing checks are generous "does not hang" bounds (a round
//! has a 250 ms budget; calls must return within seconds) and lower bounds that follow from
//! sleeps.

mod support;

use std::time::{Duration, Instant};

use resplock::{Error, NodeError, NodeFailure, Phase, Redlock};
use support::{wait_until, Action, Cluster, FakeServer, RedisNode};

const TTL: Duration = Duration::from_secs(10);

/// Budget of one round. Small against the pauses (which last seconds), large enough that a
/// healthy node on a loaded machine still answers within it.
const NODE_TIMEOUT: Duration = Duration::from_millis(250);

/// Far above what a call needs (a few rounds of `NODE_TIMEOUT`), far below a hang.
const NO_HANG: Duration = Duration::from_secs(3);

fn manager(cluster: &Cluster, retries: u32) -> Redlock {
    Redlock::builder()
        .nodes(cluster.urls())
        .retries(retries)
        .retry_delay(Duration::from_millis(20))
        .retry_jitter(Duration::ZERO)
        .node_timeout(NODE_TIMEOUT)
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap_or_else(|e| panic!("valid configuration refused: {e}"))
}

/// Runs `f` and checks that it returned within [`NO_HANG`].
fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took < NO_HANG, "{what} took {took:?}");
    out
}
fn reset_stats(node: &RedisNode) {
    assert!(node.raw().cmd(&[b"CONFIG", b"RESETSTAT"]).is_ok());
}

/// Loads both scripts on every node, through a throwaway manager: one lock, extend, release.
fn warm_up(cluster: &Cluster) {
    let dlm = manager(cluster, 0);
    let mut guard = dlm.lock("warm-up", TTL).unwrap_or_else(|e| panic!("{e}"));
    guard.extend(TTL).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(guard.release(), Ok(true));
}

/// The value of `key` on each listed node.
fn values_on(cluster: &Cluster, nodes: &[usize], key: &[u8]) -> Vec<Option<Vec<u8>>> {
    nodes.iter().map(|&i| cluster[i].raw().get(key)).collect()
}

fn assert_absent_on(cluster: &Cluster, nodes: &[usize], key: &[u8]) {
    for &i in nodes {
        assert!(
            !cluster[i].raw().exists(key),
            "node {i} still holds the key"
        );
    }
}

/// The nodes of `0..n` not in `except`.
fn others(n: usize, except: &[usize]) -> Vec<usize> {
    (0..n).filter(|i| !except.contains(i)).collect()
}

/// Once the paused nodes are resumed, waits until each has executed the `queued` SETs and
/// the releases queued behind them (stats were reset before the pause), then checks the key
/// is gone.
fn assert_cleaned_after_resume(cluster: &mut Cluster, paused: &[usize], key: &[u8], queued: u64) {
    for &i in paused {
        cluster[i].resume();
    }
    for &i in paused {
        let node = &cluster[i];
        assert!(
            wait_until(Duration::from_secs(3), || node.calls("set") >= queued
                && node.calls("evalsha") >= queued),
            "node {i}: the {queued} queued SETs and releases never ran (set {}, evalsha {})",
            node.calls("set"),
            node.calls("evalsha")
        );
        let mut raw = node.raw();
        assert!(
            !raw.exists(key),
            "node {i}: our key was left behind after resume (value {:?}, PTTL {})",
            raw.get(key)
                .map(|v| String::from_utf8_lossy(&v).into_owned()),
            raw.pttl(key)
        );
    }
}

/// Each `expected` node is reported with its address and the expected cause. Any other node
/// reported may only be a live node that missed the round's budget (a timeout: it happens on
/// a heavily loaded machine), never a misclassified one.
fn assert_failures(
    cluster: &Cluster,
    failures: &[NodeFailure],
    expected: &[usize],
    cause: impl Fn(&NodeError) -> bool,
) {
    for &node in expected {
        assert!(
            failures.iter().any(|f| f.node == node),
            "node {node} not reported: {failures:?}"
        );
    }
    for failure in failures {
        assert_eq!(
            failure.addr,
            format!("127.0.0.1:{}", cluster[failure.node].port()),
            "{failure}"
        );
        if expected.contains(&failure.node) {
            assert!(cause(&failure.error), "unexpected cause: {failure}");
        } else {
            assert!(
                matches!(failure.error, NodeError::Timeout(_)),
                "a live node reported failed: {failure}"
            );
        }
    }
}

// ---------------------------------------------------------------- minority: success

fn minority_killed(n: usize, killed: &[usize]) {
    let mut cluster = Cluster::start(n);
    let dlm = manager(&cluster, 0);
    // Pooled connections to the nodes that are about to die.
    let warm = dlm.lock("k", TTL).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(warm.release(), Ok(true));
    for &i in killed {
        cluster[i].kill();
    }
    let alive = others(n, killed);
    for (round, dlm) in [dlm.clone(), manager(&cluster, 0)].iter().enumerate() {
        // Round 0 meets dead pooled connections, round 1 refused connects.
        let guard = bounded("lock", || dlm.lock("k", TTL))
            .unwrap_or_else(|e| panic!("{n} nodes, {killed:?} killed, round {round}: {e}"));
        let value = guard.value().to_vec();
        assert_eq!(
            values_on(&cluster, &alive, b"k"),
            vec![Some(value); alive.len()]
        );
        assert_eq!(bounded("release", || guard.release()), Ok(true));
        assert_absent_on(&cluster, &alive, b"k");
    }
}

#[test]
fn one_of_three_nodes_killed_still_acquires() {
    minority_killed(3, &[1]);
}

#[test]
fn two_of_five_nodes_killed_still_acquires() {
    minority_killed(5, &[0, 3]);
}

#[test]
fn a_minority_pre_locked_by_another_owner_still_acquires_and_stays_untouched() {
    for (n, taken) in [(3, &[2][..]), (5, &[1, 4][..])] {
        let cluster = Cluster::start(n);
        let dlm = manager(&cluster, 0);
        for &i in taken {
            cluster[i].raw().set("k", "someone-else");
        }
        let guard = dlm
            .try_lock("k", TTL)
            .unwrap_or_else(|e| panic!("{n} nodes, {taken:?} taken: {e}"));
        let free = others(n, taken);
        assert_eq!(
            values_on(&cluster, &free, b"k"),
            vec![Some(guard.value().to_vec()); free.len()]
        );
        assert_eq!(guard.release(), Ok(true));
        assert_absent_on(&cluster, &free, b"k");
        for &i in taken {
            let mut raw = cluster[i].raw();
            assert_eq!(raw.get("k").as_deref(), Some(&b"someone-else"[..]));
            assert_eq!(raw.pttl("k"), -1, "node {i}: no ttl was set on it");
        }
    }
}

/// With `cold`, no node has run the scripts before the pause, so the release queued behind
/// our SET on a paused node must bring its own script.
fn minority_paused(n: usize, paused: &[usize], cold: bool) {
    let mut cluster = Cluster::start(n);
    if !cold {
        warm_up(&cluster);
    }
    let dlm = manager(&cluster, 0);
    for node in cluster.nodes() {
        reset_stats(node);
    }
    for &i in paused {
        cluster[i].pause();
    }
    let running = others(n, paused);
    let guard = bounded("lock with a paused minority", || dlm.lock("k", TTL))
        .unwrap_or_else(|e| panic!("{n} nodes, {paused:?} paused: {e}"));
    let value = guard.value().to_vec();
    assert_eq!(
        values_on(&cluster, &running, b"k"),
        vec![Some(value.clone()); running.len()]
    );
    assert!(guard.remaining() > Duration::from_secs(5));
    assert_eq!(
        bounded("release with a paused minority", || guard.release()),
        Ok(true)
    );
    assert_absent_on(&cluster, &running, b"k");

    // Still paused: later calls do not wait on the slow nodes either.
    let again = bounded("second lock", || dlm.lock("k", TTL)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bounded("second release", || again.release()), Ok(true));

    assert_cleaned_after_resume(&mut cluster, paused, b"k", 2);
    // The late replies are skipped, not taken for answers to new commands.
    for _ in 0..3 {
        let guard = dlm
            .lock("k", TTL)
            .unwrap_or_else(|e| panic!("after resume: {e}"));
        for (i, node) in cluster.nodes().iter().enumerate() {
            assert_eq!(
                node.raw().get("k").as_deref(),
                Some(guard.value()),
                "node {i}"
            );
        }
        assert_eq!(guard.release(), Ok(true));
        assert_absent_on(&cluster, &others(n, &[]), b"k");
    }
}

#[test]
fn one_of_three_nodes_paused_still_acquires_quickly() {
    minority_paused(3, &[0], false);
}

/// Regression (failed at b9e7a1f, fixed in 92cd161): as above, on nodes that have not run the
/// release script yet (a fresh or restarted cluster), with node 2 paused. `release()` returned
/// `ReleaseUncertain` with the two healthy nodes failed on `Timeout(Write)`, and their keys
/// stayed for the whole ttl: node 2, not needed by the lock round, had no latency sample and
/// was read first, spending the whole budget; the healthy nodes' `NOSCRIPT` replies were then
/// read with no time left for their `SCRIPT LOAD` and retry.
#[test]
fn one_of_three_fresh_nodes_paused_still_acquires_and_is_cleaned_up_after_resume() {
    minority_paused(3, &[2], true);
}

#[test]
fn two_of_five_nodes_paused_still_acquires_quickly() {
    minority_paused(5, &[1, 3], false);
}

// ---------------------------------------------------------------- majority: failure

fn majority_killed(n: usize, killed: &[usize]) {
    let mut cluster = Cluster::start(n);
    for &i in killed {
        cluster[i].kill();
    }
    let alive = others(n, killed);
    let dlm = manager(&cluster, 0);
    let err = bounded("try_lock", || dlm.try_lock("k", TTL)).expect_err("no quorum");
    assert!(!err.is_contention(), "an outage, not contention: {err}");
    assert!(err.node_failures().len() >= killed.len(), "{err}");
    match &err {
        Error::NotAcquired {
            attempts,
            quorum,
            granted,
            held_elsewhere,
            expired,
            failures,
        } => {
            assert_eq!(*attempts, 1);
            assert_eq!(*quorum, n / 2 + 1);
            assert!(*granted <= alive.len(), "{err}");
            assert_eq!(*held_elsewhere, 0);
            assert!(!expired);
            assert_failures(&cluster, failures, killed, |e| {
                matches!(
                    e,
                    NodeError::Io {
                        phase: Phase::Connect,
                        kind: std::io::ErrorKind::ConnectionRefused
                    }
                )
            });
        }
        other => panic!("expected NotAcquired, got {other:?}"),
    }
    let text = err.to_string();
    for &i in killed {
        let addr = format!("127.0.0.1:{}", cluster[i].port());
        assert!(text.contains(&addr), "the message names {addr}: {text}");
    }
    assert_absent_on(&cluster, &alive, b"k");

    // With retries: every attempt fails the same way, and nothing is left behind.
    let patient = manager(&cluster, 2);
    match bounded("lock with retries", || patient.lock("k", TTL)) {
        Err(Error::NotAcquired {
            attempts: 3,
            failures,
            ..
        }) => assert_failures(&cluster, &failures, killed, |e| {
            matches!(
                e,
                NodeError::Io {
                    phase: Phase::Connect,
                    ..
                }
            )
        }),
        other => panic!("expected 3 failed attempts, got {other:?}"),
    }
    for &i in &alive {
        let mut raw = cluster[i].raw();
        assert!(!raw.exists("k"), "node {i}");
        assert_eq!(raw.dbsize(), 0, "node {i}");
    }
}

#[test]
fn two_of_three_nodes_killed_fails_as_an_outage() {
    majority_killed(3, &[1, 2]);
}

#[test]
fn three_of_five_nodes_killed_fails_as_an_outage() {
    majority_killed(5, &[0, 2, 4]);
}

#[test]
fn a_majority_pre_locked_fails_as_contention_and_releases_what_it_took() {
    for (n, taken) in [(3, &[0, 2][..]), (5, &[0, 2, 4][..])] {
        let cluster = Cluster::start(n);
        for &i in taken {
            cluster[i].raw().set("k", "someone-else");
        }
        let dlm = manager(&cluster, 0);
        let err = dlm.try_lock("k", TTL).expect_err("no quorum");
        assert!(err.is_contention(), "{err}");
        match &err {
            Error::NotAcquired {
                attempts: 1,
                granted,
                held_elsewhere,
                expired: false,
                failures,
                ..
            } => {
                assert_eq!(*held_elsewhere, taken.len(), "{err}");
                assert!(*granted <= n - taken.len(), "{err}");
                assert!(failures.is_empty(), "{err}");
            }
            other => panic!("expected NotAcquired, got {other:?}"),
        }
        // Our SETs that did succeed were released; the other owner's keys are untouched.
        assert_absent_on(&cluster, &others(n, taken), b"k");
        for &i in taken {
            let mut raw = cluster[i].raw();
            assert_eq!(raw.get("k").as_deref(), Some(&b"someone-else"[..]));
            assert_eq!(raw.pttl("k"), -1);
        }
    }
}

fn majority_paused(n: usize, paused: &[usize], cold: bool) {
    let mut cluster = Cluster::start(n);
    if !cold {
        warm_up(&cluster);
    }
    // Open the connections first, so that every paused node's failure is a read timeout.
    // The probe's key (another resource) is kept: releasing it would load the script.
    let dlm = manager(&cluster, 0);
    let mut probe = dlm.lock("probe", TTL).unwrap_or_else(|e| panic!("{e}"));
    probe.disarm();
    drop(probe);
    for node in cluster.nodes() {
        reset_stats(node);
    }
    for &i in paused {
        cluster[i].pause();
    }
    let running = others(n, paused);
    let err = bounded("try_lock with a paused majority", || dlm.try_lock("k", TTL))
        .expect_err("no quorum");
    assert!(!err.is_contention(), "{err}");
    match &err {
        Error::NotAcquired {
            attempts: 1,
            granted,
            held_elsewhere: 0,
            expired: false,
            failures,
            ..
        } => {
            assert!(*granted <= running.len(), "{err}");
            assert_failures(&cluster, failures, paused, |e| {
                *e == NodeError::Timeout(Phase::Read)
            });
        }
        other => panic!("expected NotAcquired, got {other:?}"),
    }
    assert_absent_on(&cluster, &running, b"k");
    for &i in &running {
        // Released right away: one SET, one release.
        assert_eq!(cluster[i].calls("set"), 1, "node {i}");
    }

    // More attempts pile up more queued commands on the paused nodes.
    let patient = manager(&cluster, 1);
    match bounded("lock with retries and a paused majority", || {
        patient.lock("k", TTL)
    }) {
        Err(Error::NotAcquired { attempts: 2, .. }) => {}
        other => panic!("expected 2 failed attempts, got {other:?}"),
    }
    assert_absent_on(&cluster, &running, b"k");

    // After the pause, each node runs what was queued: SET then the release, so nothing of
    // ours may remain, not even for the ttl.
    assert_cleaned_after_resume(&mut cluster, paused, b"k", 3);
    for (i, node) in cluster.nodes().iter().enumerate() {
        let mut raw = node.raw();
        assert!(!raw.exists("k"), "node {i}");
    }
    // And the lock is free for the next client at once.
    let next = manager(&cluster, 0)
        .try_lock("k", TTL)
        .unwrap_or_else(|e| panic!("after resume: {e}"));
    assert_eq!(next.release(), Ok(true));
}

#[test]
fn two_of_three_nodes_paused_fails_quickly_and_leaves_no_key() {
    majority_paused(3, &[1, 2], false);
}

#[test]
fn three_of_five_nodes_paused_fails_quickly_and_leaves_no_key() {
    majority_paused(5, &[0, 1, 4], false);
}

#[test]
fn outage_and_contention_together_are_reported_per_node() {
    let mut cluster = Cluster::start(5);
    warm_up(&cluster);
    // Node 0 held by someone else, node 3 down, node 4 paused: 2 grants of 3 needed.
    cluster[0].raw().set("k", "someone-else");
    cluster[3].kill();
    for node in [&cluster[1], &cluster[2], &cluster[4]] {
        reset_stats(node);
    }
    cluster[4].pause();
    let dlm = manager(&cluster, 0);
    let err = bounded("try_lock", || dlm.try_lock("k", TTL)).expect_err("no quorum");
    assert!(
        !err.is_contention(),
        "failures make it more than contention: {err}"
    );
    match &err {
        Error::NotAcquired {
            attempts: 1,
            quorum: 3,
            granted,
            held_elsewhere,
            expired: false,
            failures,
        } => {
            assert!(*granted <= 2, "{err}");
            // Node 0 says "held" (unless, on a loaded machine, it missed the budget).
            assert!(
                *held_elsewhere == 1 || failures.iter().any(|f| f.node == 0),
                "{err}"
            );
            assert_failures(&cluster, failures, &[3, 4], |_| true);
            for failure in failures {
                let expected = match failure.node {
                    3 => NodeError::Io {
                        phase: Phase::Connect,
                        kind: std::io::ErrorKind::ConnectionRefused,
                    },
                    4 => NodeError::Timeout(Phase::Read),
                    _ => continue,
                };
                assert_eq!(failure.error, expected, "{failure}");
            }
        }
        other => panic!("expected NotAcquired, got {other:?}"),
    }
    assert_absent_on(&cluster, &[1, 2], b"k");
    assert_eq!(
        cluster[0].raw().get("k").as_deref(),
        Some(&b"someone-else"[..])
    );
    assert_cleaned_after_resume(&mut cluster, &[4], b"k", 1);
}

/// Regression (failed up to b9e7a1f, fixed in 92cd161): the same as
/// `two_of_three_nodes_paused_fails_quickly_and_leaves_no_key`, on nodes that have never run
/// the release script (fresh, restarted, or after `SCRIPT FLUSH`). The release queued behind
/// our `SET` on a paused node was a bare `EVALSHA`: it met `NOSCRIPT` after the resume, nobody
/// read that reply, so no `SCRIPT LOAD` and retry followed, and our key stayed on a majority
/// for the whole ttl, blocking every other client. (b9e7a1f preloaded the script only for
/// *slow* nodes, and when a majority times out no node counts as slow.)
#[test]
fn a_paused_majority_that_never_saw_the_script_is_cleaned_up_after_resume() {
    majority_paused(3, &[1, 2], true);
}

/// A round that reached a quorum too late to leave any validity is not a lock: the caller
/// gets `NotAcquired { expired: true }` and the granted key is released.
#[test]
fn a_quorum_without_validity_left_is_not_a_lock() {
    let slow = Duration::from_millis(40);
    let fake = FakeServer::start(move |cmd| {
        if cmd.is("SET") {
            Action::ReplyAfter(slow, b"+OK\r\n".to_vec())
        } else {
            Action::ReplyAfter(slow, b":1\r\n".to_vec())
        }
    });
    let dlm = Redlock::builder()
        .nodes([fake.url()])
        .retries(0)
        .node_timeout(Duration::from_millis(500))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // 20 ms - 40 ms of round trip - 2.2 ms of drift: nothing left.
    let ttl = Duration::from_millis(20);
    match dlm.lock("k", ttl) {
        Err(e @ Error::NotAcquired { .. }) => {
            assert!(!e.is_contention(), "{e}");
            match e {
                Error::NotAcquired {
                    attempts: 1,
                    granted: 1,
                    held_elsewhere: 0,
                    expired: true,
                    failures,
                    ..
                } => assert!(failures.is_empty()),
                other => panic!("expected an expired quorum, got {other:?}"),
            }
        }
        other => panic!("expected NotAcquired, got {other:?}"),
    }
    // Scripts may be loaded ahead of their first use; the lock is one SET, then a release.
    let names: Vec<String> = fake
        .commands()
        .iter()
        .filter(|c| !c.is_sub("SCRIPT", "LOAD"))
        .map(support::Command::name)
        .collect();
    assert_eq!(names, ["SET", "EVALSHA"], "released after the late grant");

    // The same for an extend whose round outlasts its new ttl.
    match dlm.extend_by("k", "v", ttl) {
        Err(Error::NotExtended {
            extended: 1,
            expired: true,
            ..
        }) => {}
        other => panic!("expected an expired extend, got {other:?}"),
    }
}

// ---------------------------------------------------------------- attempt counts

/// One fake node that always reports the key as held elsewhere.
fn held_elsewhere_server() -> FakeServer {
    FakeServer::start(|cmd| {
        if cmd.is("SET") {
            Action::nil()
        } else {
            Action::int(0)
        }
    })
}

fn fake_manager(fake: &FakeServer, retries: u32, delay: Duration) -> Redlock {
    Redlock::builder()
        .nodes([fake.url()])
        .retries(retries)
        .retry_delay(delay)
        .retry_jitter(Duration::ZERO)
        .node_timeout(Duration::from_secs(1))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn count(fake: &FakeServer, name: &str) -> usize {
    fake.command_names().iter().filter(|n| *n == name).count()
}

#[test]
fn retries_n_makes_exactly_n_plus_one_attempts() {
    for retries in [0u32, 1, 3] {
        let fake = held_elsewhere_server();
        let delay = Duration::from_millis(30);
        let dlm = fake_manager(&fake, retries, delay);
        let start = Instant::now();
        let err = dlm.lock("k", TTL).expect_err("always held elsewhere");
        let took = start.elapsed();
        match &err {
            Error::NotAcquired {
                attempts,
                granted: 0,
                held_elsewhere: 1,
                failures,
                ..
            } => {
                assert_eq!(*attempts, retries + 1, "retries({retries})");
                assert!(failures.is_empty());
            }
            other => panic!("retries({retries}): expected NotAcquired, got {other:?}"),
        }
        assert!(err.is_contention());
        let attempts = retries as usize + 1;
        assert_eq!(count(&fake, "SET"), attempts, "retries({retries}): SETs");
        // Every node that was sent a SET is sent a release, even one that said "held".
        assert_eq!(count(&fake, "EVALSHA"), attempts, "retries({retries})");
        // The same value is used by every attempt of one acquisition.
        let values: Vec<Vec<u8>> = fake
            .commands()
            .iter()
            .filter(|c| c.is("SET"))
            .filter_map(|c| c.arg(2).map(<[u8]>::to_vec))
            .collect();
        assert!(values.windows(2).all(|w| w[0] == w[1]), "{values:?}");
        // A sleep between attempts, none after the last.
        assert!(took >= delay * retries, "retries({retries}) took {took:?}");
    }

    // try_lock is one attempt whatever the configuration says.
    let fake = held_elsewhere_server();
    let dlm = fake_manager(&fake, 5, Duration::from_secs(5));
    let start = Instant::now();
    match dlm.try_lock("k", TTL) {
        Err(Error::NotAcquired { attempts: 1, .. }) => {}
        other => panic!("expected one attempt, got {other:?}"),
    }
    assert!(start.elapsed() < NO_HANG);
    assert_eq!(count(&fake, "SET"), 1);
}

#[test]
fn no_sleep_after_the_last_attempt() {
    // retries(0) with a 5 s delay: one attempt, no sleep at all.
    let fake = held_elsewhere_server();
    let dlm = fake_manager(&fake, 0, Duration::from_secs(5));
    let start = Instant::now();
    assert!(matches!(
        dlm.lock("k", TTL),
        Err(Error::NotAcquired { attempts: 1, .. })
    ));
    let took = start.elapsed();
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert_eq!(count(&fake, "SET"), 1);

    // retries(1) with a 1.5 s delay: exactly one sleep (two would take at least 3 s).
    let fake = held_elsewhere_server();
    let delay = Duration::from_millis(1500);
    let dlm = fake_manager(&fake, 1, delay);
    let start = Instant::now();
    assert!(matches!(
        dlm.lock("k", TTL),
        Err(Error::NotAcquired { attempts: 2, .. })
    ));
    let took = start.elapsed();
    assert!(took >= delay, "took {took:?}");
    assert!(
        took < 2 * delay - Duration::from_millis(100),
        "took {took:?}"
    );
    assert_eq!(count(&fake, "SET"), 2);
}

#[test]
fn retries_on_a_pre_locked_cluster_send_one_set_per_attempt_to_every_node() {
    let cluster = Cluster::start(3);
    for node in cluster.nodes() {
        node.raw().set("k", "someone-else");
        reset_stats(node);
    }
    for (retries, total) in [(0u32, 1u64), (1, 3), (3, 7)] {
        let dlm = manager(&cluster, retries);
        match dlm.lock("k", TTL) {
            Err(e @ Error::NotAcquired { .. }) => {
                assert!(e.is_contention(), "{e}");
                assert!(
                    matches!(e, Error::NotAcquired { attempts, .. } if attempts == retries + 1),
                    "retries({retries}): {e}"
                );
            }
            other => panic!("expected NotAcquired, got {other:?}"),
        }
        // Every attempt writes its SET to every node, even after the round is decided.
        for (i, node) in cluster.nodes().iter().enumerate() {
            assert_eq!(node.calls("set"), total, "retries({retries}), node {i}");
        }
    }
    for node in cluster.nodes() {
        assert_eq!(node.raw().get("k").as_deref(), Some(&b"someone-else"[..]));
    }
}
