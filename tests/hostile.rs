//! Hostile replies over a real socket (issue 4, "Scenarios: Hostile replies"): malformed
//! frames, huge or overflowing declared lengths, deep nesting, replies of the wrong type,
//! every classified error reply, a `NOSCRIPT` that survives `SCRIPT LOAD`, a wrong script
//! digest, and servers that dribble, cut, close, reset, stay silent or never accept.
//!
//! In every case the lock call returns a typed per-node cause without panicking, a connection
//! that saw a protocol error or a wrong reply type is not used again (the next command arrives
//! on a new connection), the hostile node counts as failed in the quorum decision, and memory
//! stays bounded: this binary installs a counting allocator and checks the bytes allocated by
//! the calling thread during each call.

mod support;

use support::errors::outage;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use resplock::script::{EXTEND_SCRIPT, EXTEND_SHA1, RELEASE_SCRIPT, RELEASE_SHA1};
use resplock::{
    Error, NodeError, NodeFailure, Phase, ProtocolError, Redlock, ServerError, ServerErrorKind,
};
use support::{wait_until, Action, Cluster, Command, FakeServer, NeverAccepts};

// ---------------------------------------------------------------------------------------------
// Counting allocator: bytes requested by threads that switched counting on.

struct Counting;

thread_local! {
    // Const-initialised, no destructor: reading it never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

fn note(bytes: usize) {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = BYTES.try_with(|b| b.set(b.get().saturating_add(bytes)));
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting does not touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with the bytes this thread allocated meanwhile (every
/// allocation and reallocation counted in full, frees not subtracted).
fn bytes_allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    BYTES.with(|b| b.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, BYTES.with(Cell::get))
}

/// A call that allocates more than this has let a peer's declared sizes drive its memory.
const MEMORY_BOUND: usize = 1 << 20;

#[test]
fn the_counter_sees_this_threads_allocations_only() {
    let (v, bytes) = bytes_allocated_by(|| vec![1u8; 2 * MEMORY_BOUND]);
    assert!(bytes >= 2 * MEMORY_BOUND, "{bytes}");
    drop(v);
    let (_, bytes) = bytes_allocated_by(|| {
        std::thread::spawn(|| vec![1u8; 2 * MEMORY_BOUND].len())
            .join()
            .unwrap_or(0)
    });
    assert!(bytes < MEMORY_BOUND, "{bytes}");
}

// ---------------------------------------------------------------------------------------------
// Helpers.

const TTL: Duration = Duration::from_secs(30);

/// "Does not hang".
const HANG: Duration = Duration::from_secs(2);

/// A manager with one attempt per call.
fn manager(urls: &[String]) -> Redlock {
    Redlock::builder()
        .nodes(urls)
        .retries(0)
        .node_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("valid configuration")
}

/// `(conn, name)` of every command a fake received, in order.
fn wire(fake: &FakeServer) -> Vec<(u64, String)> {
    fake.commands().iter().map(|c| (c.conn, c.name())).collect()
}

fn wire_of(items: &[(u64, &str)]) -> Vec<(u64, String)> {
    items.iter().map(|(c, n)| (*c, (*n).to_owned())).collect()
}

/// A fake that answers `SET` with `set` and everything else with `:0`.
fn fake_answering_set(set: &[u8]) -> FakeServer {
    let set = set.to_vec();
    FakeServer::start(move |cmd: &Command| {
        if cmd.is("SET") {
            Action::Reply(set.clone())
        } else {
            Action::int(0)
        }
    })
}

/// A fake that grants every `SET` and answers `EVALSHA` with `evalsha`.
fn fake_answering_evalsha(evalsha: &[u8]) -> FakeServer {
    let evalsha = evalsha.to_vec();
    FakeServer::start(move |cmd: &Command| {
        if cmd.is("SET") {
            Action::ok()
        } else {
            Action::Reply(evalsha.clone())
        }
    })
}

/// Collects failed expectations so a table reports every bad row at once.
#[derive(Default)]
struct Mismatches(Vec<String>);

impl Mismatches {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    fn assert_none(self) {
        assert!(
            self.0.is_empty(),
            "{} mismatch(es):\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed, oversized and wrong-type replies.

/// `(case, reply bytes, expected cause)` for replies to `SET`.
fn hostile_set_replies() -> Vec<(&'static str, Vec<u8>, NodeError)> {
    let protocol = NodeError::Protocol;
    let mut deep = b"*1\r\n".repeat(100_000);
    deep.extend_from_slice(b"+OK\r\n");
    let mut endless_line = vec![b'+'];
    endless_line.resize(8 << 20, b'a');
    let mut max_bulk = b"$65536\r\n".to_vec();
    max_bulk.resize(max_bulk.len() + 65536, b'x');
    max_bulk.extend_from_slice(b"\r\n");
    vec![
        // Malformed frames.
        (
            "bad type byte",
            b"!oops\r\n".to_vec(),
            protocol(ProtocolError::BadTypeByte),
        ),
        (
            "RESP3 null",
            b"_\r\n".to_vec(),
            protocol(ProtocolError::BadTypeByte),
        ),
        (
            "signed integer",
            b":+1\r\n".to_vec(),
            protocol(ProtocolError::BadInteger),
        ),
        (
            "integer past i64",
            b":9223372036854775808\r\n".to_vec(),
            protocol(ProtocolError::BadInteger),
        ),
        (
            "bulk length -2",
            b"$-2\r\n".to_vec(),
            protocol(ProtocolError::LengthOutOfRange),
        ),
        (
            "array length -2",
            b"*-2\r\n".to_vec(),
            protocol(ProtocolError::LengthOutOfRange),
        ),
        (
            "bulk without CRLF",
            b"$2\r\nOKxx".to_vec(),
            protocol(ProtocolError::MissingCrlf),
        ),
        (
            "lone LF",
            b"+OK\n".to_vec(),
            protocol(ProtocolError::BadLine),
        ),
        // Huge or overflowing declared lengths.
        (
            "bulk of 99999999999 bytes",
            b"$99999999999\r\n".to_vec(),
            protocol(ProtocolError::TooLarge),
        ),
        (
            "bulk length past i64",
            b"$9223372036854775808\r\n".to_vec(),
            protocol(ProtocolError::TooLarge),
        ),
        (
            "bulk one byte over the limit",
            b"$65537\r\n".to_vec(),
            protocol(ProtocolError::TooLarge),
        ),
        (
            "array of 2^32 elements",
            b"*4294967296\r\n".to_vec(),
            protocol(ProtocolError::TooManyElements),
        ),
        (
            "8 MiB line without CRLF",
            endless_line,
            protocol(ProtocolError::TooLarge),
        ),
        // Deep nesting.
        (
            "100000 nested arrays",
            deep,
            protocol(ProtocolError::TooDeep),
        ),
        // Well-formed, wrong type for SET.
        ("integer 1", b":1\r\n".to_vec(), NodeError::UnexpectedReply),
        ("integer 0", b":0\r\n".to_vec(), NodeError::UnexpectedReply),
        (
            "bulk OK",
            b"$2\r\nOK\r\n".to_vec(),
            NodeError::UnexpectedReply,
        ),
        (
            "array holding +OK",
            b"*1\r\n+OK\r\n".to_vec(),
            NodeError::UnexpectedReply,
        ),
        ("nil array", b"*-1\r\n".to_vec(), NodeError::UnexpectedReply),
        (
            "lowercase ok",
            b"+ok\r\n".to_vec(),
            NodeError::UnexpectedReply,
        ),
        (
            "QUEUED",
            b"+QUEUED\r\n".to_vec(),
            NodeError::UnexpectedReply,
        ),
        (
            "largest accepted bulk",
            max_bulk,
            NodeError::UnexpectedReply,
        ),
        // NOSCRIPT to a SET: no script to load, so not a reload either.
        (
            "NOSCRIPT to SET",
            b"-NOSCRIPT No matching script.\r\n".to_vec(),
            NodeError::UnexpectedReply,
        ),
    ]
}

#[test]
fn hostile_replies_to_set_are_typed_failures_on_a_closed_connection_with_bounded_memory() {
    let mut bad = Mismatches::default();
    for (case, reply, expected) in hostile_set_replies() {
        let fake = fake_answering_set(&reply);
        let dlm = manager(&[fake.url()]);
        let started = Instant::now();
        let (result, bytes) = bytes_allocated_by(|| dlm.try_lock("hostile:set", TTL).map(|_| ()));
        bad.check(started.elapsed() < HANG, || {
            format!("{case}: took {:?}", started.elapsed())
        });
        bad.check(bytes < MEMORY_BOUND, || {
            format!("{case}: allocated {bytes} bytes")
        });
        let err = match result {
            Err(err) => err,
            Ok(()) => {
                bad.0.push(format!("{case}: the lock was granted"));
                continue;
            }
        };
        let failures = outage(&err);
        bad.check(
            failures.len() == 1 && failures[0].node == 0 && failures[0].error == expected,
            || format!("{case}: expected {expected:?}, got {failures:?}"),
        );
        // The broken connection was dropped: the release went out on a new one.
        fake.wait_for_commands(2, HANG);
        let seen = wire(&fake);
        bad.check(seen == wire_of(&[(0, "SET"), (1, "EVALSHA")]), || {
            format!("{case}: wire {seen:?}")
        });
        bad.check(fake.connections() == 2, || {
            format!("{case}: {} connections", fake.connections())
        });
    }
    bad.assert_none();
}

#[test]
fn hostile_replies_to_evalsha_are_typed_failures_on_a_closed_connection() {
    let mut deep = b"*1\r\n".repeat(100_000);
    deep.extend_from_slice(b":1\r\n");
    let cases: Vec<(&str, Vec<u8>, NodeError)> = vec![
        ("simple OK", b"+OK\r\n".to_vec(), NodeError::UnexpectedReply),
        ("integer 2", b":2\r\n".to_vec(), NodeError::UnexpectedReply),
        (
            "integer -1",
            b":-1\r\n".to_vec(),
            NodeError::UnexpectedReply,
        ),
        (
            "bulk 1",
            b"$1\r\n1\r\n".to_vec(),
            NodeError::UnexpectedReply,
        ),
        ("nil bulk", b"$-1\r\n".to_vec(), NodeError::UnexpectedReply),
        (
            "array holding 1",
            b"*1\r\n:1\r\n".to_vec(),
            NodeError::UnexpectedReply,
        ),
        (
            "signed integer",
            b":+1\r\n".to_vec(),
            NodeError::Protocol(ProtocolError::BadInteger),
        ),
        (
            "bulk of 99999999999 bytes",
            b"$99999999999\r\n".to_vec(),
            NodeError::Protocol(ProtocolError::TooLarge),
        ),
        (
            "100000 nested arrays",
            deep,
            NodeError::Protocol(ProtocolError::TooDeep),
        ),
    ];
    let mut bad = Mismatches::default();
    for (case, reply, expected) in cases {
        let fake = fake_answering_evalsha(&reply);
        let dlm = manager(&[fake.url()]);
        let guard = dlm
            .try_lock("hostile:evalsha", TTL)
            .expect("SET is granted");
        let (result, bytes) = bytes_allocated_by(|| guard.release());
        bad.check(bytes < MEMORY_BOUND, || {
            format!("{case}: allocated {bytes} bytes")
        });
        match result {
            Err(Error::ReleaseUncertain {
                released: 0,
                failures,
                ..
            }) => bad.check(failures.len() == 1 && failures[0].error == expected, || {
                format!("{case}: expected {expected:?}, got {failures:?}")
            }),
            other => bad
                .0
                .push(format!("{case}: expected ReleaseUncertain, got {other:?}")),
        }
        // The next call needs a new connection.
        let next = dlm.try_lock("hostile:evalsha-next", TTL);
        bad.check(next.is_ok(), || format!("{case}: next lock {next:?}"));
        if let Ok(mut guard) = next {
            guard.disarm();
        }
        let seen = wire(&fake);
        bad.check(
            seen == wire_of(&[(0, "SET"), (0, "EVALSHA"), (1, "SET")]),
            || format!("{case}: wire {seen:?}"),
        );
    }
    bad.assert_none();
}

/// One hostile node of three is outvoted; two hostile nodes of three are an outage with one
/// typed cause each, and the real node is released.
#[test]
fn hostile_nodes_count_as_failed_in_the_quorum() {
    let key = "hostile:quorum";
    let mut cluster = Cluster::start(2);
    let hostile: Vec<(&str, Action)> = vec![
        ("malformed", Action::Reply(b":+1\r\n".to_vec())),
        ("oversized", Action::Reply(b"$99999999999\r\n".to_vec())),
        ("deep", Action::Reply(b"*1\r\n".repeat(10_000))),
        ("wrong type", Action::Reply(b":1\r\n".to_vec())),
        (
            "error reply",
            Action::error("READONLY You can't write against a read only replica."),
        ),
        ("half a frame", Action::HalfThenClose(b"+OK\r\n".to_vec())),
        ("close", Action::Close),
        ("reset", Action::Reset),
    ];
    for (case, action) in hostile {
        let make = || {
            let action = action.clone();
            FakeServer::start(move |cmd: &Command| {
                if cmd.is("SET") {
                    action.clone()
                } else {
                    Action::int(0)
                }
            })
        };
        // Outvoted.
        let fake = make();
        let dlm = manager(&[fake.url(), cluster[0].url(), cluster[1].url()]);
        let guard = dlm
            .try_lock(key, TTL)
            .unwrap_or_else(|e| panic!("{case}: two real nodes should carry the lock: {e}"));
        assert_eq!(cluster.count_key(key), 2, "{case}");
        assert_eq!(guard.release(), Ok(true), "{case}");
        assert_eq!(cluster.count_key(key), 0, "{case}");

        // An outage.
        let (a, b) = (make(), make());
        let dlm = manager(&[a.url(), b.url(), cluster[0].url()]);
        let err = dlm.try_lock(key, TTL).unwrap_err();
        let (granted, failures) = match &err {
            Error::NotAcquired {
                granted,
                held_elsewhere: 0,
                expired: false,
                failures,
                ..
            } => (*granted, failures.clone()),
            other => panic!("{case}: expected NotAcquired, got {other:?}"),
        };
        assert!(granted <= 1, "{case}: {err}");
        let mut nodes: Vec<usize> = failures.iter().map(|f| f.node).collect();
        nodes.sort_unstable();
        assert_eq!(nodes, [0, 1], "{case}: {err}");
        assert!(!err.is_contention(), "{case}");
        assert_eq!(
            cluster.count_key(key),
            0,
            "{case}: the real node was released"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Error replies.

/// Every classified error line, with its kind and whether the notes call it a configuration
/// problem (`c`), a transient one (`t`) or neither (`-`).
const ERROR_REPLIES: &[(&str, ServerErrorKind, char)] = &[
    ("NOAUTH Authentication required.", ServerErrorKind::NoAuth, 'c'),
    (
        "WRONGPASS invalid username-password pair or user is disabled.",
        ServerErrorKind::WrongPass,
        'c',
    ),
    (
        "NOPERM User u has no permissions to run the 'set' command",
        ServerErrorKind::NoPerm,
        'c',
    ),
    (
        "READONLY You can't write against a read only replica.",
        ServerErrorKind::ReadOnly,
        'c',
    ),
    (
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        ServerErrorKind::MasterDown,
        'c',
    ),
    (
        "OOM command not allowed when used memory > 'maxmemory'.",
        ServerErrorKind::Oom,
        't',
    ),
    (
        "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
        ServerErrorKind::Misconf,
        't',
    ),
    (
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        ServerErrorKind::Busy,
        't',
    ),
    ("LOADING Redis is loading the dataset in memory", ServerErrorKind::Loading, 't'),
    ("MOVED 1 {redirect}", ServerErrorKind::Moved, 'c'),
    ("ASK 1 {redirect}", ServerErrorKind::Ask, 'c'),
    ("CLUSTERDOWN The cluster is down", ServerErrorKind::ClusterDown, 'c'),
    ("TRYAGAIN Multiple keys request during rehashing of slot", ServerErrorKind::TryAgain, 't'),
    (
        "CROSSSLOT Keys in request don't hash to the same slot",
        ServerErrorKind::CrossSlot,
        'c',
    ),
    (
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        ServerErrorKind::WrongType,
        '-',
    ),
    ("ERR unknown command 'SET'", ServerErrorKind::Err, '-'),
    ("ERR", ServerErrorKind::Err, '-'),
    ("WEIRD something new", ServerErrorKind::Other, '-'),
    ("err lowercase is not ERR", ServerErrorKind::Other, '-'),
];

/// Redirects point at a live fake server that must never see a connection.
fn error_lines(redirect: &FakeServer) -> Vec<(String, ServerErrorKind, char)> {
    let target = format!("127.0.0.1:{}", redirect.port());
    ERROR_REPLIES
        .iter()
        .map(|(line, kind, class)| (line.replace("{redirect}", &target), *kind, *class))
        .collect()
}

#[test]
fn every_error_reply_to_set_is_classified_per_node() {
    let redirect = FakeServer::start(|_| Action::ok());
    let mut bad = Mismatches::default();
    for (line, kind, class) in error_lines(&redirect) {
        bad.check(kind.is_configuration() == (class == 'c'), || {
            format!("{line}: is_configuration() should be {}", class == 'c')
        });
        bad.check(kind.is_transient() == (class == 't'), || {
            format!("{line}: is_transient() should be {}", class == 't')
        });
        let fake = fake_answering_set(format!("-{line}\r\n").as_bytes());
        let dlm = manager(&[fake.url()]);
        let err = dlm.try_lock("hostile:errors", TTL).unwrap_err();
        let failures = outage(&err);
        let expected = NodeError::Server(ServerError {
            kind,
            message: line.clone(),
        });
        bad.check(failures.len() == 1 && failures[0].error == expected, || {
            format!("{line}: expected {expected:?}, got {failures:?}")
        });
        // An error reply leaves the connection in step: the release reuses it.
        fake.wait_for_commands(2, HANG);
        let seen = wire(&fake);
        bad.check(seen == wire_of(&[(0, "SET"), (0, "EVALSHA")]), || {
            format!("{line}: wire {seen:?}")
        });
    }
    bad.check(redirect.connections() == 0, || {
        format!(
            "a redirect was followed: {} connection(s)",
            redirect.connections()
        )
    });
    bad.assert_none();
}

#[test]
fn every_error_reply_to_release_is_classified_per_node() {
    let redirect = FakeServer::start(|_| Action::ok());
    let mut bad = Mismatches::default();
    for (line, kind, _) in error_lines(&redirect) {
        let fake = fake_answering_evalsha(format!("-{line}\r\n").as_bytes());
        let dlm = manager(&[fake.url()]);
        let guard = dlm.try_lock("hostile:release-errors", TTL).unwrap();
        let result = guard.release();
        if kind == ServerErrorKind::WrongType {
            // The key holds another type: whatever it is, it is not our lock.
            bad.check(result == Ok(false), || format!("{line}: {result:?}"));
            continue;
        }
        let expected = NodeError::Server(ServerError {
            kind,
            message: line.clone(),
        });
        match result {
            Err(Error::ReleaseUncertain {
                released: 0,
                failures,
                ..
            }) => bad.check(failures.len() == 1 && failures[0].error == expected, || {
                format!("{line}: expected {expected:?}, got {failures:?}")
            }),
            other => bad
                .0
                .push(format!("{line}: expected ReleaseUncertain, got {other:?}")),
        }
        let seen = wire(&fake);
        bad.check(seen == wire_of(&[(0, "SET"), (0, "EVALSHA")]), || {
            format!("{line}: wire {seen:?}")
        });
    }
    bad.check(redirect.connections() == 0, || {
        "a redirect was followed".to_owned()
    });
    bad.assert_none();
}

// ---------------------------------------------------------------------------------------------
// NOSCRIPT and SCRIPT LOAD.

/// `SCRIPT LOAD` count per connection-independent node, from the fake's log.
fn count(fake: &FakeServer, name: &str, sub: Option<&str>) -> usize {
    fake.commands()
        .iter()
        .filter(|c| match sub {
            Some(sub) => c.is_sub(name, sub),
            None => c.is(name),
        })
        .count()
}

/// A node that grants `SET` (except on `busy`, held elsewhere), answers `SCRIPT LOAD` with the
/// right digest, and `NOSCRIPT` to every `EVALSHA`, forever.
fn forgetful_node() -> FakeServer {
    FakeServer::start(|cmd: &Command| {
        if cmd.is("SET") {
            if cmd.arg(1) == Some(b"busy") {
                Action::nil()
            } else {
                Action::ok()
            }
        } else if cmd.is_sub("SCRIPT", "LOAD") {
            match cmd.arg(2) {
                Some(s) if s == RELEASE_SCRIPT.as_bytes() => Action::bulk(RELEASE_SHA1.as_bytes()),
                Some(s) if s == EXTEND_SCRIPT.as_bytes() => Action::bulk(EXTEND_SHA1.as_bytes()),
                _ => Action::error("ERR unexpected script"),
            }
        } else {
            Action::error("NOSCRIPT No matching script. Please use EVAL.")
        }
    })
}

fn all_noscript(failures: &[NodeFailure]) -> bool {
    failures
        .iter()
        .all(|f| matches!(&f.error, NodeError::Server(e) if e.kind == ServerErrorKind::NoScript))
}

#[test]
fn persistent_noscript_gets_one_script_load_per_node_per_call() {
    let nodes = [forgetful_node(), forgetful_node(), forgetful_node()];
    let urls: Vec<String> = nodes.iter().map(FakeServer::url).collect();
    // `try_lock` makes one attempt; `lock` three.
    let dlm = Redlock::builder()
        .nodes(&urls)
        .retries(2)
        .retry_delay(Duration::from_millis(5))
        .retry_jitter(Duration::ZERO)
        .node_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let loads = || -> Vec<usize> {
        nodes
            .iter()
            .map(|n| count(n, "SCRIPT", Some("LOAD")))
            .collect()
    };
    // A reload whose reply the round did not wait for may reach the fake after the call
    // returned: wait for the log to settle on the expected counts.
    let assert_loads = |expected: [usize; 3]| {
        wait_until(HANG, || loads() == expected);
        assert_eq!(loads(), expected);
    };

    let mut guard = dlm
        .try_lock("hostile:noscript", TTL)
        .expect("SET is granted");
    assert_loads([0, 0, 0]);

    // Extend: every node that was read reloaded once and still says NOSCRIPT.
    let err = guard.extend(TTL).unwrap_err();
    match &err {
        Error::NotExtended {
            extended: 0,
            failures,
            ..
        } => {
            assert!(failures.len() >= 2, "{err}");
            assert!(all_noscript(failures), "{err}");
        }
        other => panic!("expected NotExtended, got {other:?}"),
    }
    assert_loads([1, 1, 1]);

    // Release reads every node: one more load each, never a loop.
    let err = guard.release().unwrap_err();
    match &err {
        Error::ReleaseUncertain {
            released: 0,
            failures,
            ..
        } => {
            assert_eq!(failures.len(), 3, "{err}");
            assert!(all_noscript(failures), "{err}");
        }
        other => panic!("expected ReleaseUncertain, got {other:?}"),
    }
    assert_loads([2, 2, 2]);

    // A failed acquisition releases in one round: one load each again.
    let err = dlm.try_lock("busy", TTL).unwrap_err();
    assert!(err.is_contention(), "{err}");
    assert_loads([3, 3, 3]);

    // `lock` with retries releases once per failed attempt, but reloads each node only once
    // per call: the later rounds' NOSCRIPT is a plain failure.
    let err = dlm.lock("busy", TTL).unwrap_err();
    assert!(
        matches!(err, Error::NotAcquired { attempts: 3, .. }),
        "{err}"
    );
    assert_loads([4, 4, 4]);

    // EVALSHAs per node: extend, release and try_lock's cleanup each sent one and retried it
    // once after their load (6); lock's three cleanups sent three and retried one (4).
    for node in &nodes {
        assert_eq!(count(node, "EVALSHA", None), 10, "one retry per load");
        assert_eq!(node.connections(), 1, "NOSCRIPT never costs a connection");
    }
}

#[test]
fn script_load_answers_other_than_the_digest_are_typed_failures() {
    let wrong_digest = "0000000000000000000000000000000000000000";
    let cases: Vec<(&str, Action, NodeError, bool)> = vec![
        (
            "another digest",
            Action::bulk(wrong_digest.as_bytes()),
            NodeError::ScriptDigestMismatch,
            true,
        ),
        (
            "an error",
            Action::error("ERR Error compiling script"),
            NodeError::Server(ServerError {
                kind: ServerErrorKind::Err,
                message: "ERR Error compiling script".to_owned(),
            }),
            true,
        ),
        (
            "a simple string",
            Action::ok(),
            NodeError::UnexpectedReply,
            false,
        ),
    ];
    for (case, load_reply, expected, keeps_connection) in cases {
        let fake = FakeServer::start(move |cmd: &Command| {
            if cmd.is("SET") {
                Action::ok()
            } else if cmd.is_sub("SCRIPT", "LOAD") {
                load_reply.clone()
            } else {
                Action::error("NOSCRIPT No matching script.")
            }
        });
        let dlm = manager(&[fake.url()]);
        let guard = dlm.try_lock("hostile:digest", TTL).unwrap();
        match guard.release() {
            Err(Error::ReleaseUncertain {
                released: 0,
                failures,
                ..
            }) => assert_eq!(
                failures.iter().map(|f| &f.error).collect::<Vec<_>>(),
                [&expected],
                "{case}"
            ),
            other => panic!("{case}: expected ReleaseUncertain, got {other:?}"),
        }
        assert_eq!(count(&fake, "SCRIPT", Some("LOAD")), 1, "{case}");
        // The retried EVALSHA's reply is still owed on the connection: the next call must
        // skip it (or use a new connection), not take it for the SET's reply.
        let mut next = dlm
            .try_lock("hostile:digest-next", TTL)
            .unwrap_or_else(|e| panic!("{case}: next lock: {e}"));
        next.disarm();
        let last = fake.commands().last().cloned().unwrap();
        assert!(last.is("SET"), "{case}");
        let expected_conn = u64::from(!keeps_connection);
        assert_eq!(
            last.conn, expected_conn,
            "{case}: connection of the next call"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Servers that dribble, cut, close, reset, stay silent or never accept.

#[test]
fn replies_one_byte_at_a_time_still_work() {
    let gap = Duration::from_millis(1);
    let loaded = Arc::new(Mutex::new(false));
    let fake = {
        let loaded = Arc::clone(&loaded);
        FakeServer::start(move |cmd: &Command| {
            let mut loaded = loaded.lock().unwrap_or_else(PoisonError::into_inner);
            let reply: Vec<u8> = if cmd.is("SET") && cmd.arg(1) == Some(b"busy") {
                b"$-1\r\n".to_vec()
            } else if cmd.is("SET") {
                b"+OK\r\n".to_vec()
            } else if cmd.is_sub("SCRIPT", "LOAD") {
                *loaded = true;
                format!("$40\r\n{RELEASE_SHA1}\r\n").into_bytes()
            } else if *loaded {
                b":1\r\n".to_vec()
            } else {
                b"-NOSCRIPT No matching script.\r\n".to_vec()
            };
            Action::ReplyBytewise(reply, gap)
        })
    };
    let dlm = Redlock::builder()
        .nodes([fake.url()])
        .retries(0)
        .node_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let guard = dlm
        .try_lock("hostile:bytewise", TTL)
        .expect("+OK, dribbled");
    assert_eq!(
        guard.release(),
        Ok(true),
        "NOSCRIPT, digest and :1, dribbled"
    );
    let err = dlm.try_lock("busy", TTL).unwrap_err();
    assert!(err.is_contention(), "$-1, dribbled: {err}");
    assert_eq!(
        wire(&fake),
        wire_of(&[
            (0, "SET"),
            (0, "EVALSHA"),
            (0, "SCRIPT"),
            (0, "EVALSHA"),
            (0, "SET"),
            (0, "EVALSHA"),
        ])
    );
}

#[test]
fn half_a_frame_then_close_is_closed() {
    for reply in [&b"+OK\r\n"[..], b"$-1\r\n", b"*1\r\n$2\r\nOK\r\n"] {
        let fake = FakeServer::start({
            let reply = reply.to_vec();
            move |cmd: &Command| {
                if cmd.is("SET") {
                    Action::HalfThenClose(reply.clone())
                } else {
                    Action::int(0)
                }
            }
        });
        let dlm = manager(&[fake.url()]);
        let err = dlm.try_lock("hostile:half", TTL).unwrap_err();
        let failures = outage(&err);
        assert_eq!(failures.len(), 1, "{err}");
        assert_eq!(failures[0].error, NodeError::Closed, "{err}");
        fake.wait_for_commands(2, HANG);
        assert_eq!(wire(&fake), wire_of(&[(0, "SET"), (1, "EVALSHA")]));
    }
}

#[test]
fn accept_then_close_or_reset_is_a_connection_failure() {
    for (case, fake) in [
        ("close", FakeServer::accept_then_close()),
        ("reset", FakeServer::accept_then_reset()),
    ] {
        let dlm = manager(&[fake.url()]);
        for _ in 0..2 {
            let started = Instant::now();
            let err = dlm.try_lock("hostile:accept", TTL).unwrap_err();
            assert!(started.elapsed() < HANG, "{case}: {:?}", started.elapsed());
            let failures = outage(&err);
            assert_eq!(failures.len(), 1, "{case}: {err}");
            assert!(
                matches!(failures[0].error, NodeError::Closed | NodeError::Io { .. }),
                "{case}: {err}"
            );
        }
        assert!(fake.connections() >= 2, "{case}: a new connection per call");
    }
}

#[test]
fn a_silent_node_times_out_and_keeps_its_connection() {
    let fake = FakeServer::silent();
    let node_timeout = Duration::from_millis(100);
    let dlm = Redlock::builder()
        .nodes([fake.url()])
        .retries(0)
        .node_timeout(node_timeout)
        .build()
        .unwrap();
    let started = Instant::now();
    let err = dlm.try_lock("hostile:silent", TTL).unwrap_err();
    let took = started.elapsed();
    assert!(took >= node_timeout && took < HANG, "{took:?}");
    let failures = outage(&err);
    assert_eq!(failures.len(), 1, "{err}");
    assert_eq!(failures[0].error, NodeError::Timeout(Phase::Read), "{err}");
    // A timeout is not a broken stream: the unanswered replies are skipped later. The release
    // after the timed-out SET loads its script in the same pipeline, since a NOSCRIPT from a
    // node that just timed out may never be seen.
    fake.wait_for_commands(3, HANG);
    assert_eq!(
        wire(&fake),
        wire_of(&[(0, "SET"), (0, "SCRIPT"), (0, "EVALSHA")])
    );
}

#[test]
fn a_node_that_never_accepts_is_a_bounded_connect_timeout() {
    let never = NeverAccepts::start();
    let mut cluster = Cluster::start(2);
    let connect_timeout = Duration::from_millis(200);
    let build = |urls: &[String]| {
        Redlock::builder()
            .nodes(urls)
            .retries(0)
            .node_timeout(Duration::from_secs(1))
            .connect_timeout(connect_timeout)
            .build()
            .unwrap()
    };

    let alone = build(&[never.url()]);
    for _ in 0..2 {
        let started = Instant::now();
        let err = alone.try_lock("hostile:never", TTL).unwrap_err();
        assert!(started.elapsed() < HANG, "{:?}", started.elapsed());
        let failures = outage(&err);
        assert_eq!(failures.len(), 1, "{err}");
        assert_eq!(
            failures[0].error,
            NodeError::Timeout(Phase::Connect),
            "{err}"
        );
    }

    let key = "hostile:never-quorum";
    let mixed = build(&[never.url(), cluster[0].url(), cluster[1].url()]);
    let started = Instant::now();
    let guard = mixed.try_lock(key, TTL).expect("two real nodes");
    assert!(started.elapsed() < HANG, "{:?}", started.elapsed());
    assert_eq!(cluster.count_key(key), 2);
    assert_eq!(guard.release(), Ok(true));
    assert_eq!(cluster.count_key(key), 0);
}
