//! Interop with the seed library, redlock-py: a migrating team runs redlock-py and resplock side
//! by side on the same resource names, against the same real `redis-server` nodes.
//!
//! Each test drives redlock-py through `tests/interop/redlock_py_driver.py`, a long-lived
//! Python process (one `redlock.Redlock` per process) that takes one command per line on stdin,
//! so it can hold a lock while resplock acts, and asserts the keys left on every node with
//! [`support::Raw`].
//!
//! The interpreter is `$RESPLOCK_PYTHON`, else `target/interop-venv/bin/python` (in the cargo
//! target dir), a venv with pinned `redlock-py` and `redis` that the first test to need it
//! builds from PyPI, once even when several test processes start together
//! (`tests/interop/venv.rs`; it needs `python3` with its venv module, e.g. Debian's
//! `python3-venv`, and PyPI on first use). When that cannot be done these tests FAIL with what
//! is missing and how to fix it; they never skip.
//!
//! What redlock-py 1.0.8 does (`redlock/__init__.py`, line numbers of that release):
//! - Key: the resource verbatim (`server.set(resource, val, nx=True, px=ttl)`, l.76), as in
//!   resplock, so the two contend on the same key.
//! - Value: 22 characters from `[A-Za-z0-9]` from the non-cryptographic `random` module
//!   (`get_unique_id`, l.84-86); resplock's is 32 lowercase hex characters from the OS. Both
//!   are plain ASCII, and both unlock scripts compare `GET key == value` before `DEL` (l.43-48;
//!   `resplock::script::RELEASE_SCRIPT`; same logic, different text and digest, no clash),
//!   so either library can release the other's lock given the value.
//! - ttl: integer milliseconds (`assert isinstance(ttl, int)` then `PX`, l.73-76). Drift is
//!   `int(ttl * 0.01) + 2` ms (l.95), as resplock's default; validity is measured with the wall
//!   clock `time.time()` (l.100, l.108), not a monotonic one.
//! - Quorum: `len(connection_list) // 2 + 1` (l.63): an integer in Python 3, equal to
//!   resplock's `nodes / 2 + 1` (2 of 3, 3 of 5). The `len(self.servers) < self.quorum` check
//!   (l.65) never fires: `StrictRedis(...)` does not connect.
//! - Retries: `retry_count` is the total number of attempts, not retries (`while retry <
//!   retry_count`, l.98), default 3; `retry_count or 3` and `retry_delay or 0.2` (l.68-69) turn
//!   0 into the defaults, so one attempt is `retry_count=1`. The delay is fixed (no jitter) and
//!   is also slept after the last failed attempt (l.121).
//! - SETs go to the nodes one after another (l.102-107) with redis-py's defaults: redlock-py
//!   passes no socket timeout, and redis-py 5.0.8 has none, so a paused node blocks `lock()`
//!   indefinitely (redis-py >= 8 defaults to 5 s).
//! - `lock()` returns `False` on failure (l.122), after an unlock on every node (l.115-119).
//!   On success it returns `Lock(validity, resource, key)`, a plain namedtuple (l.19): no
//!   context manager, so the `with dlm.lock(...)` in the seed notes raises `TypeError`.
//! - With a node down, a `lock()` that reached the quorum still RAISES
//!   `MultipleRedlockException` (l.110-112) and does not release: the lock stays held on the
//!   live nodes until its ttl, and the caller never learns the value. Resplock is blocked by
//!   that leaked lock exactly as by a held one ([`five_nodes_one_down_still_interoperate`]).
//! - `unlock()` returns nothing (no "was it ours?" answer, unlike `release_by`), and every
//!   error, a down node included, is logged and swallowed by `unlock_instance` (l.78-82), so
//!   its `MultipleRedlockException` (l.131-132) is unreachable.

mod support;
#[path = "interop/venv.rs"]
mod venv;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use resplock::{Error, Redlock};
use support::Cluster;

/// Long enough that nothing expires during a test, on a loaded machine, with Python startup.
const TTL_MS: u64 = 30_000;
const TTL: Duration = Duration::from_millis(TTL_MS);
/// How long to wait for one driver reply before failing the test (never hangs forever).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// A resplock-shaped value nobody holds.
const STRANGER: &[u8] = b"0123456789abcdef0123456789abcdef";
const SETUP_HINT: &str = "delete target/interop-venv to have the tests rebuild it from PyPI, or \
     point RESPLOCK_PYTHON at a python that can `import redlock, redis`";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(
        text.len() % 2 == 0,
        "odd-length hex from the driver: {text:?}"
    );
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16)
                .unwrap_or_else(|e| panic!("bad hex from the driver: {text:?}: {e}"))
        })
        .collect()
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// The interpreter for the driver: [`venv::prepare`] on the real environment, once per test
/// process (it builds the venv on first use). Panics with its one-paragraph fix otherwise.
fn python() -> PathBuf {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        venv::prepare(&venv::Setup::from_env()).map(|ready| {
            eprintln!(
                "interop-env: interpreter {} ({})",
                ready.python.display(),
                ready.versions
            );
            ready.python
        })
    });
    match ready {
        Ok(python) => python.clone(),
        Err(msg) => panic!("{msg}"),
    }
}

/// What one `lock()` call of redlock-py did. `key` is the value it generated for that call.
#[derive(Debug)]
enum PyLock {
    Locked { validity_ms: i64, key: Vec<u8> },
    False { key: Vec<u8> },
    Raised { exception: String, key: Vec<u8> },
}

/// One redlock-py `Redlock` in a Python subprocess.
struct PyRedlock {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    redlock_py: String,
    redis_py: String,
    quorum: usize,
}

impl PyRedlock {
    /// Starts the driver against every node of `cluster` (running or not), with one attempt
    /// per `lock()` and a 10 ms retry delay.
    fn start(cluster: &Cluster) -> PyRedlock {
        let python = python();
        let driver =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/redlock_py_driver.py");
        let mut cmd = Command::new(&python);
        cmd.arg(&driver).arg("1").arg("0.01");
        for node in cluster.nodes() {
            cmd.arg(node.addr().to_string());
        }
        let mut child = cmd
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {SETUP_HINT}", python.display()));

        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });

        let mut py = PyRedlock {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            redlock_py: String::new(),
            redis_py: String::new(),
            quorum: 0,
        };
        let ready = py.reply("(startup)");
        if let Some(msg) = ready.strip_prefix("import-error ") {
            panic!(
                "{} cannot import redlock-py/redis ({msg}); {SETUP_HINT}",
                python.display()
            );
        }
        let words: Vec<&str> = ready.split_whitespace().collect();
        match words.as_slice() {
            ["ready", redlock_py, redis_py, quorum, "1", "0.01"] => {
                py.redlock_py = (*redlock_py).to_owned();
                py.redis_py = (*redis_py).to_owned();
                py.quorum = quorum.parse().expect("quorum");
            }
            _ => panic!("unexpected driver greeting {ready:?}{}", py.stderr_note()),
        }
        py
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn stderr_note(&self) -> String {
        let text = self.stderr_text();
        if text.is_empty() {
            String::new()
        } else {
            format!("\n--- driver stderr ---\n{text}")
        }
    }

    fn reply(&mut self, request: &str) -> String {
        match self.lines.recv_timeout(REPLY_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                // Let the stderr reader drain what a crashing interpreter printed.
                thread::sleep(Duration::from_millis(200));
                panic!(
                    "redlock-py driver gave no reply to {request:?} ({e}); exit status {:?}{}",
                    self.child.try_wait(),
                    self.stderr_note()
                )
            }
        }
    }

    fn request(&mut self, line: &str) -> String {
        let stdin = self.stdin.as_mut().expect("driver stdin open");
        if let Err(e) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            panic!(
                "cannot write {line:?} to the redlock-py driver: {e}{}",
                self.stderr_note()
            );
        }
        self.reply(line)
    }

    /// `dlm.lock(resource, ttl_ms)`.
    fn lock(&mut self, resource: &str, ttl_ms: u64) -> PyLock {
        let line = format!("lock {} {ttl_ms}", hex(resource.as_bytes()));
        let reply = self.request(&line);
        let words: Vec<&str> = reply.split_whitespace().collect();
        match words.as_slice() {
            ["locked", validity, key] => PyLock::Locked {
                validity_ms: validity.parse().expect("validity"),
                key: unhex(key),
            },
            ["false", key] => PyLock::False { key: unhex(key) },
            ["raised", exception, key] => PyLock::Raised {
                exception: (*exception).to_owned(),
                key: unhex(key),
            },
            _ => panic!(
                "unexpected reply {reply:?} to {line:?}{}",
                self.stderr_note()
            ),
        }
    }

    /// Like [`PyRedlock::lock`], expecting success; returns redlock-py's value (`Lock.key`).
    fn lock_ok(&mut self, resource: &str) -> Vec<u8> {
        match self.lock(resource, TTL_MS) {
            PyLock::Locked { validity_ms, key } => {
                assert!(
                    validity_ms > 0 && validity_ms < TTL_MS as i64,
                    "redlock-py validity {validity_ms} ms for a {TTL_MS} ms ttl"
                );
                assert_eq!(key.len(), 22, "redlock-py value {:?}", show(&key));
                assert!(key.iter().all(u8::is_ascii_alphanumeric));
                key
            }
            other => panic!(
                "redlock-py could not lock {resource:?}: {other:?}{}",
                self.stderr_note()
            ),
        }
    }

    /// `dlm.unlock(redlock.Lock(0, resource, key))`.
    fn unlock(&mut self, resource: &str, key: &[u8]) {
        let line = format!("unlock {} {}", hex(resource.as_bytes()), hex(key));
        let reply = self.request(&line);
        assert_eq!(
            reply,
            "unlocked",
            "redlock-py unlock of {resource:?} with {:?}{}",
            show(key),
            self.stderr_note()
        );
    }
}

impl Drop for PyRedlock {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "quit");
        }
        let exited = support::wait_until(Duration::from_secs(5), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resplock over every node of `cluster`, with node timeouts generous enough for a loaded
/// machine.
fn resplock(cluster: &Cluster) -> Redlock {
    Redlock::builder()
        .nodes(cluster.urls())
        .retries(0)
        .node_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .expect("valid config")
}

/// The value of `key` on each node in `live` (`None`: no such key).
fn values(cluster: &Cluster, live: &[usize], key: &str) -> Vec<Option<Vec<u8>>> {
    live.iter().map(|&i| cluster[i].raw().get(key)).collect()
}

fn pttls(cluster: &Cluster, live: &[usize], key: &str) -> Vec<i64> {
    live.iter().map(|&i| cluster[i].raw().pttl(key)).collect()
}

#[track_caller]
fn assert_held_by(cluster: &Cluster, live: &[usize], key: &str, value: &[u8], what: &str) {
    let got = values(cluster, live, key);
    assert!(
        got.iter().all(|v| v.as_deref() == Some(value)),
        "{what}: expected {key:?} = {:?} on nodes {live:?}, found {:?}",
        show(value),
        got.iter()
            .map(|v| v.as_deref().map(show))
            .collect::<Vec<_>>()
    );
    for (i, pttl) in live.iter().zip(pttls(cluster, live, key)) {
        assert!(
            pttl > 0 && pttl <= TTL_MS as i64 * 2,
            "{what}: PTTL {pttl} of {key:?} on node {i}"
        );
    }
}

#[track_caller]
fn assert_free(cluster: &Cluster, live: &[usize], key: &str, what: &str) {
    let got = values(cluster, live, key);
    assert!(
        got.iter().all(Option::is_none),
        "{what}: expected no {key:?} on nodes {live:?}, found {:?}",
        got.iter()
            .map(|v| v.as_deref().map(show))
            .collect::<Vec<_>>()
    );
}

fn all(cluster: &Cluster) -> Vec<usize> {
    (0..cluster.len()).collect()
}

// ---------------------------------------------------------------------------------------------

/// The first use on a fresh clone: `cargo test` alone makes the Python side ready (or fails with
/// what is missing). `bash .ci/interop-env.sh` runs just this test to prebuild the venv.
#[test]
fn the_interop_python_is_ready() {
    let python = python();
    let out = Command::new(&python)
        .args([
            "-c",
            "import redlock, redis; print(redlock.Redlock.__name__)",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success() && out.stdout.starts_with(b"Redlock"),
        "{} cannot import redlock-py: {}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn redlock_py_quorum_and_retry_semantics_match_what_the_docs_say() {
    for n in [3, 5] {
        let cluster = Cluster::start(n);
        let dlm = resplock(&cluster);
        let mut py = PyRedlock::start(&cluster);
        eprintln!(
            "interop: redlock-py {} with redis-py {}",
            py.redlock_py, py.redis_py
        );
        assert_eq!(
            py.quorum,
            dlm.quorum(),
            "redlock-py and resplock disagree on the quorum for {n} nodes"
        );
        // `retry_count or 3`, `retry_delay or 0.2`: zero means "default", not "no retries".
        assert_eq!(py.request("probe"), "probe 3 0.2");
    }
}

fn resplock_lock_blocks_redlock_py(n: usize) {
    let cluster = Cluster::start(n);
    let live = all(&cluster);
    let dlm = resplock(&cluster);
    let mut py = PyRedlock::start(&cluster);
    let res = format!("interop:rs-holds:{n}");

    let guard = dlm
        .try_lock(res.as_str(), TTL)
        .expect("resplock locks a free resource");
    assert_held_by(&cluster, &live, &res, guard.value(), "resplock holds");

    match py.lock(&res, TTL_MS) {
        PyLock::False { key } => assert_ne!(key, guard.value()),
        other => panic!("redlock-py must be refused while resplock holds {res:?}: {other:?}"),
    }
    // redlock-py's failed attempt ran its unlock script on every node with its own value.
    assert_held_by(
        &cluster,
        &live,
        &res,
        guard.value(),
        "after redlock-py was refused",
    );

    assert!(
        guard.release().expect("release"),
        "release: a quorum held our value"
    );
    assert_free(&cluster, &live, &res, "after resplock released");

    let key = py.lock_ok(&res);
    assert_held_by(
        &cluster,
        &live,
        &res,
        &key,
        "redlock-py holds after resplock released",
    );
    py.unlock(&res, &key);
    assert_free(&cluster, &live, &res, "after redlock-py unlocked");
}

#[test]
fn resplock_lock_blocks_redlock_py_3_nodes() {
    resplock_lock_blocks_redlock_py(3);
}

#[test]
fn resplock_lock_blocks_redlock_py_5_nodes() {
    resplock_lock_blocks_redlock_py(5);
}

fn redlock_py_lock_blocks_resplock(n: usize) {
    let cluster = Cluster::start(n);
    let live = all(&cluster);
    let dlm = resplock(&cluster);
    let mut py = PyRedlock::start(&cluster);
    let res = format!("interop:py-holds:{n}");

    let key = py.lock_ok(&res);
    assert_held_by(&cluster, &live, &res, &key, "redlock-py holds");

    let err = dlm
        .try_lock(res.as_str(), TTL)
        .map(|g| g.value().to_vec())
        .expect_err("resplock must be refused while redlock-py holds the resource");
    assert!(err.is_contention(), "not contention: {err}");
    match &err {
        Error::NotAcquired {
            attempts,
            granted,
            held_elsewhere,
            failures,
            ..
        } => {
            assert_eq!(*attempts, 1);
            assert_eq!(*granted, 0, "{err}");
            // The round stops once the quorum is out of reach: n - quorum + 1 refusals.
            assert!(*held_elsewhere > n - dlm.quorum(), "{err}");
            assert!(failures.is_empty(), "{err}");
        }
        other => panic!("expected NotAcquired, got {other:?}"),
    }
    // Our failed attempt's compare-and-delete left redlock-py's key alone.
    assert_held_by(&cluster, &live, &res, &key, "after resplock was refused");

    py.unlock(&res, &key);
    assert_free(&cluster, &live, &res, "after redlock-py unlocked");

    let guard = dlm
        .try_lock(res.as_str(), TTL)
        .expect("resplock locks once redlock-py unlocked");
    assert_held_by(&cluster, &live, &res, guard.value(), "resplock holds");
    assert!(
        guard.release().expect("release"),
        "release: a quorum held our value"
    );
    assert_free(&cluster, &live, &res, "after resplock released");
}

#[test]
fn redlock_py_lock_blocks_resplock_3_nodes() {
    redlock_py_lock_blocks_resplock(3);
}

#[test]
fn redlock_py_lock_blocks_resplock_5_nodes() {
    redlock_py_lock_blocks_resplock(5);
}

fn releases_leave_the_other_lock_intact(n: usize) {
    let cluster = Cluster::start(n);
    let live = all(&cluster);
    let dlm = resplock(&cluster);
    let mut py = PyRedlock::start(&cluster);
    let res = format!("interop:wrong-release:{n}");

    // redlock-py holds; resplock releases with values that are not redlock-py's.
    let py_key = py.lock_ok(&res);
    assert!(
        !dlm.release_by(res.as_str(), STRANGER).expect("release_by"),
        "release_by with a wrong value"
    );
    assert_held_by(
        &cluster,
        &live,
        &res,
        &py_key,
        "after release_by with a stranger value",
    );
    let prefix = &py_key[..py_key.len() - 1];
    assert!(
        !dlm.release_by(res.as_str(), prefix).expect("release_by"),
        "release_by with a wrong value"
    );
    assert_held_by(
        &cluster,
        &live,
        &res,
        &py_key,
        "after release_by with a prefix",
    );
    py.unlock(&res, &py_key);
    assert_free(&cluster, &live, &res, "after redlock-py unlocked");

    // resplock holds; redlock-py unlocks with Lock objects carrying other values: its own
    // stale value (a holder whose lock expired and was taken over) and a prefix of ours.
    let guard = dlm.try_lock(res.as_str(), TTL).expect("resplock locks");
    let before = pttls(&cluster, &live, &res);
    py.unlock(&res, &py_key);
    py.unlock(&res, &guard.value()[..31]);
    assert_held_by(
        &cluster,
        &live,
        &res,
        guard.value(),
        "after redlock-py's wrong unlocks",
    );
    let after = pttls(&cluster, &live, &res);
    for ((i, b), a) in live.iter().zip(&before).zip(&after) {
        // Untouched: the ttl only ran down (no DEL, no re-SET, no PEXPIRE).
        assert!(
            0 < *a && a <= b && b - a < 20_000,
            "PTTL on node {i}: {b} before, {a} after"
        );
    }
    assert!(
        guard.release().expect("release"),
        "release: a quorum held our value"
    );
    assert_free(&cluster, &live, &res, "after resplock released");
}

#[test]
fn releases_leave_the_other_lock_intact_3_nodes() {
    releases_leave_the_other_lock_intact(3);
}

#[test]
fn releases_leave_the_other_lock_intact_5_nodes() {
    releases_leave_the_other_lock_intact(5);
}

fn values_are_portable(n: usize) {
    let cluster = Cluster::start(n);
    let live = all(&cluster);
    let dlm = resplock(&cluster);
    let mut py = PyRedlock::start(&cluster);
    let res = format!("interop:portable:{n}");

    // resplock extends and releases redlock-py's lock given redlock-py's value.
    let py_key = py.lock_ok(&res);
    let validity = dlm
        .extend_by(res.as_str(), &py_key, 2 * TTL)
        .expect("resplock extends redlock-py's lock by its value");
    assert!(
        validity > TTL,
        "validity {validity:?} after extending to {:?}",
        2 * TTL
    );
    for (i, pttl) in live.iter().zip(pttls(&cluster, &live, &res)) {
        assert!(
            pttl > TTL_MS as i64,
            "PTTL {pttl} on node {i} after extend_by"
        );
    }
    assert_held_by(&cluster, &live, &res, &py_key, "after extend_by");
    assert!(
        dlm.release_by(res.as_str(), &py_key).expect("release_by"),
        "resplock releases redlock-py's lock by its value"
    );
    assert_free(
        &cluster,
        &live,
        &res,
        "after release_by with redlock-py's value",
    );

    // redlock-py unlocks resplock's lock given `guard.value()`.
    let guard = dlm.try_lock(res.as_str(), TTL).expect("resplock locks");
    assert_eq!(guard.value().len(), 32);
    py.unlock(&res, guard.value());
    assert_free(
        &cluster,
        &live,
        &res,
        "after redlock-py unlocked resplock's lock",
    );
    assert!(
        !guard.release().expect("release"),
        "the lock was already released by redlock-py"
    );

    // And the resource is usable again by both.
    let key = py.lock_ok(&res);
    py.unlock(&res, &key);
    assert_free(&cluster, &live, &res, "at the end");
}

#[test]
fn values_are_portable_3_nodes() {
    values_are_portable(3);
}

#[test]
fn values_are_portable_5_nodes() {
    values_are_portable(5);
}

#[test]
fn five_nodes_one_down_still_interoperate() {
    let mut cluster = Cluster::start(5);
    cluster[4].stop();
    let live = [0, 1, 2, 3];
    let dlm = resplock(&cluster);
    let mut py = PyRedlock::start(&cluster);
    let res = "interop:one-down";

    // resplock holds (4 of 5) and blocks redlock-py, whose failed lock() returns False despite
    // the connection error (it raises only when it *did* reach the quorum).
    let guard = dlm
        .try_lock(res, TTL)
        .expect("resplock locks with 4 of 5 nodes up");
    assert_held_by(&cluster, &live, res, guard.value(), "resplock holds");
    match py.lock(res, TTL_MS) {
        PyLock::False { .. } => {}
        other => panic!("redlock-py must be refused while resplock holds: {other:?}"),
    }
    assert_held_by(
        &cluster,
        &live,
        res,
        guard.value(),
        "after redlock-py was refused",
    );
    // A wrong unlock leaves it; the right one (by guard.value()) releases it. unlock() does
    // not raise for the down node: unlock_instance logs and swallows every error.
    py.unlock(res, STRANGER);
    assert_held_by(
        &cluster,
        &live,
        res,
        guard.value(),
        "after a wrong redlock-py unlock",
    );
    py.unlock(res, guard.value());
    assert_free(
        &cluster,
        &live,
        res,
        "after redlock-py unlocked resplock's lock",
    );
    assert!(!guard.release().expect("release"), "release: already gone");
    assert!(
        py.stderr_text().contains("Error unlocking resource"),
        "redlock-py logs (and swallows) the down node's error on unlock{}",
        py.stderr_note()
    );

    // redlock-py's lock() reaches the quorum (4 of 5) but raises MultipleRedlockException for
    // the down node, without releasing: the lock is held, though its caller was told it failed.
    let py_key = match py.lock(res, TTL_MS) {
        PyLock::Raised { exception, key } if exception == "MultipleRedlockException" => key,
        other => panic!(
            "redlock-py 1.0.8 raises MultipleRedlockException when it gets a quorum with a \
             node down; got {other:?}"
        ),
    };
    assert_held_by(&cluster, &live, res, &py_key, "redlock-py's leaked lock");

    // That lock blocks resplock like any other.
    let err = dlm
        .try_lock(res, TTL)
        .map(|g| g.value().to_vec())
        .expect_err("resplock must be refused while redlock-py's keys are there");
    match &err {
        Error::NotAcquired {
            granted,
            held_elsewhere,
            failures,
            ..
        } => {
            assert_eq!(*granted, 0, "{err}");
            // Out of reach after 2 refusals + the down node, or 3 refusals.
            assert!(*held_elsewhere >= 2, "{err}");
            assert!(failures.iter().all(|f| f.node == 4), "{err}");
        }
        other => panic!("expected NotAcquired, got {other:?}"),
    }
    assert_held_by(&cluster, &live, res, &py_key, "after resplock was refused");

    // Wrong-value release leaves it; the right value releases it (4 of 5 say yes).
    assert!(
        !dlm.release_by(res, STRANGER).expect("release_by"),
        "release_by with a wrong value"
    );
    assert_held_by(
        &cluster,
        &live,
        res,
        &py_key,
        "after release_by with a stranger value",
    );
    assert!(
        dlm.release_by(res, &py_key).expect("release_by"),
        "release_by with the right value"
    );
    assert_free(
        &cluster,
        &live,
        res,
        "after release_by with redlock-py's value",
    );

    // redlock-py can clean up its own leaked lock too, given the value.
    let py_key = match py.lock(res, TTL_MS) {
        PyLock::Raised { key, .. } => key,
        other => panic!("expected MultipleRedlockException again, got {other:?}"),
    };
    assert_held_by(
        &cluster,
        &live,
        res,
        &py_key,
        "redlock-py's second leaked lock",
    );
    py.unlock(res, &py_key);
    assert_free(
        &cluster,
        &live,
        res,
        "after redlock-py unlocked its own lock",
    );

    let guard = dlm.try_lock(res, TTL).expect("resplock locks again");
    assert_held_by(&cluster, &live, res, guard.value(), "resplock holds again");
    assert!(
        guard.release().expect("release"),
        "release: a quorum held our value"
    );
    assert_free(&cluster, &live, res, "at the end");
}

/// redlock-py never publishes its releases: a resplock waiter still gets the lock, by the
/// `PTTL` its attempts read, once redlock-py's keys expire.
#[test]
fn lock_within_gets_a_lock_redlock_py_let_expire() {
    let cluster = Cluster::start(3);
    let live = all(&cluster);
    let dlm = resplock(&cluster);
    let mut py = PyRedlock::start(&cluster);
    let res = "interop:py-expires";
    let ttl_ms = 800;
    let key = match py.lock(res, ttl_ms) {
        PyLock::Locked { key, .. } => key,
        other => panic!("redlock-py could not lock: {other:?}"),
    };
    let locked_at = std::time::Instant::now();
    assert_held_by(&cluster, &live, res, &key, "redlock-py holds");
    let guard = dlm
        .lock_within(res, TTL, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("lock_within: {e}"));
    let waited = locked_at.elapsed();
    assert!(
        waited >= Duration::from_millis(ttl_ms) - Duration::from_millis(50),
        "acquired while redlock-py's keys lived: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(ttl_ms) + Duration::from_secs(1),
        "{waited:?}"
    );
    assert_held_by(&cluster, &live, res, guard.value(), "resplock holds");
    assert_eq!(guard.release(), Ok(true));
}
