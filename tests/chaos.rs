//! Chaos with a checker: mutual exclusion, no lost update and no leftover key while a nemesis
//! kills, pauses, restarts and partitions a minority of the nodes.
//!
//! # Set-up
//! Five lock nodes with AOF `appendfsync always` (a restart keeps every acknowledged key: the
//! documented safety assumption), each behind a [`FaultProxy`]; clients only know the proxies.
//! A sixth plain node, not behind a proxy and never touched by the nemesis, holds one counter
//! per resource. Three resources; resource 2 is fenced (below).
//!
//! # Workers
//! Three threads of this process share its lock managers (so they share their session pools),
//! and two child processes with two threads each run the same loop with their own. A
//! child is this test binary re-executed as `<exe> --exact chaos_child_worker --nocapture`
//! with `RESPLOCK_CHAOS_CHILD=<index>` and the node URLs, counter address, seed and end time
//! in `RESPLOCK_CHAOS_CHILD_*` variables; it prints its records as `CHAOS|...` lines on stdout
//! when it is done. Without those variables `chaos_child_worker` does nothing.
//!
//! Each process has two managers with the same settings (node timeout 50 ms, 3 retries, 40 ms
//! delay + up to 80 ms jitter): a plain one, and one built with `fencing(true)` through which
//! resource 2, and only it, is always taken (plain locks and leases alike), so that every
//! grant of it has a token and tokens are drawn from one counter per node. Both live for the
//! whole run: every node keeps an append-only file, so restarts never make the fenced manager
//! distrust a counter, and a fenced call refused for one is a failure of the run.
//!
//! Each worker loops until the end time: pick a resource, whether this will be a lease (three
//! times in ten) and a ttl (300 ms – 2 s; leases 300 – 800 ms), and whether to wait for it
//! (one time in four: `lock_within` with a `max_wait` of 100 ms – 1.5 s; otherwise `lock()`).
//! A lease is kept alive and worked under as `tests/chaos/lease_worker.rs` describes: several
//! ttls of repeated critical sections, each write guarded by `is_held()` and `remaining()`,
//! with `is_held()` sampled every 20 – 50 ms, some with a short `max_hold`, then released or
//! dropped. Otherwise it holds the lock for 0 – ttl/5; two times in five it extends it to a
//! ttl drawn from the same list (so sometimes shorter than what is left); it works on for up
//! to half the validity the guard then reports (at most 800 ms); then the critical section:
//! if `remaining()` exceeds the work time + 100 ms, `GET` the counter, sleep 2 – 15 ms, and
//! `SET` it + 1 only if `remaining()` still exceeds 50 ms (the count of such writes is what
//! the counter must equal). Then it releases (85 %), drops the guard (9 %), or disarms it and
//! walks away like a crashed client (6 %: the keys must then expire on their own).
//!
//! # Records and the clock
//! Every acquisition records owner, resource, `requested` (just before the `lock()` or
//! `lock_within()` call started), `granted` (just after it returned), `valid_until`, every
//! `extend` call (start, return, validity left in the guard) and the release start, all as
//! nanoseconds of one monotonic clock. A lease's record also keeps what its holder saw
//! (`tests/chaos/lease.rs`): the last observation point at which `is_held()` returned true
//! (the clock read just before that call), each new validity seen, the loss (kind, when first
//! seen), and contract violations found on the spot. The call that granted the lock (with its
//! `max_wait`), the fencing token (`guard.token()`) and the lock's value are in the record too
//! (`tests/chaos/grants.rs`). A `lock_within` call that failed is recorded on its own: owner,
//! resource, `max_wait`, call start and return, the error. Across processes that clock is
//! `CLOCK_MONOTONIC` read from `Instant`'s `Debug` output, see [`model::instant_ns`]; when the
//! format cannot be verified the run uses threads only and says so.
//!
//! # The checker
//! - Exclusion: for each resource, no two acquisitions' holder intervals overlap. A holder
//!   interval is `[granted, min(valid_until, release_start))`, with a hole while an `extend` is
//!   in flight, continuing to the validity the guard reports after it. This is the interval a
//!   correct Redlock guarantees: a second client reaches a quorum only on a node where the
//!   first one's key was deleted (after its release started) or expired (after `valid_until`,
//!   which keeps the drift margin). A lease's holder interval is `[granted, end)` with `end`
//!   the later of the grant's validity and the last observation point of an `is_held()` that
//!   returned true, cut at the release start (why the point before the call, not after it:
//!   `tests/chaos/lease.rs`).
//! - Leases keep their contract, checked by the worker at every look: while `is_held()` is
//!   true, `valid_until()` is not earlier than the look's observation point, and with
//!   `max_hold` not later than `granted + max_hold + ttl`; an `Expired`/`MaxHold` loss comes
//!   with a validity that ended, `MaxHold` only with a cap; once `lost()` is `Some` it stays the
//!   same, `is_held()` stays false and `remaining()` zero. A lease lost while a quorum of the
//!   cluster is healthy is no violation (its renewals only reach the nodes its grant reached).
//! - Fencing tokens (`tests/chaos/grants.rs`): for grants A, B of one resource with
//!   `A.granted < B.requested` (A returned before B's call, hence its first command, started),
//!   `token(A) < token(B)`. Every grant of the fenced resource has a token, no other grant has
//!   one, a lease reports its guard's token, and after the run a quorum of nodes still has
//!   the fenced resource's counter at or above the highest token handed out (counters never go
//!   back: AOF `always`). The summary counts fenced grants and the ordered pairs compared.
//! - Waiting: a `lock_within` that failed returned no earlier than its `max_wait` after its
//!   call started (how much later is reported, not checked). Its grants are ordinary grants,
//!   in every check above.
//! - No lost update: each counter equals the number of increments written under its lock
//!   (under a lease, any number of them).
//! - A lock is never lost while valid. Right after the grant and again just before the
//!   release, the worker reads the key on every node directly (not through the proxies, 100 ms
//!   timeout; for a lease, against the validity its holder had seen by then): while the
//!   validity runs, at least a quorum must hold our value or be unable to tell (paused,
//!   down, loading). And a quorum may only answer "not our value" to `extend`
//!   (`not_held >= 3`) once the validity has ended. Otherwise a node that granted the key lost
//!   it early (any two quorums share a node): that is how an exclusion violation starts, and
//!   it is seen far more often than the violation itself.
//! - `release()` tells the truth: it may only return `Ok(false)` ("a quorum no longer held
//!   our value") during the validity if the audit just before it did not find a quorum of
//!   nodes holding our value or unable to tell.
//! - No key left: after every worker has finished and every fault is healed, wait past the
//!   longest ttl (plus the longest injected latency, since queued commands arrive late) and
//!   require zero keys on every node but the fencing counters (`resplock:fence:*`, which never
//!   expire by design).
//!
//! `tests/chaos/repro.rs` holds deterministic reproductions of what these checks found.
//!
//! The seed (fixed by default, `RESPLOCK_CHAOS_SEED` to override, decimal or `0x` hex) drives
//! every random choice; thread scheduling still differs from run to run. `RESPLOCK_CHAOS_SECS`
//! sets the duration (default 60). A summary is printed at the end (`--nocapture` to see it on
//! success); failures print it too, with the seed and the nemesis actions around a violation.
//! To look at a whole run: `RESPLOCK_CHAOS_DUMP=<file>` writes every record and nemesis action
//! on one timeline, and `RESPLOCK_CHAOS_MONITOR=<dir>` what every node ran on the lock keys
//! (`tests/chaos/monitor.rs`).

mod support;

#[path = "chaos/grants.rs"]
mod grants;
#[path = "chaos/lease.rs"]
mod lease;
#[path = "chaos/lease_worker.rs"]
mod lease_worker;
#[path = "chaos/model.rs"]
mod model;
#[path = "chaos/monitor.rs"]
mod monitor;
#[path = "chaos/nemesis.rs"]
mod nemesis;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use resplock::{Error, LockGuard, NodeError, Redlock};

use grants::{check_tokens, FailedWait, Via, WaitStats};
use lease::LeaseStats;
use lease_worker::{hold_lease, LEASE_PER_MILLE, LEASE_TTLS_MS};
use model::{
    check_exclusion, count_from_line, counts_to_lines, Acquisition, Audit, Clock, Counts, Ending,
    Extension, Ns, Rng, LINE_PREFIX,
};
use nemesis::{Nemesis, MAX_FAULTY};
use support::{Cluster, FaultProxy, Raw, RawReply, RedisNode, RedisOptions};

const DEFAULT_SEED: u64 = 0x5EED_0004;
const DEFAULT_SECS: f64 = 60.0;

const NODES: usize = 5;
const RESOURCES: usize = 3;
const PARENT_THREADS: usize = 3;
const CHILD_PROCESSES: usize = 2;
const CHILD_THREADS: usize = 2;

const TTLS_MS: [u64; 5] = [300, 500, 800, 1200, 2000];
const MAX_TTL: Duration = Duration::from_millis(2000);

const NODE_TIMEOUT: Duration = Duration::from_millis(50);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
const RETRIES: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_millis(40);
const RETRY_JITTER: Duration = Duration::from_millis(80);

/// Critical-section work (between reading and writing the counter), in ms.
const WORK_MS: (u64, u64) = (2, 15);
/// Validity required beyond the work time before starting the critical section.
const WORK_MARGIN: Duration = Duration::from_millis(100);
/// Validity required just before writing the counter.
const WRITE_MARGIN: Duration = Duration::from_millis(50);

/// The resource only ever taken through the fenced manager (so every grant of it has a token).
const FENCED_RESOURCE: usize = 2;
/// Share of acquisitions made with `lock_within`, and its `max_wait`, in ms.
const WITHIN_PER_MILLE: u64 = 250;
const MAX_WAIT_MS: (u64, u64) = (100, 1500);

const EXTEND_PER_MILLE: u64 = 400;
const ABANDON_PER_MILLE: u64 = 60;
const DROP_PER_MILLE: u64 = 90;

/// How long children may take to finish after the end time before they are killed.
const CHILD_GRACE: Duration = Duration::from_secs(20);

const CHILD_ENV: &str = "RESPLOCK_CHAOS_CHILD";
const CHILD_URLS_ENV: &str = "RESPLOCK_CHAOS_CHILD_URLS";
const CHILD_COUNTER_ENV: &str = "RESPLOCK_CHAOS_CHILD_COUNTER";
const CHILD_SEED_ENV: &str = "RESPLOCK_CHAOS_CHILD_SEED";
const CHILD_NODES_ENV: &str = "RESPLOCK_CHAOS_CHILD_NODES";
const CHILD_END_ENV: &str = "RESPLOCK_CHAOS_CHILD_END_NS";

fn lock_key(resource: usize) -> String {
    format!("chaos:lock:{resource}")
}

fn counter_key(resource: usize) -> String {
    format!("chaos:counter:{resource}")
}

/// The lock managers of a process's workers: the fenced one takes [`FENCED_RESOURCE`], the
/// plain one the others. Same settings otherwise.
///
/// A fenced manager distrusts the counters of a node it saw restart without an append-only
/// file, until a fenced grant re-seeds them; a node with AOF keeps their trust (SAFETY.md,
/// "Restarts"). Every node here runs AOF `always`, so `restart_quarantine` being off, no call
/// may fail with a node `Quarantined`: one that does is reported.
struct Managers {
    plain: Arc<Redlock>,
    fenced: Arc<Redlock>,
}

impl Managers {
    fn new(urls: &[String]) -> Managers {
        Managers {
            plain: Arc::new(build_dlm(urls, false)),
            fenced: Arc::new(build_dlm(urls, true)),
        }
    }

    fn for_resource(&self, resource: usize) -> Arc<Redlock> {
        if resource == FENCED_RESOURCE {
            Arc::clone(&self.fenced)
        } else {
            Arc::clone(&self.plain)
        }
    }
}

fn build_dlm(urls: &[String], fencing: bool) -> Redlock {
    Redlock::builder()
        .nodes(urls)
        .fencing(fencing)
        .retries(RETRIES)
        .retry_delay(RETRY_DELAY)
        .retry_jitter(RETRY_JITTER)
        .node_timeout(NODE_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .unwrap_or_else(|e| panic!("chaos: cannot build the lock manager: {e}"))
}

fn seed_from_env() -> u64 {
    let Ok(text) = std::env::var("RESPLOCK_CHAOS_SEED") else {
        return DEFAULT_SEED;
    };
    let text = text.trim();
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|e| panic!("RESPLOCK_CHAOS_SEED={text:?} is not a u64: {e}"))
}

fn duration_from_env() -> Duration {
    let Ok(text) = std::env::var("RESPLOCK_CHAOS_SECS") else {
        return Duration::from_secs_f64(DEFAULT_SECS);
    };
    match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs),
        _ => panic!("RESPLOCK_CHAOS_SECS={text:?} is not a positive number of seconds"),
    }
}

/// Reads the lock key on every node directly (not through the proxies), to see which nodes
/// really hold a value. A node that does not answer within 100 ms is `?` and is not asked
/// again for 300 ms.
struct Auditor {
    nodes: Vec<SocketAddr>,
    conns: Vec<Option<Raw>>,
    skip_until: Vec<Option<Instant>>,
}

impl Auditor {
    fn new(nodes: &[SocketAddr]) -> Auditor {
        Auditor {
            nodes: nodes.to_vec(),
            conns: nodes.iter().map(|_| None).collect(),
            skip_until: nodes.iter().map(|_| None).collect(),
        }
    }

    fn audit(&mut self, key: &str, value: &[u8], clock: &Clock) -> Audit {
        let seen = (0..self.nodes.len())
            .map(|node| self.probe(node, key, value))
            .collect();
        Audit {
            at: clock.now(),
            seen,
        }
    }

    fn probe(&mut self, node: usize, key: &str, value: &[u8]) -> char {
        if self.skip_until[node].is_some_and(|t| Instant::now() < t) {
            return '?';
        }
        let conn = match self.conns[node].take() {
            Some(conn) => Ok(conn),
            None => Raw::connect(self.nodes[node]).map(|mut conn| {
                conn.set_timeout(Duration::from_millis(100));
                conn
            }),
        };
        let reply = conn.and_then(|mut conn| {
            let reply = conn.try_cmd(&[b"GET", key.as_bytes()])?;
            Ok((conn, reply))
        });
        match reply {
            Ok((conn, RawReply::Bulk(found))) => {
                self.conns[node] = Some(conn);
                match found {
                    Some(v) if v == value => 'O',
                    Some(_) => 'x',
                    None => '-',
                }
            }
            // `-LOADING` after a restart: the connection is fine.
            Ok((conn, RawReply::Error(_))) => {
                self.conns[node] = Some(conn);
                '?'
            }
            // Anything else (a timeout leaves the connection out of step): drop it.
            _ => {
                self.skip_until[node] = Some(Instant::now() + Duration::from_millis(300));
                '?'
            }
        }
    }
}

/// What one worker thread needs.
struct WorkerSpec {
    owner: String,
    seed: u64,
    stream: u64,
    end: Instant,
    clock: Clock,
    counter: SocketAddr,
    /// The lock nodes' own addresses, for the audits.
    nodes: Vec<SocketAddr>,
}

#[derive(Default)]
struct WorkerLog {
    acqs: Vec<Acquisition>,
    /// `lock_within` calls that failed.
    waits: Vec<FailedWait>,
    counts: Counts,
}

/// Runs `threads` workers named `p<process>t<i>` on `dlm` until `end`.
fn run_threads(
    dlm: &Managers,
    process: usize,
    threads: usize,
    seed: u64,
    end: Instant,
    clock: Clock,
    (counter, nodes): (SocketAddr, &[SocketAddr]),
) -> Vec<WorkerLog> {
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let spec = WorkerSpec {
                    owner: format!("p{process}t{t}"),
                    seed,
                    stream: (process * 16 + t + 1) as u64,
                    end,
                    clock,
                    counter,
                    nodes: nodes.to_vec(),
                };
                s.spawn(move || run_worker(dlm, &spec))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

fn run_worker(dlm: &Managers, spec: &WorkerSpec) -> WorkerLog {
    let mut rng = Rng::new(spec.seed, spec.stream);
    let mut counter = Raw::connect(spec.counter)
        .unwrap_or_else(|e| panic!("chaos: connect to the counter node: {e}"));
    let mut auditor = Auditor::new(&spec.nodes);
    let mut log = WorkerLog::default();
    let mut seq = 0;
    while Instant::now() < spec.end {
        let resource = rng.index(RESOURCES);
        let as_lease = rng.chance(LEASE_PER_MILLE);
        let ttl_ms = if as_lease {
            LEASE_TTLS_MS[rng.index(LEASE_TTLS_MS.len())]
        } else {
            TTLS_MS[rng.index(TTLS_MS.len())]
        };
        let max_wait = rng
            .chance(WITHIN_PER_MILLE)
            .then(|| rng.millis(MAX_WAIT_MS.0, MAX_WAIT_MS.1));
        let manager = dlm.for_resource(resource);
        let ttl = Duration::from_millis(ttl_ms);
        let requested = spec.clock.now();
        let result = match max_wait {
            Some(max_wait) => manager.lock_within(lock_key(resource), ttl, max_wait),
            None => manager.lock(lock_key(resource), ttl),
        };
        let returned = spec.clock.now();
        log.counts.bump(format!("r{resource}.calls"));
        match result {
            Ok(guard) => {
                log.counts.bump("granted");
                let mut acq = Acquisition::new(
                    &spec.owner,
                    seq,
                    resource,
                    ttl_ms,
                    (requested, returned, spec.clock.ns(guard.valid_until())),
                );
                acq.token = guard.token();
                acq.value = String::from_utf8_lossy(guard.value()).into_owned();
                if let Some(max_wait) = max_wait {
                    acq.via = Via::Within;
                    acq.max_wait_ms = Some(millis(max_wait));
                }
                let hold = if as_lease { hold_lease } else { hold };
                let acq = hold(
                    guard,
                    acq,
                    spec,
                    &mut rng,
                    (&mut counter, &mut auditor),
                    &mut log.counts,
                );
                seq += 1;
                log.acqs.push(acq);
            }
            Err(e) => {
                log.counts.bump(format!("r{resource}.failed"));
                if let Error::NotAcquired { failures, .. } = &e {
                    if failures
                        .iter()
                        .any(|f| matches!(f.error, NodeError::Quarantined))
                    {
                        log.counts
                            .bump(format!("r{resource}.failed-with-a-node-barred"));
                        // For the report: when, and what each node said.
                        let text = e.to_string().replace(['|', '\n', '\r', '='], " ");
                        log.counts.bump(format!("barred-call.{returned}.{text}"));
                    }
                }
                let prefix = if max_wait.is_some() { "within" } else { "lock" };
                classify_lock_error(&e, prefix, &mut log.counts);
                if let Some(max_wait) = max_wait {
                    log.waits.push(FailedWait {
                        owner: spec.owner.clone(),
                        resource,
                        ttl_ms,
                        max_wait_ms: millis(max_wait),
                        requested,
                        returned,
                        error: match &e {
                            Error::NotAcquired { expired: true, .. } => {
                                FailedWait::EXPIRED.to_owned()
                            }
                            Error::NotAcquired { .. } => FailedWait::NOT_ACQUIRED.to_owned(),
                            other => sanitize(&other.to_string()),
                        },
                    });
                }
            }
        }
        thread::sleep(rng.millis(0, 30));
    }
    log
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Uses a granted lock: hold, maybe extend, the critical section, then release / drop /
/// abandon. `acq` is the grant's record (times, path, token); returns it completed.
fn hold(
    mut guard: LockGuard<String>,
    mut acq: Acquisition,
    spec: &WorkerSpec,
    rng: &mut Rng,
    (counter, auditor): (&mut Raw, &mut Auditor),
    counts: &mut Counts,
) -> Acquisition {
    let clock = spec.clock;
    let (resource, ttl_ms) = (acq.resource, acq.ttl_ms);
    let lock_key = lock_key(resource);
    acq.audit_grant = Some(auditor.audit(&lock_key, guard.value(), &clock));
    thread::sleep(rng.millis(0, ttl_ms / 5));

    if rng.chance(EXTEND_PER_MILLE) {
        let ext_ttl_ms = TTLS_MS[rng.index(TTLS_MS.len())];
        let start = clock.now();
        let result = guard.extend(Duration::from_millis(ext_ttl_ms));
        let returned = clock.now();
        counts.bump(match &result {
            Ok(_) => "extend.ok",
            Err(Error::Expired) => "extend.refused-expired",
            Err(Error::NotExtended { .. }) => "extend.not-extended",
            Err(_) => "extend.other-error",
        });
        let not_held = match &result {
            Err(Error::NotExtended { not_held, .. }) => *not_held as u64,
            _ => 0,
        };
        acq.extensions.push(Extension {
            ttl_ms: ext_ttl_ms,
            start,
            returned,
            valid_until: clock.ns(guard.valid_until()),
            ok: result.is_ok(),
            not_held,
        });
    }

    // More work under the lock, up to half the validity the guard now reports (after a failed
    // extend that is still the old one).
    let more = (guard.remaining() / 2).min(Duration::from_millis(800));
    thread::sleep(rng.millis(0, u64::try_from(more.as_millis()).unwrap_or(0)));

    // The critical section: a read-modify-write that loses updates if two holders overlap.
    let key = counter_key(resource);
    let work = rng.millis(WORK_MS.0, WORK_MS.1);
    if guard.remaining() > work + WORK_MARGIN {
        let before: u64 = counter.get(&key).map_or(0, |v| {
            String::from_utf8_lossy(&v)
                .parse()
                .unwrap_or_else(|e| panic!("chaos: counter {key} holds {v:?}: {e}"))
        });
        thread::sleep(work);
        if guard.remaining() > WRITE_MARGIN {
            counter.set(&key, (before + 1).to_string());
            acq.increments = 1;
            acq.overran = Instant::now() >= guard.valid_until();
            counts.bump("cs.increment");
            if acq.overran {
                counts.bump("cs.overran");
            }
        } else {
            counts.bump("cs.skipped-late");
        }
    } else {
        counts.bump("cs.skipped-short");
    }
    thread::sleep(rng.millis(0, 20));
    acq.audit_end = Some(auditor.audit(&lock_key, guard.value(), &clock));

    let roll = rng.below(1000);
    if roll < ABANDON_PER_MILLE {
        guard.disarm();
        drop(guard);
        acq.ending = Ending::Abandoned;
    } else if roll < ABANDON_PER_MILLE + DROP_PER_MILLE {
        acq.release_start = Some(clock.now());
        drop(guard);
        acq.release_end = Some(clock.now());
        acq.ending = Ending::Dropped;
    } else {
        acq.release_start = Some(clock.now());
        let result = guard.release();
        acq.release_end = Some(clock.now());
        acq.ending = release_ending(result, counts);
    }
    acq
}

/// What `release()`'s result makes of an acquisition's ending.
fn release_ending(result: Result<bool, Error>, counts: &mut Counts) -> Ending {
    match result {
        Ok(true) => Ending::Released,
        Ok(false) => Ending::Lost,
        Err(Error::ReleaseUncertain { .. }) => Ending::Uncertain,
        Err(e) => {
            counts.bump(format!("release.error {}", sanitize(&e.to_string())));
            Ending::Failed
        }
    }
}

fn sanitize(text: &str) -> String {
    text.replace(['|', '\n', '\r'], " ")
}

/// Counts a failed `lock()` (`prefix` `lock`) or `lock_within()` (`within`) by kind:
/// contention (only other owners' keys in the way), outage (only node failures), mixed,
/// expired (a quorum granted but the validity was gone), and the node failure causes behind
/// outages.
fn classify_lock_error(e: &Error, prefix: &str, counts: &mut Counts) {
    let kind = match e {
        Error::NotAcquired { expired: true, .. } => "expired",
        _ if e.is_contention() => "contention",
        Error::NotAcquired {
            failures,
            held_elsewhere,
            ..
        } => {
            for f in failures {
                counts.bump(format!("node.{}", cause(&f.error)));
            }
            if failures.is_empty() {
                "other"
            } else if *held_elsewhere > 0 {
                "mixed"
            } else {
                "outage"
            }
        }
        other => {
            counts.bump(format!("{prefix}.error {}", sanitize(&other.to_string())));
            return;
        }
    };
    counts.bump(format!("{prefix}.{kind}"));
}

fn cause(e: &NodeError) -> String {
    match e {
        NodeError::Timeout(phase) => format!("timeout-{phase}"),
        NodeError::Io { phase, kind } => format!("io-{phase}-{kind:?}"),
        NodeError::Closed => "closed".to_owned(),
        NodeError::Protocol(p) => format!("protocol-{p:?}"),
        NodeError::Server(s) => format!("server-{:?}", s.kind),
        NodeError::UnexpectedReply => "unexpected-reply".to_owned(),
        other => sanitize(&other.to_string()),
    }
}

/// A child worker process and the threads draining its output. Dropping it (say, when the
/// test panics) kills the child, by its handle.
struct ChildRun {
    index: usize,
    child: Child,
    output: Option<(JoinHandle<String>, JoinHandle<String>)>,
}

fn drain(mut from: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn spawn_child(
    index: usize,
    urls: &[String],
    (counter, nodes): (SocketAddr, &[SocketAddr]),
    seed: u64,
    end_ns: Ns,
) -> ChildRun {
    let nodes: Vec<String> = nodes.iter().map(SocketAddr::to_string).collect();
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("chaos: cannot locate the test binary: {e}"));
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "chaos_child_worker",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, index.to_string())
        .env(CHILD_URLS_ENV, urls.join(","))
        .env(CHILD_COUNTER_ENV, counter.to_string())
        .env(CHILD_NODES_ENV, nodes.join(","))
        .env(CHILD_SEED_ENV, seed.to_string())
        .env(CHILD_END_ENV, end_ns.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("chaos: cannot start child worker {index}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    ChildRun {
        index,
        child,
        output: Some((stdout, stderr)),
    }
}

impl ChildRun {
    /// Waits for the child until `deadline`, then kills it. Returns its exit status (`None`
    /// when it had to be killed), stdout and stderr.
    fn finish(&mut self, deadline: Instant) -> (Option<ExitStatus>, String, String) {
        let mut status = None;
        while status.is_none() && Instant::now() < deadline {
            status = self.child.try_wait().ok().flatten();
            if status.is_none() {
                thread::sleep(Duration::from_millis(20));
            }
        }
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let (out, err) = self.output.take().map_or_else(Default::default, |(o, e)| {
            (o.join().unwrap_or_default(), e.join().unwrap_or_default())
        });
        (status, out, err)
    }
}

impl Drop for ChildRun {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The worker mode of this binary: does nothing unless started by the chaos test.
#[test]
fn chaos_child_worker() {
    let Ok(index) = std::env::var(CHILD_ENV) else {
        return;
    };
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("chaos child: {name} is not set"))
    };
    let process: usize = index.parse().expect("child index");
    let urls: Vec<String> = var(CHILD_URLS_ENV).split(',').map(str::to_owned).collect();
    let counter: SocketAddr = var(CHILD_COUNTER_ENV).parse().expect("counter address");
    let nodes: Vec<SocketAddr> = var(CHILD_NODES_ENV)
        .split(',')
        .map(|a| a.parse().expect("node address"))
        .collect();
    let seed: u64 = var(CHILD_SEED_ENV).parse().expect("seed");
    let end_ns: Ns = var(CHILD_END_ENV).parse().expect("end time");
    let clock = Clock::new();
    assert!(
        clock.is_shared(),
        "chaos child: Instant is not readable as CLOCK_MONOTONIC"
    );
    let dlm = Managers::new(&urls);
    let logs = run_threads(
        &dlm,
        process,
        CHILD_THREADS,
        seed,
        clock.instant(end_ns),
        clock,
        (counter, &nodes),
    );
    // A leading newline: libtest may have printed `test chaos_child_worker ... ` already.
    let mut out = String::from("\n");
    let mut counts = Counts::default();
    for log in &logs {
        for acq in &log.acqs {
            out.push_str(&acq.to_line());
            out.push('\n');
        }
        for wait in &log.waits {
            out.push_str(&wait.to_line());
            out.push('\n');
        }
        counts.merge(&log.counts);
    }
    out.push_str(&counts_to_lines(&counts));
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .expect("chaos child: write records");
}

/// Writes every record, in call-start order, and the nemesis log to `path`
/// (`RESPLOCK_CHAOS_DUMP`), for a look at a whole run.
fn dump(
    path: &str,
    acqs: &[Acquisition],
    waits: &[FailedWait],
    log: &[(Instant, String)],
    describe: &dyn Fn(&Acquisition) -> String,
    rel: &dyn Fn(Ns) -> f64,
    clock: &Clock,
) {
    let mut lines: Vec<(Ns, String)> = acqs
        .iter()
        .map(|a| {
            (
                a.requested,
                format!("grant r{} {} value={}", a.resource, describe(a), a.value),
            )
        })
        .collect();
    lines.extend(waits.iter().map(|w| {
        (
            w.requested,
            format!(
                "failed-wait r{} {} ttl={}ms max_wait={}ms called at {:.3}ms returned {:?} at \
                 {:.3}ms",
                w.resource,
                w.owner,
                w.ttl_ms,
                w.max_wait_ms,
                rel(w.requested),
                w.error,
                rel(w.returned)
            ),
        )
    }));
    lines.extend(log.iter().map(|(t, line)| {
        let ns = clock.ns(*t);
        (ns, format!("nemesis at {:.3}ms: {line}", rel(ns)))
    }));
    lines.sort();
    let text: String = lines.into_iter().map(|(_, l)| l + "\n").collect();
    if let Err(e) = std::fs::write(path, text) {
        println!("chaos: cannot write RESPLOCK_CHAOS_DUMP={path}: {e}");
    }
}

/// The fencing counters' key prefix: these keys never expire, by design.
const FENCE_PREFIX: &str = "resplock:fence:";

/// Every key on each node but the fencing counters (`resplock:fence:*`), read directly (not
/// through the proxies).
fn keys_per_node(cluster: &Cluster) -> Vec<Vec<String>> {
    cluster
        .nodes()
        .iter()
        .map(|node| {
            node.raw()
                .keys("*")
                .into_iter()
                .map(|k| String::from_utf8_lossy(&k).into_owned())
                .filter(|k| !k.starts_with(FENCE_PREFIX))
                .collect()
        })
        .collect()
}

/// The fenced resource's counter on each node (`None`: no counter, or unreadable).
fn fence_counters(cluster: &Cluster) -> Vec<Option<u64>> {
    let key = format!("{FENCE_PREFIX}{}", lock_key(FENCED_RESOURCE));
    cluster
        .nodes()
        .iter()
        .map(|node| {
            node.raw()
                .get(&key)
                .and_then(|v| String::from_utf8_lossy(&v).parse().ok())
        })
        .collect()
}

#[test]
fn chaos_mutual_exclusion_under_faults() {
    let test_start = Instant::now();
    support::require_redis();
    let seed = seed_from_env();
    let run = duration_from_env();
    println!(
        "chaos: seed={seed:#x} (RESPLOCK_CHAOS_SEED to replay), duration {run:?} \
         (RESPLOCK_CHAOS_SECS)"
    );
    let clock = Clock::new();
    let mut cluster = Cluster::start_with(NODES, &RedisOptions::default().aof(true));
    let counter_node = RedisNode::start();
    let proxies: Vec<FaultProxy> = cluster.nodes().iter().map(FaultProxy::for_node).collect();
    let urls: Vec<String> = proxies.iter().map(FaultProxy::url).collect();
    let node_addrs: Vec<SocketAddr> = cluster.nodes().iter().map(RedisNode::addr).collect();
    let setup = test_start.elapsed();

    let start = Instant::now();
    let end = start + run;
    let mut children = Vec::new();
    if clock.is_shared() {
        for index in 1..=CHILD_PROCESSES {
            children.push(spawn_child(
                index,
                &urls,
                (counter_node.addr(), &node_addrs),
                seed,
                clock.ns(end),
            ));
        }
    } else {
        println!("chaos: Instant is not readable as CLOCK_MONOTONIC here: threads only");
    }
    let dlm = Managers::new(&urls);
    let monitor_dir = std::env::var("RESPLOCK_CHAOS_MONITOR").ok();
    let monitor = monitor_dir
        .as_ref()
        .map(|_| monitor::Monitor::start(&node_addrs, clock));
    let (report, parent_logs) = thread::scope(|s| {
        let nemesis = Nemesis::new(cluster.nodes_mut(), &proxies, Rng::new(seed, 0), start);
        let nemesis = s.spawn(move || nemesis.run(end));
        let logs = run_threads(
            &dlm,
            0,
            PARENT_THREADS,
            seed,
            end,
            clock,
            (counter_node.addr(), &node_addrs),
        );
        let report = nemesis
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (report, logs)
    });

    let mut problems: Vec<String> = Vec::new();
    let mut acqs: Vec<Acquisition> = Vec::new();
    let mut waits: Vec<FailedWait> = Vec::new();
    let mut counts = Counts::default();
    for log in parent_logs {
        acqs.extend(log.acqs);
        waits.extend(log.waits);
        counts.merge(&log.counts);
    }
    let mut processes = 1;
    for mut child in children {
        let index = child.index;
        let (status, out, err) = child.finish(end + CHILD_GRACE);
        let mut records = 0;
        // libtest may print `test chaos_child_worker ... ` on the line our output starts on.
        for line in out
            .lines()
            .filter_map(|l| l.find(LINE_PREFIX).map(|i| &l[i..]))
        {
            if let Some(acq) = Acquisition::from_line(line) {
                acqs.push(acq);
                records += 1;
            } else if let Some(wait) = FailedWait::from_line(line) {
                waits.push(wait);
            } else if let Some((name, n)) = count_from_line(line) {
                counts.add(name, n);
            } else {
                problems.push(format!("child {index}: unparsable line {line:?}"));
            }
        }
        match status {
            Some(s) if s.success() => processes += 1,
            _ => {
                let tail: String = err
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                problems.push(format!(
                    "child worker {index} failed ({status:?}, {records} records); stderr tail:\n{tail}"
                ));
            }
        }
    }
    let workers_done = Instant::now();
    if let (Some(monitor), Some(dir)) = (monitor, &monitor_dir) {
        monitor.finish(dir, clock.ns(start));
    }

    // Leftover keys: right after the run (informative), then past the longest ttl (asserted).
    thread::sleep(Duration::from_millis(200));
    let keys_after_run = keys_per_node(&cluster);
    let quiet_since = report.healed_at.unwrap_or(workers_done).max(workers_done);
    let settle = quiet_since + MAX_TTL + report.max_latency + Duration::from_millis(500);
    thread::sleep(settle.saturating_duration_since(Instant::now()));
    let keys_left = keys_per_node(&cluster);
    let fence_counters = fence_counters(&cluster);

    let mut counter_raw = counter_node.raw();
    let counters: Vec<(u64, u64)> = (0..RESOURCES)
        .map(|r| {
            let actual = counter_raw.get(counter_key(r)).map_or(0, |v| {
                String::from_utf8_lossy(&v).parse().unwrap_or(u64::MAX)
            });
            let expected = acqs
                .iter()
                .filter(|a| a.resource == r)
                .map(|a| a.increments)
                .sum();
            (actual, expected)
        })
        .collect();

    let exclusion = check_exclusion(&acqs, RESOURCES);
    let quorum = (NODES / 2 + 1) as u64;
    let lost_while_valid: Vec<(&Acquisition, String)> = acqs
        .iter()
        .filter_map(|a| a.lost_while_valid(quorum).map(|why| (a, why)))
        .collect();
    let misreported: Vec<(&Acquisition, String)> = acqs
        .iter()
        .filter_map(|a| a.release_misreported(quorum).map(|why| (a, why)))
        .collect();
    let lease_stats = LeaseStats::of(&acqs, quorum);
    let broken_leases: Vec<&Acquisition> = acqs
        .iter()
        .filter(|a| a.lease.as_ref().is_some_and(|l| !l.violations.is_empty()))
        .collect();
    let tokens = check_tokens(&acqs, RESOURCES, &[FENCED_RESOURCE], 5);
    let lease_tokens_differing = counts.0.get("token.lease-differs").copied().unwrap_or(0);
    // The grant with the highest token raised the counters of a quorum to it before it
    // returned, and counters never go back: a quorum must still be at or above it.
    let highest_token = tokens.range.map(|(_, hi)| hi);
    let counters_at_highest = fence_counters
        .iter()
        .filter(|c| c.zip(highest_token).is_some_and(|(c, t)| c >= t))
        .count();
    let wait_stats = WaitStats::of(&acqs, &waits);

    // --- the verdict ---
    let start_ns = clock.ns(start);
    let rel = |ns: Ns| (ns as f64 - start_ns as f64) / 1e6;
    let show_audit = |audit: Option<&Audit>| {
        audit.map_or_else(
            || "-".to_owned(),
            |a| format!("{} at {:.3}ms", a.seen, rel(a.at)),
        )
    };
    let describe = |a: &Acquisition| {
        let exts: Vec<String> = a
            .extensions
            .iter()
            .map(|e| {
                format!(
                    "extend({}ms) {} at {:.3}..{:.3}, then valid_until {:.3}",
                    e.ttl_ms,
                    if e.ok { "ok" } else { "failed" },
                    rel(e.start),
                    rel(e.returned),
                    rel(e.valid_until)
                )
            })
            .collect();
        let segs: Vec<String> = a
            .segments()
            .iter()
            .map(|&(s, e)| format!("[{:.3}, {:.3})", rel(s), rel(e)))
            .collect();
        let lease = a.lease.as_ref().map_or_else(String::new, |l| {
            format!(" {}", l.describe(a.valid_until, &rel))
        });
        format!(
            "{}#{} ttl={}ms {}() called at {:.3}ms{} granted={:.3}ms token={} valid_until={:.3}ms \
             {:?}{lease} release_start={} ending={:?} increments={} overran={} holder \
             intervals {} audits (O ours, x other, - none, ? unknown): after grant {}, before \
             release {}",
            a.owner,
            a.seq,
            a.ttl_ms,
            a.via.name(),
            rel(a.requested),
            a.max_wait_ms
                .map_or_else(String::new, |ms| format!(" (max_wait {ms}ms)")),
            rel(a.granted),
            a.token.map_or_else(|| "-".to_owned(), |t| t.to_string()),
            rel(a.valid_until),
            exts,
            a.release_start
                .map_or_else(|| "-".to_owned(), |r| format!("{:.3}ms", rel(r))),
            a.ending,
            a.increments,
            a.overran,
            segs.join(" "),
            show_audit(a.audit_grant.as_ref()),
            show_audit(a.audit_end.as_ref()),
        )
    };
    // Nemesis actions from 3 s before `from` to 0.5 s after `to`.
    let nemesis_near = |from: Ns, to: Ns| -> String {
        let (from, to) = (clock.instant(from), clock.instant(to));
        report
            .log
            .iter()
            .filter(|(t, _)| {
                *t + Duration::from_secs(3) >= from && *t <= to + Duration::from_millis(500)
            })
            .map(|(_, line)| format!("      {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    };

    if !exclusion.overlaps.is_empty() {
        let mut text = format!(
            "mutual exclusion violated: {} overlapping holder pairs, max overlap {:.3} ms",
            exclusion.overlaps.len(),
            exclusion.max_overlap_ns() as f64 / 1e6
        );
        for o in exclusion.overlaps.iter().take(5) {
            text.push_str(&format!(
                "\n  resource {} at {:.3}ms, overlap {:.3}ms:\n    first:  {}\n    second: {}\n    nemesis around it:\n{}",
                o.resource,
                rel(o.at),
                o.overlap_ns as f64 / 1e6,
                describe(&acqs[o.first]),
                describe(&acqs[o.second]),
                nemesis_near(
                    acqs[o.first].requested.min(acqs[o.second].requested),
                    o.at
                )
            ));
        }
        problems.push(text);
    }
    for (r, &(actual, expected)) in counters.iter().enumerate() {
        if actual != expected {
            let overran = acqs.iter().filter(|a| a.resource == r && a.overran).count();
            problems.push(format!(
                "counter of resource {r} is {actual}, but {expected} increments were written \
                 under the lock ({overran} of them finished after the validity)"
            ));
        }
    }
    if !lost_while_valid.is_empty() {
        let mut text = format!(
            "{} locks were lost while still valid (a node that granted the key lost it before \
             valid_until)",
            lost_while_valid.len()
        );
        for (a, why) in lost_while_valid.iter().take(5) {
            text.push_str(&format!(
                "\n  {why}: {}\n    released at {:.3}..{:.3}ms\n    nemesis around it:\n{}",
                describe(a),
                rel(a.release_start.unwrap_or(0)),
                rel(a.release_end.unwrap_or(0)),
                nemesis_near(a.requested, a.release_end.unwrap_or(a.granted))
            ));
        }
        problems.push(text);
    }
    if !misreported.is_empty() {
        let mut text = format!(
            "release() returned Ok(false) (\"a quorum no longer held our value\") for {} locks \
             while they were valid and a quorum of nodes held the value or could not tell",
            misreported.len()
        );
        for (a, why) in misreported.iter().take(3) {
            text.push_str(&format!(
                "\n  {why}: {}\n    released at {:.3}..{:.3}ms\n    nemesis around it:\n{}",
                describe(a),
                rel(a.release_start.unwrap_or(0)),
                rel(a.release_end.unwrap_or(0)),
                nemesis_near(a.requested, a.release_end.unwrap_or(a.granted))
            ));
        }
        problems.push(text);
    }
    if !broken_leases.is_empty() {
        let mut text = format!(
            "{} leases broke their contract: {} stickiness and {} validity-consistency \
             violations",
            broken_leases.len(),
            lease_stats.sticky_violations,
            lease_stats.validity_violations
        );
        for a in broken_leases.iter().take(5) {
            text.push_str(&format!(
                "\n  {}\n    nemesis around it:\n{}",
                describe(a),
                nemesis_near(a.requested, a.release_end.unwrap_or(a.granted))
            ));
        }
        problems.push(text);
    }
    if acqs.len() >= 30 && lease_stats.leases == 0 {
        problems.push(format!(
            "checker: none of the {} acquisitions was kept alive as a lease",
            acqs.len()
        ));
    }
    if let Ok(path) = std::env::var("RESPLOCK_CHAOS_DUMP") {
        dump(&path, &acqs, &waits, &report.log, &describe, &rel, &clock);
    }
    if tokens.violating_grants > 0 {
        let mut text = format!(
            "fencing tokens did not increase along real-time order: {} grants had a token not \
             above that of a grant that returned before their call started ({} ordered pairs \
             of {}; {} shown)",
            tokens.violating_grants,
            tokens.violating_pairs,
            tokens.ordered_pairs,
            tokens.inversions.len()
        );
        for t in &tokens.inversions {
            let (earlier, later) = (&acqs[t.earlier], &acqs[t.later]);
            text.push_str(&format!(
                "\n  resource {}:\n    earlier: {}\n    later:   {}\n    nemesis around them:\n{}",
                t.resource,
                describe(earlier),
                describe(later),
                nemesis_near(earlier.requested, later.granted)
            ));
        }
        problems.push(text);
    }
    if !tokens.missing.is_empty() || !tokens.unexpected.is_empty() {
        let mut text = format!(
            "{} grants of the fenced resource {FENCED_RESOURCE} had no token, {} grants of \
             other resources had one",
            tokens.missing.len(),
            tokens.unexpected.len()
        );
        for &i in tokens.missing.iter().chain(&tokens.unexpected).take(5) {
            text.push_str(&format!("\n  {}", describe(&acqs[i])));
        }
        problems.push(text);
    }
    if lease_tokens_differing > 0 {
        problems.push(format!(
            "{lease_tokens_differing} leases reported a token other than their guard's"
        ));
    }
    if let Some(highest) = highest_token {
        if (counters_at_highest as u64) < quorum {
            problems.push(format!(
                "fencing counters went back: the highest token handed out was {highest}, but \
                 after the run only {counters_at_highest} nodes had their counter at or above \
                 it: {fence_counters:?}"
            ));
        }
    }
    let barred_fenced_calls = counts
        .0
        .get(&format!("r{FENCED_RESOURCE}.failed-with-a-node-barred"))
        .copied()
        .unwrap_or(0);
    if barred_fenced_calls > 0 {
        let mut text = format!(
            "{barred_fenced_calls} fenced calls failed with a node barred (Quarantined), though \
             every node keeps an append-only file: a restart made the manager distrust a counter"
        );
        let details = counts
            .0
            .keys()
            .filter_map(|k| k.strip_prefix("barred-call."));
        for detail in details.take(5) {
            let (at, error) = detail.split_once('.').unwrap_or((detail, ""));
            let at: Ns = at.parse().unwrap_or(0);
            text.push_str(&format!(
                "\n  returned at {:.3}ms: {error}\n    nemesis before it:\n{}",
                rel(at),
                nemesis_near(at.saturating_sub(3_000_000_000), at)
            ));
        }
        problems.push(text);
    }
    if !wait_stats.early.is_empty() {
        let mut text = format!(
            "{} lock_within() calls failed before their max_wait had passed",
            wait_stats.early.len()
        );
        for &i in wait_stats.early.iter().take(5) {
            let w = &waits[i];
            text.push_str(&format!(
                "\n  {} resource {} ttl={}ms max_wait={}ms called at {:.3}ms, returned {:?} at \
                 {:.3}ms (after {:.3}ms)\n    nemesis around it:\n{}",
                w.owner,
                w.resource,
                w.ttl_ms,
                w.max_wait_ms,
                rel(w.requested),
                w.error,
                rel(w.returned),
                (w.returned - w.requested) as f64 / 1e6,
                nemesis_near(w.requested, w.returned)
            ));
        }
        problems.push(text);
    }
    if acqs.len() >= 30 {
        if tokens.fenced == 0 || tokens.ordered_pairs == 0 {
            problems.push(format!(
                "checker: {} fenced grants, {} ordered pairs of them: the token check compared \
                 nothing",
                tokens.fenced, tokens.ordered_pairs
            ));
        }
        if wait_stats.grants == 0 {
            problems.push("checker: no lock was granted by lock_within()".to_owned());
        }
    }
    let left: usize = keys_left.iter().map(Vec::len).sum();
    if left > 0 {
        problems.push(format!(
            "{left} lock keys left on the nodes after waiting past the longest ttl: {keys_left:?}"
        ));
    }
    if report.max_faulty > MAX_FAULTY {
        problems.push(format!(
            "the nemesis faulted {} nodes at once (more than a minority)",
            report.max_faulty
        ));
    }
    let granted = counts.0.get("granted").copied().unwrap_or(0);
    if granted != acqs.len() as u64 {
        problems.push(format!(
            "checker: {granted} locks were granted but {} records were collected",
            acqs.len()
        ));
    }
    if acqs.is_empty() {
        problems.push("no lock was ever acquired".to_owned());
    }

    // --- the summary ---
    let per_resource: Vec<String> = (0..RESOURCES)
        .map(|r| format!("r{r}={}", acqs.iter().filter(|a| a.resource == r).count()))
        .collect();
    let endings: Vec<String> = Ending::EVERY
        .iter()
        .map(|e| {
            format!(
                "{}={}",
                format!("{e:?}").to_lowercase(),
                acqs.iter().filter(|a| a.ending == *e).count()
            )
        })
        .collect();
    let counter_text: Vec<String> = counters
        .iter()
        .enumerate()
        .map(|(r, (actual, expected))| format!("r{r}={actual} (expected {expected})"))
        .collect();
    let handovers: Vec<String> = exclusion
        .closest_handover
        .iter()
        .enumerate()
        .map(|(r, gap)| match gap {
            Some(ns) => format!("r{r}={:.3}ms", *ns as f64 / 1e6),
            None => format!("r{r}=-"),
        })
        .collect();
    let nemesis_actions: Vec<String> = report
        .actions
        .iter()
        .map(|(name, n)| format!("{name}={n}"))
        .collect();
    let key_counts = |keys: &[Vec<String>]| -> String {
        keys.iter()
            .enumerate()
            .map(|(i, k)| format!("n{i}={}", k.len()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let vias: Vec<String> = Via::ALL
        .iter()
        .map(|&(via, name)| format!("{name}={}", acqs.iter().filter(|a| a.via == via).count()))
        .collect();
    let counters_text: Vec<String> = fence_counters
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "n{i}={}",
                c.map_or_else(|| "-".to_owned(), |c| c.to_string())
            )
        })
        .collect();
    let chaos_time = workers_done.duration_since(start);
    println!(
        "chaos summary: seed={seed:#x}, {run:?} of chaos, workers: {PARENT_THREADS} threads in \
         this process + {} child processes x {CHILD_THREADS} threads, {NODES} nodes (AOF always), \
         {RESOURCES} resources\n\
         \x20 acquisitions: {} total={} (through {})\n\
         \x20 fencing (r{FENCED_RESOURCE} through a fenced manager): {} grants with a token \
         (range {}), {} without, {} tokens on other resources; ordered pairs compared {}, \
         token violations {} ({} pairs); leases with another token than their guard's {}; \
         counters after the run {} ({} at or above the highest token); fenced calls failed \
         with a node barred {}\n\
         \x20 lock_within: {}\n\
         \x20 calls per resource: {}\n\
         \x20 lock failures: {}\n\
         \x20 lock_within failures: {}\n\
         \x20 node causes behind outage/mixed failures: {}\n\
         \x20 extends: {}\n\
         \x20 endings: {}\n\
         \x20 critical sections: {}\n\
         \x20 leases: {}\n\
         \x20 lease critical sections: {}\n\
         \x20 counters: {}\n\
         \x20 nemesis: {} (max {} faulty at once, max latency {:?}, wall-vs-monotonic drift max {:?})\n\
         \x20 exclusion: {} holder segments, {} overlaps, max overlap {:.3} ms, closest hand-over {}\n\
         \x20 lost while valid: {}, release() misreports: {}\n\
         \x20 lock keys 200 ms after the run: {}; after waiting past the max ttl: {}\n\
         \x20 time: setup {:?}, chaos {:?}, drain and checks {:?}, total {:?}",
        processes - 1,
        per_resource.join(" "),
        acqs.len(),
        vias.join(" "),
        tokens.fenced,
        tokens
            .range
            .map_or_else(|| "-".to_owned(), |(lo, hi)| format!("{lo}..{hi}")),
        tokens.missing.len(),
        tokens.unexpected.len(),
        tokens.ordered_pairs,
        tokens.violating_grants,
        tokens.violating_pairs,
        lease_tokens_differing,
        counters_text.join(" "),
        counters_at_highest,
        barred_fenced_calls,
        wait_stats.line(),
        (0..RESOURCES)
            .map(|r| format!("r{r}: {}", counts.list(&format!("r{r}."))))
            .collect::<Vec<_>>()
            .join("; "),
        counts.list("lock."),
        counts.list("within."),
        counts.list("node."),
        counts.list("extend."),
        endings.join(" "),
        counts.list("cs."),
        lease_stats.line(),
        counts.list("lease-cs."),
        counter_text.join(" "),
        nemesis_actions.join(" "),
        report.max_faulty,
        report.max_latency,
        report.max_wall_drift,
        exclusion.segments.iter().sum::<usize>(),
        exclusion.overlaps.len(),
        exclusion.max_overlap_ns() as f64 / 1e6,
        handovers.join(" "),
        lost_while_valid.len(),
        misreported.len(),
        key_counts(&keys_after_run),
        key_counts(&keys_left),
        setup,
        chaos_time,
        workers_done.elapsed(),
        test_start.elapsed(),
    );
    let extra_errors = counts.list("release.error");
    if extra_errors != "none" {
        println!("  release errors: {extra_errors}");
    }

    if !problems.is_empty() {
        let log: Vec<String> = report.log.iter().map(|(_, l)| l.clone()).collect();
        println!("chaos: nemesis log:\n{}", log.join("\n"));
        panic!(
            "chaos: seed={seed:#x} (replay with RESPLOCK_CHAOS_SEED={seed:#x}): {} problem(s):\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
}

#[path = "chaos/repro.rs"]
mod repro;
