//! Child processes: this bench binary, re-executed with [`CHILD_ENV`] naming what it runs.
//!
//! A child gets its parameters from the environment, its orders (if any) as lines on stdin,
//! and answers with lines on stdout; its stderr is the bench's, so a child's panic shows in the
//! bench output (and the parent then panics on the closed pipe). A child is killed (by its
//! PID, through `Child::kill`) and reaped when its handle is dropped before it exited.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// Set in a child's environment to what it runs: [`WAITER`], [`FLOOR`] or [`HOT`].
pub const CHILD_ENV: &str = "RESPLOCK_WAITING_CHILD";
/// The node URLs, comma-separated.
pub const URLS_ENV: &str = "RESPLOCK_WAITING_URLS";

/// A waiter taking orders from stdin ([`crate::handoff::waiter_child`]).
pub const WAITER: &str = "waiter";
/// The floor waiter on plain sockets ([`crate::floor::floor_child`]).
pub const FLOOR: &str = "floor";
/// Hot-lock workers ([`crate::hot::workers_child`]).
pub const HOT: &str = "hot";

/// Runs the child `role` (called from `main` when [`CHILD_ENV`] is set).
pub fn run(role: &str) {
    let urls: Vec<String> = var(URLS_ENV).split(',').map(str::to_owned).collect();
    match role {
        WAITER => crate::handoff::waiter_child(&urls),
        FLOOR => crate::floor::floor_child(&urls),
        HOT => crate::hot::workers_child(&urls),
        other => panic!("waiting bench: unknown child role {other:?}"),
    }
}

/// The environment variable `name` of a child; panics when it is missing.
pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("waiting bench child: {name} is not set"))
}

/// A running child.
pub struct ChildProc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    role: &'static str,
}

impl ChildProc {
    /// Starts this binary as the child `role`, on `urls`, with `env` added.
    pub fn spawn(role: &'static str, urls: &[String], env: &[(&str, String)]) -> Self {
        let exe = std::env::current_exe()
            .unwrap_or_else(|e| panic!("waiting bench: cannot locate the bench binary: {e}"));
        let mut command = Command::new(exe);
        command
            .env(CHILD_ENV, role)
            .env(URLS_ENV, urls.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("waiting bench: cannot start a {role} child: {e}"));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Self {
            child,
            stdin,
            stdout,
            role,
        }
    }

    /// Writes one line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("waiting bench: write to the {} child: {e}", self.role));
    }

    /// Reads one line from the child's stdout; panics when it closed it (it panicked).
    pub fn recv(&mut self) -> String {
        self.try_recv().unwrap_or_else(|| {
            panic!(
                "waiting bench: the {} child closed its output (see its panic above)",
                self.role
            )
        })
    }

    fn try_recv(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line.trim_end().to_owned()),
            Err(e) => panic!("waiting bench: read from the {} child: {e}", self.role),
        }
    }

    /// Closes stdin, reads every remaining line, and waits for a successful exit.
    pub fn finish(mut self) -> Vec<String> {
        self.stdin = None;
        let mut lines = Vec::new();
        while let Some(line) = self.try_recv() {
            lines.push(line);
        }
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("waiting bench: wait for the {} child: {e}", self.role));
        assert!(
            status.success(),
            "waiting bench: the {} child failed: {status}",
            self.role
        );
        lines
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Splits `line` into its first word and the numbers after it; panics on anything else.
pub fn parse_line(line: &str) -> (&str, Vec<i64>) {
    let mut words = line.split_whitespace();
    let head = words.next().unwrap_or_default();
    let numbers = words
        .map(|w| {
            w.parse()
                .unwrap_or_else(|_| panic!("waiting bench: bad line from a child: {line:?}"))
        })
        .collect();
    (head, numbers)
}
