//! The nemesis: one thread that, until the run ends, injects faults into a minority of the
//! lock nodes at random and heals them after a random hold.
//!
//! Every `tick` (50–200 ms) it heals the faults whose hold is over, then, if fewer than
//! [`MAX_FAULTY`] nodes are faulty, starts a fault on a healthy node with probability
//! [`START_PER_MILLE`]. Faults (weights per mille, hold 100–2500 ms, latency 50–1000 ms):
//!
//! | fault | weight | how | healed by |
//! |---|---|---|---|
//! | kill | 150 | `SIGKILL` | restart on the same port; the AOF (`appendfsync always`) is replayed |
//! | restart | 100 | `SIGTERM`, then start again at once (instantaneous) | - |
//! | pause | 200 | `SIGSTOP` | `SIGCONT`: the node answers what queued up |
//! | partition | 150 | proxy resets every connection, and every new one | proxy heals |
//! | blackhole | 100 | proxy swallows all bytes both ways | proxy heals and resets its connections |
//! | latency | 200 | proxy delays chunks 20–400 ms (both ways, or one) | latency 0 |
//! | reset | 50 | proxy resets every connection once (instantaneous) | - |
//! | script-flush | 50 | `SCRIPT FLUSH` (instantaneous): next `EVALSHA` gets `NOSCRIPT` | - |
//!
//! A black hole drops bytes for good, which real TCP never does (it retransmits, then either
//! delivers late or times the connection out). A connection used during one stays one reply
//! out of step forever (the client skips the late reply it abandoned, which never comes), so
//! at heal the proxy resets its connections, like the eventual TCP timeout would.
//!
//! Restarts without persistence are a known unsafe case for Redlock and are not injected.
//! The nemesis also watches the wall clock against the monotonic clock: Redis expires keys on
//! the wall clock, so a jump would void the run's premise; the summary reports the largest
//! divergence seen.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use crate::model::Rng;
use crate::support::{FaultProxy, RedisNode};

/// At most this many of the 5 nodes are faulty at any moment (a minority).
pub const MAX_FAULTY: usize = 2;

/// Chance per tick of starting a fault when fewer than [`MAX_FAULTY`] nodes are faulty.
const START_PER_MILLE: u64 = 350;

const ACTIONS: [(Action, u64); 8] = [
    (Action::Kill, 150),
    (Action::Restart, 100),
    (Action::Pause, 200),
    (Action::Partition, 150),
    (Action::Blackhole, 100),
    (Action::Latency, 200),
    (Action::Reset, 50),
    (Action::ScriptFlush, 50),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Kill,
    Restart,
    Pause,
    Partition,
    Blackhole,
    Latency,
    Reset,
    ScriptFlush,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Kill => "kill",
            Action::Restart => "restart",
            Action::Pause => "pause",
            Action::Partition => "partition",
            Action::Blackhole => "blackhole",
            Action::Latency => "latency",
            Action::Reset => "reset",
            Action::ScriptFlush => "script-flush",
        }
    }
}

/// A fault in force.
#[derive(Clone, Copy, Debug)]
struct Active {
    node: usize,
    action: Action,
    until: Instant,
}

/// What the nemesis did, for the summary and for failure analysis.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Actions taken, by name.
    pub actions: BTreeMap<&'static str, u64>,
    /// One line per action and heal, with the time since the start of the run.
    pub log: Vec<(Instant, String)>,
    /// Most nodes faulty at once (instantaneous actions count while they run).
    pub max_faulty: usize,
    /// Largest latency injected: chunks queued before a heal are still delivered this late.
    pub max_latency: Duration,
    /// Largest divergence seen between the wall clock and the monotonic clock since the start.
    pub max_wall_drift: Duration,
    /// When every fault had been healed at the end.
    pub healed_at: Option<Instant>,
}

pub struct Nemesis<'a> {
    nodes: &'a mut [RedisNode],
    proxies: &'a [FaultProxy],
    rng: Rng,
    start: Instant,
    active: Vec<Active>,
    report: Report,
    wall0: SystemTime,
}

impl<'a> Nemesis<'a> {
    pub fn new(
        nodes: &'a mut [RedisNode],
        proxies: &'a [FaultProxy],
        rng: Rng,
        start: Instant,
    ) -> Self {
        Nemesis {
            nodes,
            proxies,
            rng,
            start,
            active: Vec::new(),
            report: Report::default(),
            wall0: SystemTime::now(),
        }
    }

    /// Runs until `end`, then heals everything and returns what it did.
    pub fn run(mut self, end: Instant) -> Report {
        let mono0 = Instant::now();
        self.wall0 = SystemTime::now();
        while Instant::now() < end {
            self.heal_due(Instant::now());
            if self.active.len() < MAX_FAULTY && self.rng.chance(START_PER_MILLE) {
                self.inject();
            }
            self.watch_wall_clock(mono0);
            let tick = self.rng.millis(50, 200);
            std::thread::sleep(tick.min(end.saturating_duration_since(Instant::now())));
        }
        self.heal_all();
        self.watch_wall_clock(mono0);
        self.report.healed_at = Some(Instant::now());
        self.report
    }

    fn log(&mut self, line: String) {
        self.report.log.push((Instant::now(), line));
    }

    fn watch_wall_clock(&mut self, mono0: Instant) {
        let mono = mono0.elapsed();
        let drift = match self.wall0.elapsed() {
            Ok(wall) if wall >= mono => wall - mono,
            Ok(wall) => mono - wall,
            // The wall clock went back past the start.
            Err(back) => mono + back.duration(),
        };
        self.report.max_wall_drift = self.report.max_wall_drift.max(drift);
    }

    fn inject(&mut self) {
        let healthy: Vec<usize> = (0..self.nodes.len())
            .filter(|n| !self.active.iter().any(|a| a.node == *n))
            .collect();
        if healthy.is_empty() {
            return;
        }
        let node = healthy[self.rng.index(healthy.len())];
        let action = self.rng.weighted(&ACTIONS);
        // Latency comes in short blips, the other faults last up to 2.5 s.
        let hold = if action == Action::Latency {
            self.rng.millis(50, 1000)
        } else {
            self.rng.millis(100, 2500)
        };
        *self.report.actions.entry(action.name()).or_default() += 1;
        self.report.max_faulty = self.report.max_faulty.max(self.active.len() + 1);
        let began = Instant::now();
        let detail = match action {
            Action::Kill => {
                self.nodes[node].kill();
                format!("for {hold:?}")
            }
            Action::Restart => {
                self.nodes[node].restart();
                format!("(took {:?})", began.elapsed())
            }
            Action::Pause => {
                self.nodes[node].pause();
                format!("for {hold:?}")
            }
            Action::Partition => {
                self.proxies[node].partition(true);
                format!("for {hold:?}")
            }
            Action::Blackhole => {
                self.proxies[node].blackhole(true);
                format!("for {hold:?}")
            }
            Action::Latency => {
                let latency = self.rng.millis(20, 400);
                self.report.max_latency = self.report.max_latency.max(latency);
                let proxy = &self.proxies[node];
                let way = match self.rng.below(4) {
                    0 => {
                        proxy.set_latency_upstream(latency);
                        "upstream"
                    }
                    1 => {
                        proxy.set_latency_downstream(latency);
                        "downstream"
                    }
                    _ => {
                        proxy.set_latency(latency);
                        "both ways"
                    }
                };
                format!("{latency:?} {way} for {hold:?}")
            }
            Action::Reset => {
                self.proxies[node].reset_all();
                String::new()
            }
            Action::ScriptFlush => {
                self.nodes[node].raw().script_flush();
                String::new()
            }
        };
        let lasting = matches!(
            action,
            Action::Kill | Action::Pause | Action::Partition | Action::Blackhole | Action::Latency
        );
        if lasting {
            self.active.push(Active {
                node,
                action,
                until: began + hold,
            });
        }
        let t = began.duration_since(self.start).as_secs_f64();
        self.log(format!("{t:8.3}s {} n{node} {detail}", action.name()));
    }

    fn heal_due(&mut self, now: Instant) {
        let due: Vec<Active> = self
            .active
            .iter()
            .copied()
            .filter(|a| a.until <= now)
            .collect();
        for fault in due {
            self.heal(fault);
        }
    }

    fn heal(&mut self, fault: Active) {
        let began = Instant::now();
        let node = fault.node;
        match fault.action {
            Action::Kill => self.nodes[node].restart(),
            Action::Pause => self.nodes[node].resume(),
            Action::Partition => self.proxies[node].partition(false),
            Action::Blackhole => {
                self.proxies[node].blackhole(false);
                self.proxies[node].reset_all();
            }
            Action::Latency => self.proxies[node].set_latency(Duration::ZERO),
            Action::Restart | Action::Reset | Action::ScriptFlush => {}
        }
        self.active.retain(|a| a.node != node);
        let t = began.duration_since(self.start).as_secs_f64();
        self.log(format!(
            "{t:8.3}s heal n{node} ({}, took {:?})",
            fault.action.name(),
            began.elapsed()
        ));
    }

    /// Heals every fault in force; afterwards every node runs unpaused behind a clean proxy.
    fn heal_all(&mut self) {
        for fault in std::mem::take(&mut self.active) {
            self.heal(fault);
        }
        for (node, proxy) in self.nodes.iter_mut().zip(self.proxies) {
            if node.is_paused() {
                node.resume();
            }
            if !node.is_running() {
                node.restart();
            }
            proxy.heal();
        }
    }
}
