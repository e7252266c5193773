//! A counting global allocator for allocation tests, the same as `tests/alloc_hot_path.rs`
//! uses: only allocations made on a thread that switched counting on are counted, so the
//! harness and other tests add no noise. Not part of `support/mod.rs` (a global allocator
//! would then be in every test binary): include it with
//! `#[path = "support/alloc_counter.rs"] mod alloc_counter;`.
//!
//! Set `ALLOC_BACKTRACE=1` to print a backtrace of the first few counted allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

struct Counting;

thread_local! {
    // Const-initialised and without destructors: using them never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

static TRACE: AtomicBool = AtomicBool::new(false);
const TRACE_LIMIT: usize = 8;

fn note_allocation(size: usize) {
    if !COUNTING.try_with(Cell::get).unwrap_or(false) {
        return;
    }
    let n = COUNT.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    BYTES.with(|b| b.set(b.get() + size));
    if TRACE.load(Ordering::Relaxed) && n <= TRACE_LIMIT && !IN_HOOK.with(Cell::get) {
        IN_HOOK.with(|h| h.set(true));
        COUNTING.with(|c| c.set(false));
        eprintln!(
            "counted allocation #{n} ({size} bytes):\n{}",
            Backtrace::force_capture()
        );
        COUNTING.with(|c| c.set(true));
        IN_HOOK.with(|h| h.set(false));
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What [`allocations_in`] counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    /// Allocations and reallocations.
    pub count: usize,
    /// Bytes asked for by them.
    pub bytes: usize,
}

/// Runs `f` with counting on for this thread; returns its result and what it allocated on this
/// thread. With `ALLOC_BACKTRACE=1`, prints where the first few allocations come from.
pub fn allocations_in<T>(f: impl FnOnce() -> T) -> (T, Counted) {
    TRACE.store(
        std::env::var_os("ALLOC_BACKTRACE").is_some_and(|v| v == "1"),
        Ordering::Relaxed,
    );
    COUNT.with(|c| c.set(0));
    BYTES.with(|b| b.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    TRACE.store(false, Ordering::Relaxed);
    let counted = Counted {
        count: COUNT.with(Cell::get),
        bytes: BYTES.with(Cell::get),
    };
    (out, counted)
}
