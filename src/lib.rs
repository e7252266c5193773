//! resplock: Redlock distributed locks over N independent Redis masters.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod conn;
pub mod error;
mod nodes;
mod quorum;
mod redlock;
pub mod resp;
pub mod script;
pub mod url;

pub use error::{
    Error, NodeError, NodeFailure, Phase, ProtocolError, ServerError, ServerErrorKind,
};
pub use nodes::MAX_NODES;
pub use redlock::{Builder, LockGuard, Redlock, MAX_TTL};
pub use url::NodeAddr;
