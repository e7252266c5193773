//! A process that forks after using a `Redlock`: parent and child then hammer one resource on
//! three real nodes. Neither may use a connection the other can also use: a grant read from a
//! reply that answered the other process's `SET` would be a grant whose value no quorum holds,
//! and the other's cleanup could delete the key behind it. A guard taken before the fork
//! belongs to the parent: the child can neither release nor extend it.
//!
//! Before the fix, the child inherited the pooled connections and both processes wrote to the
//! same sockets.

mod support;

use std::time::{Duration, Instant};

use resplock::{Error, KeepAlive, Lease, NodeError, Redlock};
use support::{Cluster, FaultProxy, Raw};

const ROUNDS: usize = 300;
const TTL: Duration = Duration::from_secs(2);

/// Runs `ROUNDS` try_lock/release on `key`; returns the problems seen.
fn hammer(dlm: &Redlock, addrs: &[std::net::SocketAddr], key: &str) -> Vec<String> {
    let mut raws: Vec<Raw> = addrs
        .iter()
        .map(|addr| Raw::connect(addr).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let mut problems = Vec::new();
    let mut granted = 0;
    for round in 0..ROUNDS {
        match dlm.try_lock(key, TTL) {
            Ok(guard) => {
                granted += 1;
                let holding = raws
                    .iter_mut()
                    .map(|raw| raw.get(key))
                    .filter(|held| held.as_deref() == Some(guard.value()))
                    .count();
                if holding < dlm.quorum() {
                    problems.push(format!(
                        "round {round}: granted, but {holding} nodes hold it"
                    ));
                }
                match guard.release() {
                    Ok(true) => {}
                    other => problems.push(format!("round {round}: release {other:?}")),
                }
            }
            Err(e) if e.is_contention() => {}
            Err(e) => {
                let desync = e.node_failures().iter().any(|f| {
                    matches!(
                        f.error,
                        NodeError::UnexpectedReply | NodeError::Protocol(_) | NodeError::Closed
                    )
                });
                if desync {
                    problems.push(format!("round {round}: desynced reply: {e}"));
                }
            }
        }
    }
    if granted == 0 {
        problems.push("never granted".into());
    }
    problems
}

#[test]
fn parent_and_child_never_share_a_connection_after_fork() {
    let cluster = Cluster::start(3);
    let addrs: Vec<_> = cluster.nodes().iter().map(|n| n.addr()).collect();
    let dlm = Redlock::builder()
        .nodes(cluster.urls())
        .retries(0)
        .node_timeout(Duration::from_millis(500))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // Warm the pool: every node has idle connections that a child would inherit.
    for _ in 0..20 {
        let guard = dlm.lock("fork:warm", TTL).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(guard.release(), Ok(true));
    }
    let mut before = dlm
        .lock("fork:parent", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));

    // SAFETY: the child only runs this function's code with the manager and its own new
    // sockets, then leaves with `exit` (no destructor of the parent's state runs).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut problems = hammer(&dlm, &addrs, "fork:shared");
        match before.extend(Duration::from_secs(30)) {
            Err(Error::WrongProcess) => {}
            other => problems.push(format!("child extended the parent's lock: {other:?}")),
        }
        match before.release() {
            Err(Error::WrongProcess) => {}
            other => problems.push(format!("child released the parent's lock: {other:?}")),
        }
        for problem in &problems {
            eprintln!("child: {problem}");
        }
        std::process::exit(i32::from(!problems.is_empty()));
    }
    let problems = hammer(&dlm, &addrs, "fork:shared");
    let mut status = 0;
    // SAFETY: waits for our own child by its PID.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(problems.is_empty(), "parent: {problems:#?}");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child saw problems (status {status}); see its stderr above"
    );
    // The guard taken before the fork is still the parent's, on every node.
    for node in cluster.nodes() {
        assert_eq!(
            node.raw().get("fork:parent").as_deref(),
            Some(before.value())
        );
    }
    assert!(before.extend(Duration::from_secs(30)).is_ok());
    assert_eq!(before.release(), Ok(true));
}

/// A child forked while the parent's keep-alive worker is in the middle of a renewal inherits
/// a lease marked "renewing" and no worker to clear the mark: dropping it must not wait for
/// one. Renewals are slowed (40 ms each way through a proxy) and follow each other without a
/// pause, so the worker is renewing during nearly every fork.
#[test]
fn a_child_drops_an_inherited_lease_without_waiting_for_the_parents_worker() {
    let cluster = Cluster::start(3);
    let proxies: Vec<FaultProxy> = cluster.nodes().iter().map(FaultProxy::for_node).collect();
    let urls: Vec<String> = proxies.iter().map(FaultProxy::url).collect();
    let dlm = Redlock::builder()
        .nodes(&urls)
        .node_timeout(Duration::from_millis(500))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let lease = dlm
        .lock("fork:lease", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"))
        .keep_alive(KeepAlive::default().every(Duration::from_millis(10)));
    for proxy in &proxies {
        proxy.set_latency(Duration::from_millis(40));
    }
    std::thread::sleep(Duration::from_millis(300));
    for fork in 0..5 {
        // SAFETY: the child only drops its copy of the lease, then leaves with `exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            drop_and_exit(lease);
        }
        let give_up = Instant::now() + Duration::from_secs(10);
        let mut status = 0;
        let exited = loop {
            // SAFETY: polls our own child by its PID.
            match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
                0 if Instant::now() < give_up => std::thread::sleep(Duration::from_millis(5)),
                0 => break false,
                waited => {
                    assert_eq!(waited, pid);
                    break true;
                }
            }
        };
        if !exited {
            // SAFETY: signals and reaps our own child by its PID.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("fork {fork}: the child still hung dropping the lease after 10 s");
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "fork {fork}: child status {status}"
        );
    }
    assert!(
        lease.is_held(),
        "the parent's lease was lost: {:?}",
        lease.lost()
    );
    for proxy in &proxies {
        proxy.set_latency(Duration::ZERO);
    }
    assert_eq!(lease.release(), Ok(true));
}

/// The child's side: drop the inherited lease (it must neither wait nor release), then exit.
fn drop_and_exit(lease: Lease<&str>) -> ! {
    drop(lease);
    std::process::exit(0);
}
