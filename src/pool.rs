//! Idle connections to one node, and the lock order that some of them must keep.
//!
//! Contract:
//! - A round takes at most one connection per node and gives it back when the round ends, so a
//!   held lock pins no connection of its own.
//! - A connection given back while it still owes replies to a lock's commands is *reserved*
//!   for that lock's [`Ticket`]: the lock's next command to this node is sent on it, behind the
//!   ones it follows, so a release never overtakes its own `SET`. Another caller may take it
//!   only after draining, without waiting, every reply it owes; that ends the reservation.
//! - At most [`MAX_IDLE`] unreserved connections per node are kept. A reserved one is never
//!   dropped here: closing it could let its unread commands run after a later command sent on
//!   another connection.

use std::sync::Mutex;

use crate::conn::Conn;
use crate::sync::lock;

/// Unreserved idle connections kept per node; more concurrent callers than this pay for new
/// connections.
const MAX_IDLE: usize = 64;

/// Reserved connections of other locks tried (drained without waiting) before dialling anew.
const DRAIN_TRIES: usize = 2;

/// Names one lock for the life of its guard, so its commands to a node stay in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Ticket(pub u64);

#[derive(Debug)]
struct Idle {
    conn: Conn,
    reserved: Option<Ticket>,
}

/// The idle connections to one node.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Idle>>,
}

impl Pool {
    /// A connection for `ticket`'s next command: the one reserved for it (then `.1` is true),
    /// else a free one, else one reserved for another lock that has answered everything it
    /// owed. `None` when there is none: the caller dials.
    pub fn take(&self, ticket: Option<Ticket>) -> Option<(Conn, bool)> {
        let mut others: [Option<Idle>; DRAIN_TRIES] = Default::default();
        {
            let mut idle = lock(&self.idle);
            let mine = ticket.and_then(|t| idle.iter().rposition(|i| i.reserved == Some(t)));
            let free = || idle.iter().rposition(|i| i.reserved.is_none());
            if let Some(at) = mine {
                return Some((idle.swap_remove(at).conn, true));
            }
            if let Some(at) = free() {
                return Some((idle.swap_remove(at).conn, false));
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
                lock(&self.idle).push(entry);
                continue;
            }
            match entry.conn.drain() {
                Ok(()) if entry.conn.stale() == 0 => found = Some((entry.conn, false)),
                Ok(()) => lock(&self.idle).push(entry),
                // Broken: its stream can no longer be trusted, so nothing it owes will run
                // behind anything anyway.
                Err(_) => {}
            }
        }
        found
    }

    /// Returns a connection after a round, reserved for `ticket` while it owes replies.
    pub fn give_back(&self, conn: Conn, ticket: Option<Ticket>) {
        let reserved = ticket.filter(|_| conn.stale() > 0);
        let mut idle = lock(&self.idle);
        let free = idle.iter().filter(|i| i.reserved.is_none()).count();
        if reserved.is_some() || free < MAX_IDLE {
            idle.push(Idle { conn, reserved });
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
