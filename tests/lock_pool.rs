//! Connections: a held lock pins none of its own, and its commands to a node still stay in
//! order behind one another.
//!
//! A guard keeps no connection. A connection that still owes replies to a lock's commands is
//! reserved for that lock in the node's pool, so the lock's release goes out behind its `SET`;
//! every other connection is shared.

mod support;

use std::thread;
use std::time::Duration;

use resplock::Redlock;
use support::{wait_until, Cluster, FaultProxy, RedisNode};

const TTL: Duration = Duration::from_secs(30);
const GUARDS: usize = 100;

/// Clients connected to `node`, as the node counts them (the probe's own included).
fn connected_clients(node: &RedisNode) -> usize {
    node.raw()
        .info("clients")
        .lines()
        .find_map(|line| line.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO clients has connected_clients")
}

#[test]
fn a_hundred_held_guards_on_three_nodes_use_far_fewer_than_three_hundred_connections() {
    let cluster = Cluster::start(3);
    let dlm = Redlock::builder()
        .nodes(cluster.urls())
        .node_timeout(Duration::from_millis(500))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let guards: Vec<_> = (0..GUARDS)
        .map(|i| {
            dlm.lock(format!("pool:{i}"), TTL)
                .unwrap_or_else(|e| panic!("lock {i}: {e}"))
        })
        .collect();
    for (node, i) in cluster.nodes().iter().zip(0..) {
        assert_eq!(
            node.raw().dbsize(),
            GUARDS as i64,
            "node {i} holds every lock"
        );
    }
    // One connection each for the probes below.
    let count = || -> usize {
        cluster
            .nodes()
            .iter()
            .map(|n| connected_clients(n) - 1)
            .sum()
    };
    println!(
        "{GUARDS} guards just taken on 3 nodes: {} connections",
        count()
    );
    // A burst of locks on a loaded machine may dial a few extra connections (a node's reply
    // not in yet when the next lock needs a connection); the pool closes unused ones after a
    // second, at the next round.
    std::thread::sleep(Duration::from_millis(1200));
    let other = dlm
        .lock("pool:other", TTL)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(other.release(), Ok(true));
    let ours = count();
    println!("{GUARDS} guards held on 3 nodes: {ours} connections");
    assert!(
        ours <= 30,
        "{GUARDS} held guards use {ours} connections: a guard should pin none of its own"
    );
    assert!(ours >= 3, "every node was dialled");
    assert!(dlm.idle_connections() <= ours);
    for (i, guard) in guards.into_iter().enumerate() {
        assert_eq!(guard.release(), Ok(true), "release {i}");
    }
    assert_eq!(
        cluster
            .nodes()
            .iter()
            .map(|n| n.raw().dbsize())
            .sum::<i64>(),
        0
    );
}

/// Each guard's `SET` to node 2 is held up in the proxy. Meanwhile other callers, which need
/// node 2's vote, take connections to node 2, and the guards are released as soon as the link
/// is fast again. A release sent on any other connection than its own `SET`'s would reach
/// node 2 first, find nothing to delete, and the late `SET` would leave a key behind.
#[test]
fn releases_of_held_guards_never_overtake_their_own_delayed_sets() {
    const HELD: usize = 10;
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
    for i in 0..HELD {
        cluster[0].raw().set(format!("held:{i}"), "someone-else");
    }
    let set_calls = || cluster[2].calls("set");
    let before = set_calls();

    proxy.set_latency_upstream(Duration::from_millis(800));
    let guards: Vec<_> = (0..HELD)
        .map(|i| {
            dlm.lock(format!("order:{i}"), TTL)
                .unwrap_or_else(|e| panic!("lock {i}: {e}"))
        })
        .collect();
    proxy.set_latency_upstream(Duration::ZERO);
    thread::scope(|s| {
        // Callers that need node 2: they take whatever connection to it the pool offers.
        for i in 0..HELD {
            let dlm = &dlm;
            s.spawn(move || {
                if let Ok(guard) = dlm.try_lock(format!("held:{i}"), TTL) {
                    let _ = guard.release();
                }
            });
        }
        thread::sleep(Duration::from_millis(150));
        for (i, guard) in guards.into_iter().enumerate() {
            assert_eq!(guard.release(), Ok(true), "release {i}");
        }
    });
    assert!(
        wait_until(Duration::from_secs(5), || set_calls()
            >= before + 2 * HELD as u64),
        "node 2 never ran the delayed SETs"
    );
    // Whatever was queued behind the SETs has run by now.
    wait_until(Duration::from_secs(2), || {
        cluster[2].raw().keys("order:*").is_empty()
    });
    let left: Vec<String> = cluster[2]
        .raw()
        .keys("order:*")
        .iter()
        .map(|key| String::from_utf8_lossy(key).into_owned())
        .collect();
    assert!(left.is_empty(), "a release overtook its SET: {left:?} left");
}
