//! Lock-and-release benchmarks on real `redis-server` nodes that the bench starts itself.
//!
//! `cargo bench --bench acquire` prints three sections:
//!
//! 1. **Acquire**: one `lock` then `release` of one resource on 1, 3 and 5 nodes, next to two
//!    baselines over plain `std::net::TcpStream` with hand-written RESP bytes and no library
//!    code (`TCP_NODELAY` set): the *floor* writes `SET key value NX PX 30000` to every node,
//!    then reads every reply, then does the same with `EVALSHA <release> 1 key value`; the
//!    *sequential* client does the same commands node by node (write, read, next node). A third
//!    baseline, the *quorum floor*, is the floor with resplock's early stop: it reads only the
//!    first `n/2 + 1` `SET` replies (in node order) and the rest before the release replies.
//!    The variants run in interleaved blocks (rotating order), so load from other processes
//!    hits all of them alike. Ratios to the floor are printed both over all samples and as the
//!    median of the per-block ratios (each block's resplock p50 over the floor p50 of the same
//!    round of blocks), which cancels slow drifts in machine load.
//! 2. **Degraded**: five nodes with one paused (`SIGSTOP`), then with one answering 5 ms late
//!    through a fault proxy. The lock manager is warmed up on the healthy nodes, the fault is
//!    switched on, the first calls are timed one by one, then it warms up again (slow-node
//!    detection needs a few rounds) and is measured interleaved with the same manager on a
//!    healthy five-node cluster and with floors: five healthy nodes, and the four live nodes
//!    only (the physical floor with a dead minority: a client that waits for every node would
//!    block for its timeout on the paused one). For the late node, also a floor that writes to
//!    it as well but never waits for it, draining its replies without blocking: that isolates
//!    the cost of the proxy's own threads on this machine from resplock's.
//! 3. **Throughput**: 1, 2, 4 and 8 threads sharing one `Redlock` (clones) on five nodes, on
//!    distinct resources (`lock`) and all contending for one resource (`try_lock` in a loop,
//!    with a mutual-exclusion check), for a fixed time each.
//!
//! Every measured operation is checked: each lock succeeds and its release reports `true`, each
//! baseline reply is exactly `+OK` and `:1` (also the unread node's, drained at the end), and no
//! two threads ever hold the contended lock at once. One exception, counted in the `timeouts`
//! columns: an operation that failed only because nodes did not answer within the node timeout
//! (50 ms), which a stall of a loaded machine causes now and then; the bench fails when that
//! happens to more than 1% of a variant's operations.
//!
//! Environment (all optional):
//! - `RESPLOCK_BENCH_ITERS`: measured lock+release per variant and case (default 10000);
//! - `RESPLOCK_BENCH_BLOCK`: operations per interleaved block (default 250: a block of the
//!   slowest variant then lasts about a tenth of a second, so bursts of load from other
//!   processes land on every variant alike);
//! - `RESPLOCK_BENCH_SECS`: seconds per throughput case (default 3).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use resplock::script::{RELEASE_SCRIPT, RELEASE_SHA1};
use resplock::{Error, NodeError, Redlock};
use support::{Cluster, FaultProxy};

/// Lock ttl of every measured operation (the baselines send `PX 30000`).
const TTL: Duration = Duration::from_secs(30);
/// Untimed operations per variant before a measurement.
const WARM_UP: usize = 1000;
/// Calls timed one by one right after a fault starts.
const FIRST_CALLS: usize = 20;
/// Untimed operations on a degraded setup before it is measured.
const DEGRADED_WARM_UP: usize = 2000;
/// Baseline socket timeout: a baseline never waits on a paused node, so this only bounds a bug.
const BASELINE_TIMEOUT: Duration = Duration::from_secs(2);

struct Config {
    iters: usize,
    block: usize,
    secs: Duration,
}

impl Config {
    fn from_env() -> Self {
        let get = |name: &str, default: u64| -> u64 {
            match std::env::var(name) {
                Ok(text) => text
                    .trim()
                    .parse()
                    .ok()
                    .filter(|&v| v > 0)
                    .unwrap_or_else(|| panic!("{name}={text:?} is not a positive integer")),
                Err(_) => default,
            }
        };
        let iters = usize::try_from(get("RESPLOCK_BENCH_ITERS", 10_000)).unwrap_or(usize::MAX);
        let block = usize::try_from(get("RESPLOCK_BENCH_BLOCK", 250)).unwrap_or(usize::MAX);
        Self {
            iters,
            block: block.min(iters),
            secs: Duration::from_secs(get("RESPLOCK_BENCH_SECS", 3)),
        }
    }

    fn blocks(&self) -> usize {
        self.iters.div_ceil(self.block)
    }
}

// ---------------------------------------------------------------------------------------------
// Baselines: std::net::TcpStream and hand-written RESP, no library code.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// How a baseline orders its I/O.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Write the command to every node, then read every reply.
    AllFirst,
    /// Write to one node, read its reply, then the next node.
    NodeByNode,
    /// Like `AllFirst`, but read only the first quorum (`n/2 + 1`) of the `SET` replies, in
    /// node order; the others are read before the release replies. The early stop resplock
    /// makes, without its choice of the fastest nodes.
    Quorum,
}

/// A hand-written client for `SET key value NX PX 30000` then `EVALSHA <release> 1 key value`.
struct Baseline {
    conns: Vec<TcpStream>,
    order: Order,
    set: Vec<u8>,
    set_value_at: usize,
    release: Vec<u8>,
    release_value_at: usize,
    /// 32 bytes: a fixed 16-byte tag, then the operation counter in 16 hex digits.
    value: [u8; 32],
    counter: u64,
    /// A node the commands are also written to but whose replies are not waited for (the slow
    /// minority node of a degraded case): drained without blocking after each operation.
    unread: Option<Unread>,
}

/// The connection to a node that is written to but not waited for.
struct Unread {
    conn: TcpStream,
    /// Replies sent to it so far, and bytes of them drained and checked.
    ops: u64,
    drained: u64,
}

/// What an unread node answers to one operation.
const UNREAD_REPLIES: &[u8] = b"+OK\r\n:1\r\n";

impl Baseline {
    /// Connects to `addrs` and loads the release script on each (checking its digest).
    fn connect(addrs: &[SocketAddr], key: &str, tag: &[u8; 16], order: Order) -> Self {
        let mut conns: Vec<TcpStream> = addrs.iter().map(open).collect();
        for conn in &mut conns {
            load_script(conn);
        }
        let mut value = [b'0'; 32];
        value[..16].copy_from_slice(tag);
        let value_text = std::str::from_utf8(&value).expect("hex value");
        let set_head = format!("*6\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$32\r\n", key.len());
        let set = format!("{set_head}{value_text}\r\n$2\r\nNX\r\n$2\r\nPX\r\n$5\r\n30000\r\n");
        let release_head = format!(
            "*5\r\n$7\r\nEVALSHA\r\n$40\r\n{RELEASE_SHA1}\r\n$1\r\n1\r\n${}\r\n{key}\r\n$32\r\n",
            key.len()
        );
        let release = format!("{release_head}{value_text}\r\n");
        Self {
            conns,
            order,
            set: set.into_bytes(),
            set_value_at: set_head.len(),
            release: release.into_bytes(),
            release_value_at: release_head.len(),
            value,
            counter: 0,
            unread: None,
        }
    }

    /// Also writes every command to `addr` (after loading the script there), without waiting
    /// for its replies.
    fn with_unread(mut self, addr: SocketAddr) -> Self {
        let mut conn = open(&addr);
        load_script(&mut conn);
        conn.set_nonblocking(true).expect("baseline: nonblocking");
        self.unread = Some(Unread {
            conn,
            ops: 0,
            drained: 0,
        });
        self
    }

    /// Reads every reply still owed by the unread node (waiting for them) and checks them.
    fn finish_unread(&mut self) {
        if let Some(unread) = &mut self.unread {
            unread
                .conn
                .set_nonblocking(false)
                .expect("baseline: blocking");
            let owed = unread.ops * UNREAD_REPLIES.len() as u64;
            while unread.drained < owed {
                drain(unread, true);
            }
        }
    }

    /// The next value, written into both commands.
    fn next_value(&mut self) {
        self.counter += 1;
        for (i, slot) in self.value[16..].iter_mut().enumerate() {
            *slot = HEX[((self.counter >> (60 - 4 * i)) & 0xf) as usize];
        }
        let value = &self.value;
        self.set[self.set_value_at..self.set_value_at + 32].copy_from_slice(value);
        self.release[self.release_value_at..self.release_value_at + 32].copy_from_slice(value);
    }

    /// One lock and release; panics unless every reply is `+OK` then `:1`.
    fn op(&mut self) {
        self.next_value();
        match self.order {
            Order::AllFirst => {
                for conn in &mut self.conns {
                    send(conn, &self.set);
                }
                if let Some(unread) = &mut self.unread {
                    send(&mut unread.conn, &self.set);
                }
                for conn in &mut self.conns {
                    expect_reply(conn, b"+OK\r\n");
                }
                for conn in &mut self.conns {
                    send(conn, &self.release);
                }
                if let Some(unread) = &mut self.unread {
                    send(&mut unread.conn, &self.release);
                }
                for conn in &mut self.conns {
                    expect_reply(conn, b":1\r\n");
                }
                if let Some(unread) = &mut self.unread {
                    unread.ops += 1;
                    drain(unread, false);
                }
            }
            Order::Quorum => {
                let quorum = self.conns.len() / 2 + 1;
                for conn in &mut self.conns {
                    send(conn, &self.set);
                }
                for conn in &mut self.conns[..quorum] {
                    expect_reply(conn, b"+OK\r\n");
                }
                for conn in &mut self.conns {
                    send(conn, &self.release);
                }
                for (i, conn) in self.conns.iter_mut().enumerate() {
                    let expected: &[u8] = if i < quorum {
                        b":1\r\n"
                    } else {
                        b"+OK\r\n:1\r\n"
                    };
                    expect_reply(conn, expected);
                }
            }
            Order::NodeByNode => {
                for conn in &mut self.conns {
                    send(conn, &self.set);
                    expect_reply(conn, b"+OK\r\n");
                }
                for conn in &mut self.conns {
                    send(conn, &self.release);
                    expect_reply(conn, b":1\r\n");
                }
            }
        }
    }
}

/// Reads what the unread node has sent (one read; blocking or not) and checks it is the
/// expected sequence of `+OK` and `:1` replies.
fn drain(unread: &mut Unread, blocking: bool) {
    let mut buf = [0u8; 4096];
    let n = match unread.conn.read(&mut buf) {
        Ok(0) => panic!("baseline: the unread node closed the connection"),
        Ok(n) => n,
        Err(e) if !blocking && e.kind() == std::io::ErrorKind::WouldBlock => return,
        Err(e) => panic!("baseline: read from the unread node: {e}"),
    };
    for &byte in &buf[..n] {
        let at = (unread.drained % UNREAD_REPLIES.len() as u64) as usize;
        assert_eq!(
            byte, UNREAD_REPLIES[at],
            "baseline: unexpected reply from the unread node"
        );
        unread.drained += 1;
    }
}

/// A connection with `TCP_NODELAY` and timeouts that only bound a bug.
fn open(addr: &SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(addr, BASELINE_TIMEOUT)
        .unwrap_or_else(|e| panic!("baseline: connect {addr}: {e}"));
    stream.set_nodelay(true).expect("baseline: TCP_NODELAY");
    stream
        .set_read_timeout(Some(BASELINE_TIMEOUT))
        .expect("baseline: read timeout");
    stream
        .set_write_timeout(Some(BASELINE_TIMEOUT))
        .expect("baseline: write timeout");
    stream
}

/// `SCRIPT LOAD` of the release script, checking the digest the node returns.
fn load_script(conn: &mut TcpStream) {
    let command = format!(
        "*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n${}\r\n{RELEASE_SCRIPT}\r\n",
        RELEASE_SCRIPT.len()
    );
    send(conn, command.as_bytes());
    expect_reply(conn, format!("$40\r\n{RELEASE_SHA1}\r\n").as_bytes());
}

fn send(conn: &mut TcpStream, bytes: &[u8]) {
    conn.write_all(bytes)
        .unwrap_or_else(|e| panic!("baseline: write: {e}"));
}

/// Reads exactly `expected.len()` bytes and panics unless they are `expected`.
fn expect_reply(conn: &mut TcpStream, expected: &[u8]) {
    let mut buf = [0u8; 64];
    let got = &mut buf[..expected.len()];
    conn.read_exact(got)
        .unwrap_or_else(|e| panic!("baseline: read: {e}"));
    assert!(
        got == expected,
        "baseline: expected {:?}, got {:?}",
        String::from_utf8_lossy(expected),
        String::from_utf8_lossy(got)
    );
}

// ---------------------------------------------------------------------------------------------
// resplock operations.

/// One `lock` then `release`. Returns false when it failed only because nodes did not answer
/// within the node timeout (50 ms by default): on a loaded machine a stall of the whole VM
/// does that now and then. Such operations are counted and reported, and kept in the
/// latencies. Panics on any other failure, or when the release finds the lock gone.
fn lock_release(dlm: &Redlock, key: &str) -> bool {
    let guard = match dlm.lock(key, TTL) {
        Ok(guard) => guard,
        Err(e) if only_timeouts(&e) => return false,
        Err(e) => panic!("lock {key}: {e}"),
    };
    let mut value = [0u8; 32];
    value.copy_from_slice(guard.value());
    match guard.release() {
        Ok(true) => true,
        Ok(false) => panic!("release {key}: the quorum no longer held our value"),
        Err(e) if only_timeouts(&e) => {
            settle(dlm, key, &value);
            false
        }
        Err(e) => panic!("release {key}: {e}"),
    }
}

/// Whether `error` failed only because some nodes timed out.
fn only_timeouts(error: &Error) -> bool {
    let failures = error.node_failures();
    !failures.is_empty()
        && failures
            .iter()
            .all(|failure| matches!(failure.error, NodeError::Timeout(_)))
}

/// Releases `(key, value)` until the nodes answer, so a stalled release cannot leave a key
/// that would make the next lock of the same resource wait for its ttl.
fn settle(dlm: &Redlock, key: &str, value: &[u8]) {
    for _ in 0..100 {
        match dlm.release_by(key, value) {
            Ok(_) => return,
            Err(e) if only_timeouts(&e) => {}
            Err(e) => panic!("release {key} again: {e}"),
        }
    }
    panic!("release {key}: nodes kept timing out");
}

// ---------------------------------------------------------------------------------------------
// Measurement.

/// Latencies of one variant, in nanoseconds, and the p50 of each of its blocks.
struct Samples {
    name: String,
    ns: Vec<u64>,
    block_p50: Vec<u64>,
    /// Operations that failed because nodes timed out (see [`lock_release`]).
    timed_out: u64,
}

impl Samples {
    fn new(name: impl Into<String>, capacity: usize) -> Self {
        Self {
            name: name.into(),
            ns: Vec::with_capacity(capacity),
            block_p50: Vec::new(),
            timed_out: 0,
        }
    }

    fn stats(&self) -> Stats {
        Stats::of(&self.ns)
    }
}

#[derive(Clone, Copy)]
struct Stats {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

impl Stats {
    /// Nearest-rank percentiles, in microseconds.
    fn of(ns: &[u64]) -> Self {
        assert!(!ns.is_empty(), "no samples");
        let mut sorted = ns.to_vec();
        sorted.sort_unstable();
        let rank = |p: f64| {
            let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[index] as f64 / 1e3
        };
        let total: u128 = sorted.iter().map(|&v| u128::from(v)).sum();
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
            p999: rank(0.999),
            max: sorted[sorted.len() - 1] as f64 / 1e3,
            mean: total as f64 / sorted.len() as f64 / 1e3,
        }
    }

    fn ops_per_sec(&self) -> f64 {
        1e6 / self.mean
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Median over blocks of `a`'s block p50 divided by `b`'s block p50 in the same round.
fn block_ratio(a: &Samples, b: &Samples) -> f64 {
    let mut ratios: Vec<f64> = a
        .block_p50
        .iter()
        .zip(&b.block_p50)
        .map(|(&x, &y)| x as f64 / y as f64)
        .collect();
    median(&mut ratios)
}

/// A variant in an interleaved run: its samples and the operation it times.
/// The operation returns false when it failed only because nodes timed out.
type Variant<'a> = (Samples, Box<dyn FnMut() -> bool + 'a>);

/// Warms every variant up, then runs `blocks` rounds; in each round every variant runs one
/// block of `block` timed operations, starting from a different variant each round.
fn interleave(variants: &mut [Variant<'_>], blocks: usize, block: usize) {
    for (_, op) in variants.iter_mut() {
        for _ in 0..WARM_UP {
            op();
        }
    }
    let count = variants.len();
    let mut scratch = Vec::with_capacity(block);
    for round in 0..blocks {
        for k in 0..count {
            let (samples, op) = &mut variants[(round + k) % count];
            scratch.clear();
            for _ in 0..block {
                let start = Instant::now();
                let done = op();
                scratch.push(start.elapsed().as_nanos() as u64);
                samples.timed_out += u64::from(!done);
            }
            samples.ns.extend_from_slice(&scratch);
            scratch.sort_unstable();
            samples.block_p50.push(scratch[scratch.len() / 2]);
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn print_header(first: &str) {
    println!(
        "{first:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "p50 us", "p99 us", "p99.9 us", "max us", "mean us", "ops/s", "timeouts"
    );
}

/// One line of a latency table; `timed_out` counts operations that failed on node timeouts.
fn print_row(label: &str, stats: &Stats, timed_out: u64) {
    println!(
        "{label:<28} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.0} {timed_out:>9}",
        stats.p50,
        stats.p99,
        stats.p999,
        stats.max,
        stats.mean,
        stats.ops_per_sec()
    );
}

/// Fails the bench when more than 1% of a variant's operations timed out: beyond rare stalls
/// of a loaded machine, that is a problem to look at, not a number to publish.
fn check_timeouts(samples: &Samples) {
    assert!(
        samples.timed_out * 100 <= samples.ns.len() as u64,
        "{}: {} of {} operations failed on node timeouts",
        samples.name,
        samples.timed_out,
        samples.ns.len()
    );
}

fn ratio_line(label: &str, a: &Samples, b: &Samples) {
    let (x, y) = (a.stats(), b.stats());
    println!(
        "  {label:<34} p50 {:.3}x (per-block median {:.3}x)  p99 {:.3}x  mean {:.3}x",
        x.p50 / y.p50,
        block_ratio(a, b),
        x.p99 / y.p99,
        x.mean / y.mean
    );
}

// ---------------------------------------------------------------------------------------------
// Sections.

fn acquire_section(cluster: &Cluster, config: &Config) {
    println!(
        "\n== 1. acquire: lock+release, {} ops per variant in blocks of {} (load average {})",
        config.iters,
        config.block,
        load_average()
    );
    let sizes = [1usize, 3, 5];
    let managers: Vec<Redlock> = sizes
        .iter()
        .map(|&n| Redlock::new(&cluster.urls()[..n]).unwrap_or_else(|e| panic!("{n} nodes: {e}")))
        .collect();
    let addrs: Vec<SocketAddr> = cluster.nodes().iter().map(|node| node.addr()).collect();
    let mut floors: Vec<Baseline> = sizes
        .iter()
        .map(|&n| {
            Baseline::connect(
                &addrs[..n],
                &format!("bench:floor:{n}"),
                b"f100000000000000",
                Order::AllFirst,
            )
        })
        .collect();
    let mut sequentials: Vec<Baseline> = sizes
        .iter()
        .map(|&n| {
            Baseline::connect(
                &addrs[..n],
                &format!("bench:seq:{n}"),
                b"5e90000000000000",
                Order::NodeByNode,
            )
        })
        .collect();
    let mut quorums: Vec<Baseline> = sizes
        .iter()
        .map(|&n| {
            Baseline::connect(
                &addrs[..n],
                &format!("bench:quorum:{n}"),
                b"9000000000000000",
                Order::Quorum,
            )
        })
        .collect();
    let keys: Vec<String> = sizes
        .iter()
        .map(|n| format!("bench:resplock:{n}"))
        .collect();

    let mut variants: Vec<Variant<'_>> = Vec::new();
    for ((((&n, dlm), floor), quorum), (sequential, key)) in sizes
        .iter()
        .zip(&managers)
        .zip(&mut floors)
        .zip(&mut quorums)
        .zip(sequentials.iter_mut().zip(&keys))
    {
        variants.push((
            Samples::new(format!("{n} node(s)  resplock"), config.iters),
            Box::new(move || lock_release(dlm, key)),
        ));
        variants.push((
            Samples::new(format!("{n} node(s)  floor"), config.iters),
            Box::new(move || {
                floor.op();
                true
            }),
        ));
        variants.push((
            Samples::new(format!("{n} node(s)  quorum floor"), config.iters),
            Box::new(move || {
                quorum.op();
                true
            }),
        ));
        variants.push((
            Samples::new(format!("{n} node(s)  sequential"), config.iters),
            Box::new(move || {
                sequential.op();
                true
            }),
        ));
    }
    let started = Instant::now();
    interleave(&mut variants, config.blocks(), config.block);
    println!(
        "   measured in {:.1} s; load average after: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    print_header("variant");
    for (samples, _) in &variants {
        print_row(&samples.name, &samples.stats(), samples.timed_out);
        check_timeouts(samples);
    }
    println!("ratios to the floor measured in the same run:");
    for (i, &n) in sizes.iter().enumerate() {
        let resplock = &variants[4 * i].0;
        let floor = &variants[4 * i + 1].0;
        let quorum = &variants[4 * i + 2].0;
        let sequential = &variants[4 * i + 3].0;
        ratio_line(&format!("{n} node(s)  resplock / floor"), resplock, floor);
        ratio_line(
            &format!("{n} node(s)  resplock / quorum floor"),
            resplock,
            quorum,
        );
        ratio_line(&format!("{n} node(s)  quorum floor / floor"), quorum, floor);
        ratio_line(
            &format!("{n} node(s)  sequential / floor"),
            sequential,
            floor,
        );
    }
    let five = 4 * (sizes.len() - 1);
    let ratio = variants[five].0.stats().p50 / variants[five + 1].0.stats().p50;
    let block = block_ratio(&variants[five].0, &variants[five + 1].0);
    println!(
        "target: p50 on 5 healthy nodes within 1.15x of the floor: {:.3}x (per-block {:.3}x) -> {}",
        ratio,
        block,
        if ratio <= 1.15 { "MET" } else { "NOT MET" }
    );
    for (samples, _) in &variants {
        assert_eq!(samples.ns.len(), config.blocks() * config.block);
    }
}

/// The healthy references measured alongside each degraded case.
struct Healthy<'a> {
    dlm: &'a Redlock,
    floor: Baseline,
}

/// Latencies of one degraded case.
struct Degraded {
    label: &'static str,
    healthy: Stats,
    degraded: Stats,
    live_floor: Stats,
    /// Latency of each of the first calls after the fault started, and whether it succeeded.
    first: Vec<(u64, bool)>,
}

/// Warms `degraded` up on healthy nodes, runs `start_fault`, times the first calls one by one,
/// warms up again, then measures it interleaved with the healthy references and the floor on
/// the `live` nodes; with `slow`, also a floor that writes to that node too but does not wait
/// for it. The caller ends the fault.
fn degraded_case(
    label: &'static str,
    degraded: &Redlock,
    start_fault: &mut dyn FnMut(),
    healthy: &mut Healthy<'_>,
    live: &[SocketAddr],
    slow: Option<SocketAddr>,
    config: &Config,
) -> Degraded {
    let key = format!("bench:degraded:{label}");
    for _ in 0..WARM_UP {
        lock_release(degraded, &key);
    }
    start_fault();
    let first: Vec<(u64, bool)> = (0..FIRST_CALLS)
        .map(|_| {
            let start = Instant::now();
            let done = lock_release(degraded, &key);
            (start.elapsed().as_nanos() as u64, done)
        })
        .collect();
    let warm_started = Instant::now();
    for _ in 0..DEGRADED_WARM_UP {
        lock_release(degraded, &key);
    }
    let warm = warm_started.elapsed();

    let load_before = load_average();
    let mut live_floor = Baseline::connect(
        live,
        &format!("bench:floor-live:{label}"),
        b"11fe000000000000",
        Order::AllFirst,
    );
    let mut sent_floor = slow.map(|addr| {
        Baseline::connect(
            live,
            &format!("bench:floor-sent:{label}"),
            b"5e47000000000000",
            Order::AllFirst,
        )
        .with_unread(addr)
    });
    let healthy_dlm = healthy.dlm;
    let healthy_key = format!("bench:healthy:{label}");
    let healthy_floor = &mut healthy.floor;
    let mut variants: Vec<Variant<'_>> = vec![
        (
            Samples::new("resplock, 5 healthy", config.iters),
            Box::new(|| lock_release(healthy_dlm, &healthy_key)),
        ),
        (
            Samples::new(format!("resplock, {label}"), config.iters),
            Box::new(|| lock_release(degraded, &key)),
        ),
        (
            Samples::new("floor, 5 healthy", config.iters),
            Box::new(|| {
                healthy_floor.op();
                true
            }),
        ),
        (
            Samples::new("floor, the 4 live nodes", config.iters),
            Box::new(|| {
                live_floor.op();
                true
            }),
        ),
    ];
    if let Some(floor) = &mut sent_floor {
        variants.push((
            Samples::new("floor, 4 read + slow 1 sent", config.iters),
            Box::new(|| {
                floor.op();
                true
            }),
        ));
    }
    interleave(&mut variants, config.blocks(), config.block);
    for (samples, _) in &variants {
        check_timeouts(samples);
    }
    let stats: Vec<(String, Stats, u64)> = variants
        .iter()
        .map(|(samples, _)| (samples.name.clone(), samples.stats(), samples.timed_out))
        .collect();
    drop(variants);
    if let Some(floor) = &mut sent_floor {
        floor.finish_unread();
    }

    println!(
        "\n-- {label}: load average {load_before} before, {} after --",
        load_average()
    );
    println!(
        "first {FIRST_CALLS} calls after the fault started (us): {}",
        first
            .iter()
            .map(|&(ns, done)| format!("{:.0}{}", ns as f64 / 1e3, if done { "" } else { "(t/o)" }))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "then {DEGRADED_WARM_UP} untimed calls, {:.1} us each on average; then, interleaved:",
        warm.as_secs_f64() * 1e6 / DEGRADED_WARM_UP as f64,
    );
    print_header("variant");
    for (name, stats, timed_out) in &stats {
        print_row(name, stats, *timed_out);
    }
    Degraded {
        label,
        healthy: stats[0].1,
        degraded: stats[1].1,
        live_floor: stats[3].1,
        first,
    }
}

fn degraded_section(reference: &Cluster, config: &Config) {
    println!(
        "\n== 2. degraded: 5 nodes, one of them faulty, {} ops per variant in blocks of {}",
        config.iters, config.block
    );
    let healthy_dlm = Redlock::new(reference.urls()).expect("healthy manager");
    let reference_addrs: Vec<SocketAddr> =
        reference.nodes().iter().map(|node| node.addr()).collect();
    let mut healthy = Healthy {
        dlm: &healthy_dlm,
        floor: Baseline::connect(
            &reference_addrs,
            "bench:floor-healthy",
            b"fea1000000000000",
            Order::AllFirst,
        ),
    };
    let mut faulty = Cluster::start(5);
    let live: Vec<SocketAddr> = faulty.nodes()[..4].iter().map(|node| node.addr()).collect();
    let mut results = Vec::new();

    // (a) One node paused with SIGSTOP.
    let dlm = Redlock::new(faulty.urls()).expect("manager over the paused cluster");
    results.push(degraded_case(
        "1 of 5 paused",
        &dlm,
        &mut || faulty[4].pause(),
        &mut healthy,
        &live,
        None,
        config,
    ));
    faulty[4].resume();
    drop(dlm);
    println!(
        "connections the paused node had received once resumed (this probe included): {}",
        connections_received(faulty[4].addr())
    );

    // (b) One node answering 5 ms late through a proxy (its connections only go through it).
    let proxy = FaultProxy::for_node(&faulty[4]);
    let mut urls = faulty.urls();
    urls[4] = proxy.url();
    let dlm = Redlock::new(&urls).expect("manager through the proxy");
    results.push(degraded_case(
        "1 of 5 +5 ms",
        &dlm,
        &mut || proxy.set_latency_downstream(Duration::from_millis(5)),
        &mut healthy,
        &live,
        Some(proxy.addr()),
        config,
    ));
    proxy.heal();
    drop(dlm);
    drop(proxy);
    drop(faulty);

    println!("\nhow far resplock moves from healthy (same interleaved run):");
    for case in &results {
        println!(
            "  {:<14} p50 {:.3}x  p99 {:.3}x  mean {:.3}x of healthy; p50 {:.3}x of the 4-live-node floor; first call {:.0} us",
            case.label,
            case.degraded.p50 / case.healthy.p50,
            case.degraded.p99 / case.healthy.p99,
            case.degraded.mean / case.healthy.mean,
            case.degraded.p50 / case.live_floor.p50,
            case.first[0].0 as f64 / 1e3,
        );
    }
}

/// `total_connections_received` from `INFO stats` on `addr`.
fn connections_received(addr: SocketAddr) -> u64 {
    let mut raw = support::Raw::connect(addr).expect("connect after resume");
    let info = raw.info("stats");
    info.lines()
        .find_map(|line| line.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_connections_received in INFO stats")
}

/// Counts of one throughput run.
struct Throughput {
    acquired: u64,
    contended: u64,
    /// Attempts that failed on node timeouts (see [`lock_release`]).
    timed_out: u64,
    elapsed: Duration,
}

impl Throughput {
    fn attempts(&self) -> u64 {
        self.acquired + self.contended + self.timed_out
    }

    fn attempts_per_sec(&self) -> f64 {
        self.attempts() as f64 / self.elapsed.as_secs_f64()
    }

    fn acquired_per_sec(&self) -> f64 {
        self.acquired as f64 / self.elapsed.as_secs_f64()
    }
}

/// One attempt on the contended resource: 1 in the first slot when acquired (and released),
/// in the second when another thread held it, in the third on node timeouts.
fn contended_attempt(dlm: &Redlock, key: &str, held: &AtomicBool) -> [u64; 3] {
    match dlm.try_lock(key, TTL) {
        Ok(guard) => {
            assert!(!held.swap(true, Ordering::SeqCst), "two holders at once");
            held.store(false, Ordering::SeqCst);
            let mut value = [0u8; 32];
            value.copy_from_slice(guard.value());
            match guard.release() {
                Ok(true) => [1, 0, 0],
                Ok(false) => panic!("release {key}: the quorum no longer held our value"),
                Err(e) if only_timeouts(&e) => {
                    settle(dlm, key, &value);
                    [0, 0, 1]
                }
                Err(e) => panic!("release {key}: {e}"),
            }
        }
        Err(e) if e.is_contention() => [0, 1, 0],
        Err(e) if only_timeouts(&e) => [0, 0, 1],
        Err(e) => panic!("try_lock {key}: {e}"),
    }
}

/// `threads` threads sharing clones of `dlm` for `secs`: each on its own resource with `lock`,
/// or all on one resource with `try_lock` (checking that no two ever hold it at once).
fn throughput(dlm: &Redlock, threads: usize, secs: Duration, contended: bool) -> Throughput {
    let barrier = Barrier::new(threads + 1);
    let held = AtomicBool::new(false);
    let (counts, elapsed) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let dlm = dlm.clone();
                let (barrier, held) = (&barrier, &held);
                scope.spawn(move || {
                    let key = if contended {
                        "bench:tp:contended".to_owned()
                    } else {
                        format!("bench:tp:{t}")
                    };
                    let mut counts = [0u64; 3];
                    barrier.wait();
                    let end = Instant::now() + secs;
                    while Instant::now() < end {
                        let outcome = if contended {
                            contended_attempt(&dlm, &key, held)
                        } else if lock_release(&dlm, &key) {
                            [1, 0, 0]
                        } else {
                            [0, 0, 1]
                        };
                        for (count, add) in counts.iter_mut().zip(outcome) {
                            *count += add;
                        }
                    }
                    counts
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut counts = [0u64; 3];
        for worker in workers {
            let outcome = worker.join().expect("worker panicked");
            for (count, add) in counts.iter_mut().zip(outcome) {
                *count += add;
            }
        }
        (counts, start.elapsed())
    });
    let [acquired, contended, timed_out] = counts;
    Throughput {
        acquired,
        contended,
        timed_out,
        elapsed,
    }
}

/// CPU time (user + system) of process `pid` (`"self"` for the bench), in clock ticks
/// (`USER_HZ`, 100 per second on Linux).
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // After the command name: the state is field 3, utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU ticks of the bench and of the nodes so far.
fn cpu_now(cluster: &Cluster) -> (u64, u64) {
    let servers = cluster
        .nodes()
        .iter()
        .filter_map(|node| cpu_ticks(&node.pid()?.to_string()))
        .sum();
    (cpu_ticks("self").unwrap_or(0), servers)
}

fn throughput_section(cluster: &Cluster, config: &Config) {
    println!(
        "\n== 3. throughput: threads sharing one Redlock on 5 nodes, {} s per case (load average {})",
        config.secs.as_secs(),
        load_average()
    );
    let dlm = Redlock::new(cluster.urls()).expect("manager");
    // Open connections and settle latency averages first.
    for _ in 0..WARM_UP {
        lock_release(&dlm, "bench:tp:warm");
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "{:<26} {:>7} {:>11} {:>8} {:>11} {:>10} {:>8} {:>10} {:>10} {:>8}",
        "case",
        "threads",
        "attempts/s",
        "scaling",
        "acquired/s",
        "contended",
        "timeouts",
        "bench CPU",
        "redis CPU",
        "CPU busy"
    );
    for contended in [false, true] {
        let mut base = None;
        for threads in [1usize, 2, 4, 8] {
            let before = cpu_now(cluster);
            let run = throughput(&dlm, threads, config.secs, contended);
            let after = cpu_now(cluster);
            assert!(run.acquired > 0, "nothing acquired");
            assert!(
                run.timed_out * 100 <= run.attempts(),
                "{} of {} attempts failed on node timeouts",
                run.timed_out,
                run.attempts()
            );
            let rate = run.attempts_per_sec();
            let base = *base.get_or_insert(rate);
            let attempts = run.attempts() as f64;
            // Ticks are 10 ms; per attempt in microseconds.
            let per_op = |ticks: u64| ticks as f64 * 1e4 / attempts;
            let (bench_cpu, redis_cpu) = (after.0 - before.0, after.1 - before.1);
            let busy = (bench_cpu + redis_cpu) as f64 / 100.0 / run.elapsed.as_secs_f64() / cpus;
            println!(
                "{:<26} {threads:>7} {rate:>11.0} {:>7.2}x {:>11.0} {:>10} {:>8} {:>7.0} us {:>7.0} us {:>7.0}%",
                if contended {
                    "one contended resource"
                } else {
                    "distinct resources (lock)"
                },
                rate / base,
                run.acquired_per_sec(),
                run.contended,
                run.timed_out,
                per_op(bench_cpu),
                per_op(redis_cpu),
                busy * 100.0,
            );
        }
    }
    println!(
        "(bench/redis CPU: CPU time per attempt, from /proc; CPU busy: their share of all {cpus} CPUs)\nload average after: {}",
        load_average()
    );
}

fn main() {
    let config = Config::from_env();
    let started = Instant::now();
    println!(
        "resplock acquire bench: {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let cluster = Cluster::start(5);
    acquire_section(&cluster, &config);
    degraded_section(&cluster, &config);
    throughput_section(&cluster, &config);
    println!("\ntotal {:.1} s", started.elapsed().as_secs_f64());
}
