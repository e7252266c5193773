//! Acquire, release, extend and the guard against real `redis-server` nodes, with every
//! node's key, value and PTTL checked through a raw connection; plus argument and
//! configuration errors, which must come before any I/O.
//!
//! Timing checks are lower bounds that follow from sleeps, or ranges that follow from the
//! monotonic clock; upper bounds on PTTLs come from the ttl itself.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use resplock::script::{EXTEND_SHA1, RELEASE_SHA1};
use resplock::{Builder, Error, Redlock, MAX_TTL};
use support::{wait_until, Action, Cluster, FakeServer};

const TTL: Duration = Duration::from_secs(10);

/// A manager with one attempt per `lock`, and a node timeout that healthy nodes meet even on
/// a loaded machine.
fn manager(cluster: &Cluster) -> Redlock {
    Redlock::builder()
        .nodes(cluster.urls())
        .retries(0)
        .node_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap_or_else(|e| panic!("valid configuration refused: {e}"))
}

/// `ttl * 0.01 + 2 ms`: the drift margin with the default drift factor.
fn default_drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

fn values(cluster: &Cluster, key: &[u8]) -> Vec<Option<Vec<u8>>> {
    cluster.nodes().iter().map(|n| n.raw().get(key)).collect()
}

fn pttls(cluster: &Cluster, key: &[u8]) -> Vec<i64> {
    cluster.nodes().iter().map(|n| n.raw().pttl(key)).collect()
}

/// Every node holds `value` under `key`, with a PTTL in `(min_ms, max_ms]`.
fn assert_held_everywhere(cluster: &Cluster, key: &[u8], value: &[u8], min_ms: i64, max_ms: i64) {
    for (i, node) in cluster.nodes().iter().enumerate() {
        let mut raw = node.raw();
        assert_eq!(
            raw.get(key).as_deref(),
            Some(value),
            "node {i}: key {:?} should hold our value",
            key.escape_ascii().to_string()
        );
        let pttl = raw.pttl(key);
        assert!(
            pttl > min_ms && pttl <= max_ms,
            "node {i}: PTTL {pttl} not in ({min_ms}, {max_ms}]"
        );
    }
}

fn assert_gone_everywhere(cluster: &Cluster, key: &[u8]) {
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert!(
            !node.raw().exists(key),
            "node {i}: key {:?} should be gone",
            key.escape_ascii().to_string()
        );
    }
}

/// Sets `key` to `value` without expiry on the given nodes (another owner's lock, or a key
/// that survived when it should not have).
fn plant(cluster: &Cluster, nodes: &[usize], key: &[u8], value: &[u8]) {
    for &i in nodes {
        cluster[i].raw().set(key, value);
    }
}

fn acquire_and_release_on(n: usize) {
    let cluster = Cluster::start(n);
    let dlm = manager(&cluster);
    assert_eq!(dlm.quorum(), n / 2 + 1);
    assert_eq!(dlm.nodes().len(), n);
    // Binary, with a NUL and a non-UTF-8 byte: used as the key verbatim, no prefix.
    let resource: &[u8] = b"job:\x00\xff:invoice";
    let before = Instant::now();
    let guard = dlm
        .lock(resource, TTL)
        .unwrap_or_else(|e| panic!("{n} healthy nodes: {e}"));
    let after = Instant::now();
    assert_eq!(guard.resource(), resource);
    let value = guard.value().to_vec();
    assert_eq!(value.len(), 32, "16 random bytes as hex");
    assert!(
        value
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)),
        "lowercase hex: {:?}",
        String::from_utf8_lossy(&value)
    );
    // Validity ends at (round start) + ttl - drift, and the round started inside the call.
    let window = TTL - default_drift(TTL);
    assert!(guard.valid_until() >= before + window);
    assert!(guard.valid_until() <= after + window);
    assert!(guard.remaining() <= window);
    assert!(guard.remaining() > Duration::ZERO);
    assert_held_everywhere(&cluster, resource, &value, 5_000, 10_000);
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert_eq!(node.raw().dbsize(), 1, "node {i}: only the lock key");
    }
    assert_eq!(guard.release(), Ok(true));
    assert_gone_everywhere(&cluster, resource);
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert_eq!(node.raw().dbsize(), 0, "node {i}: nothing left");
    }
    // The manager is reusable, and every acquisition gets a fresh value.
    let again = dlm.lock(resource, TTL).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(again.value(), value.as_slice());
    assert_held_everywhere(&cluster, resource, again.value(), 5_000, 10_000);
    assert_eq!(again.release(), Ok(true));
    assert_gone_everywhere(&cluster, resource);
}

#[test]
fn acquire_and_release_on_one_node() {
    acquire_and_release_on(1);
}

#[test]
fn acquire_and_release_on_three_nodes() {
    acquire_and_release_on(3);
}

#[test]
fn acquire_and_release_on_five_nodes() {
    acquire_and_release_on(5);
}

#[test]
fn a_held_lock_excludes_other_managers_and_the_same_one() {
    let cluster = Cluster::start(3);
    let a = manager(&cluster);
    let b = manager(&cluster);
    let key = b"exclusive";
    let guard = a.lock(key, TTL).unwrap_or_else(|e| panic!("{e}"));
    let value = guard.value().to_vec();

    for (who, dlm) in [("another manager", &b), ("the same manager", &a)] {
        let err = dlm.try_lock(key, TTL).expect_err(who);
        assert!(err.is_contention(), "{who}: {err}");
        match &err {
            Error::NotAcquired {
                attempts,
                quorum,
                granted,
                held_elsewhere,
                expired,
                failures,
            } => {
                assert_eq!(*attempts, 1, "{who}");
                assert_eq!(*quorum, 2, "{who}");
                assert_eq!(*granted, 0, "{who}");
                // The round may stop reading once a quorum is impossible: at least 2 of 3.
                assert!((2..=3).contains(held_elsewhere), "{who}: {err}");
                assert!(!expired, "{who}");
                assert!(failures.is_empty(), "{who}: {err}");
            }
            other => panic!("{who}: expected NotAcquired, got {other:?}"),
        }
    }
    // With retries: every attempt meets the same contention.
    let patient = Redlock::builder()
        .nodes(cluster.urls())
        .retries(2)
        .retry_delay(Duration::from_millis(20))
        .retry_jitter(Duration::ZERO)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    match patient.lock(key, TTL) {
        Err(Error::NotAcquired { attempts: 3, .. }) => {}
        other => panic!("expected 3 failed attempts, got {other:?}"),
    }
    // The losers' cleanup never touched the holder's keys.
    assert_held_everywhere(&cluster, key, &value, 5_000, 10_000);

    assert_eq!(guard.release(), Ok(true));
    let next = b
        .try_lock(key, TTL)
        .unwrap_or_else(|e| panic!("free again: {e}"));
    assert_ne!(next.value(), value.as_slice());
    assert_held_everywhere(&cluster, key, next.value(), 5_000, 10_000);
}

#[test]
fn a_lock_can_be_taken_again_after_it_expired_and_the_old_guard_leaves_it_alone() {
    let cluster = Cluster::start(3);
    let a = manager(&cluster);
    let b = manager(&cluster);
    let key = b"expiring";
    let short = Duration::from_millis(1000);
    let old = a.lock(key, short).unwrap_or_else(|e| panic!("{e}"));
    let old_value = old.value().to_vec();
    assert_held_everywhere(&cluster, key, &old_value, 0, 1000);
    assert!(
        wait_until(Duration::from_secs(4), || pttls(&cluster, key)
            .iter()
            .all(|&p| p == -2)),
        "keys should expire within 4 s of a 1 s ttl"
    );
    assert_eq!(old.remaining(), Duration::ZERO);

    let new = b
        .try_lock(key, TTL)
        .unwrap_or_else(|e| panic!("after expiry: {e}"));
    assert_ne!(new.value(), old_value.as_slice());
    // The old guard is still armed: dropping it runs a release that must not delete the new
    // owner's key.
    drop(old);
    assert_held_everywhere(&cluster, key, new.value(), 5_000, 10_000);
    assert_eq!(new.release(), Ok(true));
    assert_gone_everywhere(&cluster, key);
}

#[test]
fn release_never_deletes_another_owners_key() {
    let cluster = Cluster::start(3);
    let dlm = manager(&cluster);

    // Taken over everywhere: release reports that it was not ours and deletes nothing.
    let key = b"taken-over";
    let guard = dlm.lock(key, TTL).unwrap_or_else(|e| panic!("{e}"));
    plant(&cluster, &[0, 1, 2], key, b"someone-else");
    assert_eq!(guard.release(), Ok(false));
    assert_eq!(
        values(&cluster, key),
        vec![Some(b"someone-else".to_vec()); 3]
    );
    assert_eq!(pttls(&cluster, key), vec![-1; 3]);

    // Taken over on one node: a quorum is still ours and released; that node is untouched.
    let key = b"partly-taken";
    let guard = dlm.lock(key, TTL).unwrap_or_else(|e| panic!("{e}"));
    plant(&cluster, &[1], key, b"someone-else");
    assert_eq!(guard.release(), Ok(true));
    assert_eq!(
        values(&cluster, key),
        vec![None, Some(b"someone-else".to_vec()), None]
    );
    assert_eq!(cluster[1].raw().pttl(key), -1);

    // By value: a wrong value deletes nothing.
    let key = b"by-value";
    let guard = dlm.lock(key, TTL).unwrap_or_else(|e| panic!("{e}"));
    let mut wrong = guard.value().to_vec();
    wrong[0] ^= 1;
    assert_eq!(dlm.release_by(key, &wrong), Ok(false));
    assert_held_everywhere(&cluster, key, guard.value(), 5_000, 10_000);
    assert_eq!(guard.release(), Ok(true));
    assert_gone_everywhere(&cluster, key);
}

#[test]
fn extend_fails_and_touches_nothing_once_another_client_took_the_key() {
    let cluster = Cluster::start(3);
    let dlm = manager(&cluster);

    let key = b"stolen";
    let mut guard = dlm.lock(key, TTL).unwrap_or_else(|e| panic!("{e}"));
    plant(&cluster, &[0, 1, 2], key, b"someone-else");
    let valid_until = guard.valid_until();
    match guard.extend(TTL) {
        Err(Error::NotExtended {
            quorum: 2,
            extended: 0,
            not_held,
            expired: false,
            failures,
        }) => {
            assert!((2..=3).contains(&not_held), "not_held {not_held}");
            assert!(failures.is_empty(), "{failures:?}");
        }
        other => panic!("expected NotExtended, got {other:?}"),
    }
    // Not extended, not re-created, no ttl set on the other owner's key.
    assert_eq!(
        values(&cluster, key),
        vec![Some(b"someone-else".to_vec()); 3]
    );
    assert_eq!(pttls(&cluster, key), vec![-1; 3]);
    assert_eq!(
        guard.valid_until(),
        valid_until,
        "a failed extend keeps the old validity"
    );
    drop(guard);
    assert_eq!(
        values(&cluster, key),
        vec![Some(b"someone-else".to_vec()); 3]
    );

    // Taken on a majority: the one node still ours is extended, which is not enough.
    let key = b"mostly-stolen";
    let mut guard = dlm
        .lock(key, Duration::from_millis(2000))
        .unwrap_or_else(|e| panic!("{e}"));
    plant(&cluster, &[1, 2], key, b"someone-else");
    match guard.extend(TTL) {
        Err(Error::NotExtended {
            extended, not_held, ..
        }) => {
            assert!(extended <= 1, "extended {extended}");
            assert!(not_held >= 1, "not_held {not_held}");
        }
        other => panic!("expected NotExtended, got {other:?}"),
    }
    assert_eq!(cluster[1].raw().pttl(key), -1);
    assert_eq!(cluster[2].raw().pttl(key), -1);
    assert_eq!(guard.release(), Ok(false));
    assert_eq!(
        values(&cluster, key),
        vec![
            None,
            Some(b"someone-else".to_vec()),
            Some(b"someone-else".to_vec())
        ]
    );

    // By value: a wrong value extends nothing.
    let key = b"wrong-value";
    let guard = dlm
        .lock(key, Duration::from_millis(2000))
        .unwrap_or_else(|e| panic!("{e}"));
    match dlm.extend_by(key, b"not-our-value", TTL) {
        Err(Error::NotExtended { extended: 0, .. }) => {}
        other => panic!("expected NotExtended, got {other:?}"),
    }
    assert_held_everywhere(&cluster, key, guard.value(), 0, 2_000);
}

#[test]
fn extend_resets_the_ttl_rather_than_adding_to_it() {
    let cluster = Cluster::start(3);
    let dlm = manager(&cluster);
    let key = b"extended";
    let ttl = Duration::from_millis(3000);
    let mut guard = dlm.lock(key, ttl).unwrap_or_else(|e| panic!("{e}"));
    sleep(Duration::from_millis(1000));
    let before = pttls(&cluster, key);
    // Up to 2000 ms left; more on a node that ran its SET after `lock` returned at a quorum
    // (a loaded machine can delay the last node by a few milliseconds).
    assert!(
        before.iter().all(|&p| p > 0 && p <= 2_500),
        "1 s into a 3 s ttl: {before:?}"
    );
    let remaining_before = guard.remaining();

    let start = Instant::now();
    let validity = guard.extend(ttl).unwrap_or_else(|e| panic!("{e}"));
    let end = Instant::now();
    let window = ttl - default_drift(ttl);
    assert!(
        validity > Duration::ZERO && validity <= window,
        "{validity:?}"
    );
    assert!(guard.valid_until() >= start + window);
    assert!(guard.valid_until() <= end + window);
    assert!(guard.remaining() > remaining_before);
    let after = pttls(&cluster, key);
    for (i, (&b, &a)) in before.iter().zip(&after).enumerate() {
        // Back up near the new ttl; adding would have given about 2000 + 3000.
        assert!(
            a > b && a <= 3000,
            "node {i}: PTTL {b} -> {a}, expected ({b}, 3000]"
        );
    }
    assert_held_everywhere(&cluster, key, guard.value(), 2000, 3000);

    // A shorter ttl shortens the key: the ttl is set, not maxed or added.
    let validity = guard
        .extend(Duration::from_millis(1500))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(validity <= Duration::from_millis(1500));
    assert!(guard.remaining() <= Duration::from_millis(1500));
    assert_held_everywhere(&cluster, key, guard.value(), 0, 1500);
    assert_eq!(guard.release(), Ok(true));
    assert_gone_everywhere(&cluster, key);
}

#[test]
fn extend_after_the_validity_ran_out_is_refused_locally() {
    let cluster = Cluster::start(3);
    let dlm = manager(&cluster);
    let key = b"too-late";
    let mut guard = dlm
        .lock(key, Duration::from_millis(300))
        .unwrap_or_else(|e| panic!("{e}"));
    let value = guard.value().to_vec();
    assert!(wait_until(Duration::from_secs(2), || guard.remaining()
        == Duration::ZERO));
    // Put our value back without expiry, as if the nodes still held it: a refused extend
    // sends nothing, so the keys keep no ttl at all.
    plant(&cluster, &[0, 1, 2], key, &value);
    assert_eq!(guard.extend(TTL), Err(Error::Expired));
    assert_eq!(pttls(&cluster, key), vec![-1; 3]);
    assert_eq!(values(&cluster, key), vec![Some(value.clone()); 3]);
    guard.disarm();
    drop(guard);
    assert_eq!(dlm.release_by(key, &value), Ok(true));
    assert_gone_everywhere(&cluster, key);

    // The same after the keys expired on their own: refused, and nothing is re-created.
    let mut guard = dlm
        .lock(key, Duration::from_millis(300))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(wait_until(Duration::from_secs(3), || pttls(&cluster, key)
        .iter()
        .all(|&p| p == -2)));
    assert_eq!(guard.extend(TTL), Err(Error::Expired));
    assert_gone_everywhere(&cluster, key);
}

#[test]
fn release_by_and_extend_by_work_from_another_manager_with_the_guards_value() {
    let cluster = Cluster::start(3);
    let owner = manager(&cluster);
    let key = b"handed-over";
    let mut guard = owner
        .lock(key, Duration::from_millis(2000))
        .unwrap_or_else(|e| panic!("{e}"));
    let resource = guard.resource().to_vec();
    let value = guard.value().to_vec();
    guard.disarm();
    drop(guard);
    assert_held_everywhere(&cluster, key, &value, 0, 2_000);

    // "Another process": a separate manager with its own connections, knowing only
    // (resource, value).
    let other = manager(&cluster);
    let validity = other
        .extend_by(&resource, &value, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    let window = Duration::from_secs(20) - default_drift(Duration::from_secs(20));
    assert!(validity > Duration::from_secs(10) && validity <= window);
    assert_held_everywhere(&cluster, key, &value, 10_000, 20_000);

    assert_eq!(other.release_by(&resource, &value), Ok(true));
    assert_gone_everywhere(&cluster, key);
    assert_eq!(other.release_by(&resource, &value), Ok(false));
    match other.extend_by(&resource, &value, TTL) {
        Err(Error::NotExtended {
            extended: 0,
            not_held,
            failures,
            ..
        }) => {
            assert!(not_held >= 2 && failures.is_empty());
        }
        other => panic!("expected NotExtended, got {other:?}"),
    }
    assert_gone_everywhere(&cluster, key);
}

#[test]
fn disarm_keeps_the_key_when_the_guard_is_dropped() {
    let cluster = Cluster::start(3);
    let dlm = manager(&cluster);
    let key = b"kept";
    let mut guard = dlm.lock(key, TTL).unwrap_or_else(|e| panic!("{e}"));
    let value = guard.value().to_vec();
    guard.disarm();
    drop(guard);
    assert_held_everywhere(&cluster, key, &value, 5_000, 10_000);
    assert_eq!(dlm.release_by(key, &value), Ok(true));
    assert_gone_everywhere(&cluster, key);

    // An explicit release still releases a disarmed guard.
    let mut guard = dlm.lock(key, TTL).unwrap_or_else(|e| panic!("{e}"));
    guard.disarm();
    assert_eq!(guard.release(), Ok(true));
    assert_gone_everywhere(&cluster, key);
}

#[test]
fn release_reloads_the_script_after_script_flush() {
    let cluster = Cluster::start(3);
    let dlm = manager(&cluster);
    let key = b"flushed-before-release";
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert!(!node.raw().script_exists(RELEASE_SHA1), "node {i}: fresh");
    }
    // A fresh node has no script: the first release meets NOSCRIPT too.
    let guard = dlm.lock(key, TTL).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(guard.release(), Ok(true));
    assert_gone_everywhere(&cluster, key);
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert!(node.raw().script_exists(RELEASE_SHA1), "node {i}: loaded");
    }

    // Cached, then flushed between acquire and release.
    for round in 0..2 {
        let guard = dlm.lock(key, TTL).unwrap_or_else(|e| panic!("{e}"));
        for node in cluster.nodes() {
            let mut raw = node.raw();
            raw.script_flush();
            assert!(!raw.script_exists(RELEASE_SHA1));
        }
        if round == 0 {
            assert_eq!(guard.release(), Ok(true));
        } else {
            drop(guard); // the drop path reloads as well
        }
        assert_gone_everywhere(&cluster, key);
        for (i, node) in cluster.nodes().iter().enumerate() {
            assert!(
                node.raw().script_exists(RELEASE_SHA1),
                "round {round}, node {i}: SCRIPT LOAD after NOSCRIPT"
            );
        }
    }
}

#[test]
fn extend_reloads_the_script_after_script_flush() {
    let cluster = Cluster::start(3);
    let dlm = manager(&cluster);
    let key = b"flushed-before-extend";
    let mut guard = dlm
        .lock(key, Duration::from_millis(2000))
        .unwrap_or_else(|e| panic!("{e}"));
    for node in cluster.nodes() {
        let mut raw = node.raw();
        raw.script_flush();
        assert!(!raw.script_exists(EXTEND_SHA1));
    }
    let validity = guard.extend(TTL).unwrap_or_else(|e| panic!("{e}"));
    assert!(validity > Duration::from_secs(5));
    // The round may stop reading once a quorum answered, but every node was sent the reload.
    assert!(
        wait_until(Duration::from_secs(2), || {
            pttls(&cluster, key).iter().all(|&p| p > 5_000)
                && cluster
                    .nodes()
                    .iter()
                    .all(|n| n.raw().script_exists(EXTEND_SHA1))
        }),
        "every node extended and has the extend script: PTTLs {:?}",
        pttls(&cluster, key)
    );
    assert_held_everywhere(&cluster, key, guard.value(), 5_000, 10_000);
    assert_eq!(guard.release(), Ok(true));
    assert_gone_everywhere(&cluster, key);
}

#[test]
fn dropping_the_guard_releases_the_lock() {
    let cluster = Cluster::start(3);
    let dlm = manager(&cluster);
    let key = b"dropped";
    {
        let guard = dlm.lock(key, TTL).unwrap_or_else(|e| panic!("{e}"));
        assert_held_everywhere(&cluster, key, guard.value(), 5_000, 10_000);
    }
    assert_gone_everywhere(&cluster, key);
    // And the lock is free for someone else at once, not after the ttl.
    let next = manager(&cluster)
        .try_lock(key, TTL)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next.release(), Ok(true));
}

#[test]
fn a_panic_while_holding_the_guard_releases_the_lock() {
    let cluster = Cluster::start(3);
    let dlm = manager(&cluster);
    let key = b"panicked";
    let seen: Mutex<Option<Vec<u8>>> = Mutex::new(None);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let guard = dlm.lock(key, TTL).unwrap_or_else(|e| panic!("{e}"));
        assert_held_everywhere(&cluster, key, guard.value(), 5_000, 10_000);
        *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard.value().to_vec());
        panic!("deliberate panic while holding the lock");
    }));
    let payload = outcome.expect_err("the closure panics");
    assert_eq!(
        payload.downcast_ref::<&str>().copied(),
        Some("deliberate panic while holding the lock")
    );
    assert!(
        seen.lock().unwrap_or_else(|p| p.into_inner()).is_some(),
        "the lock was held when the panic started"
    );
    assert_gone_everywhere(&cluster, key);
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert_eq!(node.raw().dbsize(), 0, "node {i}");
    }
}

#[test]
fn bad_ttls_are_refused_before_any_io() {
    let fake = FakeServer::start(|cmd| {
        if cmd.is("SET") {
            Action::ok()
        } else {
            Action::int(1)
        }
    });
    let dlm = Redlock::builder()
        .nodes([fake.url()])
        .drift_factor(0.01)
        .node_timeout(Duration::from_secs(1))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let wide = Redlock::builder()
        .nodes([fake.url()])
        .drift_factor(0.5)
        .node_timeout(Duration::from_secs(1))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let ms = Duration::from_millis;
    let bad: &[(&Redlock, Duration, &str)] = &[
        (&dlm, Duration::ZERO, "zero"),
        (&dlm, Duration::from_nanos(1), "below a millisecond"),
        (&dlm, Duration::from_micros(1500), "sub-millisecond part"),
        (&dlm, TTL + Duration::from_nanos(1), "one nanosecond over"),
        (&dlm, MAX_TTL + ms(1), "above MAX_TTL"),
        (&dlm, Duration::MAX, "Duration::MAX"),
        (&dlm, ms(1), "below the 2 ms drift floor"),
        (&dlm, ms(2), "2 ms <= 2.02 ms drift margin"),
        (&wide, ms(4), "4 ms <= 4 ms margin at drift 0.5"),
    ];
    for &(manager, ttl, why) in bad {
        let is_invalid =
            |r: &Result<(), Error>| matches!(r, Err(Error::InvalidTtl { ttl: t, .. }) if *t == ttl);
        let lock = manager.lock("k", ttl).map(drop);
        assert!(is_invalid(&lock), "lock, {why}: {lock:?}");
        let try_lock = manager.try_lock("k", ttl).map(drop);
        assert!(is_invalid(&try_lock), "try_lock, {why}: {try_lock:?}");
        let extend = manager.extend_by("k", "v", ttl).map(drop);
        assert!(is_invalid(&extend), "extend_by, {why}: {extend:?}");
    }
    sleep(ms(100));
    assert_eq!(fake.connections(), 0, "no connection for a bad ttl");
    assert!(fake.commands().is_empty());

    // Control: a valid ttl does reach the server, and a guard's extend checks its ttl before
    // any I/O too.
    let mut guard = dlm.lock("k", TTL).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fake.connections(), 1);
    // Loading the scripts ahead of their first use is fine; one SET is the lock.
    let lock_commands: Vec<String> = fake
        .commands()
        .iter()
        .filter(|c| !c.is_sub("SCRIPT", "LOAD"))
        .map(support::Command::name)
        .collect();
    assert_eq!(lock_commands, ["SET"]);
    let sent = fake.commands().len();
    for ttl in [
        Duration::ZERO,
        Duration::from_micros(1500),
        MAX_TTL + ms(1),
        ms(2),
    ] {
        match guard.extend(ttl) {
            Err(Error::InvalidTtl { ttl: t, .. }) => assert_eq!(t, ttl),
            other => panic!("guard.extend({ttl:?}): {other:?}"),
        }
    }
    sleep(ms(50));
    assert_eq!(fake.commands().len(), sent, "a bad extend sent nothing");
    // Just above the margin is a ttl, not an argument error (the lock itself may have no
    // validity left by the time the reply is in).
    drop(guard);
    match dlm.try_lock("k2", ms(3)) {
        Ok(_) | Err(Error::NotAcquired { .. }) => {}
        Err(e) => panic!("3 ms with drift 0.01 is a valid ttl: {e}"),
    }
    match wide.try_lock("k3", ms(5)) {
        Ok(_) | Err(Error::NotAcquired { .. }) => {}
        Err(e) => panic!("5 ms with drift 0.5 is a valid ttl: {e}"),
    }
}

fn config_error(builder: Builder) -> Error {
    match builder.build() {
        Ok(dlm) => panic!("accepted: {dlm:?}"),
        Err(e) => e,
    }
}

#[test]
fn bad_configurations_are_refused() {
    let node = "redis://127.0.0.1:7001";
    let base = || Redlock::builder().nodes([node, "redis://127.0.0.1:7002"]);
    let invalid_config = |builder: Builder, why: &str| {
        let e = config_error(builder);
        assert!(
            matches!(e, Error::InvalidConfig(_)),
            "{why}: expected InvalidConfig, got {e:?}"
        );
    };

    assert!(matches!(
        Redlock::new(Vec::<String>::new()),
        Err(Error::InvalidConfig(_))
    ));
    invalid_config(Redlock::builder(), "no nodes");
    for dup in [
        [node, node],
        [node, "redis://127.0.0.1:7001/3"],
        [node, "redis://:secret@127.0.0.1:7001"],
        [node, "REDIS://127.0.0.1:07001"],
        ["redis://LocalHost:7001", "redis://localhost:7001"],
        ["redis://[::1]:7001", "redis://[::1]:7001/1"],
    ] {
        invalid_config(Redlock::builder().nodes(dup), &format!("duplicate {dup:?}"));
    }
    for factor in [f64::NAN, -0.01, -f64::MIN_POSITIVE, 1.0, 1.5, f64::INFINITY] {
        invalid_config(base().drift_factor(factor), &format!("drift {factor}"));
    }
    invalid_config(base().node_timeout(Duration::ZERO), "zero node_timeout");
    invalid_config(
        base().connect_timeout(Duration::ZERO),
        "zero connect_timeout",
    );
    invalid_config(base().retries(u32::MAX), "retries u32::MAX");
    let many: Vec<String> = (0..65)
        .map(|i| format!("redis://127.0.0.1:{}", 7000 + i))
        .collect();
    invalid_config(Redlock::builder().nodes(&many), "65 nodes");

    // The edges that are fine.
    for ok in [
        base().drift_factor(0.0),
        base().drift_factor(0.999),
        base().retries(0),
        Redlock::builder().nodes(&many[..64]),
    ] {
        if let Err(e) = ok.build() {
            panic!("valid configuration refused: {e}");
        }
    }

    for url in [
        "127.0.0.1:7001",
        "http://127.0.0.1:7001",
        #[cfg(not(feature = "tls"))]
        "rediss://127.0.0.1:7001",
        "redis://",
        "redis://127.0.0.1:0",
        "redis://127.0.0.1:65536",
        "redis://127.0.0.1:x",
        "redis://::1:7001",
        "redis://[::1:7001",
        "redis://127.0.0.1:7001?db=1",
        "redis://127.0.0.1:7001/db",
        "redis://127.0.0.1:7001/4294967296",
        "redis://127.0.0.1 :7001",
        "redis://user@127.0.0.1:7001",
    ] {
        match Redlock::new([node, url]) {
            Err(Error::InvalidUrl { .. }) => {}
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }
    // The password never shows, in the error or its message.
    let e = config_error(Redlock::builder().nodes(["redis://admin:hunter2@127.0.0.1:99999"]));
    assert!(
        matches!(&e, Error::InvalidUrl { url, .. } if !url.contains("hunter2")),
        "{e:?}"
    );
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
}

#[test]
fn building_a_manager_does_no_io() {
    let fake = FakeServer::start(|_| Action::ok());
    let dlm = Redlock::new([fake.url()]).unwrap_or_else(|e| panic!("{e}"));
    let built = Redlock::builder()
        .nodes([fake.url()])
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    sleep(Duration::from_millis(100));
    assert_eq!(fake.connections(), 0);
    drop((dlm, built));
    assert_eq!(fake.connections(), 0);
}

/// Regression (failed at b9e7a1f, fixed in 92cd161): one server listed under two spellings
/// of the same IP literal must not count twice towards the quorum. `NodeAddr::same_server`
/// compared host strings, so `[::1]` and `[0:0:0:0:0:0:0:1]` (or `127.0.0.1` and
/// `[::ffff:127.0.0.1]`) passed as different servers; with three "nodes" of which two are the
/// same server, that server alone was a quorum.
#[test]
fn the_same_ip_literal_spelled_twice_is_a_duplicate() {
    let pairs = [
        ["redis://[::1]:7001", "redis://[0:0:0:0:0:0:0:1]:7001"],
        ["redis://[::1]:7001", "redis://[0::1]:7001"],
        ["redis://127.0.0.1:7001", "redis://[::ffff:127.0.0.1]:7001"],
    ];
    let accepted: Vec<_> = pairs
        .iter()
        .filter(|pair| !matches!(Redlock::new(pair.iter()), Err(Error::InvalidConfig(_))))
        .collect();
    assert!(
        accepted.is_empty(),
        "the same server listed twice was accepted: {accepted:?}"
    );
}
