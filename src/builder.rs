//! The lock manager's configuration: every setting, its default, and the checks `build` makes
//! before anything is dialled.
//!
//! Contract: [`Builder::build`] does no I/O (with the `tls` feature it reads the CA,
//! certificate and key files it was given, and nothing else). It refuses, with the
//! [`ConfigRule`] or [`crate::UrlRule`] that failed, anything that could not work: no nodes, a
//! node listed twice, a timeout of zero, a drift factor outside `[0, 1)`, and so on; an
//! unusable TLS file is an [`Error::InvalidTlsFile`] naming it. `Debug` never shows a
//! password.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::conn::ReplyBounds;
use crate::error::{ConfigRule, Error};
use crate::keeper::Keeper;
use crate::listen::Listener;
use crate::nodes::{Nodes, MAX_NODES};
use crate::redact::redact;
use crate::redlock::{Inner, Redlock};
use crate::resolve::Resolver;
use crate::resp::Limits;
use crate::url::NodeAddr;

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
/// | `tls_ca_file` (feature `tls`) | none: the bundled Mozilla roots (webpki-roots) |
/// | `tls_client_cert` (feature `tls`) | none |
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
    resolver: Option<Resolver>,
    #[cfg(feature = "tls")]
    tls: crate::tls::TlsSettings,
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
            resolver: None,
            #[cfg(feature = "tls")]
            tls: crate::tls::TlsSettings::default(),
        }
    }
}

/// The node URLs with every password replaced by `***`.
impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|url| redact(url)).collect();
        let mut debug = f.debug_struct("Builder");
        debug
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
            .field(
                "resolver",
                &if self.resolver.is_some() {
                    "custom"
                } else {
                    "system"
                },
            );
        // Paths only: the files' contents are never read into the builder.
        #[cfg(feature = "tls")]
        debug.field("tls", &self.tls);
        debug.finish()
    }
}

impl Builder {
    /// The nodes, as `redis://[[user]:password@]host[:port][/db]` URLs, `rediss://` the same
    /// with TLS (feature `tls`), or `unix:///path/to/redis.sock[?db=N&password=...]` (see
    /// [`crate::url`]). Replaces any nodes set before. Each must be an independent master (no
    /// replicas, no cluster).
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
    /// commands start going out (a node's one `NOSCRIPT` reload gets one more such budget).
    /// Keep it small against the ttl (5-50 ms for ttls of seconds).
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// Budget for opening one connection: name resolution, the TCP connect, the TLS handshake,
    /// `AUTH` and `SELECT` included.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Bounds on replies; anything larger or deeper is a protocol error and closes the
    /// connection. `build` refuses limits under which a lock's own replies could not be
    /// decoded (bulk strings under 4 KiB, lines under 512 bytes, arrays under 2 elements, a
    /// depth of 0) or that allow bulk strings above 16 MiB or lines above 1 MiB (one
    /// connection's read buffer then never exceeds about 17 MiB).
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

    /// Resolves host names with `resolver` instead of the system's `getaddrinfo` (service
    /// discovery, a fixed table, a test). It is called on a thread of its own, at most once at a
    /// time per node; a dial waits for it no longer than `connect_timeout`
    /// ([`crate::NodeError::Timeout`] in [`crate::Phase::Resolve`] after that, backed off like a
    /// connect timeout), and its answers are cached for 30 s (then refreshed in the background)
    /// and its failures for 1 s. IP literals never reach it.
    pub fn resolver(
        mut self,
        resolver: impl Fn(&str, u16) -> std::io::Result<Vec<std::net::SocketAddr>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.resolver = Some(Resolver(Arc::new(resolver)));
        self
    }

    /// Trusts only the CA certificates in this PEM file for `rediss://` nodes, instead of the
    /// bundled Mozilla root store (as `redis-cli --cacert` does). The file is read by
    /// [`Builder::build`]: a missing or malformed one is an [`Error::InvalidTlsFile`].
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_ca_file(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.tls.ca_file = Some(path.as_ref().to_path_buf());
        self
    }

    /// A client certificate chain and its private key, both PEM files, for servers that
    /// require mutual TLS (`tls-auth-clients yes`). The key may be PKCS#8, PKCS#1 (RSA) or
    /// SEC1 (EC). Both files are read by [`Builder::build`]: a missing or malformed file, or a
    /// key that does not belong to the certificate, is an [`Error::InvalidTlsFile`].
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_client_cert(
        mut self,
        cert_path: impl AsRef<std::path::Path>,
        key_path: impl AsRef<std::path::Path>,
    ) -> Self {
        self.tls.client_cert = Some((
            cert_path.as_ref().to_path_buf(),
            key_path.as_ref().to_path_buf(),
        ));
        self
    }

    /// **For test setups only: turns certificate verification off.** `rediss://` nodes then
    /// accept any server certificate, whoever issued it, for any name, expired or not, so
    /// anyone on the network path can impersonate a node and grant or steal locks. The
    /// traffic is still encrypted and the handshake signatures are still checked. Cannot be
    /// combined with [`Builder::tls_ca_file`] ([`ConfigRule::TlsVerification`]). Use a test CA
    /// with `tls_ca_file` instead wherever you can.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn dangerously_accept_any_tls_certificate_for_tests(mut self) -> Self {
        self.tls.accept_any_certificate = true;
        self
    }

    /// Builds the TLS configuration once, when a node or a setting needs it, and gives it to
    /// every `rediss://` node.
    #[cfg(feature = "tls")]
    fn attach_tls(&self, addrs: &mut [NodeAddr]) -> Result<(), Error> {
        use crate::tls::Connector;
        if !self.tls.is_set() && !addrs.iter().any(NodeAddr::is_tls) {
            return Ok(());
        }
        let connector = if self.tls.is_set() {
            Connector::new(&self.tls)?
        } else {
            Connector::default_shared().ok_or(Error::config(ConfigRule::TlsSetup))?
        };
        for addr in addrs {
            addr.set_tls(&connector);
        }
        Ok(())
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
        #[cfg(feature = "tls")]
        self.attach_tls(&mut addrs)?;
        let nodes = Nodes::new(
            addrs.clone(),
            ReplyBounds::new(self.limits),
            self.connect_timeout,
            self.node_timeout,
            self.restart_quarantine,
            self.fencing,
            self.resolver.clone(),
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
