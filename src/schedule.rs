//! When a waiter tries again: the decisions of [`crate::Redlock::lock_within`], with no
//! socket and no clock of its own.
//!
//! Contract:
//! - After a failed attempt the next try is when the holder's keys run out on enough nodes
//!   (the attempt's `PTTL`s say when), or sooner if something wakes the waiter.
//! - A release message brings the next try forward, never pushes it back. A message that most
//!   likely announces this process's own release comes with a short courtesy delay (about two
//!   attempts long), so that waiters of other processes get their turn: without it the
//!   process that holds a hot lock would keep passing it among its own threads.
//! - Messages that keep coming while the same holder keeps the lock (a flood, or releases the
//!   waiter keeps losing to others) are answered more and more slowly, up to
//!   [`MAX_BACKOFF`] apart; a try that finds a new holder resets that.
//! - Once subscribed, one more try (a release between the last attempt and the subscription
//!   would otherwise go unheard); confirmations from further nodes moments later add none.
//! - A waiter promoted to the front tries at once if the one before it gave up, and waits for
//!   the release (or the end of that lock's validity) if the one before it got the lock.

use std::time::{Duration, Instant};

use crate::listen::Woke;

/// Longest backoff between tries woken by messages that keep failing.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// Confirmations further apart than this come from a reconnected node: worth one more try.
const RESUBSCRIBED: Duration = Duration::from_secs(1);

/// A holder whose keys run out later than expected by more than this is a new holder (or one
/// that extended): the messages were not noise.
const NEW_HOLDER_SLACK: Duration = Duration::from_millis(5);

/// Courtesy delay before trying after this process's own release, at least and at most.
const MIN_COURTESY: Duration = Duration::from_micros(500);
const MAX_COURTESY: Duration = Duration::from_millis(10);

/// One waiter's schedule.
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    next_try: Option<Instant>,
    /// The try at `next_try` was asked for by a release message.
    by_message: bool,
    backoff: Duration,
    /// When the holder's shortest-lived key was expected to run out, after the last attempt.
    holder_ends_at: Option<Instant>,
    tried_at: Instant,
    /// How long the last attempt took.
    attempt: Duration,
    subscribed_at: Option<Instant>,
}

impl Schedule {
    /// A waiter starting at `now`, trying at once unless others of this process wait before it.
    pub fn new(now: Instant, first_in_line: bool) -> Self {
        Self {
            next_try: first_in_line.then_some(now),
            by_message: false,
            backoff: Duration::ZERO,
            holder_ends_at: None,
            tried_at: now,
            attempt: Duration::ZERO,
            subscribed_at: None,
        }
    }

    /// True when a try is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next_try.is_some_and(|at| at <= now)
    }

    /// A try starts at `now`.
    pub fn trying(&mut self, now: Instant) {
        self.tried_at = now;
    }

    /// The try that started at [`Schedule::trying`] failed at `now`. The holder's
    /// shortest-lived key has `holder_left` to live (`None`: nothing tells); try again in
    /// `retry_in` unless woken sooner.
    pub fn failed(&mut self, now: Instant, holder_left: Option<Duration>, retry_in: Duration) {
        self.attempt = now.saturating_duration_since(self.tried_at);
        // The nodes read their ttls somewhere between the try's start and `now`: the key runs
        // out no sooner than `earliest` and no later than `ends_at`. On a loaded machine that
        // window is wide, and a holder is new only if even its earliest end is past the latest
        // end seen before.
        let earliest = holder_left.map(|left| self.tried_at + left);
        let ends_at = holder_left.map(|left| now + left);
        if self.by_message {
            let same_holder = match (self.holder_ends_at, earliest) {
                (Some(before), Some(after)) => after <= before + NEW_HOLDER_SLACK,
                // Nothing tells: count it against the messages.
                _ => true,
            };
            self.backoff = if same_holder {
                (self.backoff * 2).clamp(Duration::from_millis(1), MAX_BACKOFF)
            } else {
                Duration::ZERO
            };
        }
        self.holder_ends_at = ends_at;
        self.next_try = Some(now + retry_in);
        self.by_message = false;
    }

    /// Reacts to what woke the waiter at `now`; `front`: it is the front waiter (only the
    /// front waiter tries).
    pub fn woke(&mut self, woke: Woke, now: Instant, front: bool) {
        if !front {
            self.next_try = None;
            return;
        }
        match woke {
            Woke::Notified { own } => {
                let delay = if own {
                    (2 * self.attempt).clamp(MIN_COURTESY, MAX_COURTESY)
                } else {
                    self.backoff
                };
                self.bring_forward(now + delay, true);
            }
            Woke::Subscribed(at) if at > self.tried_at => {
                let fresh = self
                    .subscribed_at
                    .is_none_or(|t| at.saturating_duration_since(t) > RESUBSCRIBED);
                if fresh {
                    self.subscribed_at = Some(at);
                    self.bring_forward(now, false);
                }
            }
            Woke::Promoted { held_until: None } => self.bring_forward(now, false),
            Woke::Promoted {
                held_until: Some(until),
            } => self.bring_forward(until, false),
            Woke::Subscribed(_) | Woke::Timeout => {}
        }
    }

    fn bring_forward(&mut self, at: Instant, by_message: bool) {
        if self.next_try.is_none_or(|current| at < current) {
            self.next_try = Some(at);
            self.by_message = by_message;
        }
    }

    /// When to wake next: the next try or `deadline`, whichever comes first.
    pub fn wake_at(&self, deadline: Option<Instant>, fallback: Instant) -> Instant {
        [self.next_try, deadline]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_failed_try_waits_for_the_keys_and_a_message_brings_it_forward() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, true);
        assert!(s.due(t0));
        s.trying(t0);
        s.failed(t0 + ms(1), Some(ms(5000)), ms(5000));
        assert!(!s.due(t0 + ms(100)));
        assert_eq!(s.wake_at(None, t0), t0 + ms(5001));
        s.woke(Woke::Notified { own: false }, t0 + ms(200), true);
        assert!(s.due(t0 + ms(200)), "a message from elsewhere: at once");
        // A later message never pushes a due try back.
        s.woke(Woke::Notified { own: true }, t0 + ms(200), true);
        assert!(s.due(t0 + ms(200)));
    }

    #[test]
    fn our_own_release_gives_other_processes_a_head_start() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, true);
        s.trying(t0);
        s.failed(t0 + ms(2), Some(ms(5000)), ms(5000));
        s.woke(Woke::Notified { own: true }, t0 + ms(10), true);
        assert!(!s.due(t0 + ms(10)));
        assert!(s.due(t0 + ms(14)), "two attempts long");
    }

    /// A waiter that failed at `t0` against a holder whose keys run out 10 s later gets
    /// `messages` release messages from that same holder, each answered by a try that fails;
    /// the node reads its ttl as the try starts and reply `i` comes back `late(i)` after.
    /// Returns how long each try waited after its message, and when the last one failed.
    fn flood(
        s: &mut Schedule,
        t0: Instant,
        messages: usize,
        late: impl Fn(usize) -> Duration,
    ) -> (Vec<Duration>, Instant) {
        let expiry = t0 + ms(10_000);
        s.trying(t0);
        s.failed(t0, Some(ms(10_000)), ms(10_000));
        let mut now = t0;
        let mut gaps = Vec::new();
        for i in 0..messages {
            s.woke(Woke::Notified { own: false }, now, true);
            let at = s.next_try.expect("scheduled");
            gaps.push(at.saturating_duration_since(now));
            s.trying(at);
            let left = expiry.saturating_duration_since(at);
            now = at + late(i);
            s.failed(now, Some(left), left);
        }
        (gaps, now)
    }

    #[test]
    fn a_flood_from_one_holder_backs_off_and_a_new_holder_resets_it() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, true);
        let (gaps, now) = flood(&mut s, t0, 10, |_| Duration::ZERO);
        assert_eq!(gaps[0], Duration::ZERO);
        assert_eq!(gaps[1], ms(1));
        assert_eq!(gaps[2], ms(2));
        assert_eq!(*gaps.last().expect("gaps"), MAX_BACKOFF);
        // A new holder (its keys run out later): the messages were real.
        s.woke(Woke::Notified { own: false }, now, true);
        let at = s.next_try.expect("scheduled");
        s.trying(at);
        s.failed(at, Some(ms(10_000)), ms(10_000));
        s.woke(Woke::Notified { own: false }, at, true);
        assert!(s.due(at), "backoff reset");
    }

    /// On a loaded machine a reply may come back long after the node read its ttl: that delay
    /// must not pass for a new holder, or a flood would get a try per message.
    #[test]
    fn slow_replies_from_the_same_holder_keep_the_backoff() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, true);
        // Every other reply is 30 ms late.
        let (gaps, _) = flood(&mut s, t0, 12, |i| if i % 2 == 0 { ms(30) } else { ms(0) });
        assert_eq!(*gaps.last().expect("gaps"), MAX_BACKOFF, "{gaps:?}");
    }

    #[test]
    fn one_more_try_once_subscribed_and_promotion_depends_on_the_predecessor() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, true);
        s.trying(t0);
        s.failed(t0 + ms(1), Some(ms(5000)), ms(5000));
        s.woke(Woke::Subscribed(t0 + ms(2)), t0 + ms(2), true);
        assert!(s.due(t0 + ms(2)));
        s.trying(t0 + ms(2));
        s.failed(t0 + ms(3), Some(ms(5000)), ms(5000));
        s.woke(Woke::Subscribed(t0 + ms(4)), t0 + ms(4), true);
        assert!(!s.due(t0 + ms(4)), "a second node confirming adds no try");

        let mut queued = Schedule::new(t0, false);
        assert!(!queued.due(t0));
        queued.woke(Woke::Notified { own: false }, t0, false);
        assert!(!queued.due(t0), "only the front waiter tries");
        queued.woke(
            Woke::Promoted {
                held_until: Some(t0 + ms(900)),
            },
            t0,
            true,
        );
        assert!(!queued.due(t0 + ms(899)) && queued.due(t0 + ms(900)));
        let mut next = Schedule::new(t0, false);
        next.woke(Woke::Promoted { held_until: None }, t0, true);
        assert!(next.due(t0), "its predecessor gave up: try at once");
    }
}
