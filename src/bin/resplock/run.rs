//! `resplock run`: CMD as a child process that lives only while the lock is held.
//!
//! Contract:
//! - CMD starts only once the lock is held, with RESPLOCK_RESOURCE, RESPLOCK_VALUE and (with a
//!   fencing token) RESPLOCK_TOKEN in its environment; an inherited RESPLOCK_TOKEN is removed
//!   when there is none. It shares resplock's stdio and process group.
//! - The supervisor polls every [`POLL`]: CMD's exit, caught signals (passed on to CMD's PID,
//!   unless the kernel sent them to the whole process group), the lease and `--max-hold`. A
//!   lost lease, or `--max-hold` reached, gets CMD a SIGTERM at once and a SIGKILL after
//!   `--kill-grace`, the reason on stderr, and exit status [`LOST`]. CMD is reaped only after
//!   the last signal.
//! - At `--max-hold` the lock is still held: renewal goes on through `--kill-grace`, so CMD
//!   stops under the lock, and then stops for good (the library's `max_hold`), so the lock
//!   ends within one ttl even if CMD cannot be killed.
//! - The lock is released after CMD exits, whatever happened; then resplock exits with CMD's
//!   status (128+N for signal N) unless the lock was lost. A release that finds the lock gone
//!   also means it was lost while CMD ran ([`LOST`]).

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::args::{bytes, format_duration, Wait};
use crate::hold::{self, Lease, Lost};
use crate::signals::{self, Signals};
use crate::{lossy, Failure, CANNOT_RUN, LOST, NOT_FOUND, OS_ERROR};

/// How often the supervisor looks at CMD, the signals and the lease.
const POLL: Duration = Duration::from_millis(20);

/// What `run` was asked to do.
pub struct Job {
    pub resource: OsString,
    pub ttl: Duration,
    pub wait: Wait,
    pub max_hold: Option<Duration>,
    pub kill_grace: Duration,
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// Acquires, runs CMD under the lock, releases; returns the exit status.
pub fn run(dlm: &resplock::Redlock, job: &Job, signals: &mut Signals) -> Result<u8, Failure> {
    let resource = bytes(&job.resource);
    let name = lossy(resource);
    let guard = hold::acquire(dlm, resource, job.ttl, job.wait, signals)?;
    if let Some(signal) = signals.pending() {
        let _ = guard.release();
        return Err(hold::interrupted(&name, signal));
    }
    // CMD gets SIGTERM at --max-hold and its --kill-grace under the lock; renewal stops after
    // both, so the lock ends within one ttl of that even if CMD cannot be killed.
    let cap = job.max_hold.map(|d| d.saturating_add(job.kill_grace));
    let lease = hold::keep_alive(guard, job.ttl, cap);
    let deadline = job.max_hold.and_then(|d| Instant::now().checked_add(d));
    let mut command = Command::new(&job.program);
    command
        .args(&job.args)
        .env("RESPLOCK_RESOURCE", &job.resource)
        .env("RESPLOCK_VALUE", lossy(lease.value()));
    match hold::lease_token(&lease) {
        Some(token) => command.env("RESPLOCK_TOKEN", token.to_string()),
        None => command.env_remove("RESPLOCK_TOKEN"),
    };
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = lease.release();
            let program = job.program.to_string_lossy();
            let status = match e.kind() {
                std::io::ErrorKind::NotFound => NOT_FOUND,
                _ => CANNOT_RUN,
            };
            return Err(Failure::new(status, format!("cannot run {program}: {e}")));
        }
    };
    let (status, mut lost) = supervise(child, &lease, deadline, signals, job, &name)?;
    if lost.is_none() {
        // Lost in the last poll interval, as CMD exited: it may have run unprotected.
        lost = lease.lost();
        if let Some(why) = lost {
            let why = hold::describe(why);
            eprintln!("resplock: {name}: lost the lock as CMD exited: {why}");
        }
    }
    let released = lease.release();
    if lost.is_some() {
        return Ok(LOST);
    }
    match released {
        Ok(true) => Ok(status_of(status)),
        Ok(false) => Err(Failure::new(
            LOST,
            format!(
                "{name}: the lock was no longer held when CMD exited (it expired or was taken); \
                 CMD exited with {}",
                status_of(status)
            ),
        )),
        Err(e) => {
            eprintln!("resplock: {name}: release failed, the lock expires within --ttl: {e}");
            Ok(status_of(status))
        }
    }
}

/// Waits for CMD, passing signals on and terminating it when the lock is lost.
fn supervise(
    mut child: Child,
    lease: &Lease,
    deadline: Option<Instant>,
    signals: &mut Signals,
    job: &Job,
    name: &str,
) -> Result<(ExitStatus, Option<Lost>), Failure> {
    let pid = child.id();
    let mut lost: Option<(Lost, Instant)> = None;
    let mut killed = false;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok((status, lost.map(|(why, _)| why))),
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failure::new(OS_ERROR, format!("cannot wait for CMD: {e}")));
            }
        }
        for arrival in signals.take() {
            // A terminal's Ctrl-C already reached CMD: a second one can mean "force quit".
            if !arrival.group_wide {
                let _ = signals::send(pid, arrival.signal);
            }
        }
        match lost {
            None => {
                let why = match deadline {
                    Some(end) if Instant::now() >= end => Some(Lost::MaxHold),
                    _ => lease.lost(),
                };
                if let Some(why) = why {
                    let what = match (why, job.max_hold) {
                        (Lost::MaxHold, Some(cap)) => format!(
                            "--max-hold {} reached (the lock is kept until CMD exits or gets \
                             SIGKILL)",
                            format_duration(cap)
                        ),
                        _ => format!("lost the lock: {}", hold::describe(why)),
                    };
                    eprintln!(
                        "resplock: {name}: {what}; sending SIGTERM to CMD (pid {pid}), SIGKILL \
                         in {}",
                        format_duration(job.kill_grace),
                    );
                    let _ = signals::send(pid, Signal::SIGTERM);
                    lost = Some((why, Instant::now()));
                }
            }
            Some((_, since)) if !killed && since.elapsed() >= job.kill_grace => {
                eprintln!("resplock: {name}: CMD (pid {pid}) still running, sending SIGKILL");
                let _ = signals::send(pid, Signal::SIGKILL);
                killed = true;
            }
            Some(_) => {}
        }
        std::thread::sleep(POLL);
    }
}

/// CMD's status as resplock's: its exit code, or 128+N when signal N ended it.
fn status_of(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(u8::MAX),
        (None, Some(signal)) => 128u8.saturating_add(u8::try_from(signal).unwrap_or(u8::MAX)),
        (None, None) => OS_ERROR,
    }
}
