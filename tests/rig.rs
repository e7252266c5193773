//! Self-tests of the test rig (`tests/support`): real nodes, the raw client, the fault proxy
//! and the fake server each do what their docs say. Timing checks are lower bounds or
//! generous "does not hang" bounds only.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{
    find_redis_server, measure, Action, Cluster, FakeServer, FaultProxy, NeverAccepts, Raw,
    RawReply, RedisNode, RedisOptions,
};

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// True while some process has this PID (and is not a zombie we still have to reap).
fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

#[test]
fn missing_redis_server_gives_the_install_hint() {
    let empty_path = std::env::temp_dir().join("resplock-rig-no-such-dir");
    let err = find_redis_server(None, Some(empty_path.into_os_string())).unwrap_err();
    assert!(
        err.contains("sudo apt-get install -y redis-server"),
        "{err}"
    );
    assert!(err.contains("REDIS_SERVER="), "{err}");
    let err = find_redis_server(Some("/no/such/redis-server".into()), None).unwrap_err();
    assert!(
        err.contains("sudo apt-get install -y redis-server"),
        "{err}"
    );
    // The real environment has one (CI installs it).
    assert!(support::require_redis().is_file());
}

#[test]
fn cluster_of_three_answers_on_distinct_ports() {
    let cluster = Cluster::start(3);
    assert_eq!(cluster.len(), 3);
    let mut ports: Vec<u16> = cluster.nodes().iter().map(RedisNode::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    assert!(!ports.contains(&6379));
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert_eq!(node.url(), format!("redis://127.0.0.1:{}", node.port()));
        assert!(node.pid().is_some());
        let mut raw = node.raw();
        assert!(raw.ping());
        assert_eq!(raw.get("k"), None);
        raw.set("k", format!("v{i}"));
        assert_eq!(raw.get("k"), Some(format!("v{i}").into_bytes()));
        assert!(raw.exists("k"));
        assert_eq!(raw.pttl("k"), -1);
        raw.set_px("t", "x", 60_000);
        let pttl = raw.pttl("t");
        assert!(pttl > 0 && pttl <= 60_000, "{pttl}");
        assert_eq!(raw.keys("*"), vec![b"k".to_vec(), b"t".to_vec()]);
        assert_eq!(raw.dbsize(), 2);
        assert_eq!(raw.del("k"), 1);
        assert_eq!(raw.pttl("k"), -2);
        raw.flushall();
        assert_eq!(raw.dbsize(), 0);
    }
    // Nodes are independent.
    cluster[0].raw().set("only0", "1");
    assert!(!cluster[1].raw().exists("only0"));
}

#[test]
#[should_panic(expected = "exited during startup")]
fn a_bad_config_panics_with_the_log_tail() {
    let _ = RedisNode::start_with(RedisOptions::new().config("no-such-directive", "1"));
}

#[test]
fn scripts_config_and_error_replies() {
    let node = RedisNode::start_with(RedisOptions::new().config("maxmemory", "10mb"));
    let mut raw = node.raw();
    assert_eq!(raw.config_get("maxmemory").as_deref(), Some("10485760"));
    raw.config_set("maxmemory", "20mb");
    assert_eq!(raw.config_get("maxmemory").as_deref(), Some("20971520"));
    let sha = match raw.cmd(&[b"SCRIPT", b"LOAD", b"return 1"]) {
        RawReply::Bulk(Some(sha)) => String::from_utf8(sha).unwrap(),
        other => panic!("{other:?}"),
    };
    assert!(raw.script_exists(&sha));
    assert_eq!(
        raw.cmd(&[b"EVALSHA", sha.as_bytes(), b"0"]),
        RawReply::Integer(1)
    );
    raw.script_flush();
    assert!(!raw.script_exists(&sha));
    let reply = raw.cmd(&[b"EVALSHA", sha.as_bytes(), b"0"]);
    assert_eq!(reply.error_kind(), Some("NOSCRIPT"), "{reply:?}");
    // RawReply encodes back to what a server sends.
    let nested = RawReply::Array(Some(vec![
        RawReply::Bulk(Some(b"a".to_vec())),
        RawReply::Bulk(None),
        RawReply::Integer(-3),
        RawReply::Array(None),
    ]));
    assert_eq!(nested.encode(), b"*4\r\n$1\r\na\r\n$-1\r\n:-3\r\n*-1\r\n");
}

#[test]
fn password_and_acl_user() {
    let node = RedisNode::start_with(RedisOptions::new().password("s3cret"));
    assert_eq!(
        node.url(),
        format!("redis://:s3cret@127.0.0.1:{}", node.port())
    );
    assert!(node.raw().ping());
    let mut anon = Raw::connect(node.addr()).unwrap();
    assert_eq!(anon.cmd(&[b"GET", b"k"]).error_kind(), Some("NOAUTH"));
    assert_eq!(anon.auth("wrong").error_kind(), Some("WRONGPASS"));
    assert!(anon.auth("s3cret").is_ok());

    let node = RedisNode::start_with(
        RedisOptions::new()
            .acl_user("alice", "pw")
            .acl_user_rules("bob", "on >bpw ~* -@all +get"),
    );
    assert_eq!(
        node.url(),
        format!("redis://alice:pw@127.0.0.1:{}", node.port())
    );
    let mut raw = node.raw();
    assert_eq!(
        raw.cmd(&[b"ACL", b"WHOAMI"]),
        RawReply::Bulk(Some(b"alice".to_vec()))
    );
    let mut bob = Raw::connect(node.addr()).unwrap();
    assert!(bob.auth_user("bob", "bpw").is_ok());
    assert_eq!(bob.cmd(&[b"SET", b"k", b"v"]).error_kind(), Some("NOPERM"));
}

#[test]
fn pause_freezes_and_resume_thaws() {
    let mut node = RedisNode::start();
    node.raw().set("k", "v");
    let mut before = node.raw();
    node.pause();
    assert!(node.is_paused() && node.is_running());
    before.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = before.try_cmd(&[b"GET", b"k"]).unwrap_err();
    assert!(is_timeout(&err), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    // The kernel still completes handshakes for a stopped process.
    let mut during = Raw::connect(node.addr()).unwrap();
    during.set_timeout(Duration::from_millis(200));
    assert!(is_timeout(&during.try_cmd(&[b"PING"]).unwrap_err()));
    node.resume();
    assert!(!node.is_paused());
    assert_eq!(node.raw().get("k"), Some(b"v".to_vec()));
    // The late reply to the timed-out GET arrives after the resume: why such a connection
    // must never be reused.
    before.set_timeout(Duration::from_secs(2));
    assert_eq!(
        before.read_reply().unwrap(),
        RawReply::Bulk(Some(b"v".to_vec()))
    );
}

#[test]
fn restart_without_aof_loses_keys() {
    let mut node = RedisNode::start();
    let port = node.port();
    node.raw().set("k", "v");
    let old_pid = node.pid().unwrap();
    node.kill();
    assert!(!node.is_running());
    assert_eq!(node.pid(), None);
    assert!(
        Raw::connect(node.addr()).is_err(),
        "port still open after kill"
    );
    node.restart();
    assert_eq!(node.port(), port);
    assert_ne!(node.pid(), Some(old_pid));
    assert_eq!(node.raw().get("k"), None);
    // A graceful stop does not save either (`--save ""`).
    node.raw().set("k", "v");
    node.stop();
    assert!(!node.is_running());
    node.restart();
    assert_eq!(node.raw().get("k"), None);
}

#[test]
fn restart_with_aof_keeps_keys_after_sigkill() {
    let mut node = RedisNode::start_with(RedisOptions::new().aof(true));
    let mut raw = node.raw();
    assert_eq!(raw.config_get("appendfsync").as_deref(), Some("always"));
    raw.set_px("k", "v", 60_000);
    drop(raw);
    node.kill();
    node.restart();
    let mut raw = node.raw();
    assert_eq!(raw.get("k"), Some(b"v".to_vec()));
    assert!(raw.pttl("k") > 0);
    // `restart` on a running node stops it (SIGTERM) first.
    node.restart();
    assert_eq!(node.raw().get("k"), Some(b"v".to_vec()));
}

#[test]
fn drop_kills_a_paused_node_even_during_a_panic() {
    let mut node = RedisNode::start();
    node.pause();
    let pid = node.pid().unwrap();
    let addr = node.addr();
    let dir = node.dir().to_path_buf();
    drop(node);
    assert!(!pid_alive(pid), "paused redis-server {pid} survived drop");
    assert!(TcpStream::connect(addr).is_err());
    assert!(!dir.exists());

    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let mut node = RedisNode::start();
        tx.send(node.pid().unwrap()).unwrap();
        node.pause();
        panic!("test failure while a node is paused");
    });
    assert!(result.is_err());
    let pid = rx.recv().unwrap();
    assert!(!pid_alive(pid), "redis-server {pid} survived a panic");
}

#[test]
fn proxy_forwards_and_counts() {
    let node = RedisNode::start_with(RedisOptions::new().password("pw"));
    let proxy = FaultProxy::for_node(&node);
    assert_eq!(
        proxy.url(),
        format!("redis://:pw@127.0.0.1:{}", proxy.port())
    );
    assert_eq!(proxy.target(), node.addr());
    let mut raw = Raw::connect(proxy.addr()).unwrap();
    assert!(raw.auth("pw").is_ok());
    raw.set("k", "v");
    assert_eq!(raw.get("k"), Some(b"v".to_vec()));
    assert_eq!(node.raw().get("k"), Some(b"v".to_vec()));
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(proxy.active_connections(), 1);
    assert!(proxy.bytes_upstream() > 0 && proxy.bytes_downstream() > 0);
    drop(raw);
    assert!(support::wait_until(Duration::from_secs(2), || proxy
        .active_connections()
        == 0));
}

#[test]
fn proxy_latency_per_direction() {
    let node = RedisNode::start();
    let proxy = FaultProxy::for_node(&node);
    let mut raw = Raw::connect(proxy.addr()).unwrap();
    assert!(raw.ping());
    let lat = Duration::from_millis(150);
    let timed = |raw: &mut Raw| {
        let t = Instant::now();
        assert!(raw.ping());
        t.elapsed()
    };
    proxy.set_latency_upstream(lat);
    assert!(timed(&mut raw) >= lat);
    proxy.set_latency_upstream(Duration::ZERO);
    proxy.set_latency_downstream(lat);
    assert!(timed(&mut raw) >= lat);
    proxy.set_latency(lat);
    assert!(timed(&mut raw) >= 2 * lat);
    // Pipelined commands pay the latency once, not once each.
    raw.send(&[b"PING"]).unwrap();
    raw.send(&[b"PING"]).unwrap();
    assert!(raw.read_reply().unwrap() == RawReply::Simple("PONG".into()));
    assert!(raw.read_reply().unwrap() == RawReply::Simple("PONG".into()));
    // A new connection sees the latency too.
    let t = Instant::now();
    assert!(Raw::connect(proxy.addr()).unwrap().ping());
    assert!(t.elapsed() >= 2 * lat);
    proxy.heal();
    assert!(timed(&mut raw) < Duration::from_secs(2));
}

#[test]
fn proxy_blackhole_swallows_everything_until_lifted() {
    let node = RedisNode::start();
    let proxy = FaultProxy::for_node(&node);
    let mut raw = Raw::connect(proxy.addr()).unwrap();
    assert!(raw.ping());
    proxy.blackhole(true);
    raw.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    assert!(is_timeout(&raw.try_cmd(&[b"SET", b"k", b"v"]).unwrap_err()));
    assert!(started.elapsed() >= Duration::from_millis(250));
    // New connections are accepted, then hear nothing.
    let mut fresh = Raw::connect(proxy.addr()).unwrap();
    fresh.set_timeout(Duration::from_millis(300));
    assert!(is_timeout(&fresh.try_cmd(&[b"PING"]).unwrap_err()));
    assert_eq!(
        node.raw().get("k"),
        None,
        "a black-holed SET reached the node"
    );
    proxy.blackhole(false);
    assert!(Raw::connect(proxy.addr()).unwrap().ping());
}

#[test]
fn proxy_reset_all_and_partition() {
    let node = RedisNode::start();
    let proxy = FaultProxy::for_node(&node);
    let mut raw = Raw::connect(proxy.addr()).unwrap();
    assert!(raw.ping());
    proxy.reset_all();
    let err = raw.try_cmd(&[b"PING"]).unwrap_err();
    assert!(!is_timeout(&err), "reset looked like a timeout: {err:?}");
    assert!(Raw::connect(proxy.addr()).unwrap().ping());

    let mut raw = Raw::connect(proxy.addr()).unwrap();
    assert!(raw.ping());
    proxy.partition(true);
    let err = raw.try_cmd(&[b"PING"]).unwrap_err();
    assert!(!is_timeout(&err), "{err:?}");
    // New connections fail fast (accepted then reset), not by timing out.
    let started = Instant::now();
    let failed = match Raw::connect(proxy.addr()) {
        Err(_) => true,
        Ok(mut c) => c.try_cmd(&[b"PING"]).is_err(),
    };
    assert!(failed);
    assert!(started.elapsed() < Duration::from_secs(1));
    proxy.partition(false);
    assert!(Raw::connect(proxy.addr()).unwrap().ping());
}

#[test]
fn proxy_in_front_of_a_killed_node_resets() {
    let mut node = RedisNode::start();
    let proxy = FaultProxy::for_node(&node);
    node.kill();
    let failed = match Raw::connect(proxy.addr()) {
        Err(_) => true,
        Ok(mut c) => c.try_cmd(&[b"PING"]).is_err(),
    };
    assert!(failed);
    node.restart();
    assert!(Raw::connect(proxy.addr()).unwrap().ping());
}

#[test]
fn fake_server_answers_per_command_and_records() {
    let fake = FakeServer::start(|cmd| {
        if cmd.is("SET") {
            Action::nil()
        } else if cmd.is("EVALSHA") {
            Action::error("NOSCRIPT No matching script. Please use EVAL.")
        } else if cmd.is_sub("SCRIPT", "LOAD") {
            Action::bulk(b"0123456789abcdef0123456789abcdef01234567")
        } else {
            Action::Reply(b"+PONG\r\n".to_vec())
        }
    });
    let mut raw = Raw::connect(fake.addr()).unwrap();
    assert_eq!(
        raw.cmd(&[b"set", b"k", b"v", b"NX", b"PX", b"100"]),
        RawReply::Bulk(None)
    );
    assert_eq!(
        raw.cmd(&[b"EVALSHA", b"abc", b"1", b"k", b"v"])
            .error_kind(),
        Some("NOSCRIPT")
    );
    assert_eq!(
        raw.cmd(&[b"SCRIPT", b"LOAD", b"return 1"])
            .as_bulk()
            .map(<[u8]>::len),
        Some(40)
    );
    assert!(raw.ping());
    let mut second = Raw::connect(fake.addr()).unwrap();
    assert!(second.ping());
    assert_eq!(fake.connections(), 2);
    assert_eq!(
        fake.command_names(),
        ["SET", "EVALSHA", "SCRIPT", "PING", "PING"]
    );
    let cmds = fake.commands();
    assert_eq!(cmds[0].args[1], b"k");
    assert_eq!(cmds[0].arg(5), Some(&b"100"[..]));
    assert_eq!((cmds[3].conn, cmds[3].seq), (0, 3));
    assert_eq!((cmds[4].conn, cmds[4].seq), (1, 0));
    // Garbage closes the connection.
    raw.send_raw(b"!garbage\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = raw.stream().read_to_end(&mut rest);
    assert!(rest.is_empty());
}

#[test]
fn fake_server_delays_and_dribbles() {
    let fake = FakeServer::start(|cmd| {
        if cmd.is("SLOW") {
            Action::ReplyAfter(Duration::from_millis(200), b"+LATE\r\n".to_vec())
        } else {
            Action::ReplyBytewise(b"+BYTEWISE\r\n".to_vec(), Duration::from_millis(20))
        }
    });
    let mut raw = Raw::connect(fake.addr()).unwrap();
    let t = Instant::now();
    assert_eq!(raw.cmd(&[b"SLOW"]), RawReply::Simple("LATE".into()));
    assert!(t.elapsed() >= Duration::from_millis(200));

    // The reply trickles in: the first read gets one byte.
    let mut s = TcpStream::connect(fake.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"*1\r\n$4\r\nDRIP\r\n").unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    let mut reads = 0;
    let mut buf = [0u8; 64];
    while got.len() < 11 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        if reads == 0 {
            assert_eq!(n, 1, "first read got {n} bytes");
        }
        reads += 1;
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"+BYTEWISE\r\n");
    assert!(reads > 1);
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[test]
fn fake_server_half_frame_silence_close_and_reset() {
    let fake = FakeServer::start(|cmd| {
        if cmd.is("HALF") {
            Action::HalfThenClose(b"$10\r\n0123456789\r\n".to_vec())
        } else if cmd.is("QUIET") {
            Action::Silent
        } else if cmd.is("BYE") {
            Action::Close
        } else {
            Action::Reset
        }
    });
    let mut s = TcpStream::connect(fake.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"*1\r\n$4\r\nHALF\r\n").unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"$10\r\n012"); // 8 of 17 bytes

    let mut raw = Raw::connect(fake.addr()).unwrap();
    raw.set_timeout(Duration::from_millis(200));
    assert!(is_timeout(&raw.try_cmd(&[b"QUIET"]).unwrap_err()));
    assert!(is_timeout(&raw.try_cmd(&[b"QUIET"]).unwrap_err()));
    assert_eq!(fake.wait_for_commands(3, Duration::from_secs(2)).len(), 3);

    let mut raw = Raw::connect(fake.addr()).unwrap();
    let err = raw.try_cmd(&[b"BYE"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err:?}");

    let mut raw = Raw::connect(fake.addr()).unwrap();
    let err = raw.try_cmd(&[b"RST"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err:?}");
}

#[test]
fn fake_server_accept_then_close() {
    let fake = FakeServer::accept_then_close();
    let mut s = TcpStream::connect(fake.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(s.read(&mut buf).unwrap(), 0);
    assert!(support::wait_until(Duration::from_secs(2), || fake
        .connections()
        == 1));
    assert!(fake.commands().is_empty());

    let fake = FakeServer::accept_then_reset();
    let mut s = TcpStream::connect(fake.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let err = s.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

#[test]
fn never_accepts_times_out_instead_of_refusing() {
    let na = NeverAccepts::start();
    for _ in 0..2 {
        let started = Instant::now();
        let err = TcpStream::connect_timeout(&na.addr(), Duration::from_millis(300)).unwrap_err();
        assert!(is_timeout(&err), "{err:?}");
        assert!(started.elapsed() >= Duration::from_millis(250));
    }
    assert_eq!(na.url(), format!("redis://127.0.0.1:{}", na.port()));
}

#[test]
fn fake_server_silent_records_everything() {
    let fake = FakeServer::silent();
    let mut s = TcpStream::connect(fake.addr()).unwrap();
    s.write_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n")
        .unwrap();
    let cmds = fake.wait_for_commands(2, Duration::from_secs(2));
    assert_eq!(cmds.len(), 2);
    assert_eq!(cmds[0].args, vec![b"GET".to_vec(), b"k".to_vec()]);
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 8];
    assert!(is_timeout(&s.read(&mut buf).unwrap_err()));
}

#[test]
fn monotonic_readings_agree_with_instant_arithmetic() {
    let a = Instant::now();
    std::thread::sleep(Duration::from_millis(1));
    let b = Instant::now();
    let readings = measure::monotonic_ns(a).zip(measure::monotonic_ns(b));
    if cfg!(target_os = "linux") {
        let (x, y) = readings.unwrap_or_else(|| panic!("no CLOCK_MONOTONIC reading of {a:?}"));
        assert_eq!(u128::from(y - x), (b - a).as_nanos());
    } else {
        assert_eq!(readings, None);
    }
}

#[test]
fn percentiles_are_nearest_rank() {
    let ms: Vec<Duration> = (1..=5).map(Duration::from_millis).collect();
    assert_eq!(measure::percentile(&ms, 0.5), Duration::from_millis(3));
    assert_eq!(measure::percentile(&ms, 1.0), Duration::from_millis(5));
    assert_eq!(measure::percentile(&[], 0.5), Duration::ZERO);
}
