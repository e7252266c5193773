//! Hearing releases: one subscriber connection per node, shared by every waiter of a manager,
//! and per resource a queue of this process's waiters, woken one at a time.
//!
//! Contract:
//! - Per node, one thread owns one connection in RESP2 subscriber mode. It subscribes to
//!   `resplock:released:<resource>` while someone in this process waits on the resource (and
//!   for [`LINGER`] after the last waiter left, so a hot lock does not resubscribe on every
//!   wait), then unsubscribes.
//! - A `message` on a channel wakes the *front* waiter of that resource (the one waiting
//!   longest in this process); the others stay asleep. A `subscribe` confirmation wakes the
//!   front waiter too, so that it tries once more after subscribing: a release between its
//!   failed attempt and the subscription would otherwise go unheard. When the front waiter
//!   leaves, the next one is promoted and woken.
//! - Every push is decoded with strict limits (an array of three scalars, bounded lengths);
//!   anything else drops the connection, which is redialled after [`RECONNECT_BACKOFF`]. A
//!   flood of messages costs this thread's time, never a waiter's: a waiter decides itself how
//!   soon it tries again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::conn::{Conn, ReplyBounds};
use crate::error::NodeError;
use crate::nodes::Nodes;
use crate::resolve::{Lookup, Resolver};
use crate::resp::{encode_command, Limits, Reply};
use crate::script::RELEASED_CHANNEL_PREFIX;
use crate::sync::lock;
use crate::url::NodeAddr;

/// A subscription outlives its last waiter by this much.
const LINGER: Duration = Duration::from_secs(2);

/// A channel whose last waiter left this long ago is forgotten (and unsubscribed).
const FORGET: Duration = Duration::from_secs(10);

/// How long a node thread reads before it looks for new subscriptions to send.
const SLICE: Duration = Duration::from_millis(20);

/// After a subscriber connection failed, it is not redialled for this long.
const RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// What a subscriber connection accepts: `*3` of scalars, channel names up to 64 KiB.
const PUSH_LIMITS: Limits = Limits {
    max_bulk_len: 64 * 1024,
    max_array_len: 3,
    max_depth: 1,
    max_line_len: 1024,
};

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
struct Flags {
    front: bool,
    notified: Option<bool>,
    subscribed: Option<Instant>,
    promoted: Option<Option<Instant>>,
}

/// One waiting call.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    flags: Mutex<Flags>,
    woken: Condvar,
}

impl Waiter {
    fn wake(&self, set: impl FnOnce(&mut Flags)) {
        set(&mut lock(&self.flags));
        self.woken.notify_all();
    }
}

#[derive(Debug, Default)]
struct Channel {
    queue: VecDeque<Arc<Waiter>>,
    /// When the last waiter left.
    idle_since: Option<Instant>,
    /// A waiter of this process left with the lock and no release has been heard since.
    held_here: bool,
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
struct Shared {
    channels: Mutex<HashMap<Vec<u8>, Channel>>,
    /// Bumped when a channel is added: node threads then send a `SUBSCRIBE` without waiting
    /// for their read slice to end.
    generation: AtomicU64,
    changed: Condvar,
    shutdown: AtomicBool,
}

/// The subscriber side of one manager.
#[derive(Debug, Default)]
pub(crate) struct Listener {
    shared: Arc<Shared>,
    /// The process whose node threads are running, if any.
    running: Mutex<Option<u32>>,
}

/// A waiter's place in its resource's queue; leaving (drop) promotes the next one.
pub(crate) struct Spot {
    shared: Arc<Shared>,
    channel: Vec<u8>,
    waiter: Arc<Waiter>,
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
        self.ensure_running(nodes);
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
            left: false,
        }
    }

    /// Ends every node thread (the manager is being dropped).
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.changed.notify_all();
    }

    fn ensure_running(&self, nodes: &Nodes) {
        let pid = std::process::id();
        let mut running = lock(&self.running);
        if *running == Some(pid) {
            return;
        }
        let bounds = ReplyBounds::new(PUSH_LIMITS);
        for (index, node) in nodes.iter().enumerate() {
            let shared = Arc::clone(&self.shared);
            let dial = Dial {
                addr: node.addr.clone(),
                lookup: Arc::clone(&node.lookup),
                resolver: nodes.resolver().clone(),
                connect_timeout: nodes.connect_timeout(),
                bounds,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("resplock-listen-{index}"))
                .spawn(move || listen(&shared, &dial));
            debug_assert!(spawned.is_ok(), "could not start a listener thread");
        }
        *running = Some(pid);
    }
}

impl Spot {
    /// True when this is the longest-waiting caller on its resource in this process.
    pub fn is_front(&self) -> bool {
        lock(&self.waiter.flags).front
    }

    /// Sleeps until woken or `until`; says why.
    pub fn wait(&self, until: Instant) -> Woke {
        let mut flags = lock(&self.waiter.flags);
        loop {
            if let Some(held_until) = flags.promoted.take() {
                return Woke::Promoted { held_until };
            }
            if let Some(own) = flags.notified.take() {
                return Woke::Notified { own };
            }
            if let Some(at) = flags.subscribed.take() {
                return Woke::Subscribed(at);
            }
            let now = Instant::now();
            if now >= until {
                return Woke::Timeout;
            }
            flags = self
                .waiter
                .woken
                .wait_timeout(flags, until - now)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard);
        }
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
                left: false,
            };
            self.left = true;
            spot.leave(None);
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
struct Dial {
    addr: NodeAddr,
    lookup: Arc<Lookup>,
    resolver: Resolver,
    connect_timeout: Duration,
    bounds: ReplyBounds,
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
fn listen(shared: &Shared, dial: &Dial) {
    let mut conn: Option<Conn> = None;
    let mut subscribed: HashSet<Vec<u8>> = HashSet::new();
    let mut retry_at: Option<Instant> = None;
    while !shared.shutdown.load(Ordering::Acquire) {
        let now = Instant::now();
        let wanted = wanted_channels(shared, now);
        if wanted.is_empty() && subscribed.is_empty() {
            idle(shared, now + Duration::from_secs(1));
            continue;
        }
        if let Some(at) = retry_at.filter(|&at| now < at) {
            idle(shared, at);
            continue;
        }
        let Some(live) = conn.as_mut() else {
            match dial.connect(now) {
                Ok(fresh) => conn = Some(fresh),
                Err(_) => retry_at = Some(Instant::now() + RECONNECT_BACKOFF),
            }
            subscribed.clear();
            continue;
        };
        let deadline = now + dial.connect_timeout;
        if update_subscriptions(live, &wanted, &mut subscribed, deadline).is_err() {
            conn = None;
            retry_at = Some(Instant::now() + RECONNECT_BACKOFF);
            continue;
        }
        if subscribed.is_empty() {
            continue;
        }
        if read_pushes(shared, live).is_err() {
            conn = None;
            retry_at = Some(Instant::now() + RECONNECT_BACKOFF);
        }
    }
}

/// Channels someone waits on (or did, a moment ago); forgets long-idle ones.
fn wanted_channels(shared: &Shared, now: Instant) -> HashSet<Vec<u8>> {
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

/// Reads pushes for one slice (or until new subscriptions are wanted), waking waiters.
fn read_pushes(shared: &Shared, conn: &mut Conn) -> Result<(), NodeError> {
    let generation = shared.generation.load(Ordering::Acquire);
    let until = Instant::now() + SLICE;
    while shared.generation.load(Ordering::Acquire) == generation {
        match conn.recv(until, |reply| handle(shared, reply)) {
            Ok(Push::Bad) => return Err(NodeError::UnexpectedReply),
            Ok(Push::Message | Push::Subscribed | Push::Other) => {}
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
