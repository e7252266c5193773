//! Every error the crate returns, in one place.
//!
//! [`Error`] is what public calls return. [`NodeError`] is why one node did not vote, carried
//! per node inside [`Error::NotAcquired`] and friends so that contention (another owner holds
//! the key) can be told apart from an outage (nodes that failed, and how). The rules a
//! configuration, a URL or a ttl can break are small `Copy` enums ([`ConfigRule`], [`UrlRule`],
//! [`TtlRule`]), each with one message table. [`ProtocolError`] is the codec's own and lives in
//! [`crate::resp`]. `source()` leads from an [`Error`] to the first failed node and on to its
//! protocol or server error. Messages are lowercase without trailing periods, and never contain
//! a password.

use std::fmt;
use std::io;
use std::time::Duration;

pub use crate::resp::ProtocolError;
pub use crate::rules::{ConfigRule, TlsError, TlsFileRule, TtlRule, UrlRule};

/// The step of a node operation that an I/O error or a timeout interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Resolving the host name.
    Resolve,
    /// Establishing the TCP connection (or the Unix-socket connection).
    Connect,
    /// The TLS handshake of a `rediss://` node, right after the TCP connection; it shares the
    /// connect deadline.
    TlsHandshake,
    /// `AUTH` and `SELECT` right after connecting (`PING` over TLS when there is neither).
    Handshake,
    /// Sending a command.
    Write,
    /// Waiting for a reply.
    Read,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Resolve => "resolve",
            Self::Connect => "connect",
            Self::TlsHandshake => "tls handshake",
            Self::Handshake => "handshake",
            Self::Write => "write",
            Self::Read => "read",
        })
    }
}

/// What a Redis error reply means, from its first word.
///
/// The classification follows Redis' own prefixes; see [`ServerErrorKind::is_configuration`]
/// and [`ServerErrorKind::is_transient`] for how a lock should treat each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerErrorKind {
    /// `NOSCRIPT`: the script cache does not hold the digest (restart, failover, `SCRIPT FLUSH`).
    NoScript,
    /// `NOAUTH`: the server wants a password and none was given.
    NoAuth,
    /// `WRONGPASS`: wrong user name or password.
    WrongPass,
    /// `NOPERM`: the ACL user may not run this command or touch this key.
    NoPerm,
    /// `LOADING`: the server restarted and is loading its data set.
    Loading,
    /// `BUSY`: a script is running too long.
    Busy,
    /// `READONLY`: the node is a replica; Redlock needs independent masters.
    ReadOnly,
    /// `MASTERDOWN`: a replica that lost its master.
    MasterDown,
    /// `OOM`: `maxmemory` reached.
    Oom,
    /// `MISCONF`: persistence is failing and writes are refused.
    Misconf,
    /// `MOVED`: cluster redirect (never followed: it could count one server twice).
    Moved,
    /// `ASK`: cluster redirect (never followed).
    Ask,
    /// `TRYAGAIN`: cluster resharding.
    TryAgain,
    /// `CLUSTERDOWN`: the cluster cannot serve.
    ClusterDown,
    /// `CROSSSLOT`: keys in different cluster slots.
    CrossSlot,
    /// `WRONGTYPE`: the key holds another data type.
    WrongType,
    /// `ERR`: a generic error (bad `SELECT` index, unknown command, ...).
    Err,
    /// Any other prefix.
    Other,
}

impl ServerErrorKind {
    /// Classifies an error line (the bytes after `-`) by its first word.
    pub fn classify(line: &[u8]) -> Self {
        let word = line.split(|&b| b == b' ').next().unwrap_or(line);
        match word {
            b"NOSCRIPT" => Self::NoScript,
            b"NOAUTH" => Self::NoAuth,
            b"WRONGPASS" => Self::WrongPass,
            b"NOPERM" => Self::NoPerm,
            b"LOADING" => Self::Loading,
            b"BUSY" => Self::Busy,
            b"READONLY" => Self::ReadOnly,
            b"MASTERDOWN" => Self::MasterDown,
            b"OOM" => Self::Oom,
            b"MISCONF" => Self::Misconf,
            b"MOVED" => Self::Moved,
            b"ASK" => Self::Ask,
            b"TRYAGAIN" => Self::TryAgain,
            b"CLUSTERDOWN" => Self::ClusterDown,
            b"CROSSSLOT" => Self::CrossSlot,
            b"WRONGTYPE" => Self::WrongType,
            b"ERR" => Self::Err,
            _ => Self::Other,
        }
    }

    /// True when the node is misconfigured for Redlock (authentication, ACL, a replica, cluster
    /// mode): retrying will not help until someone changes the deployment.
    pub fn is_configuration(self) -> bool {
        matches!(
            self,
            Self::NoAuth
                | Self::WrongPass
                | Self::NoPerm
                | Self::ReadOnly
                | Self::MasterDown
                | Self::Moved
                | Self::Ask
                | Self::ClusterDown
                | Self::CrossSlot
        )
    }

    /// True when the node may well accept the command again soon (loading, busy script, out of
    /// memory, failing persistence, resharding).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Loading | Self::Busy | Self::Oom | Self::Misconf | Self::TryAgain
        )
    }
}

/// An error reply from a node: its kind and the line as the server sent it (lossy UTF-8, at
/// most [`crate::resp::Limits::max_line_len`] bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerError {
    /// The classification of the first word.
    pub kind: ServerErrorKind,
    /// The whole error line after `-`.
    pub message: String,
}

impl ServerError {
    /// Builds a server error from an error reply's line.
    pub fn from_line(line: &[u8]) -> Self {
        Self {
            kind: ServerErrorKind::classify(line),
            message: String::from_utf8_lossy(line).into_owned(),
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server replied -{}", self.message)
    }
}

impl std::error::Error for ServerError {}

/// Why one node did not vote (or did not answer) in a round.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeError {
    /// The host name did not resolve to any address.
    Unresolvable,
    /// No time was left, or the socket timed out, during `phase`.
    Timeout(Phase),
    /// An I/O error other than a timeout during `phase`.
    Io {
        /// The step that failed.
        phase: Phase,
        /// The operating system's error kind.
        kind: io::ErrorKind,
    },
    /// The server closed the connection.
    Closed,
    /// The reply could never be valid RESP2; the connection was closed.
    Protocol(ProtocolError),
    /// The server sent an error reply.
    Server(ServerError),
    /// A well-formed reply of a type the command never returns (for example `:1` to `SET`);
    /// the connection was closed.
    UnexpectedReply,
    /// `SCRIPT LOAD` returned a digest other than the script's SHA1; the node is not running
    /// our script.
    ScriptDigestMismatch,
    /// A node known to be slow had not answered when the round was decided, so it was not
    /// waited for; the command was sent and its outcome is unknown.
    NotAwaited,
    /// The node's connection owes so many unread replies (it is paused or cut off) that no
    /// new lock was sent to it until it answers; nothing was sent this round.
    HeldBack,
    /// The node restarted recently (its `run_id` changed, or its uptime is below
    /// [`crate::Builder::restart_quarantine`]) and may have lost keys, or, with fencing, its
    /// counter for this resource has not been re-seeded since it restarted: it does not vote
    /// on grants yet. Releases still reach it.
    Quarantined,
    /// The node reports the same `run_id` as another configured node: one server listed under
    /// two names. It never votes, so that server is not counted twice.
    SameServer {
        /// Position of the other node in the configured list.
        node: usize,
        /// `host:port` of the other node.
        addr: String,
    },
    /// A TLS check failed (only with the `tls` feature): the variant says which. The
    /// connection was closed.
    Tls(TlsError),
}

impl NodeError {
    pub(crate) fn io(phase: Phase, err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Self::Timeout(phase),
            io::ErrorKind::UnexpectedEof => Self::Closed,
            kind => Self::Io { phase, kind },
        }
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unresolvable => f.write_str("host name did not resolve"),
            Self::Timeout(phase) => write!(f, "{phase} timed out"),
            Self::Io { phase, kind } => write!(f, "{phase} failed: {kind}"),
            Self::Closed => f.write_str("connection closed by the server"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Server(e) => e.fmt(f),
            Self::UnexpectedReply => f.write_str("unexpected reply type for the command"),
            Self::ScriptDigestMismatch => f.write_str("script load returned another digest"),
            Self::NotAwaited => f.write_str("slow node not awaited once the round was decided"),
            Self::HeldBack => f.write_str("held back: owes too many unread replies"),
            Self::Quarantined => f.write_str("restarted recently: quarantined, no vote on grants"),
            Self::SameServer { node, addr } => {
                write!(f, "same server as node {node} ({addr}): not counted twice")
            }
            Self::Tls(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for NodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Protocol(e) => Some(e),
            Self::Server(e) => Some(e),
            Self::Tls(e) => Some(e),
            _ => None,
        }
    }
}

/// One node's failure in a round, with the node it happened on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFailure {
    /// Position of the node in the configured list.
    pub node: usize,
    /// `host:port` of the node (never the password).
    pub addr: String,
    /// What went wrong.
    pub error: NodeError,
}

impl fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} ({}): {}", self.node, self.addr, self.error)
    }
}

impl std::error::Error for NodeFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Everything a public call of this crate can fail with.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A node URL did not parse. `url` has any password replaced by `***`.
    InvalidUrl {
        /// The offending URL, password redacted.
        url: String,
        /// The rule it breaks (it also reads as its message: `reason.contains("port")`).
        reason: UrlRule,
    },
    /// The configuration is unusable (no nodes, a node listed twice, a zero timeout, a drift
    /// factor outside `[0, 1)`, ...). Detected before any I/O.
    ///
    /// The text is [`ConfigRule::message`] of the rule that failed; [`Error::config_rule`]
    /// gives the rule itself.
    InvalidConfig(&'static str),
    /// The ttl is zero, not a whole number of milliseconds, above [`crate::MAX_TTL`], or not
    /// longer than the clock-drift margin. Detected before any I/O.
    InvalidTtl {
        /// The ttl that was asked for.
        ttl: Duration,
        /// The rule it breaks (it also reads as its message).
        reason: TtlRule,
    },
    /// No attempt reached a quorum with time left on the lock.
    ///
    /// The counts describe the replies read before the last round was decided: reading stops
    /// once the outcome is known, so nodes left unread are in neither count (and were
    /// released all the same).
    NotAcquired {
        /// How many attempts ran (1 for `try_lock`, up to `retries + 1` for `lock`, as many as
        /// fit in `max_wait` for `lock_within`). A fenced attempt is two rounds.
        attempts: u32,
        /// Votes needed: `nodes / 2 + 1`.
        quorum: usize,
        /// In the last round: nodes that granted the lock.
        granted: usize,
        /// In the last round: nodes where another value held the key (contention).
        held_elsewhere: usize,
        /// True when the last round had a quorum but no validity left (the round took longer
        /// than the ttl minus the drift margin).
        expired: bool,
        /// In the last round: nodes that failed, with the cause (an outage when this is what
        /// kept the quorum away).
        failures: Vec<NodeFailure>,
    },
    /// `extend` was refused locally: the guard's validity had already run out, so the lock may
    /// belong to someone else and is not touched.
    Expired,
    /// `extend` did not reach a quorum with time left; the lock should be considered lost.
    /// Keys that were extended keep their new ttl and expire on their own.
    NotExtended {
        /// Votes needed.
        quorum: usize,
        /// Nodes that still held our value and reset its ttl.
        extended: usize,
        /// Nodes where the key was gone or held another value.
        not_held: usize,
        /// True when a quorum extended but the round took longer than the new validity.
        expired: bool,
        /// Nodes that failed, with the cause.
        failures: Vec<NodeFailure>,
    },
    /// Release could not tell whether the lock was still ours: fewer than a quorum confirmed
    /// the delete, and enough nodes failed that a quorum may still hold our value until its ttl
    /// runs out.
    ReleaseUncertain {
        /// Votes needed.
        quorum: usize,
        /// Nodes that deleted our key.
        released: usize,
        /// Nodes that failed, with the cause.
        failures: Vec<NodeFailure>,
    },
    /// The operating system's random number generator failed.
    Entropy,
    /// The guard (or lease) was taken by another process: this one is a child forked since,
    /// which must not release or extend its parent's lock (it would do so through the
    /// parent's connections, or delete the key under the parent). Nothing was sent.
    WrongProcess,
    /// A CA, certificate or key file given to `Builder::tls_ca_file` or
    /// `Builder::tls_client_cert` could not be used (only with the `tls` feature).
    /// Detected by `build`, before any connection. The message names the file, never its
    /// contents.
    InvalidTlsFile {
        /// The file, as given to the builder.
        path: std::path::PathBuf,
        /// What is wrong with it (it also reads as its message).
        reason: TlsFileRule,
    },
    /// A read-only round (such as [`crate::Redlock::inspect`]) heard fewer than a quorum of
    /// nodes, so its answer could not be trusted.
    NoQuorum {
        /// Answers needed.
        quorum: usize,
        /// Nodes that answered.
        answered: usize,
        /// Nodes that failed, with the cause.
        failures: Vec<NodeFailure>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl { url, reason } => write!(f, "invalid node url {url:?}: {reason}"),
            Self::InvalidConfig(reason) => write!(f, "invalid configuration: {reason}"),
            Self::InvalidTtl { ttl, reason } => write!(f, "invalid ttl {ttl:?}: {reason}"),
            Self::NotAcquired {
                attempts,
                quorum,
                granted,
                held_elsewhere,
                expired,
                failures,
            } => {
                write!(
                    f,
                    "lock not acquired after {attempts} attempt(s): last round {granted} granted \
                     of {quorum} needed, {held_elsewhere} held elsewhere, {} failed",
                    failures.len()
                )?;
                if *expired {
                    f.write_str(", no validity left")?;
                }
                write_failures(f, failures)
            }
            Self::Expired => f.write_str("lock validity already over, not extended"),
            Self::NotExtended {
                quorum,
                extended,
                not_held,
                expired,
                failures,
            } => {
                write!(
                    f,
                    "lock not extended: {extended} extended of {quorum} needed, {not_held} no \
                     longer ours, {} failed",
                    failures.len()
                )?;
                if *expired {
                    f.write_str(", no validity left")?;
                }
                write_failures(f, failures)
            }
            Self::ReleaseUncertain {
                quorum,
                released,
                failures,
            } => {
                write!(
                    f,
                    "release uncertain: {released} released of {quorum} needed, {} failed",
                    failures.len()
                )?;
                write_failures(f, failures)
            }
            Self::Entropy => f.write_str("operating system random number generator failed"),
            Self::WrongProcess => {
                f.write_str("the lock belongs to another process (forked since it was taken)")
            }
            Self::InvalidTlsFile { path, reason } => {
                write!(f, "invalid tls file {}: {reason}", path.display())
            }
            Self::NoQuorum {
                quorum,
                answered,
                failures,
            } => {
                write!(
                    f,
                    "no quorum of answers: {answered} answered of {quorum} needed, {} failed",
                    failures.len()
                )?;
                write_failures(f, failures)
            }
        }
    }
}

fn write_failures(f: &mut fmt::Formatter<'_>, failures: &[NodeFailure]) -> fmt::Result {
    for failure in failures {
        write!(f, "; {failure}")?;
    }
    Ok(())
}

impl std::error::Error for Error {
    /// The first failed node, for the variants that carry per-node failures; from there,
    /// [`NodeError`]'s own source is the protocol or server error.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.node_failures()
            .first()
            .map(|failure| failure as &(dyn std::error::Error + 'static))
    }
}

impl Error {
    /// The rule an [`Error::InvalidConfig`] broke.
    pub fn config_rule(&self) -> Option<ConfigRule> {
        match self {
            Self::InvalidConfig(message) => ConfigRule::from_message(message),
            _ => None,
        }
    }

    pub(crate) fn config(rule: ConfigRule) -> Self {
        Self::InvalidConfig(rule.message())
    }

    /// True when the failure to acquire was due to contention only: the lock is held by
    /// another owner and no node failed. A slow node that was only polled once the round was
    /// decided ([`NodeError::NotAwaited`]) is not a failure here: nothing went wrong with it.
    pub fn is_contention(&self) -> bool {
        matches!(self, Self::NotAcquired { failures, held_elsewhere, .. }
            if *held_elsewhere > 0
                && failures.iter().all(|f| f.error == NodeError::NotAwaited))
    }

    /// The per-node failures carried by this error (empty for other variants).
    pub fn node_failures(&self) -> &[NodeFailure] {
        match self {
            Self::NotAcquired { failures, .. }
            | Self::NotExtended { failures, .. }
            | Self::ReleaseUncertain { failures, .. }
            | Self::NoQuorum { failures, .. } => failures,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn every_rule_has_its_own_message() {
        fn distinct(messages: &[&str]) -> bool {
            let mut sorted = messages.to_vec();
            sorted.sort_unstable();
            sorted.windows(2).all(|pair| pair.first() != pair.last())
        }
        let config: Vec<_> = ConfigRule::ALL.iter().map(|r| r.message()).collect();
        let url: Vec<_> = UrlRule::ALL.iter().map(|r| r.message()).collect();
        let ttl: Vec<_> = TtlRule::ALL.iter().map(|r| r.message()).collect();
        assert!(distinct(&config) && distinct(&url) && distinct(&ttl));
        let tls: Vec<_> = TlsError::ALL.iter().map(|r| r.message()).collect();
        let files: Vec<_> = TlsFileRule::ALL.iter().map(|r| r.message()).collect();
        assert!(distinct(&tls) && distinct(&files));
        assert!(TlsError::ALL.iter().all(|e| e.starts_with("tls: ")));
        let node = NodeError::Tls(TlsError::Expired);
        assert_eq!(node.to_string(), "tls: server certificate expired");
        assert_eq!(
            node.source().map(ToString::to_string),
            Some(node.to_string())
        );
        for &rule in ConfigRule::ALL {
            assert_eq!(Error::config(rule).config_rule(), Some(rule));
        }
        assert_eq!(Error::Expired.config_rule(), None);
        assert!(UrlRule::PortRange.contains("port"));
        assert_eq!(UrlRule::BadPort, "invalid port");
    }

    #[test]
    fn source_walks_from_the_error_to_the_node_cause() {
        let failure = NodeFailure {
            node: 2,
            addr: "127.0.0.1:7003".into(),
            error: NodeError::Protocol(ProtocolError::TooDeep),
        };
        let err = Error::NotAcquired {
            attempts: 1,
            quorum: 2,
            granted: 1,
            held_elsewhere: 0,
            expired: false,
            failures: vec![failure.clone()],
        };
        let node = err.source().map(ToString::to_string);
        assert_eq!(node, Some(failure.to_string()));
        let cause = err
            .source()
            .and_then(|s| s.source())
            .map(ToString::to_string);
        assert_eq!(cause, Some(failure.error.to_string()));
        let root = err
            .source()
            .and_then(|s| s.source())
            .and_then(|s| s.source())
            .map(ToString::to_string);
        assert_eq!(root, Some(ProtocolError::TooDeep.to_string()));
        assert!(Error::Expired.source().is_none());
    }
}
