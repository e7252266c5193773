//! resplock: Redlock distributed locks over N independent Redis masters.
//!
//! The crate speaks RESP2 itself over TCP, TLS (feature `tls`) or Unix sockets ([`resp`] is a
//! strict, bounded, zero-copy codec) and sends only `SET NX PX`, `PTTL`, `EVALSHA`,
//! `SCRIPT LOAD`, `INFO server` (and `INFO persistence` with fencing), `SUBSCRIBE` and
//! `UNSUBSCRIBE` (for waiters), `AUTH`, `SELECT` and, over TLS without either, one `PING` per
//! connection. Its runtime dependencies with default features are `rand` (for the operating
//! system's random generator) and `socket2`.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! let dlm = resplock::Redlock::new([
//!     "redis://127.0.0.1:7001",
//!     "redis://127.0.0.1:7002",
//!     "redis://127.0.0.1:7003",
//! ])?;
//! let guard = dlm.lock("invoices:2026-11", Duration::from_secs(10))?;
//! if guard.remaining() > Duration::from_secs(1) {
//!     // ... critical section, kept well inside the validity ...
//! }
//! guard.release()?;
//! # Ok::<(), resplock::Error>(())
//! ```
//!
//! # What is guaranteed, and what is not
//!
//! A lock is granted when a majority of nodes accepted the key within a validity window of
//! `ttl - elapsed - (ttl * drift_factor + 2 ms)`, measured on this process's monotonic clock.
//! Two clients can hold the same lock at once only if an assumption fails: node clocks that run
//! at rates differing by more than the drift factor, a node that loses keys on restart (no AOF
//! with `appendfsync always` and restarted before the longest ttl), or a holder that pauses
//! (GC, swap, `SIGSTOP`, host suspend) past [`LockGuard::remaining`] and then acts. For that
//! last case, a manager built with [`Builder::fencing`]`(true)` gives every grant a token
//! ([`LockGuard::token`]) larger than that of every grant that returned before it started: a
//! resource that rejects tokens lower than the highest it has seen refuses the stale writer.
//! Tokens need nodes that keep acknowledged writes; `SAFETY.md` in the repository states the
//! model, fencing's conditions included, in full.
//!
//! `Instant` on Linux is `CLOCK_MONOTONIC`, which does not advance while the host is
//! suspended: a lock held across a suspend looks valid for longer than it is. Do not hold
//! locks across suspend.
//!
//! # Modules
//! - [`resp`]: the sans-IO RESP2 decoder and command encoder.
//! - [`script`]: the Lua scripts (release, extend, inspect, fenced acquire, fence confirm) with
//!   their SHA1 digests.
//! - [`url`]: node URL parsing.
//! - [`error`]: every error type, and the rules a configuration, URL or ttl can break.
//!
//! Inside, a public call runs *rounds*: a pure state machine (`round.rs`) decides what to read
//! and when the round is over, and a thin driver (`drive.rs`) does the socket work.
//! `ARCHITECTURE.md` in the repository shows the modules, the one-way data flow, where each
//! invariant is enforced and how a new kind of round plugs in.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod batch;
mod builder;
mod command;
mod conn;
mod drive;
pub mod error;
mod fence;
mod guard;
mod health;
mod identity;
mod inspect;
mod keeper;
mod lease;
mod line;
mod listen;
mod nodes;
mod pool;
mod quorum;
mod redact;
mod redlock;
mod resolve;
pub mod resp;
mod round;
mod rules;
mod schedule;
pub mod script;
mod stream;
mod sync;
#[cfg(feature = "tls")]
mod tls;
pub mod url;
mod waiting;

pub use builder::Builder;
pub use error::{
    ConfigRule, Error, NodeError, NodeFailure, Phase, ProtocolError, ServerError, ServerErrorKind,
    TlsError, TlsFileRule, TtlRule, UrlRule,
};
pub use guard::LockGuard;
pub use inspect::Inspection;
pub use lease::{Held, KeepAlive, Lease, Lost};
pub use nodes::{CONNECT_BACKOFF, MAX_NODES};
pub use redlock::{Redlock, MAX_TTL};
pub use url::NodeAddr;
