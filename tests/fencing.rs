//! Fencing tokens on real nodes: they increase with every grant of a resource, across
//! managers, processes, minorities down, restarts with and without persistence and skewed
//! counters; and a manager without fencing sends what it always sent.
//!
//! The property checked everywhere: if grant A returned before grant B's call started, then
//! `token(A) < token(B)` ([`check_order`]). Across processes the times are `CLOCK_MONOTONIC`
//! read from `Instant` (see [`monotonic_ns`]).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use resplock::{Error, NodeError, Redlock};
use support::{Action, Cluster, FakeServer, RedisNode, RedisOptions};

const TTL: Duration = Duration::from_secs(5);
const CHILD_ENV: &str = "RESPLOCK_FENCING_CHILD";

fn fenced(urls: &[String]) -> Redlock {
    Redlock::builder()
        .nodes(urls)
        .fencing(true)
        .retries(50)
        .retry_delay(Duration::from_millis(5))
        .retry_jitter(Duration::from_millis(10))
        .node_timeout(Duration::from_millis(200))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `CLOCK_MONOTONIC` in nanoseconds, read from `Instant`'s `Debug` form on Linux (one clock
/// for every process of the machine).
fn monotonic_ns(instant: Instant) -> u64 {
    let text = format!("{instant:?}");
    let field = |label: &str| -> u64 {
        let start = text
            .find(label)
            .map(|at| at + label.len())
            .expect("Instant layout");
        let digits: String = text[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().expect("Instant digits")
    };
    field("tv_sec: ") * 1_000_000_000 + field("tv_nsec: ")
}

/// One grant: when its call started, when it returned, and its token.
#[derive(Clone, Copy, Debug)]
struct Grant {
    started: u64,
    returned: u64,
    token: u64,
}

/// Takes and releases `resource` `n` times, recording each grant.
fn grants(dlm: &Redlock, resource: &str, n: usize) -> Vec<Grant> {
    (0..n)
        .map(|i| {
            let started = monotonic_ns(Instant::now());
            let guard = dlm
                .lock(resource, TTL)
                .unwrap_or_else(|e| panic!("grant {i}: {e}"));
            let returned = monotonic_ns(Instant::now());
            let token = guard.token().expect("fencing is on");
            assert_eq!(guard.release(), Ok(true));
            Grant {
                started,
                returned,
                token,
            }
        })
        .collect()
}

/// The property: every grant's token is above the tokens of all grants that returned before
/// its call started.
fn check_order(all: &[Grant]) {
    let mut by_return: Vec<Grant> = all.to_vec();
    by_return.sort_by_key(|g| g.returned);
    let mut by_start: Vec<Grant> = all.to_vec();
    by_start.sort_by_key(|g| g.started);
    let mut highest_returned = 0;
    let mut next = 0;
    for b in &by_start {
        while let Some(a) = by_return.get(next).filter(|a| a.returned < b.started) {
            highest_returned = highest_returned.max(a.token);
            next += 1;
        }
        assert!(
            b.token > highest_returned,
            "token {} of a grant started at {} is not above {highest_returned}, the token of a \
             grant that returned before it",
            b.token,
            b.started
        );
    }
}

#[test]
fn tokens_increase_across_managers() {
    let cluster = Cluster::start(3);
    let managers: Vec<Redlock> = (0..3).map(|_| fenced(&cluster.urls())).collect();
    let mut all = Vec::new();
    for round in 0..10 {
        for dlm in &managers {
            all.extend(grants(dlm, "fence:managers", 1));
        }
        assert!(all.len() == 3 * (round + 1));
    }
    check_order(&all);
    let tokens: Vec<u64> = all.iter().map(|g| g.token).collect();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
}

/// Child side of [`tokens_increase_across_processes`]: prints `GRANT started returned token`.
#[test]
fn fencing_child_worker() {
    let Ok(urls) = std::env::var(CHILD_ENV) else {
        return;
    };
    let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
    let dlm = fenced(&urls);
    for g in grants(&dlm, "fence:processes", 40) {
        println!("GRANT {} {} {}", g.started, g.returned, g.token);
    }
}

#[test]
fn tokens_increase_across_processes() {
    let cluster = Cluster::start(3);
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "fencing_child_worker",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, cluster.urls().join(","))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("child starts")
        })
        .collect();
    let mut all = grants(&fenced(&cluster.urls()), "fence:processes", 40);
    for child in children {
        let out = child.wait_with_output().expect("child ran");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let parsed: Vec<Grant> = text
            .lines()
            .filter_map(|line| line.split_once("GRANT ").map(|(_, rest)| rest))
            .map(|rest| {
                let f: Vec<u64> = rest
                    .split(' ')
                    .map(|n| n.parse().expect("number"))
                    .collect();
                Grant {
                    started: f[0],
                    returned: f[1],
                    token: f[2],
                }
            })
            .collect();
        assert_eq!(parsed.len(), 40, "{text}");
        all.extend(parsed);
    }
    check_order(&all);
}

#[test]
fn tokens_increase_with_a_minority_down() {
    let mut cluster = Cluster::start(5);
    let dlm = fenced(&cluster.urls());
    let mut all = grants(&dlm, "fence:minority", 5);
    cluster[3].kill();
    cluster[4].kill();
    all.extend(grants(&dlm, "fence:minority", 5));
    check_order(&all);
}

#[test]
fn tokens_survive_a_kill_and_restart_with_aof() {
    let mut cluster = Cluster::start_with(3, &RedisOptions::new().aof(true));
    let dlm = fenced(&cluster.urls());
    let mut all = grants(&dlm, "fence:aof", 5);
    for i in 0..3 {
        cluster[i].kill();
        cluster[i].restart();
        all.extend(grants(&dlm, "fence:aof", 3));
    }
    check_order(&all);
}

/// Nodes that keep an append-only file keep their counters across restarts. A rolling restart
/// of every node, with grants of another resource in between (so the manager meets each
/// restarted node), leaves the manager able to grant this one, tokens still increasing. Before,
/// a restarted node was distrusted for every resource until a grant of that resource re-seeded
/// it, and a grant needs a quorum of trusted nodes: the rolling restart locked the manager out
/// of this resource for good.
#[test]
fn a_rolling_restart_with_aof_never_locks_a_manager_out() {
    let mut cluster = Cluster::start_with(3, &RedisOptions::new().aof(true));
    let dlm = fenced(&cluster.urls());
    let mut all = grants(&dlm, "fence:rolling", 5);
    let mut other = Vec::new();
    for i in 0..3 {
        cluster[i].kill();
        cluster[i].restart();
        other.extend(grants(&dlm, "fence:rolling-other", 2));
    }
    all.extend(grants(&dlm, "fence:rolling", 5));
    check_order(&all);
    check_order(&other);
}

/// A node that restarts empty has lost its counter. It is barred from round 1 until a round 2
/// has raised its counter again, so tokens keep increasing. Two of three restarting empty
/// leave no quorum of trusted counters: the grant fails rather than hand out a smaller token.
#[test]
fn a_restart_without_persistence_never_lowers_a_token() {
    let mut cluster = Cluster::start(3);
    let dlm = fenced(&cluster.urls());
    let mut all = grants(&dlm, "fence:empty", 10);
    cluster[0].restart();
    assert_eq!(
        cluster[0].raw().get("resplock:fence:fence:empty"),
        None,
        "counter lost"
    );
    all.extend(grants(&dlm, "fence:empty", 5));
    check_order(&all);
    // Re-seeded: node 0's counter caught up with the others.
    let counter = |i: usize| -> u64 {
        let raw = cluster[i].raw().get("resplock:fence:fence:empty");
        String::from_utf8_lossy(&raw.unwrap_or_default())
            .parse()
            .unwrap_or(0)
    };
    assert!(
        counter(0) >= all.last().map_or(0, |g| g.token),
        "{}",
        counter(0)
    );

    cluster[1].restart();
    cluster[2].restart();
    let err = Redlock::builder()
        .nodes(cluster.urls())
        .fencing(true)
        .retries(0)
        .build()
        .map(|_| ())
        .and_then(|()| {
            dlm.try_lock("fence:empty", TTL)
                .map(|g| g.token().unwrap_or(0))
        })
        .expect_err("two of three counters lost: no token can be trusted");
    let quarantined = err
        .node_failures()
        .iter()
        .filter(|f| f.error == NodeError::Quarantined)
        .count();
    assert!(quarantined >= 1, "{err}");
    assert!(matches!(err, Error::NotAcquired { .. }));
}

#[test]
fn skewed_counters_on_a_minority_never_lower_a_token() {
    let cluster = Cluster::start(3);
    let dlm = fenced(&cluster.urls());
    let mut all = grants(&dlm, "fence:skew", 5);
    // One node far ahead: tokens may jump (when it is in the granting quorum), and keep
    // increasing either way.
    cluster[0].raw().set("resplock:fence:fence:skew", "1000000");
    all.extend(grants(&dlm, "fence:skew", 3));
    // One node behind: it cannot drag tokens down.
    cluster[1].raw().set("resplock:fence:fence:skew", "1");
    all.extend(grants(&dlm, "fence:skew", 3));
    check_order(&all);
}

/// Without `fencing(true)`: `token()` is `None`, and the wire carries what it always did: a
/// plain `SET NX PX`, no fencing script, no counter key.
#[test]
fn without_fencing_nothing_on_the_wire_changes() {
    let node = RedisNode::start();
    let dlm = Redlock::new([node.url()]).unwrap_or_else(|e| panic!("{e}"));
    let guard = dlm.lock("fence:off", TTL).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(guard.token(), None);
    assert_eq!(guard.release(), Ok(true));
    assert!(node.raw().keys("resplock:fence:*").is_empty());

    let fake = FakeServer::start(|cmd| {
        if cmd.is("SET") {
            Action::ok()
        } else {
            Action::int(1)
        }
    });
    let dlm = Redlock::new([fake.url()]).unwrap_or_else(|e| panic!("{e}"));
    let guard = dlm.lock("fence:off", TTL).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(guard.release(), Ok(true));
    assert_eq!(fake.command_names(), ["SET", "EVALSHA"]);
    let set = &fake.commands()[0];
    assert_eq!(set.arg(3), Some(&b"NX"[..]));
    assert_eq!(fake.preamble_loads(), 3, "release, extend and inspect only");
}

#[test]
fn leases_and_waiters_carry_the_token() {
    let cluster = Cluster::start(3);
    let dlm = fenced(&cluster.urls());
    let first = dlm
        .lock("fence:lease", TTL)
        .unwrap_or_else(|e| panic!("{e}"));
    let token = first.token().expect("fenced");
    let lease = first.keep_alive(resplock::KeepAlive::default());
    assert_eq!(lease.token(), Some(token));
    assert_eq!(lease.release(), Ok(true));
    let next = dlm
        .lock_within("fence:lease", TTL, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(next.token().expect("fenced") > token);
    let third = fenced(&cluster.urls())
        .try_lock("fence:other", TTL)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(third.token().is_some());
}
