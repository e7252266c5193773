//! Decoding never allocates, and encoding into a `Vec` with room allocates nothing.
//!
//! This binary installs a counting global allocator. Only allocations made on a thread that
//! has switched counting on are counted, so the test harness and other tests running on other
//! threads add no noise.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use resplock::resp::{decode, encode_command, encoded_len, Limits, Reply, Status, MAX_DEPTH};
use resplock::ProtocolError;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised and without a destructor: reading it never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
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

/// Runs `f` with counting on for this thread; returns its result and the allocations
/// (including reallocations) it made. Tests run one per thread, and the counter is shared, so
/// counting sections are serialised.
fn allocations_in<T>(f: impl FnOnce() -> T) -> (T, usize) {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    COUNTING.with(|on| on.set(true));
    let result = f();
    COUNTING.with(|on| on.set(false));
    (result, ALLOCATIONS.load(Ordering::SeqCst) - before)
}

fn nested(levels: usize, leaf: &[u8]) -> Vec<u8> {
    let mut out = b"*1\r\n".repeat(levels);
    out.extend_from_slice(leaf);
    out
}

#[test]
fn the_counter_sees_allocations_on_this_thread() {
    let (boxed, count) = allocations_in(|| Box::new(7u64));
    assert_eq!(*boxed, 7);
    assert_eq!(count, 1);
    let (grown, count) = allocations_in(|| {
        let mut v: Vec<u8> = Vec::with_capacity(1);
        v.extend_from_slice(&[0; 100]);
        v
    });
    assert_eq!(grown.len(), 100);
    assert_eq!(count, 2, "one allocation, one reallocation");
}

#[test]
fn decoding_a_batch_of_replies_allocates_nothing() {
    // Everything the decoder will read is built before counting starts.
    let mut big = b"$65536\r\n".to_vec();
    big.extend((0..65536u32).map(|i| (i % 251) as u8));
    big.extend_from_slice(b"\r\n");
    let mut hundred = b"*100\r\n".to_vec();
    for i in 0..100 {
        hundred.extend_from_slice(format!("${}\r\n{i}\r\n", i.to_string().len()).as_bytes());
    }
    let scalars: [&[u8]; 9] = [
        b"+OK\r\n",
        b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
        b":1\r\n",
        b":-9223372036854775808\r\n",
        b"$-1\r\n",
        b"$40\r\n0123456789012345678901234567890123456789\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"+partial",
    ];
    let limits = Limits::LOCK_CLIENT;

    let ((ok_scalars, big_len, sum, count), allocations) = allocations_in(|| {
        let ok_scalars = scalars
            .iter()
            .filter(|input| decode(input, &limits).is_ok())
            .count();
        let big_len = match decode(&big, &limits) {
            Ok(Status::Complete((Reply::Bulk(Some(payload)), used))) if used == big.len() => {
                payload.len()
            }
            _ => 0,
        };
        let (mut sum, mut count) = (0u64, 0usize);
        if let Ok(Status::Complete((Reply::Array(Some(array)), _))) = decode(&hundred, &limits) {
            for element in array {
                if let Reply::Bulk(Some(digits)) = element {
                    count += 1;
                    sum += digits
                        .iter()
                        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                }
            }
        }
        (ok_scalars, big_len, sum, count)
    });
    assert_eq!(allocations, 0);
    assert_eq!(ok_scalars, scalars.len());
    assert_eq!(big_len, 65536);
    assert_eq!((count, sum), (100, (0..100).sum::<u64>()));
}

#[test]
fn deep_nesting_fails_without_allocating_or_overflowing_the_stack() {
    let deep = nested(1_000_000, b":1\r\n");
    let unbounded = Limits {
        max_depth: usize::MAX,
        ..Limits::PERMISSIVE
    };
    let at_max = nested(MAX_DEPTH, b":1\r\n");
    let ((permissive, unbounded_depth, at_max_depth), allocations) = allocations_in(|| {
        let permissive = decode(&deep, &Limits::PERMISSIVE);
        let unbounded_depth = decode(&deep, &unbounded);
        // Walking all the way down the deepest accepted array does not allocate either.
        let mut levels = 0;
        if let Ok(Status::Complete((mut reply, _))) = decode(&at_max, &unbounded) {
            while let Reply::Array(Some(array)) = reply {
                levels += 1;
                match array.iter().next() {
                    Some(inner) => reply = inner,
                    None => break,
                }
            }
        }
        (permissive.err(), unbounded_depth.err(), levels)
    });
    assert_eq!(allocations, 0);
    assert_eq!(permissive, Some(ProtocolError::TooDeep));
    assert_eq!(unbounded_depth, Some(ProtocolError::TooDeep));
    assert_eq!(at_max_depth, MAX_DEPTH);
}

#[test]
fn a_declared_huge_bulk_or_array_costs_nothing_until_it_arrives() {
    let huge_bulk = b"$536870912\r\nonly a few bytes";
    let huge_array = b"*2147483647\r\n:1\r\n:2\r\n";
    let ((bulk, array), allocations) = allocations_in(|| {
        (
            decode(huge_bulk, &Limits::PERMISSIVE),
            decode(huge_array, &Limits::PERMISSIVE),
        )
    });
    assert_eq!(allocations, 0);
    assert_eq!(bulk, Ok(Status::Incomplete));
    assert_eq!(array, Ok(Status::Incomplete));
}

#[test]
fn encoding_into_reserved_room_allocates_nothing() {
    let value = [b'v'; 20];
    let args: [&[u8]; 6] = [b"SET", b"resource", &value, b"NX", b"PX", b"30000"];
    let mut out = Vec::with_capacity(encoded_len(&args));
    let ((), allocations) = allocations_in(|| encode_command(&mut out, &args));
    assert_eq!(allocations, 0);
    assert_eq!(out.len(), encoded_len(&args));

    // A reused buffer, cleared between commands, does not allocate either.
    let ((), allocations) = allocations_in(|| {
        for _ in 0..10 {
            out.clear();
            encode_command(&mut out, &args);
        }
    });
    assert_eq!(allocations, 0);

    // From an empty Vec: exactly one allocation, of encoded_len reserved once.
    let (fresh, allocations) = allocations_in(|| {
        let mut fresh = Vec::new();
        encode_command(&mut fresh, &args);
        fresh
    });
    assert_eq!(allocations, 1);
    assert_eq!(fresh, out);
}
