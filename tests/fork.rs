//! A process that forks after using a `Redlock`: parent and child then hammer one resource on
//! three real nodes. Neither may use a connection the other can also use: a grant read from a
//! reply that answered the other process's `SET` would be a grant whose value no quorum holds,
//! and the other's cleanup could delete the key behind it. A guard taken before the fork
//! belongs to the parent: the child can neither release nor extend it.
//!
//! Before the fix, the child inherited the pooled connections and both processes wrote to the
//! same sockets.

mod support;

use std::time::Duration;

use resplock::{Error, NodeError, Redlock};
use support::{Cluster, Raw};

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
