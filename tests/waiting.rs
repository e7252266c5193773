//! `lock_within`: waiting with a deadline, woken by the holder's release, on real nodes and
//! hostile ones.
//!
//! Bounds on time are generous: they prove a waiter was woken by the release (long before the
//! holder's ttl would have let it in) or that it did not hang, never that it was fast. Speed
//! is measured by `cargo bench --bench waiting`.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use resplock::{Error, Redlock};
use support::{wait_until, Action, Cluster, Command, FakeServer, RawReply, RedisNode};

/// Long enough that only a release (not an expiry) can hand the lock over within a test.
const LONG_TTL: Duration = Duration::from_secs(30);

fn manager(urls: &[String]) -> Redlock {
    Redlock::builder()
        .nodes(urls)
        .retries(0)
        .node_timeout(Duration::from_millis(200))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}
/// Connections of the node in subscriber mode.
fn subscribers(node: &RedisNode) -> usize {
    let list = node.raw().cmd(&[b"CLIENT", b"LIST"]);
    let text = String::from_utf8_lossy(list.as_bulk().unwrap_or_default()).into_owned();
    text.lines()
        .filter(|line| {
            line.split_whitespace()
                .any(|f| f.starts_with("flags=") && f.contains('P'))
        })
        .count()
}

/// Channels matching `pattern` with at least one subscriber on the node.
fn channels(node: &RedisNode, pattern: &str) -> usize {
    match node
        .raw()
        .cmd(&[b"PUBSUB", b"CHANNELS", pattern.as_bytes()])
    {
        RawReply::Array(Some(items)) => items.len(),
        other => panic!("PUBSUB CHANNELS: {other:?}"),
    }
}

fn connected(node: &RedisNode) -> usize {
    node.raw()
        .info("clients")
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(1)
        - 1
}

fn handoff(nodes: usize) {
    let cluster = Cluster::start(nodes);
    let holder = manager(&cluster.urls());
    let waiter = manager(&cluster.urls());
    let guard = holder
        .lock("wait:handoff", LONG_TTL)
        .unwrap_or_else(|e| panic!("{e}"));
    thread::scope(|s| {
        let waiting = s.spawn(|| {
            let got = waiter.lock_within("wait:handoff", LONG_TTL, Duration::from_secs(10));
            (got, Instant::now())
        });
        thread::sleep(Duration::from_millis(300));
        let released_at = Instant::now();
        assert_eq!(guard.release(), Ok(true));
        let (got, acquired_at) = waiting.join().expect("waiter thread");
        let guard = got.unwrap_or_else(|e| panic!("{nodes} nodes: {e}"));
        assert!(acquired_at >= released_at, "acquired before the release");
        assert!(
            acquired_at - released_at < Duration::from_secs(2),
            "{nodes} nodes: woken by the release, not the {LONG_TTL:?} ttl"
        );
        assert_eq!(guard.release(), Ok(true));
    });
}

#[test]
fn a_release_hands_the_lock_over_on_1_3_and_5_nodes() {
    for nodes in [1, 3, 5] {
        handoff(nodes);
    }
}

/// On one node the front waiter reads the subscription itself: waiters on other resources,
/// one joining while it reads, are still subscribed and woken, before and after it leaves.
#[test]
fn on_one_node_waiters_on_several_resources_are_all_handed_over() {
    let cluster = Cluster::start(1);
    let node = &cluster.nodes()[0];
    let holder = manager(&cluster.urls());
    let waiter = manager(&cluster.urls());
    let names = ["wait:one:a", "wait:one:b", "wait:one:c"];
    let held: Vec<_> = names
        .iter()
        .map(|name| {
            holder
                .lock(*name, LONG_TTL)
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    thread::scope(|s| {
        let mut waiting = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let waiter = &waiter;
            waiting.push(s.spawn(move || {
                let got = waiter.lock_within(*name, LONG_TTL, Duration::from_secs(20));
                (got, Instant::now())
            }));
            // The first becomes the reader; the others join while it reads.
            assert!(
                wait_until(Duration::from_secs(10), || channels(
                    node,
                    "resplock:released:wait:one:*"
                ) == i + 1),
                "{name} subscribed"
            );
        }
        thread::sleep(Duration::from_millis(100));
        // The last one while the first reads, then the reader's own, then the middle one
        // once the node thread reads again.
        let mut waiting: Vec<_> = waiting.into_iter().map(Some).collect();
        let mut held: Vec<_> = held.into_iter().map(Some).collect();
        for i in [2, 0, 1] {
            let released_at = Instant::now();
            let guard = held[i].take().expect("held");
            assert_eq!(guard.release(), Ok(true));
            let (got, acquired_at) = waiting[i]
                .take()
                .expect("waiting")
                .join()
                .expect("waiter thread");
            let guard = got.unwrap_or_else(|e| panic!("{}: {e}", names[i]));
            assert!(
                acquired_at - released_at < Duration::from_secs(5),
                "{}: woken by the release, not the {LONG_TTL:?} ttl",
                names[i]
            );
            assert_eq!(guard.release(), Ok(true));
        }
    });
    assert_eq!(subscribers(node), 1, "one subscriber connection");
}

#[test]
fn max_wait_is_honoured() {
    let cluster = Cluster::start(3);
    let holder = manager(&cluster.urls());
    let waiter = manager(&cluster.urls());
    let guard = holder
        .lock("wait:max", LONG_TTL)
        .unwrap_or_else(|e| panic!("{e}"));
    for max_wait in [Duration::ZERO, Duration::from_millis(400)] {
        let started = Instant::now();
        let err = waiter
            .lock_within("wait:max", LONG_TTL, max_wait)
            .expect_err("held throughout");
        let waited = started.elapsed();
        assert!(
            waited >= max_wait,
            "gave up early: {waited:?} < {max_wait:?}"
        );
        assert!(waited < max_wait + Duration::from_secs(2), "{waited:?}");
        assert!(err.is_contention(), "{err}");
        assert!(matches!(err, Error::NotAcquired { attempts, .. } if attempts >= 1));
    }
    assert_eq!(guard.release(), Ok(true));
}

#[test]
fn a_crashed_holder_is_replaced_once_its_keys_expire() {
    let cluster = Cluster::start(3);
    let holder = manager(&cluster.urls());
    let waiter = manager(&cluster.urls());
    let ttl = Duration::from_millis(800);
    let mut crashed = holder
        .lock("wait:crash", ttl)
        .unwrap_or_else(|e| panic!("{e}"));
    crashed.disarm();
    let granted = Instant::now();
    drop(crashed);
    let guard = waiter
        .lock_within("wait:crash", LONG_TTL, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    let after = granted.elapsed();
    assert!(
        after >= ttl - Duration::from_millis(20),
        "before the keys expired: {after:?}"
    );
    assert!(
        after < ttl + Duration::from_secs(1),
        "long after the expiry: {after:?}"
    );
    assert_eq!(guard.release(), Ok(true));
}

/// What redlock-py and other clients that do not publish leave: keys set with `SET NX PX`
/// and never deleted.
#[test]
fn a_lock_that_is_never_released_is_taken_after_its_ttl() {
    let cluster = Cluster::start(3);
    let waiter = manager(&cluster.urls());
    for node in cluster.nodes() {
        node.raw().set_px("wait:foreign", "redlock-py-value", 700);
    }
    let started = Instant::now();
    let guard = waiter
        .lock_within("wait:foreign", LONG_TTL, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(650), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(guard.release(), Ok(true));
}

#[test]
fn a_minority_down_or_paused_while_waiting_still_hands_over() {
    let mut cluster = Cluster::start(5);
    let holder = manager(&cluster.urls());
    let waiter = manager(&cluster.urls());
    let guard = holder
        .lock("wait:minority", LONG_TTL)
        .unwrap_or_else(|e| panic!("{e}"));
    cluster[3].pause();
    cluster[4].kill();
    thread::scope(|s| {
        let waiting =
            s.spawn(|| waiter.lock_within("wait:minority", LONG_TTL, Duration::from_secs(10)));
        thread::sleep(Duration::from_millis(300));
        let released_at = Instant::now();
        assert_eq!(guard.release(), Ok(true));
        let got = waiting.join().expect("waiter thread");
        let guard = got.unwrap_or_else(|e| panic!("{e}"));
        assert!(released_at.elapsed() < Duration::from_secs(3));
        assert_eq!(guard.release(), Ok(true));
    });
    cluster[3].resume();
}

#[test]
fn waiting_costs_the_servers_a_constant_number_of_commands() {
    let cluster = Cluster::start(3);
    let holder = manager(&cluster.urls());
    let waiter = manager(&cluster.urls());
    let guard = holder
        .lock("wait:cheap", LONG_TTL)
        .unwrap_or_else(|e| panic!("{e}"));
    let node = &cluster[0];
    let before: u64 = ["set", "pttl", "evalsha", "subscribe"]
        .iter()
        .map(|c| node.calls(c))
        .sum();
    let err = waiter
        .lock_within("wait:cheap", LONG_TTL, Duration::from_secs(3))
        .expect_err("held throughout");
    assert!(err.is_contention(), "{err}");
    let sent: u64 = ["set", "pttl", "evalsha", "subscribe"]
        .iter()
        .map(|c| node.calls(c))
        .sum::<u64>()
        - before;
    // An attempt (SET + PTTL), the subscription, one more attempt once subscribed, and one at
    // the deadline at most: not one per retry delay.
    let each: Vec<(&str, u64)> = ["set", "pttl", "evalsha", "subscribe"]
        .iter()
        .map(|c| (*c, node.calls(c)))
        .collect();
    assert!(sent <= 8, "{sent} commands in 3 s of waiting: {each:?}");
    assert_eq!(guard.release(), Ok(true));
}

#[test]
fn an_uncontended_lock_within_subscribes_to_nothing() {
    let cluster = Cluster::start(3);
    let dlm = manager(&cluster.urls());
    for _ in 0..5 {
        let guard = dlm
            .lock_within("wait:free", LONG_TTL, Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(guard.release(), Ok(true));
    }
    assert!(cluster.nodes().iter().all(|n| n.calls("subscribe") == 0));
}

#[test]
fn waiters_in_one_process_are_served_in_order() {
    let cluster = Cluster::start(3);
    let holder = manager(&cluster.urls());
    let waiters = manager(&cluster.urls());
    let guard = holder
        .lock("wait:fifo", LONG_TTL)
        .unwrap_or_else(|e| panic!("{e}"));
    let order = Arc::new(Mutex::new(Vec::new()));
    thread::scope(|s| {
        for who in 0..3 {
            let (waiters, order) = (&waiters, Arc::clone(&order));
            s.spawn(move || {
                let guard = waiters
                    .lock_within("wait:fifo", LONG_TTL, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("{who}: {e}"));
                order.lock().expect("order").push(who);
                thread::sleep(Duration::from_millis(100));
                assert_eq!(guard.release(), Ok(true));
            });
            // Arrive one after the other, well apart.
            thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(guard.release(), Ok(true));
    });
    assert_eq!(*order.lock().expect("order"), [0, 1, 2]);
}

#[test]
fn a_hundred_waiters_on_a_hundred_resources_share_one_subscriber_per_node() {
    let cluster = Cluster::start(3);
    let holder = manager(&cluster.urls());
    let waiters = manager(&cluster.urls());
    let held: Vec<_> = (0..100)
        .map(|i| {
            holder
                .lock(format!("wait:many:{i}"), LONG_TTL)
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    // The idle holder's connections stay as they are: on a loaded machine a node that lags
    // behind the quorum keeps one connection per lock that still owed it a reply (until the
    // holder's next call trims them), so they are counted apart from the waiters'.
    let before: Vec<usize> = cluster.nodes().iter().map(connected).collect();
    let acquired = AtomicUsize::new(0);
    thread::scope(|s| {
        for i in 0..100 {
            let (waiters, acquired) = (&waiters, &acquired);
            s.spawn(move || {
                let guard = waiters
                    .lock_within(format!("wait:many:{i}"), LONG_TTL, Duration::from_secs(30))
                    .unwrap_or_else(|e| panic!("{i}: {e}"));
                acquired.fetch_add(1, Ordering::SeqCst);
                assert_eq!(guard.release(), Ok(true));
            });
        }
        // Every waiter subscribed on every node (a loaded machine may take a while to start
        // a hundred threads, and each first attempt dials when the pool is empty).
        assert!(
            wait_until(Duration::from_secs(20), || cluster
                .nodes()
                .iter()
                .all(|n| channels(n, "resplock:released:wait:many:*") == 100)),
            "all hundred waiters subscribed"
        );
        for node in cluster.nodes() {
            assert_eq!(subscribers(node), 1, "one subscriber connection per node");
        }
        // Surplus pool connections from the first attempts are closed by a round once they
        // sat unused for a second; probe until every node is back to a small number.
        let mut totals = Vec::new();
        let shrunk = wait_until(Duration::from_secs(15), || {
            thread::sleep(Duration::from_millis(1100));
            let probe = waiters
                .lock("wait:probe", LONG_TTL)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(probe.release(), Ok(true));
            // The waiters' subscriber and a small pool.
            totals = cluster.nodes().iter().map(connected).collect();
            totals
                .iter()
                .zip(&before)
                .all(|(&now, &then)| now <= then + 8)
        });
        assert!(
            shrunk,
            "connections per node stayed at {totals:?} (the holder alone: {before:?})"
        );
        for node in cluster.nodes() {
            assert_eq!(subscribers(node), 1, "one subscriber connection per node");
        }
        assert_eq!(acquired.load(Ordering::SeqCst), 0);
        for guard in held {
            assert_eq!(guard.release(), Ok(true));
        }
    });
    assert_eq!(acquired.load(Ordering::SeqCst), 100);
    drop(waiters);
    assert!(
        wait_until(Duration::from_secs(3), || cluster
            .nodes()
            .iter()
            .all(|n| subscribers(n) == 0)),
        "the subscriber connections close with the manager"
    );
}

/// A node that answers `SUBSCRIBE` with a flood of release messages (or with garbage) cannot
/// make a waiter spin, nor keep it past `max_wait`.
#[test]
fn a_node_that_floods_or_garbles_the_subscription_cannot_make_a_waiter_spin() {
    let cluster = Cluster::start(2);
    // Alone, the node is read by the waiter itself; with two healthy ones, by a node thread.
    for (alone, garbage) in [(false, false), (false, true), (true, false), (true, true)] {
        let flood = {
            let mut bytes = Vec::new();
            let channel = b"resplock:released:wait:hostile";
            for _ in 0..20_000 {
                let message = format!(
                    "*3\r\n$7\r\nmessage\r\n${}\r\n{}\r\n$0\r\n\r\n",
                    channel.len(),
                    String::from_utf8_lossy(channel)
                );
                bytes.extend_from_slice(message.as_bytes());
            }
            bytes
        };
        let reply = if garbage {
            b"*3\r\n:1\r\n%oops\r\n".to_vec()
        } else {
            flood
        };
        let sets = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&sets);
        let fake = FakeServer::start(move |cmd: &Command| {
            if cmd.is("SET") {
                counted.fetch_add(1, Ordering::SeqCst);
                Action::nil()
            } else if cmd.is("PTTL") {
                Action::int(30_000)
            } else if cmd.is("SUBSCRIBE") {
                Action::Reply(reply.clone())
            } else {
                Action::int(0)
            }
        });
        let urls = [cluster[0].url(), cluster[1].url(), fake.url()];
        let holder = manager(&urls[..2]);
        let guard = holder
            .lock("wait:hostile", LONG_TTL)
            .unwrap_or_else(|e| panic!("{e}"));
        let waiter = manager(if alone { &urls[2..] } else { &urls[..] });
        let started = Instant::now();
        let err = waiter
            .lock_within("wait:hostile", LONG_TTL, Duration::from_secs(2))
            .expect_err("held throughout");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_secs(5),
            "alone={alone} garbage={garbage}: {waited:?}"
        );
        assert!(matches!(err, Error::NotAcquired { .. }), "{err}");
        // With healthy nodes beside it, the node cannot pass its flood for new holders: tries
        // back off to 100 ms apart. Alone it is the only judge of who holds the lock, and each
        // message may bring a try (each costing it a round trip), but never a busy loop.
        let attempts = sets.load(Ordering::SeqCst);
        let most = if alone && !garbage { 200 } else { 40 };
        assert!(
            attempts <= most,
            "alone={alone} garbage={garbage}: {attempts} attempts in 2 s"
        );
        assert_eq!(guard.release(), Ok(true));
    }
}
