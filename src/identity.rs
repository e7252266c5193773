//! Who a node is: the `run_id` and uptime it reports in `INFO server`, read on every new
//! connection before the first command (with fencing, `aof_enabled` from `INFO persistence`
//! too), and what follows from them.
//!
//! Contract (pure; the clock comes in as a parameter):
//! - A node whose `run_id` changed has restarted and may have lost keys: it is *quarantined*
//!   (no vote on grants, releases still go out) until it has been up for the configured
//!   window. A node first seen with an uptime below the window gets the same treatment: it
//!   may have restarted just before this process met it.
//! - For fencing, such a node's counters are trusted at once when it reports AOF enabled (the
//!   documented assumption, `appendfsync always`, then keeps them); otherwise only for the
//!   resources whose counter has been re-seeded from a quorum since ([`Identity::seeded`]).
//! - A client that never saw a node's old `run_id` and meets it after the window cannot tell
//!   that it restarted: that case is only covered by persistence (see SAFETY.md).
//! - Duplicate detection compares `run_id`s across the configured nodes (`nodes.rs`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// What `INFO server` (and, with fencing, `INFO persistence`) says about a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    pub run_id: Vec<u8>,
    pub uptime: Duration,
    /// What `INFO persistence` said; the default when not asked.
    pub persistence: Persistence,
}

/// What `INFO persistence` says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Persistence {
    /// `aof_enabled`, when said.
    pub aof: Option<bool>,
    /// `loading:1`: the node is still loading its data, and reports `aof_enabled:0` until it
    /// is done, so whether it keeps an append-only file cannot be told yet.
    pub loading: bool,
}

impl Seen {
    /// True when the node says it keeps an append-only file: a restart then loses no
    /// acknowledged write, under the documented `appendfsync always`.
    pub fn keeps_writes(&self) -> bool {
        !self.persistence.loading && self.persistence.aof == Some(true)
    }
}

/// Reads `aof_enabled` and `loading` from the text of `INFO persistence`.
pub(crate) fn parse_persistence(text: &[u8]) -> Persistence {
    let mut said = Persistence::default();
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match line {
            b"aof_enabled:1" => said.aof = Some(true),
            b"aof_enabled:0" => said.aof = Some(false),
            b"loading:1" => said.loading = true,
            _ => {}
        }
    }
    said
}

/// Reads `run_id` and `uptime_in_seconds` from the text of `INFO server` (`key:value` lines).
/// `None` when either is missing (not a Redis server, or a proxy that hides them).
pub(crate) fn parse_info(text: &[u8]) -> Option<Seen> {
    let mut run_id = None;
    let mut uptime = None;
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(id) = line.strip_prefix(b"run_id:") {
            run_id = (!id.is_empty() && id.len() <= 64).then(|| id.to_vec());
        } else if let Some(secs) = line.strip_prefix(b"uptime_in_seconds:") {
            uptime = std::str::from_utf8(secs)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .map(Duration::from_secs);
        }
    }
    Some(Seen {
        run_id: run_id?,
        uptime: uptime?,
        persistence: Persistence::default(),
    })
}

/// What this process knows about one node's identity.
#[derive(Debug, Default)]
pub(crate) struct Identity {
    run_id: Option<Vec<u8>>,
    quarantined_until: Option<Instant>,
    /// `None`: trusted for fencing on every resource. `Some(set)`: restarted (or young when
    /// first seen) without AOF: trusted only for the resources re-seeded since.
    seeded: Option<HashSet<Vec<u8>>>,
}

/// What an observation changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// First sight of the node.
    First,
    /// Same `run_id` as before.
    Same,
    /// Another `run_id`: the node restarted.
    Restarted,
}

impl Identity {
    /// Records what a new connection saw at `now`; `window` is the restart quarantine.
    pub fn observe(&mut self, seen: &Seen, now: Instant, window: Duration) -> Change {
        let change = match &self.run_id {
            None => Change::First,
            Some(id) if *id == seen.run_id => Change::Same,
            Some(_) => Change::Restarted,
        };
        let young = seen.uptime < window;
        match change {
            Change::Same => {}
            Change::First | Change::Restarted => {
                self.run_id = Some(seen.run_id.clone());
                self.quarantined_until = young.then(|| now + (window - seen.uptime));
                if (change == Change::Restarted || young) && !seen.keeps_writes() {
                    self.seeded = Some(HashSet::new());
                }
            }
        }
        change
    }

    /// The `run_id` last seen.
    pub fn run_id(&self) -> Option<&[u8]> {
        self.run_id.as_deref()
    }

    /// True while the node may not vote on grants.
    pub fn quarantined(&self, now: Instant) -> bool {
        self.quarantined_until.is_some_and(|until| now < until)
    }

    /// True when the node's fencing counter for `resource` can be trusted.
    pub fn fence_trusted(&self, resource: &[u8]) -> bool {
        self.seeded
            .as_ref()
            .is_none_or(|set| set.contains(resource))
    }

    /// The node's counter for `resource` has been raised to a token computed from a quorum of
    /// trusted nodes: it can be trusted for that resource again.
    pub fn seeded(&mut self, resource: &[u8]) {
        if let Some(set) = self.seeded.as_mut() {
            set.insert(resource.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: &str, uptime_s: u64) -> Seen {
        Seen {
            run_id: id.as_bytes().to_vec(),
            uptime: Duration::from_secs(uptime_s),
            persistence: Persistence::default(),
        }
    }

    fn with_aof(id: &str, uptime_s: u64) -> Seen {
        Seen {
            persistence: Persistence {
                aof: Some(true),
                loading: false,
            },
            ..seen(id, uptime_s)
        }
    }

    #[test]
    fn info_persistence_gives_aof_enabled_and_loading() {
        let on = b"# Persistence\r\nloading:0\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\n";
        assert_eq!(
            parse_persistence(on),
            Persistence {
                aof: Some(true),
                loading: false
            }
        );
        assert_eq!(parse_persistence(b"aof_enabled:0\r\n").aof, Some(false));
        assert_eq!(parse_persistence(b"aof_enabled:yes\r\n").aof, None);
        // Redis 7.0 while it loads an append-only file: aof_enabled is 0 until it is done.
        let loading = parse_persistence(b"loading:1\r\naof_enabled:0\r\n");
        assert!(loading.loading);
        let seen = Seen {
            persistence: loading,
            ..seen("a", 0)
        };
        assert!(!seen.keeps_writes());
    }

    #[test]
    fn a_restart_with_aof_keeps_fencing_trust_and_one_without_loses_it() {
        let window = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut node = Identity::default();
        node.observe(&with_aof("a", 1000), t0, window);
        assert_eq!(
            node.observe(&with_aof("b", 1), t0, window),
            Change::Restarted
        );
        assert!(node.fence_trusted(b"r"), "AOF kept the counters");
        assert!(
            node.quarantined(t0),
            "the quarantine of grants is the user's setting, AOF or not"
        );
        node.observe(&seen("c", 1), t0, window);
        assert!(!node.fence_trusted(b"r"), "no AOF: distrusted");
        // A later restart with AOF does not vouch for what the one without lost.
        node.observe(&with_aof("d", 1), t0, window);
        assert!(!node.fence_trusted(b"r"));
        node.seeded(b"r");
        assert!(node.fence_trusted(b"r"));
        let mut young = Identity::default();
        young.observe(&with_aof("a", 1), t0, window);
        assert!(young.fence_trusted(b"r"));
    }

    #[test]
    fn info_server_gives_run_id_and_uptime() {
        let text = b"# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\nuptime_in_seconds:42\r\n";
        assert_eq!(parse_info(text), Some(seen("abc123", 42)));
        assert_eq!(parse_info(text).map(|s| s.keeps_writes()), Some(false));
        assert_eq!(parse_info(b"# Server\r\nrun_id:abc\r\n"), None);
        assert_eq!(parse_info(b"uptime_in_seconds:x\r\nrun_id:abc\r\n"), None);
        assert_eq!(parse_info(b"+OK"), None);
    }

    #[test]
    fn a_restart_quarantines_for_the_rest_of_the_window_and_distrusts_fencing() {
        let window = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut node = Identity::default();
        assert_eq!(node.observe(&seen("a", 1000), t0, window), Change::First);
        assert!(!node.quarantined(t0) && node.fence_trusted(b"r"));
        assert_eq!(node.observe(&seen("a", 1001), t0, window), Change::Same);
        // Restarted 10 s ago: 20 s of quarantine left.
        assert_eq!(node.observe(&seen("b", 10), t0, window), Change::Restarted);
        assert!(node.quarantined(t0 + Duration::from_secs(19)));
        assert!(!node.quarantined(t0 + Duration::from_secs(20)));
        assert!(
            !node.fence_trusted(b"r"),
            "until re-seeded, whatever the window"
        );
        node.seeded(b"r");
        assert!(node.fence_trusted(b"r") && !node.fence_trusted(b"other"));
    }

    #[test]
    fn a_young_node_is_quarantined_at_first_sight_and_no_window_quarantines_nothing() {
        let t0 = Instant::now();
        let mut young = Identity::default();
        young.observe(&seen("a", 5), t0, Duration::from_secs(30));
        assert!(young.quarantined(t0) && !young.fence_trusted(b"r"));
        let mut off = Identity::default();
        off.observe(&seen("a", 0), t0, Duration::ZERO);
        assert!(!off.quarantined(t0) && off.fence_trusted(b"r"));
        // Without a window a restart still distrusts fencing counters.
        off.observe(&seen("b", 0), t0, Duration::ZERO);
        assert!(!off.quarantined(t0) && !off.fence_trusted(b"r"));
    }
}
