//! Hearing releases: one subscriber connection per node, shared by every waiter of a manager,
//! and per resource a queue of this process's waiters, woken one at a time.
//!
//! Contract:
//! - Per node, one connection in RESP2 subscriber mode ([`crate::line`]), read by a node
//!   thread. It is subscribed to `resplock:released:<resource>` while someone in this process
//!   waits on the resource (and for [`LINGER`] after the last waiter left, so a hot lock does
//!   not resubscribe on every wait), then unsubscribed.
//! - A `message` on a channel wakes the *front* waiter of that resource (the one waiting
//!   longest in this process); the others stay asleep. A `subscribe` confirmation wakes the
//!   front waiter too, so that it tries once more after subscribing: a release between its
//!   failed attempt and the subscription would otherwise go unheard. When the front waiter
//!   leaves, the next one is promoted and woken.
//! - On a one-node manager the front waiter reads the subscriber connection itself while it
//!   sleeps (one waiter at a time; the node thread steps aside and resumes when it wakes): a
//!   handoff then wakes one thread, not two. With several nodes a waiter cannot sleep on all
//!   their connections at once, so node threads do all the reading.
//! - Every push is decoded with strict limits; anything unexpected drops the connection,
//!   which is redialled after a backoff. A flood of messages never makes a waiter try more
//!   often: a waiter decides itself how soon it tries again ([`crate::schedule`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::conn::ReplyBounds;
use crate::line::{listen, read_for, Dial, Line, HANDOVER_CHECK, PUSH_LIMITS, SLICE};
use crate::nodes::Nodes;
use crate::script::RELEASED_CHANNEL_PREFIX;
use crate::sync::lock;

/// A subscription outlives its last waiter by this much.
const LINGER: Duration = Duration::from_secs(2);

/// A channel whose last waiter left this long ago is forgotten (and unsubscribed).
const FORGET: Duration = Duration::from_secs(10);

/// The channel a release of `resource` publishes on.
pub(crate) fn channel_of(resource: &[u8]) -> Vec<u8> {
    let mut channel = Vec::with_capacity(RELEASED_CHANNEL_PREFIX.len() + resource.len());
    channel.extend_from_slice(RELEASED_CHANNEL_PREFIX.as_bytes());
    channel.extend_from_slice(resource);
    channel
}

/// Why a waiter woke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Woke {
    /// A release was published; `own` when it most likely came from this process's own
    /// holder (a waiter of this process left with the lock, and no release was heard since).
    Notified { own: bool },
    /// Its channel's subscription was confirmed on a node, at this instant (the latest, when
    /// several nodes confirmed before the waiter woke).
    Subscribed(Instant),
    /// It became the front waiter; `held_until` when the one before it left with the lock
    /// (the end of that lock's validity), `None` when it gave up.
    Promoted { held_until: Option<Instant> },
    /// Its deadline.
    Timeout,
}

#[derive(Debug, Default)]
pub(crate) struct Flags {
    pub front: bool,
    pub notified: Option<bool>,
    pub subscribed: Option<Instant>,
    pub promoted: Option<Option<Instant>>,
}

/// One waiting call.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    pub flags: Mutex<Flags>,
    woken: Condvar,
}

impl Waiter {
    /// Sleeps on this waiter's condition variable for at most `nap`.
    pub fn sleep<'a>(&self, flags: MutexGuard<'a, Flags>, nap: Duration) -> MutexGuard<'a, Flags> {
        self.woken
            .wait_timeout(flags, nap)
            .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard)
    }

    pub fn wake(&self, set: impl FnOnce(&mut Flags)) {
        set(&mut lock(&self.flags));
        self.woken.notify_all();
    }
}

#[derive(Debug, Default)]
pub(crate) struct Channel {
    pub queue: VecDeque<Arc<Waiter>>,
    /// When the last waiter left.
    idle_since: Option<Instant>,
    /// A waiter of this process left with the lock and no release has been heard since.
    pub held_here: bool,
}

impl Channel {
    fn wanted(&self, now: Instant) -> bool {
        match self.idle_since {
            None => true,
            Some(since) => now.saturating_duration_since(since) < LINGER,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub channels: Mutex<HashMap<Vec<u8>, Channel>>,
    /// Bumped when a channel is added: an idle node thread wakes to send the `SUBSCRIBE`, a
    /// reading one sends it after its current push or read slice.
    pub generation: AtomicU64,
    pub changed: Condvar,
    pub shutdown: AtomicBool,
}

/// The subscriber side of one manager.
#[derive(Debug, Default)]
pub(crate) struct Listener {
    shared: Arc<Shared>,
    /// The process whose node threads are running, if any, and their lines.
    running: Mutex<Option<(u32, Vec<Arc<Line>>)>>,
}

/// A waiter's place in its resource's queue; leaving (drop) promotes the next one.
pub(crate) struct Spot {
    shared: Arc<Shared>,
    channel: Vec<u8>,
    waiter: Arc<Waiter>,
    /// The only node's line, on a one-node manager: the front waiter reads it itself.
    line: Option<Arc<Line>>,
    left: bool,
}

impl Listener {
    /// True when this process already has waiters on `channel`: a newcomer queues behind them.
    pub fn has_waiters(&self, channel: &[u8]) -> bool {
        lock(&self.shared.channels)
            .get(channel)
            .is_some_and(|c| !c.queue.is_empty())
    }

    /// Joins the back of `channel`'s queue (subscribing on every node if it is new).
    pub fn join(&self, nodes: &Nodes, channel: Vec<u8>) -> Spot {
        let lines = self.ensure_running(nodes);
        let line = match lines.as_slice() {
            [only] => Some(Arc::clone(only)),
            _ => None,
        };
        let waiter = Arc::new(Waiter::default());
        {
            let mut channels = lock(&self.shared.channels);
            let entry = channels.entry(channel.clone()).or_default();
            lock(&waiter.flags).front = entry.queue.is_empty();
            entry.queue.push_back(Arc::clone(&waiter));
            entry.idle_since = None;
        }
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        self.shared.changed.notify_all();
        Spot {
            shared: Arc::clone(&self.shared),
            channel,
            waiter,
            line,
            left: false,
        }
    }

    /// Ends every node thread (the manager is being dropped).
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.changed.notify_all();
    }

    /// Starts the node threads in this process if they are not running; returns their lines.
    /// After a fork the parent's lines are left behind unread (their sockets are the
    /// parent's) and new ones are made.
    fn ensure_running(&self, nodes: &Nodes) -> Vec<Arc<Line>> {
        let pid = std::process::id();
        let mut running = lock(&self.running);
        if let Some((_, lines)) = running.as_ref().filter(|(p, _)| *p == pid) {
            return lines.clone();
        }
        let bounds = ReplyBounds::new(PUSH_LIMITS);
        let mut lines = Vec::with_capacity(nodes.len());
        for (index, node) in nodes.iter().enumerate() {
            let shared = Arc::clone(&self.shared);
            let line = Arc::new(Line {
                state: Mutex::default(),
                reader: AtomicBool::new(false),
                check_every: if nodes.len() == 1 {
                    HANDOVER_CHECK
                } else {
                    SLICE
                },
                dial: Dial {
                    addr: node.addr.clone(),
                    lookup: Arc::clone(&node.lookup),
                    resolver: nodes.resolver().clone(),
                    connect_timeout: nodes.connect_timeout(),
                    bounds,
                },
            });
            let own = Arc::clone(&line);
            let spawned = std::thread::Builder::new()
                .name(format!("resplock-listen-{index}"))
                .spawn(move || listen(&shared, &own));
            debug_assert!(spawned.is_ok(), "could not start a listener thread");
            lines.push(line);
        }
        // Dropping an inherited line closes this process's copy of its socket (no shutdown:
        // the parent's connection stays as it was).
        *running = Some((pid, lines.clone()));
        lines
    }
}

impl Spot {
    /// True when this is the longest-waiting caller on its resource in this process.
    pub fn is_front(&self) -> bool {
        lock(&self.waiter.flags).front
    }

    /// Sleeps until woken or `until`; says why. The front waiter of a one-node manager sleeps
    /// reading the subscriber connection when it can (see the module docs).
    pub fn wait(&self, until: Instant) -> Woke {
        if let Some(line) = self.line.as_ref().filter(|_| self.is_front()) {
            if let Some(woke) = read_for(&self.shared, line, &self.waiter, until) {
                return woke;
            }
        }
        let mut flags = lock(&self.waiter.flags);
        loop {
            if let Some(woke) = flags.take_woke() {
                return woke;
            }
            let now = Instant::now();
            if now >= until {
                return Woke::Timeout;
            }
            flags = self.waiter.sleep(flags, until - now);
        }
    }
}

impl Flags {
    /// What woke the waiter, if anything did (and forgets it).
    pub fn take_woke(&mut self) -> Option<Woke> {
        if let Some(held_until) = self.promoted.take() {
            return Some(Woke::Promoted { held_until });
        }
        if let Some(own) = self.notified.take() {
            return Some(Woke::Notified { own });
        }
        self.subscribed.take().map(Woke::Subscribed)
    }

    pub fn woken(&self) -> bool {
        self.promoted.is_some() || self.notified.is_some() || self.subscribed.is_some()
    }
}

impl Spot {
    /// Leaves the queue: with the lock (valid until `held_until`), or without it. The next
    /// waiter becomes the front one; it tries at once when this one gave up, and otherwise
    /// waits for the release (or that validity's end).
    pub fn leave(mut self, held_until: Option<Instant>) {
        self.left = true;
        let mut channels = lock(&self.shared.channels);
        let Some(channel) = channels.get_mut(&self.channel) else {
            return;
        };
        channel.queue.retain(|w| !Arc::ptr_eq(w, &self.waiter));
        channel.held_here |= held_until.is_some();
        match channel.queue.front() {
            Some(next) => next.wake(|flags| {
                if !flags.front {
                    flags.front = true;
                    flags.promoted = Some(held_until);
                }
            }),
            None => channel.idle_since = Some(Instant::now()),
        }
    }
}

impl Drop for Spot {
    /// Leaves the queue without the lock, unless [`Spot::leave`] did already.
    fn drop(&mut self) {
        if !self.left {
            let spot = Spot {
                shared: Arc::clone(&self.shared),
                channel: std::mem::take(&mut self.channel),
                waiter: Arc::clone(&self.waiter),
                line: self.line.take(),
                left: false,
            };
            self.left = true;
            spot.leave(None);
        }
    }
}

/// Channels someone waits on (or did, a moment ago); forgets long-idle ones.
pub(crate) fn wanted_channels(shared: &Shared, now: Instant) -> HashSet<Vec<u8>> {
    let mut channels = lock(&shared.channels);
    channels.retain(|_, channel| {
        !channel.queue.is_empty()
            || channel
                .idle_since
                .is_none_or(|since| now.saturating_duration_since(since) < FORGET)
    });
    channels
        .iter()
        .filter(|(_, channel)| channel.wanted(now))
        .map(|(name, _)| name.clone())
        .collect()
}
