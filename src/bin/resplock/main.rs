//! `resplock`: run a command under a Redlock lock, or take, extend, release and inspect one
//! from a shell script. Built with `--features cli`.
//!
//! Contract:
//! - Every outcome has its own exit status (the constants below, documented in `--help` and
//!   the README); resplock's own messages go to stderr as one line starting `resplock: `.
//!   Only `lock` (the value) and `inspect` (the state) write to stdout.
//! - Arguments and configuration are checked before any I/O; nothing is run after an error.
//! - The library API this tool depends on beyond today's guard is confined to [`hold`].
#![forbid(unsafe_code)]

mod args;
mod hold;
mod run;
mod signals;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use resplock::{Error, NodeError, Redlock};

use args::Command;

/// Command line malformed (sysexits `EX_USAGE`).
pub const USAGE: u8 = 64;
/// Too few nodes answered to decide (sysexits `EX_UNAVAILABLE`).
pub const UNAVAILABLE: u8 = 69;
/// The operating system failed us (sysexits `EX_OSERR`).
pub const OS_ERROR: u8 = 71;
/// Could not write to stdout (sysexits `EX_IOERR`).
pub const IO_ERROR: u8 = 74;
/// The lock is held by someone else (sysexits `EX_TEMPFAIL`).
pub const NOT_ACQUIRED: u8 = 75;
/// Bad configuration (sysexits `EX_CONFIG`).
pub const CONFIG: u8 = 78;
/// The lock was lost (one past sysexits' range, so no sysexits meaning is implied).
pub const LOST: u8 = 79;
/// The command could not be started (as a shell, `env` and `timeout` report it).
pub const CANNOT_RUN: u8 = 126;
/// The command was not found (as a shell, `env` and `timeout` report it).
pub const NOT_FOUND: u8 = 127;

/// An outcome other than success: the exit status and the one-line message for stderr.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub status: u8,
    pub message: String,
}

impl Failure {
    pub fn new(status: u8, message: impl Into<String>) -> Self {
        let message = message.into().replace('\n', " ");
        Self { status, message }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(CONFIG, message)
    }

    /// The same failure, its message prefixed with `context: `.
    pub fn context(self, context: &str) -> Self {
        Self::new(self.status, format!("{context}: {}", self.message))
    }

    /// The status and message for a library error, with `nodes` configured.
    pub fn from_lib(err: &Error, nodes: usize) -> Self {
        let failures: String = err
            .node_failures()
            .iter()
            .map(|f| format!("; {f}"))
            .collect();
        match err {
            Error::InvalidUrl { .. } | Error::InvalidConfig(_) => Self::config(format!(
                "{err}; check --nodes or RESPLOCK_NODES: \
                 redis://[[user]:password@]host[:port][/db], comma-separated"
            )),
            Error::InvalidTtl { reason, .. } => Self::config(format!(
                "--ttl: {reason}; use a few seconds, e.g. --ttl 30s"
            )),
            Error::NotAcquired { .. } if refused_by_config(err, nodes) => Self::config(format!(
                "nodes refused us{failures}; fix the node URLs (password, db) or the servers"
            )),
            Error::NotAcquired { held_elsewhere, .. } if *held_elsewhere > 0 => Self::new(
                NOT_ACQUIRED,
                format!(
                    "held by another owner ({held_elsewhere} of {nodes} nodes said so){failures}"
                ),
            ),
            Error::NotAcquired { expired: true, .. } => Self::new(
                UNAVAILABLE,
                "a quorum granted the lock too slowly to leave any of --ttl: raise --ttl",
            ),
            Error::NotAcquired {
                quorum, granted, ..
            } => Self::new(
                UNAVAILABLE,
                format!("too few nodes granted the lock ({granted}, {quorum} needed){failures}"),
            ),
            Error::NotExtended {
                quorum, not_held, ..
            } if *not_held > nodes.saturating_sub(*quorum) => Self::new(
                LOST,
                format!("this value no longer holds the lock on {not_held} of {nodes} nodes"),
            ),
            Error::Expired => Self::new(LOST, err.to_string()),
            Error::Entropy => Self::new(OS_ERROR, err.to_string()),
            _ => Self::new(UNAVAILABLE, err.to_string()),
        }
    }
}

/// True when nodes that refused us for configuration reasons (credentials, ACL, replica,
/// cluster mode) alone keep the quorum out of reach: waiting cannot help.
fn refused_by_config(err: &Error, nodes: usize) -> bool {
    let Error::NotAcquired { quorum, .. } = err else {
        return false;
    };
    let refused = err
        .node_failures()
        .iter()
        .filter(|f| matches!(&f.error, NodeError::Server(e) if e.kind.is_configuration()))
        .count();
    refused > nodes.saturating_sub(*quorum)
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    match dispatch(argv) {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            eprintln!("resplock: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}

fn dispatch(argv: Vec<OsString>) -> Result<u8, Failure> {
    let command = args::parse(argv)?;
    let manager = |common: args::Common| {
        let nodes = node_list(common.nodes, std::env::var_os("RESPLOCK_NODES"))?;
        hold::manager(&nodes, common.fencing)
    };
    match command {
        Command::Help(text) => {
            print(text)?;
            Ok(0)
        }
        Command::Version => {
            print(&format!("resplock {}\n", env!("CARGO_PKG_VERSION")))?;
            Ok(0)
        }
        Command::Run {
            common,
            resource,
            ttl,
            wait,
            max_hold,
            kill_grace,
            program,
            args,
        } => {
            let dlm = manager(common)?;
            let mut signals = signals::Signals::catch()?;
            let job = run::Job {
                resource,
                ttl,
                wait,
                max_hold,
                kill_grace,
                program,
                args,
            };
            run::run(&dlm, &job, &mut signals)
        }
        Command::Lock {
            common,
            resource,
            ttl,
            wait,
        } => {
            let dlm = manager(common)?;
            let mut signals = signals::Signals::catch()?;
            lock(&dlm, args::bytes(&resource), ttl, wait, &mut signals)
        }
        Command::Extend {
            common,
            resource,
            value,
            ttl,
        } => {
            let dlm = manager(common)?;
            let (resource, value) = (args::bytes(&resource), args::bytes(&value));
            match dlm.extend_by(resource, value, ttl) {
                Ok(_) => Ok(0),
                Err(e) => Err(Failure::from_lib(&e, dlm.nodes().len()).context(&lossy(resource))),
            }
        }
        Command::Release {
            common,
            resource,
            value,
        } => {
            let dlm = manager(common)?;
            let (resource, value) = (args::bytes(&resource), args::bytes(&value));
            match dlm.release_by(resource, value) {
                Ok(true) => Ok(0),
                Ok(false) => Err(Failure::new(
                    LOST,
                    format!(
                        "{}: this value no longer held the lock (it had expired or was taken)",
                        lossy(resource)
                    ),
                )),
                Err(e) => Err(Failure::from_lib(&e, dlm.nodes().len()).context(&lossy(resource))),
            }
        }
        Command::Inspect { common, resource } => {
            let dlm = manager(common)?;
            let resource = args::bytes(&resource);
            let seen = hold::inspect(&dlm, resource)?;
            let line = match (seen.locked, seen.holder, seen.remaining) {
                (false, _, _) => "free\n".to_owned(),
                (true, holder, remaining) => format!(
                    "held {} {}\n",
                    holder.map_or("-".into(), |h| String::from_utf8_lossy(&h).into_owned()),
                    remaining.map_or("-".into(), args::format_duration),
                ),
            };
            print(&line)?;
            Ok(0)
        }
    }
}

/// `lock`: acquire, keep the lock past our exit, print VALUE (and TOKEN).
fn lock(
    dlm: &Redlock,
    resource: &[u8],
    ttl: Duration,
    wait: args::Wait,
    signals: &mut signals::Signals,
) -> Result<u8, Failure> {
    let mut guard = hold::acquire(dlm, resource, ttl, wait, signals)?;
    if let Some(signal) = signals.pending() {
        // Whoever interrupted us will not read the value: do not leave the lock behind.
        let _ = guard.release();
        return Err(hold::interrupted(&lossy(resource), signal));
    }
    let mut line = String::from_utf8_lossy(guard.value()).into_owned();
    if let Some(token) = hold::token(&guard) {
        line.push_str(&format!(" {token}"));
    }
    line.push('\n');
    if let Err(failure) = print(&line) {
        let _ = guard.release();
        return Err(Failure::new(
            failure.status,
            format!("{}; the lock was released", failure.message),
        ));
    }
    guard.disarm();
    Ok(0)
}

/// A resource or value for a message.
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `text` to stdout and flushes it.
fn print(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::new(IO_ERROR, format!("cannot write to stdout: {e}")))
}

/// The node URLs from `--nodes`, else from `RESPLOCK_NODES`. An empty entry (a doubled or
/// trailing comma, an unset variable in `$A,$B,$C`) is an error rather than skipped: fewer
/// nodes would silently mean a smaller quorum.
fn node_list(flag: Option<String>, env: Option<OsString>) -> Result<Vec<String>, Failure> {
    let (source, text) = match (flag, env) {
        (Some(flag), _) => ("--nodes", flag),
        (None, Some(env)) => (
            "RESPLOCK_NODES",
            env.into_string()
                .map_err(|_| Failure::config("RESPLOCK_NODES is not valid UTF-8"))?,
        ),
        (None, None) => {
            return Err(Failure::config(
                "no nodes: pass --nodes redis://host:port,... or set RESPLOCK_NODES",
            ))
        }
    };
    if text.trim().is_empty() {
        return Err(Failure::config(format!(
            "no nodes: {source} is empty; list the node URLs, e.g. redis://host:6379,..."
        )));
    }
    let urls: Vec<String> = text.split(',').map(|u| u.trim().to_owned()).collect();
    if urls.iter().any(String::is_empty) {
        return Err(Failure::config(format!(
            "{source} has an empty entry (a doubled or trailing comma?); list each node URL once"
        )));
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists() {
        let ok = |flag: Option<&str>, env: Option<&str>| {
            node_list(flag.map(Into::into), env.map(Into::into))
        };
        assert_eq!(
            ok(Some("redis://a, redis://b"), Some("redis://c")),
            Ok(vec!["redis://a".to_owned(), "redis://b".to_owned()])
        );
        assert_eq!(
            ok(None, Some("redis://c")),
            Ok(vec!["redis://c".to_owned()])
        );
        for (flag, env) in [
            (None, None),
            (None, Some("")),
            (Some(" "), None),
            (Some("redis://a,,redis://b"), None),
            (None, Some("redis://a,")),
        ] {
            assert_eq!(ok(flag, env).map_err(|f| f.status), Err(CONFIG));
        }
    }
}
