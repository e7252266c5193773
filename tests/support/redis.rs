//! Real `redis-server` nodes on free loopback ports, controlled by PID.
//!
//! Each node runs in the foreground (`--daemonize no`) as a child of the test process with
//! `--port P --bind 127.0.0.1 --save "" --appendonly no --dir <tmp> --logfile <tmp>/redis.log`
//! `--enable-debug-command local` (so `DEBUG SLEEP` can block a node from a test), plus what
//! its [`RedisOptions`] add, in its own temp dir that is removed on drop. Signals
//! go to the child's PID only: `SIGKILL` through `Child::kill`, the others by running
//! `/bin/kill -s SIG <pid>`. Dropping a node sends `SIGCONT` (a stopped process would not act
//! on anything but `SIGKILL`), then `SIGKILL`, and reaps it, also during a panic.
//!
//! A node is ready when it answers `INFO` with its own `process_id` and `loading:0`, so a port
//! taken by someone else is never mistaken for ours, and an AOF is fully loaded.

use std::ffi::OsString;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::raw::{Raw, RawReply};
use super::{free_port, local_addr, unique_temp_dir, wait_until};

/// How long a node may take to start answering.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `stop` waits after `SIGTERM` before it sends `SIGKILL`.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The hint every "redis-server is missing" panic carries.
pub const INSTALL_HINT: &str = "install it with `sudo apt-get install -y redis-server`, \
     or set REDIS_SERVER=/path/to/redis-server";

/// Locates `redis-server`: `$REDIS_SERVER` when set (it must name an existing file), else the
/// first `redis-server` on `$PATH`. Takes the two variables as parameters so it can be tested;
/// the error message includes [`INSTALL_HINT`].
pub fn find_redis_server(
    redis_server_env: Option<OsString>,
    path_env: Option<OsString>,
) -> Result<PathBuf, String> {
    if let Some(explicit) = redis_server_env.filter(|v| !v.is_empty()) {
        let p = PathBuf::from(&explicit);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "REDIS_SERVER={} does not name an existing file: {INSTALL_HINT}",
                p.display()
            ))
        };
    }
    if let Some(path) = path_env {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("redis-server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(format!(
        "redis-server was not found on PATH; the tests need a real Redis: {INSTALL_HINT}"
    ))
}

/// The `redis-server` binary to use ([`find_redis_server`] on the real environment, cached).
/// Panics with the install hint when it is missing: tests needing Redis fail, never skip.
pub fn require_redis() -> PathBuf {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match FOUND.get_or_init(|| {
        find_redis_server(std::env::var_os("REDIS_SERVER"), std::env::var_os("PATH"))
    }) {
        Ok(p) => p.clone(),
        Err(msg) => panic!("{msg}"),
    }
}

/// Sends `signal` (a name such as `STOP`, `CONT`, `TERM`) to `pid` by running
/// `/bin/kill -s SIGNAL PID` (never by process name).
pub fn send_signal(pid: u32, signal: &str) -> Result<(), String> {
    let kill = ["/bin/kill", "/usr/bin/kill"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("kill");
    let status = Command::new(kill)
        .args(["-s", signal, &pid.to_string()])
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {kill}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{kill} -s {signal} {pid}` failed: {status}"))
    }
}

/// Extra configuration for a [`RedisNode`]; a builder. `RedisOptions::default()` is a plain
/// node: no password, no ACL user, no persistence.
#[derive(Clone, Debug, Default)]
pub struct RedisOptions {
    password: Option<String>,
    users: Vec<(String, String)>,
    admin_user: Option<(String, String)>,
    aof: bool,
    extra: Vec<(String, Vec<String>)>,
}

impl RedisOptions {
    /// Same as `default()`.
    pub fn new() -> Self {
        Self::default()
    }

    /// `--requirepass password`: the default user needs `AUTH password`. [`RedisNode::url`]
    /// becomes `redis://:password@127.0.0.1:P` (keep passwords URL-safe).
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Adds an ACL user with every permission (`on >password ~* &* +@all`), and makes
    /// [`RedisNode::url`] `redis://user:password@127.0.0.1:P`.
    pub fn acl_user(mut self, user: &str, password: &str) -> Self {
        self.users
            .push((user.to_owned(), format!("on >{password} ~* &* +@all")));
        self.admin_user = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Adds an ACL user with the given rules, e.g. `"on >pw ~* -@all +get"` for `NOPERM`
    /// tests. Does not change [`RedisNode::url`].
    pub fn acl_user_rules(mut self, user: &str, rules: &str) -> Self {
        self.users.push((user.to_owned(), rules.to_owned()));
        self
    }

    /// `--appendonly yes --appendfsync always` when true: every write is on disk before it is
    /// acknowledged, so data survives [`RedisNode::kill`] + [`RedisNode::restart`].
    pub fn aof(mut self, on: bool) -> Self {
        self.aof = on;
        self
    }

    /// Any other `--key value` directive (later ones win), e.g. `("maxmemory", "1mb")`.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.extra.push((key.to_owned(), vec![value.to_owned()]));
        self
    }

    fn args(&self, port: u16, dir: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut kv = |k: &str, vals: &[&str]| {
            args.push(format!("--{k}").into());
            args.extend(vals.iter().map(OsString::from));
        };
        kv("port", &[&port.to_string()]);
        kv("bind", &["127.0.0.1"]);
        kv("daemonize", &["no"]);
        kv("save", &[""]);
        kv("dir", &[&dir.to_string_lossy()]);
        kv("logfile", &[&dir.join("redis.log").to_string_lossy()]);
        kv("enable-debug-command", &["local"]);
        if self.aof {
            kv("appendonly", &["yes"]);
            kv("appendfsync", &["always"]);
        } else {
            kv("appendonly", &["no"]);
        }
        if let Some(pw) = &self.password {
            kv("requirepass", &[pw]);
        }
        for (user, rules) in &self.users {
            let mut vals = vec![user.as_str()];
            vals.extend(rules.split_whitespace());
            kv("user", &vals);
        }
        for (k, vals) in &self.extra {
            let vals: Vec<&str> = vals.iter().map(String::as_str).collect();
            kv(k, &vals);
        }
        args
    }
}

/// Why one start attempt failed.
enum StartError {
    /// The port was taken before the server bound it: try another port.
    PortTaken,
    /// Anything else; the message has the details and the log tail.
    Other(String),
}

/// One `redis-server` child process on `127.0.0.1:port`. See the module docs.
pub struct RedisNode {
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
    opts: RedisOptions,
    child: Option<Child>,
    paused: bool,
}

impl RedisNode {
    /// Starts a plain node on a free port and waits until it answers (panics after
    /// [`START_TIMEOUT`] with the log tail, or with the install hint if `redis-server` is
    /// missing).
    pub fn start() -> RedisNode {
        Self::start_with(RedisOptions::default())
    }

    /// Starts a node with `opts` on a free port; retries on a fresh port when the port was
    /// taken in between.
    pub fn start_with(opts: RedisOptions) -> RedisNode {
        let bin = require_redis();
        let dir = unique_temp_dir("redis");
        let mut node = RedisNode {
            bin,
            port: 0,
            dir,
            opts,
            child: None,
            paused: false,
        };
        let mut last = String::new();
        for _ in 0..10 {
            node.port = free_port();
            match node.spawn_and_wait() {
                Ok(()) => return node,
                Err(StartError::PortTaken) => {
                    last = format!("port {} was taken", node.port);
                }
                Err(StartError::Other(msg)) => panic!("{msg}"),
            }
        }
        panic!("rig: could not start redis-server after 10 ports; last: {last}")
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let log = self.dir.join("redis.log");
        let out_path = self.dir.join("stdout.log");
        // A fresh log per attempt, so the tail and the port check see only this attempt.
        let _ = fs::remove_file(&log);
        let out = File::create(&out_path)
            .map_err(|e| StartError::Other(format!("rig: create {}: {e}", out_path.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| StartError::Other(format!("rig: clone log file handle: {e}")))?;
        let child = Command::new(&self.bin)
            .args(self.opts.args(self.port, &self.dir))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                StartError::Other(format!(
                    "rig: cannot run {}: {e}; {INSTALL_HINT}",
                    self.bin.display()
                ))
            })?;
        let pid = child.id();
        self.child = Some(child);
        self.paused = false;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.try_wait() {
                let tail = self.log_tail(30);
                self.child = None;
                if tail.contains("Address already in use") {
                    return Err(StartError::PortTaken);
                }
                return Err(StartError::Other(format!(
                    "rig: redis-server on port {} exited during startup ({status}); log tail:\n{tail}",
                    self.port
                )));
            }
            if self.answers_as(pid) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let tail = self.log_tail(30);
                self.kill_child();
                return Err(StartError::Other(format!(
                    "rig: redis-server (pid {pid}) on port {} did not answer within {:?}; log tail:\n{tail}",
                    self.port, START_TIMEOUT
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True when the server on our port authenticates us, is done loading, and reports our
    /// child's PID.
    fn answers_as(&self, pid: u32) -> bool {
        let Ok(mut raw) = Raw::connect(self.addr()) else {
            return false;
        };
        raw.set_timeout(Duration::from_millis(500));
        if let Some(reply) = self.try_auth(&mut raw) {
            if !reply.is_ok() {
                return false;
            }
        }
        match raw.try_cmd(&[b"INFO"]) {
            Ok(RawReply::Bulk(Some(text))) => {
                let text = String::from_utf8_lossy(&text);
                text.lines().any(|l| l == format!("process_id:{pid}"))
                    && text.lines().any(|l| l == "loading:0")
            }
            _ => false,
        }
    }

    /// Sends the admin `AUTH` (requirepass, else the `acl_user`), if any; `None` when no
    /// authentication is configured or the command failed on the wire.
    fn try_auth(&self, raw: &mut Raw) -> Option<RawReply> {
        let args: Vec<&[u8]> = if let Some(pw) = &self.opts.password {
            vec![b"AUTH", pw.as_bytes()]
        } else if let Some((user, pw)) = &self.opts.admin_user {
            vec![b"AUTH", user.as_bytes(), pw.as_bytes()]
        } else {
            return None;
        };
        raw.try_cmd(&args).ok()
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    /// Sends `signal` (a name such as `STOP`) to our child by PID; panics if it fails.
    fn signal(&self, signal: &str) {
        let Some(pid) = self.pid() else {
            panic!(
                "rig: cannot send SIG{signal}: node on port {} is not running",
                self.port
            );
        };
        if let Err(e) = send_signal(pid, signal) {
            panic!("rig: {e}");
        }
    }

    /// The state letter in `/proc/<pid>/stat` (`T` = stopped), when readable.
    fn proc_state(pid: u32) -> Option<char> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may contain spaces: the state follows the
        // last ')'.
        let after = &stat[stat.rfind(')')? + 1..];
        after.trim_start().chars().next()
    }

    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.paused {
                // SIGKILL ends a stopped process too; SIGCONT first costs nothing.
                let _ = send_signal(child.id(), "CONT");
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// The loopback port (unchanged by restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        local_addr(self.port)
    }

    /// `redis://127.0.0.1:P`, with `user:password@` for an [`RedisOptions::acl_user`] node or
    /// `:password@` for a [`RedisOptions::password`] node.
    pub fn url(&self) -> String {
        format!("redis://{}127.0.0.1:{}", self.userinfo(), self.port)
    }

    /// `redis://127.0.0.1:P` without credentials, for "missing password" tests.
    pub fn url_without_auth(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The `user:password@` part of [`RedisNode::url`] (empty without credentials).
    pub fn userinfo(&self) -> String {
        if let Some((user, pw)) = &self.opts.admin_user {
            format!("{user}:{pw}@")
        } else if let Some(pw) = &self.opts.password {
            format!(":{pw}@")
        } else {
            String::new()
        }
    }

    /// The options the node was started with.
    pub fn options(&self) -> &RedisOptions {
        &self.opts
    }

    /// The node's private directory (AOF, `redis.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// PID of the running process, `None` after `stop`/`kill` (or if it died).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process exists (a paused process is running); reaps it if it died.
    pub fn is_running(&mut self) -> bool {
        if self.child.is_none() {
            return false;
        }
        if self.try_wait().is_some() {
            self.child = None;
            self.paused = false;
            return false;
        }
        true
    }

    /// True between [`RedisNode::pause`] and [`RedisNode::resume`].
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// How many times this node ran `command` (lowercase, e.g. `"evalsha"`), from
    /// `INFO commandstats`; 0 when never. Commands run inside scripts count too.
    pub fn calls(&self, command: &str) -> u64 {
        let prefix = format!("cmdstat_{command}:calls=");
        self.raw()
            .info("commandstats")
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// A new [`Raw`] connection, authenticated like [`RedisNode::url`]. Panics on failure.
    pub fn raw(&self) -> Raw {
        let mut raw = Raw::connect(self.addr())
            .unwrap_or_else(|e| panic!("rig: connect to redis node {}: {e}", self.addr()));
        if let Some(reply) = self.try_auth(&mut raw) {
            assert!(
                reply.is_ok(),
                "rig: AUTH on {} failed: {reply:?}",
                self.addr()
            );
        }
        raw
    }

    /// `SIGSTOP` by PID: the process freezes; connections stay open and the kernel keeps
    /// accepting into the listen backlog, but nothing is answered. Waits (up to 1 s) until
    /// `/proc` shows the process stopped.
    pub fn pause(&mut self) {
        self.signal("STOP");
        self.paused = true;
        if let Some(pid) = self.pid() {
            if Path::new("/proc").is_dir() {
                wait_until(Duration::from_secs(1), || {
                    Self::proc_state(pid).is_none_or(|s| s == 'T' || s == 't')
                });
            }
        }
    }

    /// `SIGCONT` by PID: a paused process carries on and answers what queued up.
    pub fn resume(&mut self) {
        self.signal("CONT");
        self.paused = false;
        if let Some(pid) = self.pid() {
            if Path::new("/proc").is_dir() {
                wait_until(Duration::from_secs(1), || {
                    Self::proc_state(pid).is_none_or(|s| s != 'T' && s != 't')
                });
            }
        }
    }

    /// `SIGTERM` by PID (plus `SIGCONT` if paused) and waits for the exit; `SIGKILL` if it has
    /// not exited after 5 s. Redis shuts down cleanly (an AOF is fsynced; with `--save ""` no
    /// RDB is written, so without AOF the data is gone). No-op if not running.
    pub fn stop(&mut self) {
        if !self.is_running() {
            return;
        }
        self.signal("TERM");
        if self.paused {
            self.signal("CONT");
            self.paused = false;
        }
        let exited = wait_until(STOP_TIMEOUT, || self.try_wait().is_some());
        if !exited {
            self.kill_child();
        }
        self.child = None;
    }

    /// `SIGKILL` by PID (a crash: nothing is flushed beyond what `appendfsync` already wrote)
    /// and waits for the exit. Works on a paused node. No-op if not running.
    pub fn kill(&mut self) {
        self.kill_child();
    }

    /// Starts the server again on the same port, with the same options and directory (so an
    /// AOF is replayed: with [`RedisOptions::aof`] the data survives, without it the node comes
    /// back empty). A running node is [`RedisNode::stop`]ped first. Panics if the port was
    /// taken meanwhile or the server does not come up within [`START_TIMEOUT`].
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(StartError::PortTaken) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(StartError::PortTaken) => panic!(
                    "rig: cannot restart redis-server: port {} was taken by another process",
                    self.port
                ),
                Err(StartError::Other(msg)) => panic!("{msg}"),
            }
        }
    }

    /// The last `lines` lines of the node's `redis.log` and of its stdout/stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for name in ["redis.log", "stdout.log"] {
            let text = fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            out.push_str("--- ");
            out.push_str(name);
            out.push_str(" ---\n");
            for line in &all[from..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for RedisNode {
    /// `SIGCONT` if paused, `SIGKILL`, reap, and remove the temp dir.
    fn drop(&mut self) {
        self.kill_child();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// N independent [`RedisNode`]s (no replication between them), as Redlock expects.
/// Index it (`cluster[1].pause()`) or use [`Cluster::nodes`].
pub struct Cluster {
    nodes: Vec<RedisNode>,
}

impl Cluster {
    /// Starts `n` plain nodes in parallel and waits until all answer.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, &RedisOptions::default())
    }

    /// Starts `n` nodes with the same options, in parallel.
    pub fn start_with(n: usize, opts: &RedisOptions) -> Cluster {
        // Fail on the test's own thread when redis-server is missing.
        require_redis();
        let nodes = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| s.spawn(|| RedisNode::start_with(opts.clone())))
                .collect();
            // Join all before propagating a panic, so every started node is dropped.
            let results: Vec<_> = handles
                .into_iter()
                .map(std::thread::ScopedJoinHandle::join)
                .collect();
            let mut nodes = Vec::with_capacity(n);
            let mut failure = None;
            for r in results {
                match r {
                    Ok(node) => nodes.push(node),
                    Err(e) => failure = Some(e),
                }
            }
            if let Some(e) = failure {
                drop(nodes);
                std::panic::resume_unwind(e);
            }
            nodes
        });
        Cluster { nodes }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for a cluster of 0 nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nodes, in start order.
    pub fn nodes(&self) -> &[RedisNode] {
        &self.nodes
    }

    /// The nodes, mutably (to pause, kill, restart).
    pub fn nodes_mut(&mut self) -> &mut [RedisNode] {
        &mut self.nodes
    }

    /// Every node's [`RedisNode::url`], in order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisNode::url).collect()
    }

    /// A [`Raw`] connection to each node, in order.
    pub fn raws(&self) -> Vec<Raw> {
        self.nodes.iter().map(RedisNode::raw).collect()
    }

    /// How many running nodes hold `key` (nodes that are stopped or paused are skipped).
    pub fn count_key(&mut self, key: impl AsRef<[u8]>) -> usize {
        let mut count = 0;
        for node in &mut self.nodes {
            if !node.is_paused() && node.is_running() && node.raw().exists(key.as_ref()) {
                count += 1;
            }
        }
        count
    }

    /// Moves the nodes out (they still stop on drop).
    pub fn into_nodes(self) -> Vec<RedisNode> {
        self.nodes
    }
}

impl std::ops::Index<usize> for Cluster {
    type Output = RedisNode;
    fn index(&self, i: usize) -> &RedisNode {
        &self.nodes[i]
    }
}

impl std::ops::IndexMut<usize> for Cluster {
    fn index_mut(&mut self, i: usize) -> &mut RedisNode {
        &mut self.nodes[i]
    }
}
