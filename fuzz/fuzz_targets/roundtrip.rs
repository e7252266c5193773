//! `encode_command` then `decode`: arbitrary arguments come back as exactly those bulk strings.
//!
//! Checks: `encode_command` appends (bytes already in the buffer are kept) exactly
//! `encoded_len(args)` bytes; decoding them under the tightest limits that fit (longest argument,
//! argument count, depth 1, longest header line) is `Complete`, consumes all of them, and gives
//! an array of exactly the arguments; each of those limits made one smaller is the matching
//! error; a second command in the same buffer decodes after the first; and encoding again into
//! the cleared buffer gives the same bytes without growing it.
//!
//! The input is an arbitrary `Vec<Vec<u8>>` (with `arbitrary`: for each argument a byte with the
//! low bit set, then for each of its bytes `0x01, byte`, then `0x00`; a final `0x00` or the end
//! of input stops).

#![no_main]

use libfuzzer_sys::fuzz_target;
use resplock::resp::{decode, encode_command, encoded_len, Limits, ProtocolError, Reply, Status};

const JUNK: &[u8] = b"junk";

fuzz_target!(|args: Vec<Vec<u8>>| {
    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let len = encoded_len(&args);
    let mut out = JUNK.to_vec();
    encode_command(&mut out, &args);
    assert_eq!(&out[..JUNK.len()], JUNK, "encode_command must append");
    let encoded = out[JUNK.len()..].to_vec();
    assert_eq!(encoded.len(), len, "encoded_len");

    let longest = args.iter().map(|arg| arg.len()).max().unwrap_or(0);
    let tight = Limits {
        max_bulk_len: longest,
        max_array_len: args.len(),
        max_depth: 1,
        max_line_len: digits(longest).max(digits(args.len())),
    };
    let Ok(Status::Complete((Reply::Array(Some(array)), used))) = decode(&encoded, &tight) else {
        panic!(
            "encoded command did not decode: {:?}",
            decode(&encoded, &tight)
        );
    };
    assert_eq!(used, len, "consumed");
    assert_eq!(array.len(), args.len(), "element count");
    let mut elements = 0;
    for (element, arg) in array.iter().zip(&args) {
        assert_eq!(element, Reply::Bulk(Some(arg)), "element {elements}");
        elements += 1;
    }
    assert_eq!(elements, args.len(), "elements iterated");

    // Each limit one below what this command needs is the error for that limit.
    let too_small = |limits: Limits, error: ProtocolError| {
        assert_eq!(decode(&encoded, &limits), Err(error), "{limits:?}");
    };
    if longest > 0 {
        too_small(
            Limits {
                max_bulk_len: longest - 1,
                ..tight
            },
            ProtocolError::TooLarge,
        );
    }
    if !args.is_empty() {
        too_small(
            Limits {
                max_array_len: args.len() - 1,
                ..tight
            },
            ProtocolError::TooManyElements,
        );
    }
    too_small(
        Limits {
            max_depth: 0,
            ..tight
        },
        ProtocolError::TooDeep,
    );
    too_small(
        Limits {
            max_line_len: tight.max_line_len - 1,
            ..tight
        },
        ProtocolError::TooLarge,
    );

    // Pipelined: a second command right after the first.
    encode_command(&mut out, &[b"PING"]);
    let second = &out[JUNK.len() + len..];
    assert_eq!(
        decode(&out[JUNK.len()..], &tight),
        decode(&encoded, &tight),
        "trailing bytes"
    );
    let Ok(Status::Complete((Reply::Array(Some(ping)), 14))) = decode(second, &Limits::default())
    else {
        panic!("second command did not decode");
    };
    assert_eq!(ping.iter().next(), Some(Reply::Bulk(Some(b"PING"))));

    // Reused buffer: same bytes, no growth.
    out.clear();
    let capacity = out.capacity();
    encode_command(&mut out, &args);
    assert_eq!(out, encoded, "encoding again");
    assert_eq!(
        out.capacity(),
        capacity,
        "encoding into a cleared buffer grew it"
    );
});

fn digits(n: usize) -> usize {
    n.to_string().len()
}
