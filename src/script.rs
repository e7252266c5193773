//! The Lua scripts a lock needs (release, extend, inspect, fenced acquire, fence confirm), with
//! their SHA1 digests as constants.
//!
//! Contract: every script that touches the lock key compares its value with ours first, so
//! release and extend never delete or prolong another owner's lock, and extend never re-creates
//! a key that has gone. They run with `EVALSHA`. Every new connection loads the ones its
//! manager uses first (all five with fencing, the first three without); on `NOSCRIPT`
//! the round (`round.rs`) asks for one `SCRIPT LOAD` per node per public call, the driver
//! checks that the digest it returns is the constant here, and retries the command once. `EVAL` is
//! never sent. The texts are public so that other processes and other Redlock clients can
//! release or extend a lock by `(resource, value)` with the same semantics.

/// Deletes `KEYS[1]` if its value is `ARGV[1]`, and then, unless `ARGV[2]` is `"0"`, publishes
/// an empty message on `resplock:released:<KEYS[1]>` so that waiters
/// ([`crate::Redlock::lock_within`]) learn of it at once; returns 1 if deleted, 0 otherwise.
/// The cleanup of a failed attempt passes `"0"`: that key was never anyone's lock.
pub const RELEASE_SCRIPT: &str = concat!(
    r#"if redis.call("get",KEYS[1]) == ARGV[1] then redis.call("del",KEYS[1]) "#,
    r#"if ARGV[2] ~= "0" then redis.call("publish","resplock:released:"..KEYS[1],"") end "#,
    r#"return 1 else return 0 end"#
);

/// SHA1 of [`RELEASE_SCRIPT`], lowercase hex, as `SCRIPT LOAD` returns it.
pub const RELEASE_SHA1: &str = "d677bad5fd0a80203ee3fe3734293629dd64fa37";

/// The prefix of the channel a release publishes on: the resource (the key) follows it.
pub const RELEASED_CHANNEL_PREFIX: &str = "resplock:released:";

/// Sets the ttl of `KEYS[1]` to `ARGV[2]` milliseconds if its value is `ARGV[1]`; returns 1 if
/// extended, 0 otherwise (the key is gone or belongs to someone else).
pub const EXTEND_SCRIPT: &str = concat!(
    r#"if redis.call("get",KEYS[1]) == ARGV[1] then "#,
    r#"return redis.call("pexpire",KEYS[1],ARGV[2]) else return 0 end"#
);

/// SHA1 of [`EXTEND_SCRIPT`], lowercase hex.
pub const EXTEND_SHA1: &str = "36e94d1c6e02fcefaa7ee5d79eee614dbac55f10";

/// Returns `{value, pttl}` when `KEYS[1]` holds a string, `{}` otherwise. Read-only: it is
/// what [`crate::Redlock::inspect`] asks every node, so value and ttl come from one instant.
pub const INSPECT_SCRIPT: &str = concat!(
    r#"local t = redis.call("type",KEYS[1]).ok if t ~= "string" then return {} end "#,
    r#"return {redis.call("get",KEYS[1]), redis.call("pttl",KEYS[1])}"#
);

/// SHA1 of [`INSPECT_SCRIPT`], lowercase hex.
pub const INSPECT_SHA1: &str = "1dc741d8cc4fef2c5b741b34ad6a79baa76902d1";

/// Takes the lock and draws a fencing token: `SET KEYS[1] ARGV[1] NX PX ARGV[2]`, and only if
/// that succeeded `INCR KEYS[2]` (the resource's counter), returning the new count; nil when
/// another value holds the key.
pub const FENCED_ACQUIRE_SCRIPT: &str = concat!(
    r#"if redis.call("set",KEYS[1],ARGV[1],"NX","PX",ARGV[2]) then "#,
    r#"return redis.call("incr",KEYS[2]) end return false"#
);

/// SHA1 of [`FENCED_ACQUIRE_SCRIPT`], lowercase hex.
pub const FENCED_ACQUIRE_SHA1: &str = "4b5bdd186f2c3f1cf0ca6523cf41403f22b52b0e";

/// Publishes a fencing token: raises the counter `KEYS[2]` to at least `ARGV[2]` (never lowers
/// it), then returns 1 if `KEYS[1]` holds our value `ARGV[1]`, 0 otherwise.
pub const FENCE_CONFIRM_SCRIPT: &str = concat!(
    r#"local c = tonumber(redis.call("get",KEYS[2]) or "0") "#,
    r#"if c < tonumber(ARGV[2]) then redis.call("set",KEYS[2],ARGV[2]) end "#,
    r#"if redis.call("get",KEYS[1]) == ARGV[1] then return 1 end return 0"#
);

/// SHA1 of [`FENCE_CONFIRM_SCRIPT`], lowercase hex.
pub const FENCE_CONFIRM_SHA1: &str = "4f7aa6ebb3b9ad53c2223a862e733658d2ec5ac0";

/// The prefix of a resource's fencing counter key: the resource follows it.
pub const FENCE_COUNTER_PREFIX: &str = "resplock:fence:";

/// Every script the crate runs, as `(source, sha1)`. A new connection loads, in this order and
/// before its first command, all five on a manager with fencing and the first three without.
pub const SCRIPTS: &[(&str, &str)] = &[
    (RELEASE_SCRIPT, RELEASE_SHA1),
    (EXTEND_SCRIPT, EXTEND_SHA1),
    (INSPECT_SCRIPT, INSPECT_SHA1),
    (FENCED_ACQUIRE_SCRIPT, FENCED_ACQUIRE_SHA1),
    (FENCE_CONFIRM_SCRIPT, FENCE_CONFIRM_SHA1),
];

/// A script and its digest, as the connection layer uses them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Script {
    pub source: &'static str,
    pub sha1: &'static str,
}

pub(crate) const RELEASE: Script = Script {
    source: RELEASE_SCRIPT,
    sha1: RELEASE_SHA1,
};

pub(crate) const EXTEND: Script = Script {
    source: EXTEND_SCRIPT,
    sha1: EXTEND_SHA1,
};

pub(crate) const INSPECT: Script = Script {
    source: INSPECT_SCRIPT,
    sha1: INSPECT_SHA1,
};

pub(crate) const FENCED_ACQUIRE: Script = Script {
    source: FENCED_ACQUIRE_SCRIPT,
    sha1: FENCED_ACQUIRE_SHA1,
};

pub(crate) const FENCE_CONFIRM: Script = Script {
    source: FENCE_CONFIRM_SCRIPT,
    sha1: FENCE_CONFIRM_SHA1,
};

/// Every script, in the order a new connection loads them (as [`SCRIPTS`]).
pub(crate) const ALL: [Script; 5] = [RELEASE, EXTEND, INSPECT, FENCED_ACQUIRE, FENCE_CONFIRM];

/// The scripts a manager without fencing loads on a new connection.
pub(crate) const UNFENCED: &[Script] = &[RELEASE, EXTEND, INSPECT];
