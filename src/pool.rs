//! Idle connections to one node, and the lock order that some of them must keep.
//!
//! Contract:
//! - A round takes at most one connection per node and gives it back when the round ends, so a
//!   held lock pins no connection of its own.
//! - A connection given back while it still owes replies to a lock's commands is *reserved*
//!   for that lock's [`Ticket`]: the lock's next command to this node is sent on it, behind the
//!   ones it follows, so a release never overtakes its own `SET`. Another caller may take it
//!   only after draining, without waiting, every reply it owes; that ends the reservation.
//! - The pool shrinks back after a burst: beyond [`KEEP_IDLE`] connections, one unused for
//!   [`IDLE_TRIM`] is closed once it owes nothing to a lock. At most [`MAX_IDLE`] unreserved
//!   connections are kept at any time. A connection that still owes a lock replies is never
//!   closed here: closing it could let its unread commands run after a later command sent on
//!   another connection.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::conn::Conn;
use crate::sync::lock;

/// Idle connections kept per node whatever their age.
const KEEP_IDLE: usize = 4;

/// Beyond [`KEEP_IDLE`], a connection unused this long is closed.
const IDLE_TRIM: Duration = Duration::from_secs(1);

/// Unreserved idle connections kept per node at most; more concurrent callers than this pay
/// for new connections.
const MAX_IDLE: usize = 64;

/// Reserved connections of other locks tried (drained without waiting) before dialling anew.
const DRAIN_TRIES: usize = 4;

/// Names one lock for the life of its guard, so its commands to a node stay in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Ticket(pub u64);

#[derive(Debug)]
struct Idle {
    /// Boxed: connections move between pools and rounds on every call.
    conn: Box<Conn>,
    reserved: Option<Ticket>,
}

/// The idle connections to one node, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Idle>>,
}

impl Pool {
    /// A connection for `ticket`'s next command: the one reserved for it (then `.1` is true),
    /// else a free one, else one reserved for another lock that has answered everything it
    /// owed. `None` when there is none: the caller dials.
    pub fn take(&self, ticket: Option<Ticket>) -> Option<(Box<Conn>, bool)> {
        let mut others: [Option<Idle>; DRAIN_TRIES] = Default::default();
        {
            let mut idle = lock(&self.idle);
            let mine = ticket.and_then(|t| idle.iter().rposition(|i| i.reserved == Some(t)));
            if let Some(at) = mine {
                return Some((idle.remove(at).conn, true));
            }
            if let Some(at) = idle.iter().rposition(|i| i.reserved.is_none()) {
                return Some((idle.remove(at).conn, false));
            }
            // Only other locks' reserved connections are left: try the oldest few (the likeliest
            // to have heard their replies by now), outside the lock.
            for slot in &mut others {
                *slot = (!idle.is_empty()).then(|| idle.remove(0));
            }
        }
        let mut found = None;
        for mut entry in others.into_iter().flatten() {
            if found.is_some() {
                self.put(entry);
                continue;
            }
            match settle(&mut entry) {
                Settle::Clear => found = Some((entry.conn, false)),
                Settle::Owes => self.put(entry),
                Settle::Broken => {}
            }
        }
        found
    }

    /// Returns a connection after a round, reserved for `ticket` while it owes replies.
    pub fn give_back(&self, conn: Box<Conn>, ticket: Option<Ticket>) {
        let reserved = ticket.filter(|_| conn.stale() > 0);
        self.put(Idle { conn, reserved });
        self.trim();
    }

    fn put(&self, entry: Idle) {
        let mut idle = lock(&self.idle);
        let free = idle.iter().filter(|i| i.reserved.is_none()).count();
        if entry.reserved.is_some() || free < MAX_IDLE {
            idle.push(entry);
        }
    }

    /// Closes connections beyond [`KEEP_IDLE`] that sat unused for [`IDLE_TRIM`] and owe no
    /// lock anything. Cheap when there is no surplus: one length check.
    fn trim(&self) {
        let mut old = Vec::new();
        {
            let mut idle = lock(&self.idle);
            if idle.len() <= KEEP_IDLE {
                return;
            }
            let now = Instant::now();
            let mut surplus = idle.len() - KEEP_IDLE;
            let mut at = 0;
            while surplus > 0 && at < idle.len() {
                let unused = idle.get(at).is_some_and(|i| {
                    now.saturating_duration_since(i.conn.last_used()) >= IDLE_TRIM
                });
                if unused {
                    old.push(idle.remove(at));
                    surplus -= 1;
                } else {
                    at += 1;
                }
            }
        }
        // Outside the lock: a reserved one is closed only once it owes nothing.
        for mut entry in old {
            if entry.reserved.is_some() && settle(&mut entry) == Settle::Owes {
                self.put(entry);
            }
        }
    }

    /// Ends `ticket`'s reservations: its lock has no further command to order.
    pub fn forget(&self, ticket: Ticket) {
        for entry in lock(&self.idle).iter_mut() {
            if entry.reserved == Some(ticket) {
                entry.reserved = None;
            }
        }
    }

    /// Drops every idle connection without shutting it down (after a fork: the other process
    /// owns the sockets now).
    pub fn abandon_all(&self) {
        let taken = std::mem::take(&mut *lock(&self.idle));
        drop(taken);
    }

    /// Idle connections, reserved or not.
    pub fn idle(&self) -> usize {
        lock(&self.idle).len()
    }
}

/// What draining an idle connection left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settle {
    /// It owes nothing: any reservation is void.
    Clear,
    /// Some replies have not arrived yet.
    Owes,
    /// It broke (its stream can no longer be trusted, so nothing it owes will run behind
    /// anything): drop it.
    Broken,
}

/// Skips, without waiting, the replies `entry` owes.
fn settle(entry: &mut Idle) -> Settle {
    match entry.conn.drain() {
        Err(_) => Settle::Broken,
        Ok(()) if entry.conn.stale() == 0 => {
            entry.reserved = None;
            Settle::Clear
        }
        Ok(()) => Settle::Owes,
    }
}
