//! The lock manager's configuration: every setting, its default, and the checks `build` makes
//! before anything is dialled.
//!
//! Contract: [`Builder::build`] does no I/O. It refuses, with the [`ConfigRule`] or
//! [`crate::UrlRule`] that failed, anything that could not work: no nodes, a node listed twice,
//! a timeout of zero, a drift factor outside `[0, 1)`, and so on. `Debug` never shows a
//! password.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::conn::ReplyBounds;
use crate::error::{ConfigRule, Error};
use crate::keeper::Keeper;
use crate::listen::Listener;
use crate::nodes::{Nodes, MAX_NODES};
use crate::redlock::{Inner, Redlock};
use crate::resp::Limits;
use crate::url::{redact, NodeAddr};

/// Longest timeout or retry delay accepted by the builder.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// The smallest reply limits a lock can live with: `INFO server` (about 1.5 KiB) and every
/// script digest must decode, error lines up to Redis' longest (`MISCONF`, about 250 bytes),
/// and `inspect`'s two-element arrays.
const MIN_LIMITS: Limits = Limits {
    max_bulk_len: 4096,
    max_array_len: 2,
    max_depth: 1,
    max_line_len: 512,
};

/// The largest: a connection's read buffer grows up to one reply, so this bounds its memory.
const MAX_BULK: usize = 16 * 1024 * 1024;
const MAX_LINE: usize = 1024 * 1024;

/// Configures a [`Redlock`]. Every setting has a default; only the nodes are required.
///
/// | setting | default |
/// |---|---|
/// | `retries` | 3 (so 4 attempts) |
/// | `retry_delay` | 200 ms |
/// | `retry_jitter` | 100 ms |
/// | `drift_factor` | 0.01 |
/// | `node_timeout` | 50 ms |
/// | `connect_timeout` | 100 ms |
/// | `reply_limits` | [`Limits::LOCK_CLIENT`] |
/// | `fencing` | off |
/// | `restart_quarantine` | 0 (off) |
#[derive(Clone)]
pub struct Builder {
    nodes: Vec<String>,
    retries: u32,
    retry_delay: Duration,
    retry_jitter: Duration,
    drift_factor: f64,
    node_timeout: Duration,
    connect_timeout: Duration,
    limits: Limits,
    fencing: bool,
    restart_quarantine: Duration,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            retries: 3,
            retry_delay: Duration::from_millis(200),
            retry_jitter: Duration::from_millis(100),
            drift_factor: 0.01,
            node_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(100),
            limits: Limits::LOCK_CLIENT,
            fencing: false,
            restart_quarantine: Duration::ZERO,
        }
    }
}

/// The node URLs with every password replaced by `***`.
impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|url| redact(url)).collect();
        f.debug_struct("Builder")
            .field("nodes", &nodes)
            .field("retries", &self.retries)
            .field("retry_delay", &self.retry_delay)
            .field("retry_jitter", &self.retry_jitter)
            .field("drift_factor", &self.drift_factor)
            .field("node_timeout", &self.node_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reply_limits", &self.limits)
            .field("fencing", &self.fencing)
            .field("restart_quarantine", &self.restart_quarantine)
            .finish()
    }
}

impl Builder {
    /// The nodes, as `redis://[[user]:password@]host[:port][/db]` URLs. Replaces any nodes set
    /// before. Each must be an independent master (no replicas, no cluster).
    pub fn nodes<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.nodes = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        self
    }

    /// Extra attempts after the first for [`Redlock::lock`]; 0 means exactly one attempt.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Fixed part of the pause between attempts.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Upper bound of the uniformly random part of the pause between attempts, so that
    /// contending clients do not retry in lockstep.
    pub fn retry_jitter(mut self, jitter: Duration) -> Self {
        self.retry_jitter = jitter;
        self
    }

    /// Fraction of the ttl assumed lost to clock-rate differences between nodes, in `[0, 1)`.
    /// The margin is `ttl * drift_factor + 2 ms`.
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }

    /// Budget for one round: every reply must arrive within this time after the round's
    /// commands start going out. Keep it small against the ttl (5-50 ms for ttls of seconds).
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// Budget for opening one connection, `AUTH` and `SELECT` included.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Bounds on replies; anything larger or deeper is a protocol error and closes the
    /// connection. `build` refuses limits under which a lock's own replies could not be
    /// decoded (bulk strings under 4 KiB, lines under 512 bytes, arrays under 2 elements or
    /// depth 1) or that would let one reply grow a connection's buffer past 16 MiB (bulk
    /// strings above 16 MiB, lines above 1 MiB).
    pub fn reply_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Fencing tokens: every grant also gets a number that increases with every grant of the
    /// resource ([`crate::LockGuard::token`]), for the protected resource to reject stale
    /// writers. Costs a second round per grant and one counter key per resource
    /// (`resplock:fence:<resource>`, never expiring). SAFETY.md states what it guarantees.
    /// Without it nothing on the wire changes.
    pub fn fencing(mut self, on: bool) -> Self {
        self.fencing = on;
        self
    }

    /// How long a node that restarted (its `run_id` changed since this manager last saw it,
    /// or its uptime is below the window when first seen) is kept from voting on grants: a
    /// node that restarted without persistence has forgotten the locks it held, and must not
    /// grant them again before they have expired everywhere. Set it to at least your longest
    /// ttl unless every node runs AOF with `appendfsync always`. Releases still reach a
    /// quarantined node. Default 0 (off); at most [`crate::MAX_TTL`].
    pub fn restart_quarantine(mut self, window: Duration) -> Self {
        self.restart_quarantine = window;
        self
    }

    /// Checks the configuration and builds the lock manager. No I/O: connections open lazily.
    pub fn build(self) -> Result<Redlock, Error> {
        let mut addrs: Vec<NodeAddr> = Vec::with_capacity(self.nodes.len());
        for url in &self.nodes {
            let addr = NodeAddr::parse(url)?;
            if addrs.iter().any(|seen| seen.same_server(&addr)) {
                return Err(Error::config(ConfigRule::DuplicateNode));
            }
            addrs.push(addr);
        }
        self.check(addrs.len()).map_err(Error::config)?;
        let nodes = Nodes::new(
            addrs.clone(),
            ReplyBounds::new(self.limits),
            self.connect_timeout,
            self.node_timeout,
            self.restart_quarantine,
            self.fencing,
        );
        Ok(Redlock::from_inner(Arc::new(Inner {
            nodes,
            keeper: Keeper::default(),
            listener: Listener::default(),
            addrs,
            retries: self.retries,
            retry_delay: self.retry_delay,
            retry_jitter: self.retry_jitter,
            drift_factor: self.drift_factor,
            fencing: self.fencing,
        })))
    }

    /// The first rule that the settings other than the URLs break.
    fn check(&self, nodes: usize) -> Result<(), ConfigRule> {
        let in_range = |d: Duration| !d.is_zero() && d <= MAX_WAIT;
        let rules = [
            (nodes > 0, ConfigRule::NoNodes),
            (nodes <= MAX_NODES, ConfigRule::TooManyNodes),
            (self.retries < u32::MAX, ConfigRule::Retries),
            (
                self.drift_factor.is_finite() && (0.0..1.0).contains(&self.drift_factor),
                ConfigRule::DriftFactor,
            ),
            (in_range(self.node_timeout), ConfigRule::NodeTimeout),
            (in_range(self.connect_timeout), ConfigRule::ConnectTimeout),
            (
                self.retry_delay <= MAX_WAIT && self.retry_jitter <= MAX_WAIT,
                ConfigRule::RetryDelay,
            ),
            (
                self.restart_quarantine <= crate::MAX_TTL,
                ConfigRule::RestartQuarantine,
            ),
            (
                self.limits.max_bulk_len >= MIN_LIMITS.max_bulk_len
                    && self.limits.max_line_len >= MIN_LIMITS.max_line_len
                    && self.limits.max_array_len >= MIN_LIMITS.max_array_len
                    && self.limits.max_depth >= MIN_LIMITS.max_depth,
                ConfigRule::ReplyLimitsTooSmall,
            ),
            (
                self.limits.max_bulk_len <= MAX_BULK && self.limits.max_line_len <= MAX_LINE,
                ConfigRule::ReplyLimitsTooLarge,
            ),
        ];
        match rules.iter().find(|(holds, _)| !holds) {
            Some(&(_, broken)) => Err(broken),
            None => Ok(()),
        }
    }
}
