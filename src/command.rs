//! What a round says to every node, and what each reply means for the lock.
//!
//! Contract: an [`Exchange`] encodes the same bytes for every node of a round (so they are
//! encoded once and written as is), says how many replies they produce and which script they
//! run, and judges each reply. A wrong reply type is never a success: it is
//! [`Answer::Broken`], and the connection is closed. A new kind of round is a new `Exchange`.

use crate::error::{NodeError, ServerError, ServerErrorKind};
use crate::resp::{encode_command, DecimalBuf, Reply};
use crate::round::Answer;
use crate::script::{self, Script};

/// The commands of one round and the meaning of their replies.
pub(crate) trait Exchange {
    /// The script the commands run with `EVALSHA`, if any: a node may answer `NOSCRIPT`.
    fn script(&self) -> Option<Script>;

    /// True when the round takes a lock: a node that owes too many replies is held back.
    fn locking(&self) -> bool {
        false
    }

    /// True when the round draws fencing tokens: a node whose counter may have been lost does
    /// not vote on it.
    fn fenced(&self) -> bool {
        false
    }

    /// Replies that the encoded commands produce on each node.
    fn replies(&self) -> u32 {
        1
    }

    /// Appends the commands, identical for every node.
    fn encode(&self, out: &mut Vec<u8>);

    /// Judges reply number `index` (from 0) of `node`'s answer. A node's answer is the first
    /// reply's, unless a later one is [`Answer::Broken`].
    fn judge(&mut self, node: usize, index: u32, reply: Reply<'_>) -> Answer;
}

/// The compare-and-act commands of a held lock (taking it is [`crate::fence::Take`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Command<'a> {
    /// `EVALSHA <release> 1 key value`: deletes the key if it holds our value and tells
    /// waiters.
    Release { key: &'a [u8], value: &'a [u8] },
    /// `EVALSHA <release> 1 key value 0`: the same without telling waiters, for the cleanup
    /// of a failed attempt (that key was never a lock anyone held).
    Cleanup { key: &'a [u8], value: &'a [u8] },
    /// `EVALSHA <extend> 1 key value ttl`.
    Extend {
        key: &'a [u8],
        value: &'a [u8],
        ttl_ms: u64,
    },
}

impl Exchange for Command<'_> {
    fn script(&self) -> Option<Script> {
        match self {
            Self::Release { .. } | Self::Cleanup { .. } => Some(script::RELEASE),
            Self::Extend { .. } => Some(script::EXTEND),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut digits = DecimalBuf::new();
        match *self {
            Self::Release { key, value } => {
                let sha1 = script::RELEASE.sha1.as_bytes();
                encode_command(out, &[b"EVALSHA", sha1, b"1", key, value]);
            }
            Self::Cleanup { key, value } => {
                let sha1 = script::RELEASE.sha1.as_bytes();
                encode_command(out, &[b"EVALSHA", sha1, b"1", key, value, b"0"]);
            }
            Self::Extend { key, value, ttl_ms } => {
                let sha1 = script::EXTEND.sha1.as_bytes();
                let ttl = digits.format(ttl_ms);
                encode_command(out, &[b"EVALSHA", sha1, b"1", key, value, ttl]);
            }
        }
    }

    fn judge(&mut self, _node: usize, _index: u32, reply: Reply<'_>) -> Answer {
        script_verdict(reply)
    }
}

/// What a compare-and-act script's reply means: `:1` it acted, `:0` the key is not ours.
pub(crate) fn script_verdict(reply: Reply<'_>) -> Answer {
    match reply {
        Reply::Integer(1) => Answer::Yes,
        Reply::Integer(0) => Answer::No,
        // The key holds another type: whatever it is, it is not our lock.
        Reply::Error(line) if ServerErrorKind::classify(line) == ServerErrorKind::WrongType => {
            Answer::No
        }
        other => other_reply(other),
    }
}

/// An error reply is a failed node that keeps its connection; any other unexpected reply
/// breaks the connection.
pub(crate) fn other_reply(reply: Reply<'_>) -> Answer {
    match reply {
        Reply::Error(line) => Answer::Failed(NodeError::Server(ServerError::from_line(line))),
        _ => Answer::Broken(NodeError::UnexpectedReply),
    }
}

/// [`other_reply`] for a command that runs no script: a `NOSCRIPT` to it is a reply it never
/// returns, from a server that is not answering what we sent.
pub(crate) fn unscripted(reply: Reply<'_>) -> Answer {
    match reply {
        Reply::Error(line) if ServerErrorKind::classify(line) == ServerErrorKind::NoScript => {
            Answer::Broken(NodeError::UnexpectedReply)
        }
        other => other_reply(other),
    }
}

/// What a `SCRIPT LOAD` reply means: the digest we expect, or why not.
pub(crate) fn script_loaded(script: Script, reply: Reply<'_>) -> Answer {
    match reply {
        Reply::Bulk(Some(digest)) if digest == script.sha1.as_bytes() => Answer::Yes,
        Reply::Bulk(Some(_)) => Answer::Failed(NodeError::ScriptDigestMismatch),
        other => other_reply(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{decode, Limits, Status};

    fn judged(mut command: Command<'_>, bytes: &[u8]) -> Answer {
        match decode(bytes, &Limits::LOCK_CLIENT) {
            Ok(Status::Complete((reply, _))) => command.judge(0, 0, reply),
            other => panic!("{bytes:?}: {other:?}"),
        }
    }

    #[test]
    fn every_reply_has_one_meaning() {
        let release = Command::Release {
            key: b"k",
            value: b"v",
        };
        let server =
            |line: &str| Answer::Failed(NodeError::Server(ServerError::from_line(line.as_bytes())));
        let broken = Answer::Broken(NodeError::UnexpectedReply);
        assert_eq!(judged(release, b":1\r\n"), Answer::Yes);
        assert_eq!(judged(release, b":0\r\n"), Answer::No);
        assert_eq!(judged(release, b":2\r\n"), broken);
        assert_eq!(judged(release, b"+OK\r\n"), broken);
        assert_eq!(judged(release, b"-WRONGTYPE x\r\n"), Answer::No);
        assert_eq!(judged(release, b"-NOSCRIPT x\r\n"), server("NOSCRIPT x"));
        let unscripted_reply = |bytes: &[u8]| match decode(bytes, &Limits::LOCK_CLIENT) {
            Ok(Status::Complete((reply, _))) => unscripted(reply),
            other => panic!("{other:?}"),
        };
        assert_eq!(unscripted_reply(b"-LOADING x\r\n"), server("LOADING x"));
        assert_eq!(unscripted_reply(b"-NOSCRIPT x\r\n"), broken);
        let load = |bytes: &[u8]| match decode(bytes, &Limits::LOCK_CLIENT) {
            Ok(Status::Complete((reply, _))) => script_loaded(script::RELEASE, reply),
            other => panic!("{other:?}"),
        };
        let digest = format!("$40\r\n{}\r\n", script::RELEASE_SHA1);
        assert_eq!(load(digest.as_bytes()), Answer::Yes);
        let other = format!("$40\r\n{}\r\n", script::EXTEND_SHA1);
        assert_eq!(
            load(other.as_bytes()),
            Answer::Failed(NodeError::ScriptDigestMismatch)
        );
        assert_eq!(load(b"+OK\r\n"), broken);
    }

    #[test]
    fn extend_encodes_the_script_call_with_the_ttl() {
        let mut out = Vec::new();
        let extend = Command::Extend {
            key: b"k",
            value: b"v",
            ttl_ms: 30000,
        };
        extend.encode(&mut out);
        let expected = format!(
            "*6\r\n$7\r\nEVALSHA\r\n$40\r\n{}\r\n$1\r\n1\r\n$1\r\nk\r\n$1\r\nv\r\n$5\r\n30000\r\n",
            script::EXTEND_SHA1
        );
        assert_eq!(String::from_utf8_lossy(&out), expected);
        assert_eq!(extend.script().map(|s| s.sha1), Some(script::EXTEND_SHA1));
        assert!(!extend.locking());
    }
}
