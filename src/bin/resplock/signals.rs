//! Catching the signals that ask resplock to stop, and sending signals to the child.
//!
//! Contract:
//! - SIGINT, SIGTERM, SIGHUP and SIGQUIT are caught (signal-hook's handler only writes to a
//!   self-pipe) and polled by the waiting loop and the supervisor. HUP and QUIT are caught too:
//!   dying on them would leave CMD running while nobody renews the lock.
//! - Each arrival says whether the kernel sent it (a terminal's Ctrl-C, Ctrl-\ or hangup): the
//!   kernel signals the whole foreground process group, CMD included, so the supervisor does
//!   not pass those on a second time.
//! - Caught handlers are reset to the default by `exec`, so CMD starts with default
//!   dispositions (std also resets SIGPIPE and the signal mask for it).
//! - Signals go to one PID, the child's, which is never reaped before the last signal is sent
//!   (so the PID cannot have been reused).

use std::io;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::Cause;

use crate::{Failure, OS_ERROR};

/// The signals resplock catches and passes on to CMD.
const CAUGHT: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// One caught signal.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    pub signal: Signal,
    /// Sent by the kernel to the whole foreground process group (so CMD got it too).
    pub group_wide: bool,
}

/// The caught signals, as they arrive.
pub struct Signals {
    caught: SignalsInfo<WithOrigin>,
    queue: Vec<Arrival>,
}

impl Signals {
    /// Installs the handlers. From now on the caught signals no longer end the process.
    pub fn catch() -> Result<Self, Failure> {
        let caught = SignalsInfo::<WithOrigin>::new(CAUGHT.map(|s| s as i32))
            .map_err(|e| Failure::new(OS_ERROR, format!("cannot catch signals: {e}")))?;
        Ok(Self {
            caught,
            queue: Vec::new(),
        })
    }

    fn poll(&mut self) {
        for origin in self.caught.pending() {
            let Ok(signal) = Signal::try_from(origin.signal) else {
                continue;
            };
            // Linux says "kernel"; macOS fills nothing in but a zero sender.
            let group_wide =
                origin.cause == Cause::Kernel || origin.process.is_some_and(|p| p.pid == 0);
            self.queue.push(Arrival { signal, group_wide });
        }
    }

    /// The first signal caught and not yet taken, left pending.
    pub fn pending(&mut self) -> Option<Signal> {
        self.poll();
        self.queue.first().map(|a| a.signal)
    }

    /// Every signal caught and not yet taken, in order, clearing them.
    pub fn take(&mut self) -> Vec<Arrival> {
        self.poll();
        std::mem::take(&mut self.queue)
    }
}

/// Sends `signal` to the process `pid` (never to a group).
pub fn send(pid: u32, signal: Signal) -> io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    kill(Pid::from_raw(pid), signal).map_err(io::Error::from)
}

/// The shell's status for "ended by `signal`": 128 + its number.
pub fn exit_status(signal: Signal) -> u8 {
    128u8.saturating_add(u8::try_from(signal as i32).unwrap_or(0))
}
