//! A streaming reader gets the same replies as one-shot decoding, wherever the reads split.
//!
//! Input: an 8-byte header, then the stream.
//! - bytes 0..4: custom limits (see `limits_from`), used when byte 4 % 3 == 2;
//! - byte 4: limits, % 3: 0 = `Limits::default()`, 1 = `Limits::PERMISSIVE`, 2 = custom;
//! - bytes 5..7: the first split point, little-endian u16, modulo (stream length + 1);
//! - byte 7: size of each later read; 0 delivers the rest in one read.
//!
//! Checks: if decoding the prefix before the split is an error or complete, decoding the whole
//! stream gives exactly that; if it is incomplete, appending the rest and decoding again gives
//! the one-shot result. Then a pipelined reader (buffer, decode, drain what was consumed, read
//! more) must see the same replies, in order, and end the same way as decoding the whole
//! stream frame after frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use resplock::resp::{decode, Limits, Status};
use resplock_fuzz::{frames, limits_from};

/// Caps the number of reads, so one input costs O(len) decodes at most 64 times over.
const MAX_READS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((head, stream)) = data.split_first_chunk::<8>() else {
        return;
    };
    let limits = match head[4] % 3 {
        0 => Limits::default(),
        1 => Limits::PERMISSIVE,
        _ => limits_from([head[0], head[1], head[2], head[3]]),
    };
    let split = usize::from(u16::from_le_bytes([head[5], head[6]])) % (stream.len() + 1);
    let (first, rest) = stream.split_at(split);

    // One split, one frame.
    let whole = decode(stream, &limits);
    match decode(first, &limits) {
        Ok(Status::Incomplete) => {
            let mut buffer = first.to_vec();
            buffer.extend_from_slice(rest);
            assert_eq!(
                decode(&buffer, &limits),
                whole,
                "prefix, then the rest appended"
            );
        }
        prefix => assert_eq!(
            prefix, whole,
            "an error or a complete prefix decides the whole"
        ),
    }

    // Many reads, many frames.
    let (expected, ending) = frames(stream, &limits);
    let read_size = match head[7] {
        0 => rest.len().max(1),
        n => usize::from(n).max(rest.len().div_ceil(MAX_READS)),
    };
    let reads = std::iter::once(first).chain(rest.chunks(read_size));
    let mut buffer = Vec::new();
    let mut seen = 0;
    let mut failed = None;
    'reads: for read in reads {
        buffer.extend_from_slice(read);
        loop {
            let used = match decode(&buffer, &limits) {
                Ok(Status::Complete((reply, used))) => {
                    let want = expected.get(seen).expect("streaming saw more replies");
                    assert_eq!((reply, used), *want, "reply {seen} differs when streamed");
                    used
                }
                Ok(Status::Incomplete) => break,
                Err(error) => {
                    failed = Some(error);
                    break 'reads;
                }
            };
            buffer.drain(..used);
            seen += 1;
        }
    }
    assert_eq!(seen, expected.len(), "streaming saw fewer replies");
    match ending {
        Ok(tail) => {
            assert_eq!(
                failed, None,
                "streaming failed where one shot was incomplete"
            );
            assert_eq!(
                buffer,
                &stream[tail..],
                "streaming left other bytes buffered"
            );
        }
        Err(error) => assert_eq!(failed, Some(error), "streaming ended another way"),
    }
});
