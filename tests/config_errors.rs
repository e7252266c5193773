//! Configuration errors (issue 4, "Scenarios: Configuration"): wrong and missing passwords, a
//! bad `SELECT`, an unresolvable host, URLs that do not parse (with the password never shown),
//! zero nodes, the same node listed twice, and ACL users with and without permission.
//!
//! Errors detected at build time are checked to cost no I/O; errors a node reports are checked
//! to arrive as a typed per-node cause, with nothing left on the nodes.

mod support;

use support::errors::outage;

use std::time::Duration;

use resplock::{Error, NodeError, NodeFailure, Redlock, ServerError, ServerErrorKind};
use support::{Action, Cluster, FakeServer, RawReply, RedisNode, RedisOptions};

const TTL: Duration = Duration::from_secs(30);

/// A password that must never show up in an error, a `Debug` or a `Display`.
const SECRET: &str = "hunter2";

fn manager(urls: &[String]) -> Redlock {
    Redlock::builder()
        .nodes(urls)
        .retries(0)
        .node_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("valid configuration")
}

/// Asserts every failure is a server error of `kind`, and returns their node indexes, sorted.
fn all_server_errors(failures: &[NodeFailure], kind: ServerErrorKind) -> Vec<usize> {
    for failure in failures {
        match &failure.error {
            NodeError::Server(e) => assert_eq!(e.kind, kind, "{failure}"),
            other => panic!("expected a {kind:?} reply, got {other:?}"),
        }
    }
    let mut nodes: Vec<usize> = failures.iter().map(|f| f.node).collect();
    nodes.sort_unstable();
    nodes
}

/// `redis://user:password@127.0.0.1:port` (user may be empty).
fn url_with(user: &str, password: &str, node: &RedisNode) -> String {
    format!("redis://{user}:{password}@127.0.0.1:{}", node.port())
}

#[test]
fn wrong_password_is_wrongpass_per_node() {
    let key = "config:wrongpass";
    let mut cluster = Cluster::start_with(3, &RedisOptions::new().password("s3cret"));
    let wrong: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| url_with("", SECRET, n))
        .collect();

    let err = manager(&wrong).try_lock(key, TTL).unwrap_err();
    let failures = outage(&err);
    assert_eq!(
        all_server_errors(&failures, ServerErrorKind::WrongPass),
        [0, 1, 2]
    );
    assert!(failures
        .iter()
        .all(|f| f.error.to_string().contains("WRONGPASS")));
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(SECRET), "password leaked: {shown}");
    assert_eq!(cluster.count_key(key), 0);

    // One misconfigured node of three is outvoted.
    let mut urls = cluster.urls();
    urls[0] = wrong[0].clone();
    let guard = manager(&urls).try_lock(key, TTL).expect("2 of 3 accept us");
    assert_eq!(cluster.count_key(key), 2);
    assert!(!cluster[0].raw().exists(key));
    assert_eq!(guard.release(), Ok(true));
    assert_eq!(cluster.count_key(key), 0);
}

#[test]
fn missing_password_is_noauth_per_node() {
    let key = "config:noauth";
    let mut cluster = Cluster::start_with(3, &RedisOptions::new().password("s3cret"));
    let anonymous: Vec<String> = cluster
        .nodes()
        .iter()
        .map(RedisNode::url_without_auth)
        .collect();
    let err = manager(&anonymous).try_lock(key, TTL).unwrap_err();
    let failures = outage(&err);
    // The connection opens; the SET is refused. A quorum of refusals decides the round.
    let nodes = all_server_errors(&failures, ServerErrorKind::NoAuth);
    assert!(nodes.len() >= 2, "{err}");
    assert!(failures[0].error.to_string().contains("NOAUTH"), "{err}");
    assert_eq!(cluster.count_key(key), 0);
}

#[test]
fn bad_select_is_an_err_reply_and_a_good_one_uses_that_database() {
    let key = "config:select";
    let mut cluster = Cluster::start(3);
    let base = cluster.urls();
    let db = |i: usize, n: u32| format!("{}/{n}", base[i]);

    let bad: Vec<String> = (0..3).map(|i| db(i, 99_999)).collect();
    let err = manager(&bad).try_lock(key, TTL).unwrap_err();
    let failures = outage(&err);
    assert_eq!(
        all_server_errors(&failures, ServerErrorKind::Err),
        [0, 1, 2]
    );
    for failure in &failures {
        let NodeError::Server(ServerError { message, .. }) = &failure.error else {
            unreachable!()
        };
        assert!(message.contains("out of range"), "{message}");
    }
    assert_eq!(cluster.count_key(key), 0);

    // A valid database: the keys land there, not in database 0.
    let good: Vec<String> = (0..3).map(|i| db(i, 3)).collect();
    let guard = manager(&good).try_lock(key, TTL).unwrap();
    assert_eq!(cluster.count_key(key), 0, "nothing in database 0");
    for node in cluster.nodes() {
        let mut raw = node.raw();
        assert!(raw.cmd(&[b"SELECT", b"3"]).is_ok());
        assert_eq!(raw.get(key).as_deref(), Some(guard.value()));
    }
    assert_eq!(guard.release(), Ok(true));
    for node in cluster.nodes() {
        let mut raw = node.raw();
        assert!(raw.cmd(&[b"SELECT", b"3"]).is_ok());
        assert!(!raw.exists(key));
    }
}

#[test]
fn unresolvable_host_is_a_per_node_failure() {
    let key = "config:unresolvable";
    let mut cluster = Cluster::start(2);
    let nowhere = "redis://no-such-host.invalid:6380".to_owned();

    let err = manager(std::slice::from_ref(&nowhere))
        .try_lock(key, TTL)
        .unwrap_err();
    let failures = outage(&err);
    assert_eq!(failures.len(), 1, "{err}");
    assert_eq!(failures[0].error, NodeError::Unresolvable, "{err}");
    assert_eq!(failures[0].addr, "no-such-host.invalid:6380");

    let urls = [nowhere, cluster[0].url(), cluster[1].url()];
    let guard = manager(&urls).try_lock(key, TTL).expect("2 of 3 resolve");
    assert_eq!(cluster.count_key(key), 2);
    assert_eq!(guard.release(), Ok(true));
    assert_eq!(cluster.count_key(key), 0);
}

/// URLs that must not parse, each carrying `SECRET` as its password.
const BAD_URLS: &[(&str, &str)] = &[
    ("redis://:hunter2@127.0.0.1:notaport", "port"),
    ("redis://:hunter2@127.0.0.1:0", "port"),
    ("redis://:hunter2@127.0.0.1:70000", "port"),
    ("redis://:hunter2@127.0.0.1:6380/notadb", "database"),
    ("redis://:hunter2@127.0.0.1:6380/2147483648", "database"),
    ("redis://:hunter2@127.0.0.1:6380?db=1", "query"),
    ("redis://:hunter2@127.0.0.1:6380#x", "query"),
    ("redis://:hunter2@", "host"),
    ("redis://:hunter2@::1:6380", "ipv6"),
    ("redis://:hunter2@[::1:6380", "ipv6"),
    ("redis://:hunter2@127.0.0.1 :6380", "whitespace"),
    ("redis://hunter2@127.0.0.1:6380", "credentials"),
    // With the `tls` feature this URL parses: see `tests/tls.rs`.
    #[cfg(not(feature = "tls"))]
    ("rediss://:hunter2@127.0.0.1:6380", "tls"),
    ("http://:hunter2@127.0.0.1:6380", "scheme"),
];

#[test]
fn a_url_that_does_not_parse_is_invalid_url_with_the_password_redacted() {
    let fake = FakeServer::start(|_| Action::ok());
    for &(url, reason_part) in BAD_URLS {
        let urls = [url.to_owned(), fake.url()];
        for result in [
            Redlock::new(urls.clone()),
            Redlock::builder().nodes(&urls).build(),
        ] {
            match result {
                Err(Error::InvalidUrl { url: shown, reason }) => {
                    assert!(reason.contains(reason_part), "{url}: {reason}");
                    let err = Error::InvalidUrl {
                        url: shown.clone(),
                        reason,
                    };
                    let all = format!("{shown} {err} {err:?}");
                    assert!(!all.contains(SECRET), "{url}: password shown: {all}");
                    assert!(shown.contains("***"), "{url}: shown as {shown}");
                }
                other => panic!("{url}: expected InvalidUrl, got {other:?}"),
            }
        }
    }
    // A valid URL's password does not show in the manager's Debug either.
    let dlm = Redlock::new([format!("redis://:{SECRET}@127.0.0.1:{}", fake.port())]).unwrap();
    assert!(!format!("{dlm:?} {:?}", dlm.nodes()).contains(SECRET));
    assert_eq!(fake.connections(), 0, "nothing is dialled at build time");
}

/// Library bug: `redact` (src/url.rs) gives up and returns the URL verbatim when it finds no
/// `://`, or when the password holds an unencoded `/` (the authority is then cut at that `/`
/// and has no `@`). Both are everyday typos, and the password ends up in the error.
#[test]
fn a_garbled_url_never_shows_its_password() {
    let mut leaks = Vec::new();
    for url in [
        "redis:/:hunter2@127.0.0.1:6380",
        "redis//:hunter2@127.0.0.1:6380",
        ":hunter2@127.0.0.1:6380",
        "redis://:hunter/2@127.0.0.1:6380",
        "redis://user:hunter2/x@127.0.0.1:6380",
    ] {
        let err = Redlock::new([url]).unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err:?}");
        let all = format!("{err} {err:?}");
        if all.contains("hunter") {
            leaks.push(all);
        }
    }
    assert!(leaks.is_empty(), "password shown in:\n{}", leaks.join("\n"));
}

#[test]
fn zero_nodes_is_invalid_config() {
    for result in [
        Redlock::new(Vec::<String>::new()),
        Redlock::builder().build(),
        Redlock::builder()
            .nodes(["redis://127.0.0.1:7001"])
            .nodes(Vec::<&str>::new())
            .build(),
    ] {
        assert_eq!(result.unwrap_err(), Error::InvalidConfig("no nodes"));
    }
}

#[test]
fn the_same_node_listed_twice_is_invalid_config() {
    let fake = FakeServer::start(|_| Action::ok());
    let p = fake.port();
    let pairs = [
        // Verbatim.
        (
            format!("redis://127.0.0.1:{p}"),
            format!("redis://127.0.0.1:{p}"),
        ),
        // Another database on the same server.
        (
            format!("redis://127.0.0.1:{p}/1"),
            format!("redis://127.0.0.1:{p}/2"),
        ),
        // Host names are case-insensitive.
        (
            format!("redis://localhost:{p}"),
            format!("redis://LocalHost:{p}"),
        ),
        (
            format!("REDIS://LOCALHOST:{p}"),
            format!("redis://localhost:{p}/0"),
        ),
        // Other credentials.
        (
            format!("redis://127.0.0.1:{p}"),
            format!("redis://user:{SECRET}@127.0.0.1:{p}"),
        ),
        // The default port, spelled out or not.
        (
            "redis://127.0.0.1".to_owned(),
            "redis://127.0.0.1:6379".to_owned(),
        ),
        // IPv6, bracketed.
        (format!("redis://[::1]:{p}"), format!("redis://[::1]:{p}/5")),
    ];
    for (a, b) in pairs {
        let urls = [a.clone(), "redis://127.0.0.1:1".to_owned(), b.clone()];
        let err = Redlock::new(&urls).unwrap_err();
        assert_eq!(
            err,
            Error::InvalidConfig("a node is listed twice"),
            "{a} + {b}"
        );
        assert!(!err.to_string().contains(SECRET));
    }
    assert_eq!(fake.connections(), 0, "nothing is dialled at build time");
}

/// A server listed under two names (`127.0.0.1` and `localhost`, here with another database
/// too) cannot be told apart from the text, but it reports one `run_id` under both: the second
/// name never votes, and its failure names both addresses. (Before, one live server of three
/// "nodes" carried a 2-of-3 lock.)
#[test]
fn a_node_listed_under_two_names_never_counts_twice() {
    let key = "config:alias";
    let node = RedisNode::start();
    let down = RedisNode::start();
    let down_url = down.url();
    drop(down);
    let alias = format!("redis://localhost:{}", node.port());
    for alias in [alias.clone(), format!("{alias}/1")] {
        let dlm = manager(&[node.url(), alias.clone(), down_url.clone()]);
        for _ in 0..3 {
            let err = dlm
                .try_lock(key, TTL)
                .expect_err("one live server is no quorum of 3");
            let failures = err.node_failures();
            let same = failures
                .iter()
                .find(|f| matches!(f.error, NodeError::SameServer { .. }))
                .unwrap_or_else(|| panic!("{alias}: the alias was counted: {err}"));
            assert_eq!(same.node, 1, "{err}");
            assert_eq!(same.addr, format!("localhost:{}", node.port()));
            assert_eq!(
                same.error,
                NodeError::SameServer {
                    node: 0,
                    addr: format!("127.0.0.1:{}", node.port())
                }
            );
            assert!(err
                .to_string()
                .contains(&format!("127.0.0.1:{}", node.port())));
            assert!(matches!(err, Error::NotAcquired { granted, .. } if granted <= 1));
        }
        let mut raw = node.raw();
        assert!(!raw.exists(key), "released");
        assert!(raw.cmd(&[b"SELECT", b"1"]).is_ok());
        assert!(!raw.exists(key), "released in the alias's database too");
    }
}

#[test]
fn acl_user_with_password_in_the_url_works() {
    let key = "config:acl";
    let node = RedisNode::start_with(RedisOptions::new().acl_user("locker", "l0cker-pw"));
    assert!(node.url().contains("locker:l0cker-pw@"));
    let dlm = manager(&[node.url()]);
    let guard = dlm
        .try_lock(key, TTL)
        .expect("ACL user with every permission");
    assert_eq!(node.raw().get(key).as_deref(), Some(guard.value()));
    assert_eq!(guard.release(), Ok(true));
    assert!(!node.raw().exists(key));

    // The same user with a wrong password, and a user that does not exist.
    for url in [
        url_with("locker", SECRET, &node),
        url_with("nobody", SECRET, &node),
    ] {
        let err = manager(&[url]).try_lock(key, TTL).unwrap_err();
        let failures = outage(&err);
        assert_eq!(
            all_server_errors(&failures, ServerErrorKind::WrongPass),
            [0]
        );
        assert!(!format!("{err} {err:?}").contains(SECRET));
    }
    assert!(!node.raw().exists(key));
}

#[test]
fn acl_user_without_permission_is_noperm() {
    let key = "config:noperm";
    // The default user stays open for the assertions; the lock uses restricted users.
    let node = RedisNode::start_with(
        RedisOptions::new()
            .acl_user_rules("reader", "on >reader-pw ~* -@all +get")
            .acl_user_rules("elsewhere", "on >elsewhere-pw ~other:* +@all")
            .acl_user_rules("setter", "on >setter-pw ~* -@all +set"),
    );

    // No SET at all, or not on this key: the lock is refused with NOPERM.
    for (user, password) in [("reader", "reader-pw"), ("elsewhere", "elsewhere-pw")] {
        let err = manager(&[url_with(user, password, &node)])
            .try_lock(key, TTL)
            .unwrap_err();
        let failures = outage(&err);
        assert_eq!(
            all_server_errors(&failures, ServerErrorKind::NoPerm),
            [0],
            "{user}"
        );
        assert!(!node.raw().exists(key), "{user}");
    }

    // SET but no EVALSHA: the lock is granted, but cannot be released; the key stays until
    // its ttl runs out.
    let dlm = manager(&[url_with("setter", "setter-pw", &node)]);
    let guard = dlm.try_lock(key, TTL).expect("SET is allowed");
    let value = guard.value().to_vec();
    match guard.release() {
        Err(Error::ReleaseUncertain {
            released: 0,
            failures,
            ..
        }) => {
            assert_eq!(all_server_errors(&failures, ServerErrorKind::NoPerm), [0]);
        }
        other => panic!("expected ReleaseUncertain, got {other:?}"),
    }
    let mut raw = node.raw();
    assert_eq!(raw.get(key), Some(value));
    let pttl = raw.pttl(key);
    assert!(pttl > 0 && pttl <= TTL.as_millis() as i64, "pttl {pttl}");
    assert_eq!(raw.cmd(&[b"DEL", key.as_bytes()]), RawReply::Integer(1));
}

/// `reply_limits` under which a lock's own replies could never be decoded (every lock would
/// fail forever), or so large that one reply could grow a connection's buffer without bound,
/// are refused by `build`, before any I/O. Limits at the minimum work against a real node.
#[test]
fn reply_limits_that_cannot_work_are_refused_at_build() {
    use resplock::resp::Limits;
    use resplock::ConfigRule;
    let build = |limits: Limits| {
        Redlock::builder()
            .nodes(["redis://127.0.0.1:7001"])
            .reply_limits(limits)
            .build()
    };
    let small = [
        Limits {
            max_bulk_len: 39,
            ..Limits::LOCK_CLIENT
        },
        Limits {
            max_bulk_len: 1024,
            ..Limits::LOCK_CLIENT
        },
        Limits {
            max_line_len: 16,
            ..Limits::LOCK_CLIENT
        },
        Limits {
            max_array_len: 1,
            ..Limits::LOCK_CLIENT
        },
        Limits {
            max_depth: 0,
            ..Limits::LOCK_CLIENT
        },
    ];
    for limits in small {
        let err = build(limits).expect_err("too small");
        assert_eq!(
            err.config_rule(),
            Some(ConfigRule::ReplyLimitsTooSmall),
            "{limits:?}"
        );
    }
    for limits in [
        Limits::PERMISSIVE,
        Limits {
            max_line_len: usize::MAX,
            ..Limits::LOCK_CLIENT
        },
    ] {
        let err = build(limits).expect_err("too large");
        assert_eq!(
            err.config_rule(),
            Some(ConfigRule::ReplyLimitsTooLarge),
            "{limits:?}"
        );
    }
    let node = RedisNode::start();
    let tight = Limits {
        max_bulk_len: 4096,
        max_array_len: 2,
        max_depth: 1,
        max_line_len: 512,
    };
    let dlm = Redlock::builder()
        .nodes([node.url()])
        .reply_limits(tight)
        .build()
        .expect("the minimum is accepted");
    let guard = dlm.lock("config:limits", TTL).expect("and works");
    assert!(dlm
        .inspect("config:limits")
        .expect("inspect fits")
        .is_locked());
    assert_eq!(guard.release(), Ok(true));
}
