//! resplock: Redlock distributed locks over N independent Redis masters.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod resp;

pub use error::{Error, NodeError, NodeFailure, Phase, ProtocolError, ServerError, ServerErrorKind};
