//! One node's subscriber connection: who reads it, and what one turn of reading does.
//!
//! Contract:
//! - A [`Line`] is read by its node thread ([`listen`]) or, on a one-node manager, by the
//!   front waiter ([`read_for`]); never by both: the node thread steps aside while a waiter
//!   wants the line, after its current push or read slice, and the waiter hands it back when
//!   it wakes. A waiter never blocks on the line: until the node thread lets go it sleeps as
//!   the others do, looking again every [`HANDOVER_POLL`].
//! - One turn ([`serve`]) brings the subscriptions up to date with the channels someone waits
//!   on, then reads pushes for a slice; each push wakes the front waiter of its channel. Only
//!   the node thread dials, without holding the line, after [`RECONNECT_BACKOFF`] when the
//!   connection failed.
//! - Every push is decoded with [`PUSH_LIMITS`]: anything but a `message`, `subscribe` or
//!   `unsubscribe` array of three scalars drops the connection.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use crate::conn::{Conn, ReplyBounds};
use crate::error::NodeError;
use crate::listen::{wanted_channels, Shared, Waiter, Woke};
use crate::resolve::{Lookup, Resolver};
use crate::resp::{encode_command, Limits, Reply};
use crate::sync::lock;
use crate::url::NodeAddr;

/// How long a node thread reads before it looks for new subscriptions to send.
pub(crate) const SLICE: Duration = Duration::from_millis(20);

/// How often a one-node manager's node thread, while reading, looks whether a front waiter
/// wants the line: often, so that the waiter gets it soon (the thread then steps aside and
/// stops reading altogether). Subscriptions are still brought up to date once per [`SLICE`].
pub(crate) const HANDOVER_CHECK: Duration = Duration::from_millis(2);

/// After a subscriber connection failed, it is not redialled for this long.
const RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// A waiter that wants the line and finds the node thread still reading checks this often
/// whether it has let go.
const HANDOVER_POLL: Duration = Duration::from_millis(1);

/// Longest wait to write subscription changes (a few hundred bytes) to the node.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_millis(100);

/// What a subscriber connection accepts: `*3` of scalars, channel names up to 64 KiB.
pub(crate) const PUSH_LIMITS: Limits = Limits {
    max_bulk_len: 64 * 1024,
    max_array_len: 3,
    max_depth: 1,
    max_line_len: 1024,
};

/// One node's subscriber connection and what it is subscribed to: read by the node's thread,
/// or by the front waiter of a one-node manager.
pub(crate) struct Line {
    pub state: Mutex<LineState>,
    /// A waiter reads the connection (or waits for it): the node thread steps aside.
    pub reader: AtomicBool,
    /// How often the node thread, while reading, looks whether a waiter wants the line.
    pub check_every: Duration,
    pub dial: Dial,
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Line")
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
pub(crate) struct LineState {
    conn: Option<Conn>,
    subscribed: HashSet<Vec<u8>>,
    retry_at: Option<Instant>,
}

/// `waiter` sleeps reading `line` itself until something wakes it or `until`. `None` when it
/// cannot (another waiter reads, or there is no live connection): it then sleeps as the
/// others do, and the node thread reads.
pub(crate) fn read_for(
    shared: &Shared,
    line: &Line,
    waiter: &Waiter,
    until: Instant,
) -> Option<Woke> {
    if line
        .reader
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return None;
    }
    let woke = take_line(shared, line, waiter, until);
    {
        // Under the channels lock, so that the node thread cannot miss the change.
        let _channels = lock(&shared.channels);
        line.reader.store(false, Ordering::Release);
    }
    shared.changed.notify_all();
    woke
}

/// [`read_for`] once `line.reader` is ours.
fn take_line(shared: &Shared, line: &Line, waiter: &Waiter, until: Instant) -> Option<Woke> {
    // The node thread lets go after its current push or slice; until then it still reads for
    // us, and this waiter sleeps as the others do (never blocked on the line past `until`).
    let mut state = loop {
        match line.state.try_lock() {
            Ok(state) => break state,
            Err(TryLockError::Poisoned(poisoned)) => break poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                let mut flags = lock(&waiter.flags);
                if let Some(woke) = flags.take_woke() {
                    return Some(woke);
                }
                let now = Instant::now();
                if now >= until {
                    return Some(Woke::Timeout);
                }
                let nap = (until - now).min(HANDOVER_POLL);
                drop(waiter.sleep(flags, nap));
            }
        }
    };
    loop {
        if let Some(woke) = lock(&waiter.flags).take_woke() {
            return Some(woke);
        }
        let now = Instant::now();
        if now >= until {
            return Some(Woke::Timeout);
        }
        // Dialling is the node thread's job (it may take a whole connect timeout).
        if shared.shutdown.load(Ordering::Acquire) || state.conn.is_none() {
            return None;
        }
        let slice = until.min(now + SLICE);
        let woken = || lock(&waiter.flags).woken();
        if let Served::Idle(_) | Served::Unconnected =
            serve(shared, &mut state, slice, SLICE, woken)
        {
            return None;
        }
    }
}

/// What one push message was.
enum Push {
    Message,
    Subscribed,
    Other,
    /// Not a push this connection should ever see.
    Bad,
}

/// What a listener thread needs to open its connection.
pub(crate) struct Dial {
    pub addr: NodeAddr,
    pub lookup: Arc<Lookup>,
    pub resolver: Resolver,
    pub connect_timeout: Duration,
    pub bounds: ReplyBounds,
}

impl Dial {
    fn connect(&self, now: Instant) -> Result<Conn, NodeError> {
        let deadline = now + self.connect_timeout;
        let resolved = match self.addr.unix_path() {
            Some(_) => Vec::new(),
            None => self.lookup.addresses(
                &self.resolver,
                self.addr.host(),
                self.addr.port(),
                deadline,
            )?,
        };
        Conn::connect(&self.addr, &resolved, deadline, self.bounds)
    }
}

/// One node's listener thread.
pub(crate) fn listen(shared: &Shared, line: &Line) {
    while !shared.shutdown.load(Ordering::Acquire) {
        if line.reader.load(Ordering::Acquire) {
            step_aside(shared, line);
            continue;
        }
        let outcome = {
            let mut state = lock(&line.state);
            let slice = Instant::now() + SLICE;
            serve(shared, &mut state, slice, line.check_every, || {
                line.reader.load(Ordering::Acquire)
            })
        };
        match outcome {
            Served::Idle(until) => idle(shared, until),
            Served::Unconnected => {
                // Outside the line's lock: a waiter never waits for a connect.
                let dialled = line.dial.connect(Instant::now());
                let mut state = lock(&line.state);
                match dialled {
                    Ok(fresh) => state.conn = Some(fresh),
                    Err(_) => state.retry_at = Some(Instant::now() + RECONNECT_BACKOFF),
                }
                state.subscribed.clear();
            }
            Served::Read => {}
        }
    }
}

/// What one turn of [`serve`] did.
enum Served {
    /// Nothing to read until this instant (nothing wanted, or backing off after a failure).
    Idle(Instant),
    /// There is no connection: the node thread dials.
    Unconnected,
    /// Sent the subscription changes and read pushes for a slice (or until `stop`).
    Read,
}

/// One turn of a line's work: bring the subscriptions up to date, then read pushes until
/// `slice` ends, the wanted channels change, or `stop` says so (after a push, and at least
/// every `check_every`).
fn serve(
    shared: &Shared,
    state: &mut LineState,
    slice: Instant,
    check_every: Duration,
    stop: impl Fn() -> bool,
) -> Served {
    let now = Instant::now();
    let wanted = wanted_channels(shared, now);
    if wanted.is_empty() && state.subscribed.is_empty() {
        return Served::Idle(now + Duration::from_secs(1));
    }
    if let Some(at) = state.retry_at.filter(|&at| now < at) {
        return Served::Idle(at);
    }
    let LineState {
        conn,
        subscribed,
        retry_at,
    } = state;
    let Some(live) = conn.as_mut() else {
        return Served::Unconnected;
    };
    let deadline = now + SUBSCRIBE_TIMEOUT;
    let result = update_subscriptions(live, &wanted, subscribed, deadline).and_then(|()| {
        if subscribed.is_empty() {
            Ok(())
        } else {
            read_pushes(shared, live, slice, check_every, stop)
        }
    });
    if result.is_err() {
        *conn = None;
        *retry_at = Some(Instant::now() + RECONNECT_BACKOFF);
    }
    Served::Read
}

/// Waits while a waiter reads the line (or until the manager shuts down).
fn step_aside(shared: &Shared, line: &Line) {
    let channels = lock(&shared.channels);
    let _ = shared
        .changed
        .wait_timeout_while(channels, Duration::from_secs(1), |_| {
            line.reader.load(Ordering::Acquire) && !shared.shutdown.load(Ordering::Acquire)
        });
}

/// Sleeps until `until` or until the set of channels changes.
fn idle(shared: &Shared, until: Instant) {
    let channels = lock(&shared.channels);
    let generation = shared.generation.load(Ordering::Acquire);
    let wait = until.saturating_duration_since(Instant::now());
    let _ = shared.changed.wait_timeout_while(channels, wait, |_| {
        shared.generation.load(Ordering::Acquire) == generation
            && !shared.shutdown.load(Ordering::Acquire)
    });
}

/// Sends `SUBSCRIBE` for wanted channels not yet subscribed and `UNSUBSCRIBE` for the rest.
fn update_subscriptions(
    conn: &mut Conn,
    wanted: &HashSet<Vec<u8>>,
    subscribed: &mut HashSet<Vec<u8>>,
    deadline: Instant,
) -> Result<(), NodeError> {
    let add: Vec<&[u8]> = wanted
        .iter()
        .filter(|c| !subscribed.contains(*c))
        .map(Vec::as_slice)
        .collect();
    let drop: Vec<Vec<u8>> = subscribed
        .iter()
        .filter(|c| !wanted.contains(*c))
        .cloned()
        .collect();
    if add.is_empty() && drop.is_empty() {
        return Ok(());
    }
    let mut encoded = Vec::new();
    if !add.is_empty() {
        let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
        args.extend(add.iter().copied());
        encode_command(&mut encoded, &args);
    }
    if !drop.is_empty() {
        let mut args: Vec<&[u8]> = vec![b"UNSUBSCRIBE"];
        args.extend(drop.iter().map(Vec::as_slice));
        encode_command(&mut encoded, &args);
    }
    conn.send(&encoded, deadline)?;
    for channel in add {
        subscribed.insert(channel.to_vec());
    }
    for channel in &drop {
        subscribed.remove(channel);
    }
    Ok(())
}

/// Reads pushes until `until` (or until new subscriptions are wanted, or `stop` says so
/// after a push or a `check_every` without one), waking waiters.
fn read_pushes(
    shared: &Shared,
    conn: &mut Conn,
    until: Instant,
    check_every: Duration,
    stop: impl Fn() -> bool,
) -> Result<(), NodeError> {
    let generation = shared.generation.load(Ordering::Acquire);
    while shared.generation.load(Ordering::Acquire) == generation && !stop() {
        let check = until.min(Instant::now() + check_every);
        match conn.recv(check, |reply| handle(shared, reply)) {
            Ok(Push::Bad) => return Err(NodeError::UnexpectedReply),
            Ok(Push::Message | Push::Subscribed | Push::Other) => {}
            // A partial push stays buffered for the next read.
            Err(NodeError::Timeout(_)) if check < until => {}
            Err(NodeError::Timeout(_)) => return Ok(()),
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Acts on one push: wakes the front waiter of a released or newly subscribed channel.
fn handle(shared: &Shared, reply: Reply<'_>) -> Push {
    let Reply::Array(Some(array)) = reply else {
        return Push::Bad;
    };
    let mut items = array.iter();
    let (Some(Reply::Bulk(Some(kind))), Some(Reply::Bulk(Some(channel))), Some(third), None) =
        (items.next(), items.next(), items.next(), items.next())
    else {
        return Push::Bad;
    };
    let push = match (kind, third) {
        (b"message", Reply::Bulk(Some(_))) => Push::Message,
        (b"subscribe", Reply::Integer(_)) => Push::Subscribed,
        (b"unsubscribe", Reply::Integer(_)) => Push::Other,
        _ => return Push::Bad,
    };
    let mut channels = lock(&shared.channels);
    let Some(entry) = channels.get_mut(channel) else {
        return push;
    };
    let own = match push {
        Push::Message => std::mem::take(&mut entry.held_here),
        _ => false,
    };
    if let Some(front) = entry.queue.front() {
        match push {
            Push::Message => front.wake(|flags| flags.notified = Some(own)),
            Push::Subscribed => {
                let now = Instant::now();
                front.wake(|flags| flags.subscribed = Some(now));
            }
            Push::Other | Push::Bad => {}
        }
    }
    push
}
