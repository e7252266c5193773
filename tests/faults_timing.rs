//! Timing faults (issue 4, "Scenarios: Timing"): replies that arrive after the node timeout
//! must never answer a later command; latency that eats the whole validity fails the call and
//! releases every node; a ttl too short for the drift margin is refused before any I/O.
//!
//! Late replies are scripted with `FakeServer` so that misreading one would change the
//! outcome (a late `+OK` read as the answer to a later `SET` would grant a lock that is held
//! elsewhere). Timing checks are lower bounds implied by injected delays, or generous
//! "does not hang" bounds.

mod support;

use support::errors::not_acquired;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use resplock::script::{EXTEND_SCRIPT, EXTEND_SHA1, RELEASE_SCRIPT, RELEASE_SHA1};
use resplock::{Error, NodeError, Phase, Redlock, MAX_TTL};
use support::{wait_until, Action, Cluster, Command, FakeServer, FaultProxy, RedisNode};

/// "Does not hang".
const HANG: Duration = Duration::from_secs(2);

const TTL: Duration = Duration::from_secs(30);

/// The digest a real server answers to `SCRIPT LOAD` of one of our scripts.
fn load_reply(cmd: &Command) -> Action {
    match cmd.arg(2) {
        Some(s) if s == RELEASE_SCRIPT.as_bytes() => Action::bulk(RELEASE_SHA1.as_bytes()),
        Some(s) if s == EXTEND_SCRIPT.as_bytes() => Action::bulk(EXTEND_SHA1.as_bytes()),
        _ => Action::error("ERR unexpected script"),
    }
}

/// `(conn, name)` of every command a fake received, in order.
fn wire(fake: &FakeServer) -> Vec<(u64, String)> {
    fake.commands().iter().map(|c| (c.conn, c.name())).collect()
}

/// A fake lock node that answers its first `SET` only after `delay` with `+OK`, every later
/// `SET` at once with `$-1` (held elsewhere), `SCRIPT LOAD` with the digest, and every
/// `EVALSHA` at once with `:0`.
fn late_first_grant(delay: Duration) -> FakeServer {
    let sets = AtomicU64::new(0);
    FakeServer::start(move |cmd: &Command| {
        if cmd.is("SET") {
            if sets.fetch_add(1, Ordering::SeqCst) == 0 {
                Action::ReplyAfter(delay, b"+OK\r\n".to_vec())
            } else {
                Action::nil()
            }
        } else if cmd.is_sub("SCRIPT", "LOAD") {
            load_reply(cmd)
        } else {
            Action::int(0)
        }
    })
}

/// The late `+OK` to the first `SET` is already buffered when the next `SET` is read: read as
/// that `SET`'s reply it would complete a quorum with the real node.
#[test]
fn late_set_reply_is_not_taken_for_the_next_set_reply() {
    let key = "timing:late-ok";
    let mut cluster = Cluster::start(1);
    // Late by more than a whole acquire round and its release round.
    let late_a = late_first_grant(Duration::from_millis(800));
    let late_b = late_first_grant(Duration::from_millis(800));
    let dlm = Redlock::builder()
        .nodes([cluster[0].url(), late_a.url(), late_b.url()])
        .retries(0)
        .node_timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    // Round 1: both fakes time out; the real node grants alone and is released.
    let err = dlm.try_lock(key, TTL).unwrap_err();
    let (_, granted, held_elsewhere, _, failures) = not_acquired(&err);
    assert_eq!((granted, held_elsewhere), (1, 0), "{err}");
    assert_eq!(failures.len(), 2, "{err}");
    assert!(
        failures
            .iter()
            .all(|f| f.node > 0 && f.error == NodeError::Timeout(Phase::Read)),
        "{err}"
    );
    assert_eq!(cluster.count_key(key), 0);

    // Let the late `+OK` (and the replies to the release queued behind it, which loads its
    // script first because the SET timed out) arrive: a fake takes the release off the wire
    // only once it has written the late reply.
    for fake in [&late_a, &late_b] {
        assert_eq!(fake.wait_for_commands(3, HANG).len(), 3);
    }
    std::thread::sleep(Duration::from_millis(200));

    // Round 2: each fake has `+OK` and `:0` waiting, and answers this SET with `$-1`. Only
    // `$-1` may be taken for its reply.
    let err = dlm.try_lock(key, TTL).unwrap_err();
    let (_, granted, held_elsewhere, expired, failures) = not_acquired(&err);
    assert_eq!(
        (granted, held_elsewhere, expired),
        (1, 2, false),
        "a late +OK was counted: {err}"
    );
    assert!(failures.is_empty(), "{err}");
    assert!(err.is_contention());
    assert_eq!(cluster.count_key(key), 0, "the real node was released");
    for fake in [&late_a, &late_b] {
        assert!(fake.wait_for_commands(5, HANG).len() >= 5);
        let expected: Vec<(u64, String)> = ["SET", "SCRIPT", "EVALSHA", "SET", "EVALSHA"]
            .iter()
            .map(|name| (0, (*name).to_owned()))
            .collect();
        assert_eq!(wire(fake), expected, "one connection, late replies skipped");
    }
}

/// Same, but the late `+OK` lands in the middle of the retry's wait: one node, quorum 1, so
/// misreading it would grant the lock outright.
#[test]
fn late_set_reply_arriving_during_the_retry_is_skipped() {
    let key = "timing:late-during-retry";
    let late = late_first_grant(Duration::from_millis(250));
    let dlm = Redlock::builder()
        .nodes([late.url()])
        .retries(1)
        .retry_delay(Duration::ZERO)
        .retry_jitter(Duration::ZERO)
        .node_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = dlm.lock(key, TTL).unwrap_err();
    assert!(started.elapsed() < HANG, "took {:?}", started.elapsed());
    let (attempts, granted, held_elsewhere, expired, failures) = not_acquired(&err);
    assert_eq!((attempts, granted, expired), (2, 0, false), "{err}");
    // On a quiet machine the retry reads `$-1` (held elsewhere); on a very slow one it may
    // time out instead. Never a grant.
    assert_eq!(held_elsewhere + failures.len(), 1, "{err}");
    assert!(late.wait_for_commands(5, HANG).len() >= 5);
    let names: Vec<String> = late.command_names();
    // The first cleanup follows a timed-out SET, so it loads its script in the same pipeline.
    assert_eq!(names, ["SET", "SCRIPT", "EVALSHA", "SET", "EVALSHA"]);
    assert_eq!(late.connections(), 1);
}

/// A late `:1` to an `EXTEND` must not answer the `RELEASE` sent after it.
#[test]
fn late_extend_reply_is_not_taken_for_the_release_reply() {
    let key = "timing:late-extend";
    let fake = FakeServer::start(|cmd: &Command| {
        if cmd.is("SET") {
            Action::ok()
        } else if cmd.is_sub("SCRIPT", "LOAD") {
            load_reply(cmd)
        } else if cmd.arg(1) == Some(EXTEND_SHA1.as_bytes()) {
            Action::ReplyAfter(Duration::from_millis(1000), b":1\r\n".to_vec())
        } else {
            // The release: the key is no longer ours.
            Action::int(0)
        }
    });
    let dlm = Redlock::builder()
        .nodes([fake.url()])
        .retries(0)
        .node_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let mut guard = dlm.try_lock(key, TTL).unwrap();
    let err = guard.extend(TTL).unwrap_err();
    match &err {
        Error::NotExtended {
            extended, failures, ..
        } => {
            assert_eq!(*extended, 0, "{err}");
            assert_eq!(failures.len(), 1, "{err}");
            assert_eq!(failures[0].error, NodeError::Timeout(Phase::Read), "{err}");
        }
        other => panic!("expected NotExtended, got {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(1500));
    // `:1` (late extend) then `:0` (release) are waiting: the release must read `:0`.
    assert_eq!(
        guard.release(),
        Ok(false),
        "the late :1 was taken for the release"
    );
    // The release follows a timed-out extend, so it loads its script in the same pipeline.
    let commands = fake.wait_for_commands(4, HANG);
    assert_eq!(commands.len(), 4);
    assert_eq!(commands[1].arg(1), Some(EXTEND_SHA1.as_bytes()));
    assert!(commands[2].is_sub("SCRIPT", "LOAD"));
    assert_eq!(commands[3].arg(1), Some(RELEASE_SHA1.as_bytes()));
    assert!(commands.iter().all(|c| c.conn == 0));
}

/// Library bug: a release that stops waiting once "decided" must not report `Ok(false)`
/// (the lock was not held by a quorum) while a node it did not hear from may still hold our
/// value. Here one node failed (`-BUSY`), one says "not ours" and the third, learnt to be
/// slow, answers `:1` 60 ms later: a quorum may well still hold the lock. Expected:
/// `ReleaseUncertain`; got: `Ok(false)`, with the slow node's reply never awaited.
#[test]
fn release_never_reports_false_without_hearing_a_slow_node() {
    let key = "timing:release-verdict";
    let delay = Duration::from_millis(60);
    let slow = FakeServer::start(move |cmd: &Command| {
        let reply = if cmd.is("SET") { "+OK\r\n" } else { ":1\r\n" };
        Action::ReplyAfter(delay, reply.as_bytes().to_vec())
    });
    let busy = FakeServer::start(|cmd: &Command| {
        if cmd.is("SET") {
            Action::ok()
        } else {
            Action::error("BUSY Redis is busy running a script.")
        }
    });
    let gone = FakeServer::start(|cmd: &Command| {
        if cmd.is("SET") {
            Action::ok()
        } else {
            Action::int(0)
        }
    });
    let dlm = Redlock::builder()
        .nodes([slow.url(), busy.url(), gone.url()])
        .retries(0)
        .node_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let guard = dlm.try_lock(key, TTL).expect("all three grant");
    let outcome = guard.release();
    assert!(
        matches!(outcome, Err(Error::ReleaseUncertain { .. })),
        "one node failed and one was not heard, yet: {outcome:?}"
    );
}

#[test]
fn latency_past_the_ttl_fails_with_expired_and_leaves_no_key() {
    let key = "timing:latency-expired";
    let mut cluster = Cluster::start(3);
    let proxies = [
        FaultProxy::for_node(&cluster[0]),
        FaultProxy::for_node(&cluster[1]),
    ];
    let urls = [proxies[0].url(), proxies[1].url(), cluster[2].url()];
    let dlm = Redlock::builder()
        .nodes(urls)
        .retries(0)
        .node_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let ttl = Duration::from_millis(100);
    // A quorum's replies take longer than the whole ttl.
    for proxy in &proxies {
        proxy.set_latency_downstream(Duration::from_millis(120));
    }
    let started = Instant::now();
    let err = dlm.try_lock(key, ttl).unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(120));
    let (_, granted, held_elsewhere, expired, failures) = not_acquired(&err);
    assert!(expired, "{err}");
    assert!(granted >= 2, "{err}");
    assert_eq!(held_elsewhere, 0, "{err}");
    assert!(failures.is_empty(), "{err}");
    assert!(!err.is_contention());

    for proxy in &proxies {
        proxy.set_latency_downstream(Duration::ZERO);
    }
    std::thread::sleep(ttl + Duration::from_millis(50));
    assert_eq!(cluster.count_key(key), 0);
    let guard = dlm.try_lock(key, TTL).expect("latency removed");
    assert_eq!(guard.release(), Ok(true));
    assert_eq!(cluster.count_key(key), 0);
}

/// `expired_keys` from `INFO stats`.
fn expired_keys(node: &RedisNode) -> u64 {
    node.raw()
        .info("stats")
        .lines()
        .find_map(|l| l.strip_prefix("expired_keys:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// Validity runs out while the keys are still alive (a drift factor of 0.5 makes the margin
/// half the ttl), so only the release can explain their absence: nothing expired, yet no key
/// is left when the call returns.
#[test]
fn latency_past_the_validity_fails_and_the_release_deletes_every_key() {
    let key = "timing:latency-released";
    let mut cluster = Cluster::start(3);
    let proxies: Vec<FaultProxy> = cluster.nodes().iter().map(FaultProxy::for_node).collect();
    let urls: Vec<String> = proxies.iter().map(|p| p.url()).collect();
    let dlm = Redlock::builder()
        .nodes(&urls)
        .retries(0)
        .drift_factor(0.5)
        .node_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    // ttl 1500 ms, margin 752 ms: validity is gone once a round takes 748 ms. Each SET lands
    // 800 ms after it was sent, its key lives until 2300 ms; the release lands at ~1600 ms.
    let ttl = Duration::from_millis(1500);
    let latency = Duration::from_millis(800);
    // Scripts cached first: a `NOSCRIPT` would cost the release another delayed trip.
    let warm = dlm.lock("timing:warm-up", TTL).unwrap();
    assert_eq!(warm.release(), Ok(true));
    for proxy in &proxies {
        proxy.set_latency_upstream(latency);
    }
    let started = Instant::now();
    let err = dlm.try_lock(key, ttl).unwrap_err();
    assert!(started.elapsed() >= 2 * latency, "the release waited too");
    let (_, granted, _, expired, failures) = not_acquired(&err);
    assert!(expired, "{err}");
    assert!(granted >= 2, "{err}");
    assert!(failures.is_empty(), "{err}");
    assert_eq!(cluster.count_key(key), 0, "every node released");
    for node in cluster.nodes() {
        assert_eq!(
            expired_keys(node),
            0,
            "deleted by the release, not by expiry"
        );
    }
    for proxy in &proxies {
        proxy.set_latency_upstream(Duration::ZERO);
    }
}

#[test]
fn ttl_too_short_for_the_drift_margin_is_refused_before_any_io() {
    let fake = FakeServer::start(|cmd: &Command| {
        if cmd.is("SET") {
            Action::ok()
        } else {
            Action::int(1)
        }
    });
    let dlm = Redlock::builder()
        .nodes([fake.url()])
        .retries(0)
        .node_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let wide = Redlock::builder()
        .nodes([fake.url()])
        .retries(0)
        .drift_factor(0.5)
        .node_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let cases: [(&Redlock, Duration, &str); 6] = [
        // 2 ms <= 2 ms * 0.01 + 2 ms.
        (&dlm, Duration::from_millis(2), "drift"),
        (&dlm, Duration::from_millis(1), "drift"),
        // 4 ms <= 4 ms * 0.5 + 2 ms.
        (&wide, Duration::from_millis(4), "drift"),
        (&dlm, Duration::ZERO, "positive"),
        (&dlm, Duration::from_micros(2500), "whole number"),
        (&dlm, MAX_TTL + Duration::from_millis(1), "MAX_TTL"),
    ];
    for (manager, ttl, reason_part) in cases {
        for result in [
            manager.try_lock("timing:ttl", ttl).map(|_| ()),
            manager.lock("timing:ttl", ttl).map(|_| ()),
            manager.extend_by("timing:ttl", "v", ttl).map(|_| ()),
        ] {
            match result {
                Err(Error::InvalidTtl { ttl: t, reason }) => {
                    assert_eq!(t, ttl);
                    assert!(reason.contains(reason_part), "{ttl:?}: {reason}");
                }
                other => panic!("{ttl:?}: expected InvalidTtl, got {other:?}"),
            }
        }
    }
    // A guard refuses too, before sending anything.
    let mut guard = dlm.try_lock("timing:ttl", TTL).unwrap();
    let before = fake.commands().len();
    assert!(matches!(
        guard.extend(Duration::from_millis(2)),
        Err(Error::InvalidTtl { .. })
    ));
    assert_eq!(fake.commands().len(), before);
    assert_eq!(guard.release(), Ok(true));
    assert_eq!(
        fake.command_names(),
        ["SET", "EVALSHA"],
        "only the valid lock went out"
    );

    // Just above the margin the ttl is accepted and the call goes to the node.
    let shortest = [(&dlm, 3), (&wide, 5)];
    for (manager, ms) in shortest {
        let result = manager.try_lock("timing:ttl-short", Duration::from_millis(ms));
        assert!(
            !matches!(result, Err(Error::InvalidTtl { .. })),
            "{ms} ms: {result:?}"
        );
    }
    assert!(wait_until(HANG, || fake.command_names().len() >= 4));
}
