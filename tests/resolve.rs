//! Name resolution inside the deadline: a slow, hanging or failing resolver never holds a call
//! past its bound, a lookup that outlives one dial serves the next, and failures back off.
//!
//! Before this, host names went through a blocking `getaddrinfo` on the caller's thread with
//! the dial deadline taken first: a resolver slower than `connect_timeout` made the node
//! unreachable for good, and a dead one blocked every call (and every guard drop) for seconds.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use resplock::{Error, NodeError, Phase, Redlock};
use support::Cluster;

const TTL: Duration = Duration::from_secs(10);
const CONNECT: Duration = Duration::from_millis(100);
/// "Does not hang": far below the resolver delays used here.
const BOUND: Duration = Duration::from_millis(900);

/// A resolver that maps `<node>.test` to the cluster node's port, after `delay`.
fn slow_resolver(
    ports: Vec<u16>,
    delay: Duration,
) -> impl Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>> + Send + Sync + 'static {
    move |host, _port| {
        std::thread::sleep(delay);
        let index: usize = host
            .strip_suffix(".test")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| std::io::Error::other("unknown name"))?;
        let port = ports
            .get(index)
            .ok_or_else(|| std::io::Error::other("no such node"))?;
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], *port))])
    }
}

#[test]
fn a_resolver_slower_than_the_connect_timeout_delays_a_node_but_never_loses_it() {
    let cluster = Cluster::start(3);
    let ports: Vec<u16> = cluster.nodes().iter().map(|n| n.port()).collect();
    let urls = [
        format!("redis://0.test:{}", ports[0]),
        format!("redis://1.test:{}", ports[1]),
        cluster[2].url(),
    ];
    let dlm = Redlock::builder()
        .nodes(urls)
        .retries(0)
        .connect_timeout(CONNECT)
        .resolver(slow_resolver(ports, Duration::from_millis(1500)))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let err = dlm
        .try_lock("resolve:slow", TTL)
        .expect_err("two names unresolved yet");
    assert!(
        started.elapsed() < BOUND,
        "waited {:?} for the resolver",
        started.elapsed()
    );
    let failures = err.node_failures();
    assert_eq!(failures.len(), 2, "{err}");
    assert!(
        failures
            .iter()
            .all(|f| f.error == NodeError::Timeout(Phase::Resolve)),
        "{err}"
    );
    // The lookups finish in the background and the backoff ends: the nodes are back.
    std::thread::sleep(Duration::from_millis(2000));
    let guard = dlm
        .try_lock("resolve:slow", TTL)
        .unwrap_or_else(|e| panic!("resolved by now: {e}"));
    for node in cluster.nodes() {
        assert_eq!(
            node.raw().get("resolve:slow").as_deref(),
            Some(guard.value())
        );
    }
    assert_eq!(guard.release(), Ok(true));
}

#[test]
fn a_resolver_that_never_answers_holds_no_call_and_no_drop() {
    let cluster = Cluster::start(3);
    let urls = [
        format!("redis://hang.test:{}", cluster[0].port()),
        cluster[1].url(),
        cluster[2].url(),
    ];
    let lookups = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&lookups);
    let dlm = Redlock::builder()
        .nodes(urls)
        .retries(0)
        .connect_timeout(CONNECT)
        .resolver(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(3600));
            Err(std::io::Error::other("never"))
        })
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    for round in 0..5 {
        let started = Instant::now();
        let guard = dlm
            .lock("resolve:hang", TTL)
            .unwrap_or_else(|e| panic!("round {round}: two of three answer: {e}"));
        drop(guard);
        assert!(
            started.elapsed() < BOUND,
            "round {round}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        lookups.load(Ordering::SeqCst),
        1,
        "one lookup in flight per node, not one per call"
    );
}

#[test]
fn failed_lookups_back_off() {
    let cluster = Cluster::start(3);
    let urls = [
        "redis://gone.test:6380".to_owned(),
        cluster[1].url(),
        cluster[2].url(),
    ];
    let lookups = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&lookups);
    let dlm = Redlock::builder()
        .nodes(urls)
        .retries(0)
        .resolver(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            Err(std::io::Error::other("nxdomain"))
        })
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let mut unresolvable = 0;
    while started.elapsed() < Duration::from_millis(500) {
        match dlm.try_lock("resolve:gone", TTL) {
            Ok(guard) => assert_eq!(guard.release(), Ok(true)),
            Err(e) => panic!("{e}"),
        }
        let err = dlm.inspect("resolve:gone");
        if let Err(Error::NoQuorum { failures, .. }) = err {
            unresolvable += failures.len();
        }
    }
    assert_eq!(unresolvable, 0, "two of three nodes always answer");
    assert_eq!(
        lookups.load(Ordering::SeqCst),
        1,
        "a failed lookup is not repeated within 1 s"
    );
}
