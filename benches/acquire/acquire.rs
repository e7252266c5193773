//! Section 1: lock + release on 1, 3 and 5 healthy nodes, against the baselines.

use std::net::SocketAddr;
use std::time::Instant;

use resplock::Redlock;

use crate::baseline::{Baseline, Order};
use crate::interleave::Interleaved;
use crate::machine::load_average;
use crate::ops::lock_release;
use crate::stats::{block_ratio, print_header, print_row, ratio_line};
use crate::support::Cluster;
use crate::Config;

/// Cluster sizes measured (the first nodes of the bench's five).
const SIZES: [usize; 3] = [1, 3, 5];
/// The size the headline target is about.
const TARGET_NODES: usize = 5;
/// The headline target: resplock's p50 at most this many times the floor's.
const TARGET_RATIO: f64 = 1.15;

/// The variants measured on each cluster size.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Resplock,
    Floor,
    QuorumFloor,
    Sequential,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::Resplock => "resplock",
            Self::Floor => "floor",
            Self::QuorumFloor => "quorum floor",
            Self::Sequential => "sequential",
        }
    }
}

/// A variant on a cluster size: the key of one row.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Key {
    nodes: usize,
    variant: Variant,
}

impl Key {
    fn label(self) -> String {
        format!("{} node(s)  {}", self.nodes, self.variant.name())
    }
}

/// What is measured on one cluster size: one block of variants per round.
struct Size {
    nodes: usize,
    dlm: Redlock,
    key: String,
    floor: Baseline,
    quorum_floor: Baseline,
    sequential: Baseline,
}

/// A baseline on the first `nodes` of `addrs`; `name` and `tag` keep its keys and values
/// apart from every other variant's.
fn baseline(addrs: &[SocketAddr], nodes: usize, name: &str, tag: &[u8; 16], o: Order) -> Baseline {
    Baseline::connect(&addrs[..nodes], &format!("bench:{name}:{nodes}"), tag, o)
}

pub fn section(cluster: &Cluster, config: &Config) {
    println!(
        "\n== 1. acquire: lock+release, {} ops per variant in blocks of {} (load average {})",
        config.iters,
        config.block,
        load_average()
    );
    let managers = SIZES
        .map(|n| Redlock::new(&cluster.urls()[..n]).unwrap_or_else(|e| panic!("{n} nodes: {e}")));
    let addrs: Vec<SocketAddr> = cluster.nodes().iter().map(|node| node.addr()).collect();
    let floors = SIZES.map(|n| baseline(&addrs, n, "floor", b"f100000000000000", Order::AllFirst));
    let sequentials =
        SIZES.map(|n| baseline(&addrs, n, "seq", b"5e90000000000000", Order::NodeByNode));
    let quorum_floors =
        SIZES.map(|n| baseline(&addrs, n, "quorum", b"9000000000000000", Order::Quorum));
    let mut sizes: Vec<Size> = SIZES
        .into_iter()
        .zip(managers)
        .zip(floors.into_iter().zip(quorum_floors).zip(sequentials))
        .map(|((nodes, dlm), ((floor, quorum_floor), sequential))| Size {
            nodes,
            dlm,
            key: format!("bench:resplock:{nodes}"),
            floor,
            quorum_floor,
            sequential,
        })
        .collect();

    let mut run = Interleaved::new(config.iters);
    for size in &mut sizes {
        let Size {
            nodes,
            dlm,
            key,
            floor,
            quorum_floor,
            sequential,
        } = size;
        let (dlm, key) = (&*dlm, &*key);
        let key_of = |variant| Key {
            nodes: *nodes,
            variant,
        };
        let resplock = key_of(Variant::Resplock);
        run.add(resplock, resplock.label(), move || lock_release(dlm, key));
        for (variant, baseline) in [
            (Variant::Floor, floor),
            (Variant::QuorumFloor, quorum_floor),
            (Variant::Sequential, sequential),
        ] {
            let key = key_of(variant);
            run.add_baseline(key, key.label(), baseline);
        }
    }
    let started = Instant::now();
    let measured = run.run(config.blocks(), config.block);
    println!(
        "   measured in {:.1} s; load average after: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    print_header("variant");
    for samples in measured.all() {
        print_row(&samples.name, &samples.stats(), samples.timed_out);
        samples.check_timeouts();
    }

    println!("ratios to the floor measured in the same run:");
    for nodes in SIZES {
        let get = |variant| measured.get(Key { nodes, variant });
        let resplock = get(Variant::Resplock);
        let floor = get(Variant::Floor);
        let quorum = get(Variant::QuorumFloor);
        let sequential = get(Variant::Sequential);
        ratio_line(
            &format!("{nodes} node(s)  resplock / floor"),
            resplock,
            floor,
        );
        ratio_line(
            &format!("{nodes} node(s)  resplock / quorum floor"),
            resplock,
            quorum,
        );
        ratio_line(
            &format!("{nodes} node(s)  quorum floor / floor"),
            quorum,
            floor,
        );
        ratio_line(
            &format!("{nodes} node(s)  sequential / floor"),
            sequential,
            floor,
        );
    }

    let get = |variant| {
        measured.get(Key {
            nodes: TARGET_NODES,
            variant,
        })
    };
    let (resplock, floor) = (get(Variant::Resplock), get(Variant::Floor));
    let ratio = resplock.stats().p50 / floor.stats().p50;
    println!(
        "target: p50 on {TARGET_NODES} healthy nodes within {TARGET_RATIO}x of the floor: {:.3}x (per-block {:.3}x) -> {}",
        ratio,
        block_ratio(resplock, floor),
        if ratio <= TARGET_RATIO { "MET" } else { "NOT MET" }
    );
    for samples in measured.all() {
        assert_eq!(samples.ns.len(), config.blocks() * config.block);
    }
}
