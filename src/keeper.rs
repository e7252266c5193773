//! The keep-alive worker: one thread per lock manager renews every lease, in batched rounds.
//!
//! Contract:
//! - At most one worker thread per manager (per process: a forked child starts its own),
//!   started by the first lease and ended when the manager is dropped.
//! - It wakes at the next renewal or the next validity end, whichever comes first. Leases due
//!   within a tenth of their period are renewed together: one round per group of leases that
//!   reached the same nodes, one pipelined write per node ([`crate::batch::Renewals`]), on a
//!   pooled connection per node.
//! - It records losses (a validity that ran out, a renewal that found the lock taken) and runs
//!   each lease's `on_lost` callbacks once, on this thread; a callback that panics is
//!   contained.
//! - A lease whose holder stopped it (release, drop) is never sent another renewal: the worker
//!   claims a lease under its lock before each round and clears the claim after it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::batch::{verdict, Item, Renewals, Verdict};
use crate::lease::{Lost, OnLost, Shared};
use crate::quorum::NodeSet;
use crate::redlock::{end_of_validity_from, Inner, Value};
use crate::round::Wait;
use crate::sync::lock;

/// Leases renewed in one round, at most.
const MAX_BATCH: usize = 512;

/// Longest sleep when nothing is due: the worker re-checks its registry at least this often.
const IDLE_WAKE: Duration = Duration::from_secs(60);

/// One kept lease, as the worker sees it.
pub(crate) struct Entry {
    pub key: Vec<u8>,
    pub value: Value,
    pub reached: NodeSet,
    pub ttl: Duration,
    pub ttl_ms: u64,
    pub drift: Duration,
    pub period: Duration,
    pub shared: Arc<Shared>,
}

/// The leases of one manager, and its worker.
#[derive(Default)]
pub(crate) struct Keeper {
    registry: Arc<Registry>,
    /// The process whose worker thread is running, if any.
    worker_pid: Mutex<Option<u32>>,
}

#[derive(Default)]
struct Registry {
    entries: Mutex<Entries>,
    wake: Condvar,
    shutdown: AtomicBool,
}

#[derive(Default)]
struct Entries {
    list: Vec<Arc<Entry>>,
    /// Something changed since the worker last looked.
    dirty: bool,
}

impl Keeper {
    /// Adds a lease and makes sure the worker runs.
    pub fn keep(&self, inner: &Arc<Inner>, entry: Entry) {
        {
            let mut entries = lock(&self.registry.entries);
            entries.list.push(Arc::new(entry));
            entries.dirty = true;
        }
        self.registry.wake.notify_all();
        let pid = std::process::id();
        let mut running = lock(&self.worker_pid);
        if *running != Some(pid) {
            let weak = Arc::downgrade(inner);
            let registry = Arc::clone(&self.registry);
            let spawned = std::thread::Builder::new()
                .name("resplock-keepalive".into())
                .spawn(move || run(&weak, &registry));
            if spawned.is_ok() {
                *running = Some(pid);
            }
        }
    }

    /// Ends the worker (the manager is being dropped).
    pub fn shutdown(&self) {
        self.registry.shutdown.store(true, Ordering::Release);
        self.registry.wake.notify_all();
    }
}

fn run(inner: &Weak<Inner>, registry: &Registry) {
    loop {
        if registry.shutdown.load(Ordering::Acquire) {
            return;
        }
        let Some(manager) = inner.upgrade() else {
            return;
        };
        let wake = tick(&manager, registry);
        drop(manager);
        let mut entries = lock(&registry.entries);
        if entries.dirty || registry.shutdown.load(Ordering::Acquire) {
            entries.dirty = false;
            continue;
        }
        let wait = wake.saturating_duration_since(Instant::now());
        let (mut entries, _) = registry
            .wake
            .wait_timeout(entries, wait)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.dirty = false;
    }
}

/// One pass: settle losses, renew what is due. Returns when to look again.
fn tick(inner: &Inner, registry: &Registry) -> Instant {
    let now = Instant::now();
    let mut wake = now + IDLE_WAKE;
    let mut due: Vec<Arc<Entry>> = Vec::new();
    let mut fire: Vec<(Vec<OnLost>, Lost)> = Vec::new();
    lock(&registry.entries).list.retain(|entry| {
        let mut state = lock(&entry.shared.state);
        if state.stopped {
            return false;
        }
        if let Some(loss) = state.lost_at(now) {
            entry.shared.changed.notify_all();
            fire.push((std::mem::take(&mut state.callbacks), loss));
            return false;
        }
        let capped = state.hold_until.is_some_and(|hold| now >= hold);
        if !capped {
            let early = entry.period / 10;
            if state.next_renewal <= now + early {
                due.push(Arc::clone(entry));
            } else {
                wake = wake.min(state.next_renewal);
            }
        }
        wake = wake.min(state.valid_until);
        true
    });
    run_callbacks(fire);
    if !due.is_empty() {
        renew(inner, &due);
        // Renewals moved the schedule; look again right away for the next wake-up.
        return Instant::now();
    }
    wake
}

/// Renews `due`, grouped by the nodes each reached, in batches.
fn renew(inner: &Inner, due: &[Arc<Entry>]) {
    let mut groups: Vec<(NodeSet, Vec<Arc<Entry>>)> = Vec::new();
    for entry in due {
        match groups
            .iter_mut()
            .find(|(reached, _)| *reached == entry.reached)
        {
            Some((_, members)) => members.push(Arc::clone(entry)),
            None => groups.push((entry.reached, vec![Arc::clone(entry)])),
        }
    }
    for (reached, members) in groups {
        for chunk in members.chunks(MAX_BATCH) {
            renew_batch(inner, reached, chunk);
        }
    }
}

fn renew_batch(inner: &Inner, reached: NodeSet, batch: &[Arc<Entry>]) {
    // Claim each lease: after this, its holder's release waits for the round to end. A lease
    // whose cap has passed since it was found due (earlier rounds took time) is not renewed,
    // and the round's commands go out before the earliest cap of the batch, or not at all.
    let now = Instant::now();
    let mut not_after: Option<Instant> = None;
    let claimed: Vec<&Arc<Entry>> = batch
        .iter()
        .filter(|entry| {
            let mut state = lock(&entry.shared.state);
            let capped = state.hold_until.is_some_and(|hold| now >= hold);
            let free = !state.stopped && !capped && state.lost_at(now).is_none();
            state.renewing |= free;
            if free {
                if let Some(hold) = state.hold_until {
                    not_after = Some(not_after.map_or(hold, |at| at.min(hold)));
                }
            }
            free
        })
        .collect();
    if claimed.is_empty() {
        return;
    }
    let items: Vec<Item<'_>> = claimed
        .iter()
        .map(|entry| Item {
            key: &entry.key,
            value: &entry.value,
            ttl_ms: entry.ttl_ms,
        })
        .collect();
    let nodes = &inner.nodes;
    let mut renewals = Renewals::new(&items, nodes.len());
    let mut call = nodes.call(None);
    call.not_after = not_after;
    let round = call.round(&mut renewals, reached, Wait::AllHealthy);
    drop(call);
    let now = Instant::now();
    let mut fire = Vec::new();
    for (index, entry) in claimed.iter().enumerate() {
        let tally = renewals.tally(index, reached);
        let outcome = verdict(
            tally,
            nodes.quorum(),
            entry.ttl,
            round.elapsed(),
            entry.drift,
        );
        let new_end = end_of_validity_from(round.started, round.finished, entry.ttl, entry.drift);
        let mut state = lock(&entry.shared.state);
        state.renewing = false;
        match outcome {
            // Applied only while the old validity lasts: a lost lease stays lost.
            Verdict::Renewed(_) if state.lost_at(now).is_none() => {
                state.valid_until = state.valid_until.max(new_end);
                state.next_renewal = round.started + entry.period;
            }
            Verdict::Renewed(_) => {}
            Verdict::Taken => {
                state.lost.get_or_insert(Lost::Taken);
            }
            Verdict::Undecided => {
                // Nodes that ran the PEXPIRE (read or not) now expire by `new_end`.
                if !round.sent.is_empty() {
                    state.valid_until = state.valid_until.min(new_end);
                }
                let retry = (entry.period / 4).max(nodes.node_timeout());
                state.next_renewal = now + retry.min(entry.period);
            }
        }
        if let Some(loss) = state.lost_at(now) {
            fire.push((std::mem::take(&mut state.callbacks), loss));
        }
        entry.shared.changed.notify_all();
    }
    run_callbacks(fire);
}

/// Runs loss callbacks outside every lock; a panicking callback does not stop the others.
fn run_callbacks(fire: Vec<(Vec<OnLost>, Lost)>) {
    for (callbacks, loss) in fire {
        for callback in callbacks {
            let _ = catch_unwind(AssertUnwindSafe(move || callback(loss)));
        }
    }
}
