//! What the nodes say about the commands they ran (`INFO commandstats`) and about
//! subscribers (`PUBSUB NUMSUB`), over one connection per node kept open.

use std::collections::BTreeMap;

use crate::support::{Raw, RawReply, RedisNode};

/// Calls per command name (`set`, `pttl`, `script|load`, ...) on one node.
pub type CommandStats = BTreeMap<String, u64>;

/// One `Raw` connection per node, and how many `INFO` calls it made there.
pub struct Probe {
    raws: Vec<Raw>,
    infos: Vec<u64>,
}

impl Probe {
    pub fn new(nodes: &[RedisNode]) -> Self {
        Self {
            raws: nodes.iter().map(RedisNode::raw).collect(),
            infos: vec![0; nodes.len()],
        }
    }

    /// `INFO commandstats` of node `node`, parsed, with this probe's own earlier `INFO` calls
    /// taken off the `info` count (a node counts a command once it has run, so the reply does
    /// not count the call that asked for it): between two snapshots of one probe, `info` is
    /// then what others sent (resplock reads `INFO server` on every new connection).
    pub fn stats(&mut self, node: usize) -> CommandStats {
        let text = self.raws[node].info("commandstats");
        let own = self.infos[node];
        self.infos[node] += 1;
        let mut stats: CommandStats = text
            .lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest.strip_prefix("calls=")?.split(',').next()?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .collect();
        if let Some(info) = stats.get_mut("info") {
            *info -= own.min(*info);
        }
        stats
    }

    /// [`Probe::stats`] of every node.
    pub fn all_stats(&mut self) -> Vec<CommandStats> {
        (0..self.raws.len()).map(|node| self.stats(node)).collect()
    }

    /// Calls of `command` on node `node` so far.
    pub fn calls(&mut self, node: usize, command: &str) -> u64 {
        self.stats(node).get(command).copied().unwrap_or(0)
    }

    /// Subscribers of `channel` on node `node`.
    pub fn numsub(&mut self, node: usize, channel: &[u8]) -> i64 {
        match self.raws[node].cmd(&[b"PUBSUB", b"NUMSUB", channel]) {
            RawReply::Array(Some(items)) => items
                .get(1)
                .and_then(RawReply::as_int)
                .unwrap_or_else(|| panic!("PUBSUB NUMSUB: unexpected reply {items:?}")),
            other => panic!("PUBSUB NUMSUB: unexpected reply {other:?}"),
        }
    }
}

/// Commands that `INFO commandstats` counts when a Lua script calls them (the release script's
/// `GET`, `DEL` and `PUBLISH`, the extend script's `PEXPIRE`, the inspect script's `TYPE`, the
/// fencing scripts' `INCR`): resplock never sends them itself, so they are not counted as
/// commands sent.
pub const SCRIPT_INTERNAL: [&str; 6] = ["get", "del", "publish", "pexpire", "type", "incr"];

/// Calls per command between two snapshots of one node by one [`Probe`] (so without its own
/// `INFO` calls).
pub fn delta(before: &CommandStats, after: &CommandStats) -> CommandStats {
    after
        .iter()
        .map(|(name, &calls)| {
            let was = before.get(name).copied().unwrap_or(0);
            (name.clone(), calls - was)
        })
        .filter(|(_, calls)| *calls > 0)
        .collect()
}

/// Calls of every command in `stats`.
pub fn total(stats: &CommandStats) -> u64 {
    stats.values().sum()
}

/// Calls of the commands in `stats` that a client sent ([`SCRIPT_INTERNAL`] left out).
pub fn sent(stats: &CommandStats) -> u64 {
    stats
        .iter()
        .filter(|(name, _)| !SCRIPT_INTERNAL.contains(&name.as_str()))
        .map(|(_, calls)| calls)
        .sum()
}

/// Sums per-node deltas between `before` and `after` into one map (every node together).
pub fn delta_all(before: &[CommandStats], after: &[CommandStats]) -> CommandStats {
    let mut sum = CommandStats::new();
    for (b, a) in before.iter().zip(after) {
        for (name, calls) in delta(b, a) {
            *sum.entry(name).or_default() += calls;
        }
    }
    sum
}
