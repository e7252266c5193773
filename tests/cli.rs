//! The `resplock` binary against real `redis-server` nodes: exclusion between two `run`s,
//! waiting, exit statuses and signals passed through, every way of losing the lock, signals
//! to resplock itself, the shell-script subcommands, and every bad input.
//!
//! Run with `cargo test --features cli --test cli`. Timing checks are generous bounds that
//! prove nothing hangs (and lower bounds that follow from a wait), never that it is fast.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::redis::send_signal;
use support::{wait_until, Cluster, RedisOptions};

const BIN: &str = env!("CARGO_BIN_EXE_resplock");

/// Longest any single invocation may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(60);

// Exit statuses, as documented in `resplock --help` and the README.
const USAGE: i32 = 64;
const UNAVAILABLE: i32 = 69;
const NOT_ACQUIRED: i32 = 75;
const CONFIG: i32 = 78;
const LOST: i32 = 79;
const IO_ERROR: i32 = 74;
const CANNOT_RUN: i32 = 126;
const NOT_FOUND: i32 = 127;

/// `resplock` with `RESPLOCK_NODES` set to `nodes` and no inherited `RESPLOCK_*`.
fn resplock(nodes: &[String]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("RESPLOCK_NODES", nodes.join(","))
        .env_remove("RESPLOCK_TOKEN")
        .env_remove("RESPLOCK_VALUE")
        .env_remove("RESPLOCK_RESOURCE")
        .stdin(Stdio::null());
    cmd
}

/// What one invocation did.
#[derive(Debug)]
struct Out {
    status: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Out {
    /// Asserts the exit status, showing stderr when it differs.
    fn expect(&self, status: i32) -> &Self {
        assert_eq!(self.status, Some(status), "unexpected exit: {self:?}");
        self
    }

    /// Asserts that stderr is exactly one `resplock: ` line containing `needle`.
    fn one_line_saying(&self, needle: &str) -> &Self {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "want one stderr line: {self:?}");
        assert!(lines[0].starts_with("resplock: "), "{self:?}");
        assert!(
            lines[0].contains(needle),
            "stderr should mention {needle:?}: {self:?}"
        );
        self
    }
}

/// Spawns `cmd` with stdout and stderr captured.
fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"))
}

/// Waits for a child from [`spawn`]; kills it and fails the test after [`HANG`].
fn finish(mut child: Child, started: Instant) -> Out {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on resplock") {
            break status;
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("resplock still running after {HANG:?}: a hang");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    Out {
        status: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        elapsed,
    }
}

/// Runs `cmd` to completion (see [`finish`]).
fn output(cmd: &mut Command) -> Out {
    let started = Instant::now();
    finish(spawn(cmd), started)
}

/// A fresh temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        Self(support::unique_temp_dir("cli"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Takes `resource` with `resplock lock`, returning the value it printed.
fn hold(nodes: &[String], resource: &str, ttl: &str) -> String {
    let out = output(resplock(nodes).args(["lock", "--no-wait", "--ttl", ttl, resource]));
    out.expect(0);
    let value = out.stdout.lines().next().unwrap_or_default().to_owned();
    assert_eq!(value.len(), 32, "lock should print a 32-hex value: {out:?}");
    value
}

fn wait_for_file(path: &Path) -> String {
    assert!(
        wait_until(HANG, || fs::read_to_string(path)
            .is_ok_and(|t| t.ends_with('\n'))),
        "{} never appeared",
        path.display()
    );
    fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn two_runs_never_overlap_nor_lose_an_increment() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let dir = TempDir::new();
    fs::write(dir.path("count"), "0\n").expect("write counter");
    // Read, pause, write: without the lock, two of these interleave and lose increments.
    let script = r#"
        mkdir "$D/inside" 2>/dev/null || echo overlap >> "$D/overlaps"
        n=$(cat "$D/count")
        sleep 0.05
        echo $((n + 1)) > "$D/count"
        rmdir "$D/inside"
    "#;
    const RUNS: usize = 8;
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..RUNS {
                    let out = output(
                        resplock(&nodes)
                            .args(["run", "--ttl", "5s", "--wait", "50s", "counter", "--"])
                            .args(["sh", "-c", script])
                            .env("D", &dir.0),
                    );
                    out.expect(0);
                }
            });
        }
    });
    let count = fs::read_to_string(dir.path("count")).expect("read counter");
    assert_eq!(
        count.trim(),
        (2 * RUNS).to_string(),
        "an increment was lost"
    );
    assert!(!dir.path("overlaps").exists(), "two runs overlapped");
    assert_eq!(cluster.count_key("counter"), 0, "a run left its key behind");
}

#[test]
fn run_gives_the_child_its_lock_keeps_it_alive_and_releases_it() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let dir = TempDir::new();
    // The child outlives the ttl three times over: only renewal keeps the key.
    let script = r#"
        echo "$RESPLOCK_RESOURCE ${RESPLOCK_TOKEN-none} $RESPLOCK_VALUE" > "$D/env"
        sleep 3
    "#;
    let child = spawn(
        resplock(&nodes)
            .args(["run", "--ttl", "1s", "job:env", "--", "sh", "-c", script])
            .env("D", &dir.0)
            .env("RESPLOCK_TOKEN", "stale-from-the-parent"),
    );
    let started = Instant::now();
    let env = wait_for_file(&dir.path("env"));
    let fields: Vec<&str> = env.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{env:?}");
    assert_eq!(&fields[..2], ["job:env", "none"], "{env:?}");
    let value = fields[2];
    assert!(value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()));
    thread::sleep(Duration::from_millis(2200));
    for (i, node) in cluster.nodes().iter().enumerate() {
        let held = node.raw().get("job:env");
        assert_eq!(
            held.as_deref(),
            Some(value.as_bytes()),
            "node {i}, after 2 ttls"
        );
    }
    finish(child, started).expect(0);
    assert_eq!(cluster.count_key("job:env"), 0);
}

#[test]
fn no_wait_on_a_held_lock_exits_75_and_runs_nothing() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let dir = TempDir::new();
    let value = hold(&nodes, "busy", "30s");
    let marker = dir.path("ran");
    output(
        resplock(&nodes)
            .args(["run", "--no-wait", "busy", "--", "touch"])
            .arg(&marker),
    )
    .expect(NOT_ACQUIRED)
    .one_line_saying("held by another owner");
    assert!(!marker.exists(), "the command ran without the lock");
    output(resplock(&nodes).args(["lock", "--no-wait", "busy"]))
        .expect(NOT_ACQUIRED)
        .one_line_saying("--no-wait");
    // The holder's lock is untouched.
    for node in cluster.nodes() {
        assert_eq!(node.raw().get("busy"), Some(value.clone().into_bytes()));
    }
    output(resplock(&nodes).args(["release", "busy", &value])).expect(0);
    assert_eq!(cluster.count_key("busy"), 0);
}

#[test]
fn wait_gives_up_after_the_limit_and_succeeds_when_released_in_time() {
    let cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let dir = TempDir::new();
    let value = hold(&nodes, "queue", "30s");
    let marker = dir.path("ran");

    let out = output(
        resplock(&nodes)
            .args(["run", "--wait", "1s", "queue", "--", "touch"])
            .arg(&marker),
    );
    out.expect(NOT_ACQUIRED).one_line_saying("within 1s");
    assert!(
        out.elapsed >= Duration::from_secs(1),
        "gave up early: {out:?}"
    );
    assert!(!marker.exists());

    // Released half a second into a 50 s wait: the command runs, long before the limit.
    let started = Instant::now();
    let waiter = spawn(
        resplock(&nodes)
            .args(["run", "--wait", "50s", "queue", "--", "touch"])
            .arg(&marker),
    );
    thread::sleep(Duration::from_millis(500));
    output(resplock(&nodes).args(["release", "queue", &value])).expect(0);
    let out = finish(waiter, started);
    out.expect(0);
    assert!(out.elapsed < Duration::from_secs(40), "{out:?}");
    assert!(marker.exists());
}

#[test]
fn the_default_is_to_wait_until_acquired() {
    let cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let dir = TempDir::new();
    // Never released: it expires after 2 s, and the waiting run gets it then.
    hold(&nodes, "patient", "2s");
    let marker = dir.path("ran");
    let out = output(
        resplock(&nodes)
            .args(["run", "patient", "--", "touch"])
            .arg(&marker),
    );
    out.expect(0);
    assert!(out.elapsed >= Duration::from_millis(1500), "{out:?}");
    assert!(marker.exists());
}

#[test]
fn the_child_exit_status_and_signal_pass_through() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    for (script, status) in [
        ("exit 0", 0),
        ("exit 7", 7),
        ("exit 255", 255),
        ("kill -TERM $$", 128 + 15),
        ("kill -KILL $$", 128 + 9),
        ("kill -INT $$", 128 + 2),
    ] {
        let out = output(resplock(&nodes).args(["run", "pass", "--", "sh", "-c", script]));
        out.expect(status);
        assert_eq!(out.stderr, "", "{script}: resplock should be silent");
    }
    assert_eq!(cluster.count_key("pass"), 0);
}

#[test]
fn a_command_that_cannot_start_releases_the_lock() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    output(resplock(&nodes).args(["run", "nostart", "--", "/nonexistent/resplock-test-cmd"]))
        .expect(NOT_FOUND)
        .one_line_saying("cannot run");
    let dir = TempDir::new();
    let not_executable = dir.path("data.txt");
    fs::write(&not_executable, "not a program\n").expect("write file");
    output(
        resplock(&nodes)
            .args(["run", "nostart", "--"])
            .arg(&not_executable),
    )
    .expect(CANNOT_RUN)
    .one_line_saying("cannot run");
    assert_eq!(cluster.count_key("nostart"), 0);
}

#[test]
fn deleting_the_key_on_every_node_kills_the_child() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let dir = TempDir::new();
    // The child ignores SIGTERM, so only the SIGKILL after the grace ends it.
    let script = r#"trap "" TERM; echo $$ > "$D/pid"; exec sleep 60"#;
    let started = Instant::now();
    let child = spawn(
        resplock(&nodes)
            .args(["run", "--ttl", "3s", "--kill-grace", "1s", "taken", "--"])
            .args(["sh", "-c", script])
            .env("D", &dir.0),
    );
    wait_for_file(&dir.path("pid"));
    for node in cluster.nodes() {
        node.raw().del("taken");
    }
    let deleted = Instant::now();
    let out = finish(child, started);
    out.expect(LOST);
    assert!(out.stderr.contains("taken"), "{out:?}");
    assert!(out.stderr.contains("SIGKILL"), "{out:?}");
    // One renewal period (1 s) plus the grace (1 s), with room for a loaded machine.
    assert!(deleted.elapsed() < Duration::from_secs(20), "{out:?}");
    assert_eq!(cluster.count_key("taken"), 0);
}

#[test]
fn nodes_that_stop_answering_let_the_lock_expire_and_the_child_is_killed() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let dir = TempDir::new();
    let started = Instant::now();
    let child = spawn(
        resplock(&nodes)
            .args(["run", "--ttl", "2s", "--kill-grace", "1s", "frozen", "--"])
            .args(["sh", "-c", r#"echo $$ > "$D/pid"; exec sleep 60"#])
            .env("D", &dir.0),
    );
    wait_for_file(&dir.path("pid"));
    for node in cluster.nodes_mut() {
        node.pause();
    }
    let out = finish(child, started);
    for node in cluster.nodes_mut() {
        node.resume();
    }
    out.expect(LOST);
    assert!(out.stderr.contains("expired"), "{out:?}");
}

#[test]
fn max_hold_terminates_the_child_after_the_cap() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let out = output(resplock(&nodes).args([
        "run",
        "--ttl",
        "3s",
        "--max-hold",
        "1s",
        "--kill-grace",
        "5s",
        "capped",
        "--",
        "sleep",
        "60",
    ]));
    out.expect(LOST);
    assert!(out.stderr.contains("--max-hold 1s reached"), "{out:?}");
    assert!(out.elapsed >= Duration::from_secs(1), "{out:?}");
    assert!(out.elapsed < Duration::from_secs(30), "{out:?}");
    assert_eq!(
        cluster.count_key("capped"),
        0,
        "released after the child exited"
    );
}

#[test]
fn after_max_hold_the_child_stops_under_the_lock() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let dir = TempDir::new();
    // Stopping takes the child 3 s, three ttls: the lock must be renewed until it is done.
    let script = r#"
        trap 'touch "$D/term"; sleep 3; exit 0' TERM
        while :; do sleep 0.1; done
    "#;
    let started = Instant::now();
    let child = spawn(
        resplock(&nodes)
            .args([
                "run",
                "--ttl",
                "1s",
                "--max-hold",
                "1s",
                "--kill-grace",
                "20s",
                "slow",
            ])
            .args(["--", "sh", "-c", script])
            .env("D", &dir.0),
    );
    assert!(wait_until(HANG, || dir.path("term").exists()));
    thread::sleep(Duration::from_millis(1300));
    assert_eq!(
        cluster.count_key("slow"),
        3,
        "the lock lapsed while the child was stopping"
    );
    let out = finish(child, started);
    out.expect(LOST);
    assert!(
        !out.stderr.contains("still running"),
        "no SIGKILL was needed: {out:?}"
    );
    assert_eq!(cluster.count_key("slow"), 0);
}

#[test]
fn sigterm_to_run_is_passed_on_and_the_lock_released_after_the_child_exits() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let dir = TempDir::new();
    // The child takes its time to stop: the lock must stay until it has.
    let script = r#"
        trap 'sleep 0.5; echo stopped > "$D/term"; exit 3' TERM
        echo $$ > "$D/pid"
        while :; do sleep 0.1; done
    "#;
    let started = Instant::now();
    let child = spawn(
        resplock(&nodes)
            .args(["run", "--ttl", "3s", "graceful", "--", "sh", "-c", script])
            .env("D", &dir.0),
    );
    wait_for_file(&dir.path("pid"));
    send_signal(child.id(), "TERM").expect("signal resplock");
    let out = finish(child, started);
    out.expect(3);
    assert!(dir.path("term").exists(), "the child never saw SIGTERM");
    assert_eq!(cluster.count_key("graceful"), 0, "no key may be left");

    // SIGINT, to a child with default dispositions: it dies of it, and so says resplock.
    let started = Instant::now();
    let child = spawn(
        resplock(&nodes)
            .args([
                "run",
                "interrupted",
                "--",
                "sh",
                "-c",
                r#"echo $$ > "$D/pid2"; exec sleep 60"#,
            ])
            .env("D", &dir.0),
    );
    wait_for_file(&dir.path("pid2"));
    send_signal(child.id(), "INT").expect("signal resplock");
    finish(child, started).expect(128 + 2);
    assert_eq!(cluster.count_key("interrupted"), 0);
}

#[test]
fn ctrl_c_at_a_terminal_reaches_the_child_once() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let dir = TempDir::new();
    // `script` (util-linux) gives resplock a terminal; ^C written to it makes the kernel send
    // SIGINT to the foreground process group: resplock and the child both get it, and
    // resplock must not pass on a second one.
    let child_script = format!(
        "trap 'echo INT >> {d}/ints' INT; touch {d}/started; \
         for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 \
         29 30; do sleep 0.1; done; exit 5",
        d = dir.0.display()
    );
    let line = format!("exec '{BIN}' run ctl -- sh -c \"{child_script}\"");
    let started = Instant::now();
    let mut child = spawn(
        Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("SHELL", "/bin/sh")
            .env("RESPLOCK_NODES", nodes.join(","))
            .stdin(Stdio::piped()),
    );
    let mut terminal = child.stdin.take().expect("script's stdin");
    assert!(
        wait_until(HANG, || dir.path("started").exists()),
        "the child never started; is `script` (util-linux) installed?"
    );
    terminal.write_all(b"\x03").expect("type ^C");
    let out = finish(child, started);
    drop(terminal);
    out.expect(5);
    let ints = fs::read_to_string(dir.path("ints")).unwrap_or_default();
    assert_eq!(
        ints, "INT\n",
        "the child should see exactly one SIGINT: {out:?}"
    );
    assert_eq!(cluster.count_key("ctl"), 0);
}

#[test]
fn lock_gives_the_lock_back_when_stdout_is_gone() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    // Held for 1 s, so the second `lock` is still waiting when its stdout closes.
    hold(&nodes, "unread", "1s");
    let started = Instant::now();
    let mut child = spawn(resplock(&nodes).args(["lock", "--ttl", "30s", "unread"]));
    drop(child.stdout.take());
    finish(child, started)
        .expect(IO_ERROR)
        .one_line_saying("released");
    assert_eq!(cluster.count_key("unread"), 0);
}

#[test]
fn a_signal_while_waiting_ends_the_wait_at_once() {
    let cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let dir = TempDir::new();
    let value = hold(&nodes, "contended", "30s");
    let marker = dir.path("ran");
    for (signal, status) in [("TERM", 128 + 15), ("INT", 128 + 2), ("HUP", 128 + 1)] {
        let started = Instant::now();
        let waiter = spawn(
            resplock(&nodes)
                .args(["run", "contended", "--", "touch"])
                .arg(&marker),
        );
        thread::sleep(Duration::from_millis(500));
        send_signal(waiter.id(), signal).expect("signal resplock");
        let sent = Instant::now();
        let out = finish(waiter, started);
        out.expect(status).one_line_saying("interrupted");
        assert!(sent.elapsed() < Duration::from_secs(10), "{out:?}");
        assert!(!marker.exists(), "ran after a {signal} while waiting");
    }
    let waiter = spawn(resplock(&nodes).args(["lock", "contended"]));
    thread::sleep(Duration::from_millis(500));
    send_signal(waiter.id(), "TERM").expect("signal resplock");
    finish(waiter, Instant::now()).expect(128 + 15);
    for node in cluster.nodes() {
        assert_eq!(
            node.raw().get("contended"),
            Some(value.clone().into_bytes())
        );
    }
}

#[test]
fn sigkill_to_run_leaves_a_lock_that_expires_within_one_ttl() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let dir = TempDir::new();
    let mut child = resplock(&nodes)
        .args(["run", "--ttl", "2s", "orphaned", "--"])
        .args(["sh", "-c", r#"echo $$ > "$D/pid"; exec sleep 60"#])
        .env("D", &dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start resplock");
    let orphan = wait_for_file(&dir.path("pid"));
    child.kill().expect("SIGKILL resplock");
    child.wait().expect("reap resplock");
    let killed = Instant::now();
    for node in cluster.nodes() {
        let pttl = node.raw().pttl("orphaned");
        assert!(pttl <= 2000, "the key outlives one ttl: PTTL {pttl}");
    }
    assert!(wait_until(Duration::from_secs(10), || cluster
        .count_key("orphaned")
        == 0));
    assert!(killed.elapsed() < Duration::from_secs(10));
    if let Ok(pid) = orphan.trim().parse::<u32>() {
        let _ = send_signal(pid, "KILL");
    }
}

#[test]
fn lock_extend_release_round_trip_in_a_shell_script() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let script = r#"
        set -eu
        [ "$("$RESPLOCK" inspect trip)" = free ]
        v=$("$RESPLOCK" lock --ttl 5s trip)
        [ "${#v}" -eq 32 ]
        set -- $("$RESPLOCK" inspect trip)
        [ "$1" = held ] && [ "$2" = "$v" ]
        s=0; "$RESPLOCK" lock --no-wait trip 2>/dev/null || s=$?
        [ "$s" -eq 75 ]
        "$RESPLOCK" extend --ttl 1m trip "$v"
        "$RESPLOCK" release trip "$v"
        [ "$("$RESPLOCK" inspect trip)" = free ]
        s=0; "$RESPLOCK" release trip "$v" 2>/dev/null || s=$?
        [ "$s" -eq 79 ]
        s=0; "$RESPLOCK" extend trip "$v" 2>/dev/null || s=$?
        [ "$s" -eq 79 ]
        w=$("$RESPLOCK" lock --no-wait trip)
        [ "$w" != "$v" ]
        "$RESPLOCK" release trip "$w"
        echo round trip done
    "#;
    let out = output(
        Command::new("sh")
            .args(["-c", script])
            .env("RESPLOCK", BIN)
            .env("RESPLOCK_NODES", nodes.join(",")),
    );
    out.expect(0);
    assert_eq!(out.stdout, "round trip done\n", "{out:?}");
    assert_eq!(cluster.count_key("trip"), 0);
}

#[test]
fn extend_resets_the_ttl_on_every_node() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let value = hold(&nodes, "longer", "5s");
    output(resplock(&nodes).args(["extend", "--ttl", "1m", "longer", &value])).expect(0);
    for (i, node) in cluster.nodes().iter().enumerate() {
        let pttl = node.raw().pttl("longer");
        assert!(pttl > 30_000 && pttl <= 60_000, "node {i}: PTTL {pttl}");
    }
    output(resplock(&nodes).args(["release", "longer", &value])).expect(0);
    assert_eq!(cluster.count_key("longer"), 0);
}

#[test]
fn inspect_shows_the_holder_and_its_remaining_ttl() {
    let cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let free = output(resplock(&nodes).args(["inspect", "seen"]));
    assert_eq!(free.expect(0).stdout, "free\n");
    let value = hold(&nodes, "seen", "20s");
    let out = output(resplock(&nodes).args(["inspect", "seen"]));
    out.expect(0);
    let fields: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{out:?}");
    assert_eq!(&fields[..2], ["held", value.as_str()], "{out:?}");
    let remaining = fields[2]
        .strip_suffix('s')
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("remaining ttl as seconds: {out:?}"));
    assert!(remaining > 5.0 && remaining <= 20.0, "{out:?}");
    output(resplock(&nodes).args(["release", "seen", &value])).expect(0);
}

#[test]
fn fencing_tokens_go_to_stdout_and_the_child_and_increase() {
    let mut cluster = Cluster::start(3);
    let nodes = cluster.urls();
    let script = r#"
        set -eu
        set -- $("$RESPLOCK" lock --fencing --ttl 5s fenced)
        v1=$1; t1=$2
        [ "${#v1}" -eq 32 ]
        "$RESPLOCK" release fenced "$v1"
        t2=$("$RESPLOCK" run --fencing fenced -- sh -c 'echo "$RESPLOCK_TOKEN"')
        [ "$t2" -gt "$t1" ]
        set -- $("$RESPLOCK" lock --fencing fenced)
        [ "$2" -gt "$t2" ]
        "$RESPLOCK" release fenced "$1"
        echo "tokens $t1 $t2 $2"
    "#;
    let out = output(
        Command::new("sh")
            .args(["-c", script])
            .env("RESPLOCK", BIN)
            .env("RESPLOCK_NODES", nodes.join(",")),
    );
    out.expect(0);
    assert!(out.stdout.starts_with("tokens "), "{out:?}");
    assert_eq!(cluster.count_key("fenced"), 0);
}

#[test]
fn unreachable_nodes_exit_69_and_run_nothing() {
    let down: Vec<String> = (0..3)
        .map(|_| format!("redis://127.0.0.1:{}", support::free_port()))
        .collect();
    let dir = TempDir::new();
    let marker = dir.path("ran");
    output(
        resplock(&down)
            .args(["run", "--no-wait", "job", "--", "touch"])
            .arg(&marker),
    )
    .expect(UNAVAILABLE)
    .one_line_saying("connect");
    let out = output(
        resplock(&down)
            .args(["run", "--wait", "1s", "job", "--", "touch"])
            .arg(&marker),
    );
    out.expect(UNAVAILABLE);
    assert!(
        out.stderr.contains("still waiting"),
        "warned while waiting: {out:?}"
    );
    assert!(!marker.exists());
    output(resplock(&down).args(["release", "job", "0123"])).expect(UNAVAILABLE);
    output(resplock(&down).args(["inspect", "job"]))
        .expect(UNAVAILABLE)
        .one_line_saying("job");
}

#[test]
fn nodes_refusing_our_credentials_end_even_an_endless_wait_with_78() {
    let cluster = Cluster::start_with(3, &RedisOptions::new().password("sesame"));
    let dir = TempDir::new();
    let marker = dir.path("ran");
    let no_password: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| n.url_without_auth())
        .collect();
    let wrong_password: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| format!("redis://:wrong@127.0.0.1:{}", n.port()))
        .collect();
    for nodes in [no_password, wrong_password] {
        // No --wait: the default waits forever, but no wait fixes a password.
        output(
            resplock(&nodes)
                .args(["run", "guarded", "--", "touch"])
                .arg(&marker),
        )
        .expect(CONFIG)
        .one_line_saying("refused");
        assert!(!marker.exists());
    }
}

#[test]
fn every_bad_input_gets_its_status_and_a_one_line_message() {
    let cluster = Cluster::start(1);
    let good = cluster.urls();
    let dir = TempDir::new();
    let marker = dir.path("ran");
    let m = marker.to_str().expect("utf-8 temp path");
    let node = good[0].as_str();
    let twice = format!("{node},{node}");
    let trailing = format!("{node},");
    // (arguments, RESPLOCK_NODES or None to unset it, status, part of the message)
    let cases: Vec<(Vec<&str>, Option<&str>, i32, &str)> = vec![
        (
            vec![
                "--nodes",
                "http://127.0.0.1:1",
                "run",
                "j",
                "--",
                "touch",
                m,
            ],
            None,
            CONFIG,
            "invalid node url",
        ),
        (
            vec!["run", "j", "--", "touch", m],
            Some("redis://127.0.0.1:99999"),
            CONFIG,
            "invalid node url",
        ),
        (
            vec!["run", "j", "--", "touch", m],
            Some(&twice),
            CONFIG,
            "listed twice",
        ),
        (
            vec!["run", "j", "--", "touch", m],
            Some(&trailing),
            CONFIG,
            "empty entry",
        ),
        (vec!["run", "j", "--", "touch", m], None, CONFIG, "no nodes"),
        (
            vec!["run", "j", "--", "touch", m],
            Some(""),
            CONFIG,
            "no nodes",
        ),
        (
            vec!["run", "--ttl", "30", "j", "--", "touch", m],
            Some(node),
            CONFIG,
            "missing unit",
        ),
        (
            vec!["run", "--ttl", "0s", "j", "--", "touch", m],
            Some(node),
            CONFIG,
            "--ttl",
        ),
        (
            vec!["run", "--ttl", "1ms", "j", "--", "touch", m],
            Some(node),
            CONFIG,
            "--ttl",
        ),
        (
            vec!["run", "--wait", "5x", "j", "--", "touch", m],
            Some(node),
            CONFIG,
            "unknown unit",
        ),
        (
            vec!["run", "--max-hold", "-1h", "j", "--", "touch", m],
            Some(node),
            CONFIG,
            "negative",
        ),
        (
            vec!["run", "--kill-grace=1.5ms", "j", "--", "touch", m],
            Some(node),
            CONFIG,
            "millisecond",
        ),
        (
            vec!["run", "j", "touch", m],
            Some(node),
            USAGE,
            "missing `--`",
        ),
        (vec!["run", "j"], Some(node), USAGE, "missing `-- CMD"),
        (vec!["run", "j", "--"], Some(node), USAGE, "missing CMD"),
        (
            vec!["run", "--", "touch", m],
            Some(node),
            USAGE,
            "missing RESOURCE",
        ),
        (
            vec!["run", "--wait", "1s", "--no-wait", "j", "--", "touch", m],
            Some(node),
            USAGE,
            "exclude",
        ),
        (
            vec!["run", "--frob", "j", "--", "touch", m],
            Some(node),
            USAGE,
            "unknown option --frob",
        ),
        (
            vec!["run", "--ttl"],
            Some(node),
            USAGE,
            "--ttl needs a value",
        ),
        (vec!["frob"], Some(node), USAGE, "unknown subcommand"),
        (vec![], Some(node), USAGE, "missing subcommand"),
        (vec!["release", "j"], Some(node), USAGE, "missing VALUE"),
        (
            vec!["lock", "--max-hold", "1s", "j"],
            Some(node),
            USAGE,
            "unknown option --max-hold",
        ),
    ];
    for (args, env, status, needle) in cases {
        let mut cmd = resplock(&good);
        match env {
            Some(env) => cmd.env("RESPLOCK_NODES", env),
            None => cmd.env_remove("RESPLOCK_NODES"),
        };
        let out = output(cmd.args(&args));
        assert_eq!(out.status, Some(status), "{args:?} {env:?}: {out:?}");
        out.one_line_saying(needle);
        assert!(!out.stderr.contains('\u{1b}'));
        assert!(!marker.exists(), "{args:?} ran the command");
    }
}

#[test]
fn help_documents_every_status_and_version_prints_the_version() {
    let out = output(Command::new(BIN).arg("--help"));
    out.expect(0);
    for status in [
        "64", "69", "71", "74", "75", "78", "79", "126", "127", "128+N",
    ] {
        assert!(out.stdout.contains(status), "--help lacks status {status}");
    }
    for sub in ["run", "lock", "extend", "release", "inspect"] {
        for form in ["--help", "-h"] {
            let out = output(Command::new(BIN).args([sub, form]));
            out.expect(0);
            assert!(
                out.stdout.contains(&format!("Usage: resplock {sub}")),
                "{sub} {form}: {out:?}"
            );
        }
    }
    let out = output(Command::new(BIN).arg("--version"));
    out.expect(0);
    assert_eq!(
        out.stdout,
        format!("resplock {}\n", env!("CARGO_PKG_VERSION"))
    );
}
