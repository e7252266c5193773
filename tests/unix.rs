//! `unix://` nodes against real `redis-server` processes started with `--unixsocket`.
//!
//! Lock, release and extend over Unix sockets on three nodes; `db=` and the password as
//! redis-py (`password=`) and redis-rs (`pass=`) spell them, or before `@`; the same path
//! twice is one server; a missing socket and a full listen backlog fail within the connect
//! deadline; passwords never shown; and no allocation per lock + release in steady state.
#![cfg(unix)]

#[path = "support/alloc_counter.rs"]
mod alloc_counter;
mod support;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use resplock::{Builder, ConfigRule, Error, NodeError, Phase, Redlock, ServerErrorKind};
use socket2::{Domain, SockAddr, Socket, Type};
use support::errors::outage;
use support::{unique_temp_dir, wait_until, RedisNode, RedisOptions};

const TTL: Duration = Duration::from_secs(10);
const SLACK: Duration = Duration::from_secs(2);

/// A `redis-server` that also listens on a Unix socket in its own temp dir.
struct UnixNode {
    node: RedisNode,
    dir: PathBuf,
    path: PathBuf,
}

impl UnixNode {
    fn start(opts: RedisOptions) -> UnixNode {
        let dir = unique_temp_dir("unix");
        let path = dir.join("redis.sock");
        let node = RedisNode::start_with(
            opts.config("unixsocket", &path.to_string_lossy())
                .config("unixsocketperm", "700"),
        );
        assert!(
            wait_until(Duration::from_secs(5), || UnixStream::connect(&path)
                .is_ok()),
            "no socket at {}",
            path.display()
        );
        UnixNode { node, dir, path }
    }

    /// `unix:///.../redis.sock`, plus `query` after a `?` when not empty.
    fn url(&self, query: &str) -> String {
        let base = format!("unix://{}", self.path.display());
        if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        }
    }
}

impl Drop for UnixNode {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn builder<S: AsRef<str>>(urls: &[S]) -> Builder {
    Redlock::builder()
        .nodes(urls.iter().map(AsRef::as_ref))
        .retries(0)
        .node_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(1))
}

fn built(b: Builder) -> Redlock {
    b.build().unwrap_or_else(|e| panic!("build: {e}"))
}

#[test]
fn lock_release_and_extend_over_unix_sockets_on_three_nodes() {
    let nodes: Vec<UnixNode> = (0..3)
        .map(|_| UnixNode::start(RedisOptions::new()))
        .collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.url("")).collect();
    let dlm = built(builder(&urls));
    assert_eq!(dlm.nodes()[0].unix_path(), Some(nodes[0].path.as_path()));
    assert_eq!(
        dlm.nodes()[0].to_string(),
        nodes[0].path.display().to_string()
    );

    let mut guard = dlm
        .lock("unix:resource", Duration::from_secs(2))
        .expect("lock");
    for node in &nodes {
        let mut raw = node.node.raw();
        assert_eq!(raw.get("unix:resource").as_deref(), Some(guard.value()));
    }
    guard.extend(Duration::from_secs(30)).expect("extend");
    for node in &nodes {
        assert!(node.node.raw().pttl("unix:resource") > 2000);
    }
    assert!(dlm
        .try_lock("unix:resource", TTL)
        .unwrap_err()
        .is_contention());
    assert_eq!(guard.release(), Ok(true));
    for node in &nodes {
        assert_eq!(node.node.raw().dbsize(), 0);
    }
}

#[test]
fn database_and_password_as_redis_py_and_redis_rs_spell_them() {
    let node = UnixNode::start(
        RedisOptions::new()
            .password("pw+1")
            .acl_user_rules("alice", "on >alicepw ~* &* +@all"),
    );
    for query in [
        "db=2&password=pw%2B1", // redis-py
        "pass=pw%2B1&db=2",     // redis-rs
        "db=2&username=alice&password=alicepw",
        "db=2&user=alice&pass=alicepw",
    ] {
        let dlm = built(builder(&[node.url(query)]));
        let guard = dlm
            .lock("unix:db", TTL)
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        let mut raw = node.node.raw();
        raw.cmd(&[b"SELECT", b"2"]);
        assert!(raw.exists("unix:db"), "{query}: not in db 2");
        assert_eq!(guard.release(), Ok(true));
    }
    // Credentials before `@`, as redis-py also accepts.
    let url = format!("unix://:pw%2B1@{}", node.path.display());
    let guard = built(builder(&[url]))
        .lock("unix:at", TTL)
        .expect("userinfo");
    assert_eq!(guard.release(), Ok(true));

    // A wrong password and none at all fail as they do over TCP.
    let err = built(builder(&[node.url("password=nope")]))
        .try_lock("unix:x", TTL)
        .unwrap_err();
    match &outage(&err)[0].error {
        NodeError::Server(e) => assert_eq!(e.kind, ServerErrorKind::WrongPass, "{err}"),
        other => panic!("expected WRONGPASS, got {other:?}"),
    }
    assert!(!format!("{err} {err:?}").contains("nope"), "{err}");
    let err = built(builder(&[node.url("")]))
        .try_lock("unix:x", TTL)
        .unwrap_err();
    match &outage(&err)[0].error {
        NodeError::Server(e) => assert_eq!(e.kind, ServerErrorKind::NoAuth, "{err}"),
        other => panic!("expected NOAUTH, got {other:?}"),
    }
}

#[test]
fn the_same_socket_path_twice_is_one_server() {
    for pair in [
        ["unix:///tmp/r.sock", "unix:///tmp/r.sock?db=1"],
        ["unix:///tmp/r.sock", "unix:///tmp//./r.sock"],
        ["unix:///tmp/r.sock?password=a", "unix://:b@/tmp/r.sock"],
    ] {
        let err = Redlock::new(pair).unwrap_err();
        assert_eq!(
            err.config_rule(),
            Some(ConfigRule::DuplicateNode),
            "{pair:?}"
        );
    }
    Redlock::new([
        "unix:///tmp/r.sock",
        "unix:///tmp/s.sock",
        "redis://127.0.0.1:1",
    ])
    .expect("distinct paths and a tcp node");
}

#[test]
fn a_missing_socket_fails_at_once() {
    let dir = unique_temp_dir("unix-missing");
    let url = format!("unix://{}/nope.sock?password=hunter2", dir.display());
    let dlm = built(builder(&[url]));
    let started = Instant::now();
    let err = dlm.try_lock("unix:missing", TTL).unwrap_err();
    assert!(started.elapsed() < SLACK);
    assert_eq!(
        outage(&err)[0].error,
        NodeError::Io {
            phase: Phase::Connect,
            kind: std::io::ErrorKind::NotFound
        }
    );
    let all = format!("{dlm:?} {err} {err:?}");
    assert!(!all.contains("hunter2"), "password shown: {all}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A listener that never accepts, with its backlog full: a blocking connect would wait until
/// the server accepts, so the connect deadline must bound it (`SO_SNDTIMEO`).
#[test]
fn a_full_listen_backlog_is_a_connect_timeout_within_the_deadline() {
    let dir = unique_temp_dir("unix-backlog");
    let path = dir.join("full.sock");
    let address = SockAddr::unix(&path).expect("socket address");
    let listener = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
    listener.bind(&address).expect("bind");
    listener.listen(0).expect("listen");
    let mut queued = Vec::new();
    loop {
        let client = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
        client.set_nonblocking(true).expect("non-blocking");
        match client.connect(&address) {
            Ok(()) => queued.push(client),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the backlog: {e}"),
        }
        assert!(queued.len() < 1000, "the backlog never filled");
    }
    let connect = Duration::from_millis(300);
    let dlm = built(builder(&[format!("unix://{}", path.display())]).connect_timeout(connect));
    let started = Instant::now();
    let err = dlm.try_lock("unix:full", TTL).unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        outage(&err)[0].error,
        NodeError::Timeout(Phase::Connect),
        "{err}"
    );
    assert!(took >= connect - Duration::from_millis(5), "{took:?}");
    assert!(took < connect + SLACK, "{took:?}");
    drop(queued);
    drop(listener);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn invalid_unix_urls_never_show_the_password() {
    for (url, rule) in [
        (
            "unix:///r.sock?password=hunter2&timeout=1",
            "unknown query parameter",
        ),
        ("unix://host/r.sock?password=hunter2", "takes no host"),
        ("unix:///r.sock?password=hunter2#frag", "fragments"),
        ("unix:///r.sock?password=hunter2&db=x", "db must be"),
        ("unix://:hunter2@/r.sock?pass=hunter2", "twice"),
    ] {
        match Redlock::new([url]) {
            Err(Error::InvalidUrl { url: shown, reason }) => {
                assert!(reason.contains(rule), "{url}: {reason}");
                let err = Error::InvalidUrl { url: shown, reason };
                let all = format!("{err} {err:?}");
                assert!(!all.contains("hunter2"), "{url}: password shown: {all}");
            }
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }
}

#[test]
fn lock_release_over_unix_sockets_allocates_nothing_after_warm_up() {
    let nodes: Vec<UnixNode> = (0..3)
        .map(|_| UnixNode::start(RedisOptions::new()))
        .collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.url("")).collect();
    let dlm = built(builder(&urls));
    let lock_release = || {
        let guard = dlm
            .lock("unix:hot", TTL)
            .unwrap_or_else(|e| panic!("lock on healthy nodes: {e}"));
        assert_eq!(guard.release(), Ok(true));
    };
    for _ in 0..20 {
        lock_release();
    }
    let ((), counted) = alloc_counter::allocations_in(|| {
        for _ in 0..200 {
            lock_release();
        }
    });
    assert_eq!(
        counted.count, 0,
        "200 x (lock + release) over unix sockets allocated {counted:?}; rerun with \
         ALLOC_BACKTRACE=1 -- --nocapture to see where"
    );
    assert!(Path::new(&nodes[0].path).exists());
}
