//! Oracles shared by the fuzz targets: what must hold for every call to
//! [`resplock::resp::decode`], checked with plain, obviously correct code.
//!
//! - [`limits_from`] turns four input bytes into small (or unbounded) [`Limits`].
//! - [`check_decode`] decodes once and checks the result against the contract: consumed bytes,
//!   re-decoding the consumed prefix, the prefix one byte short being `Incomplete`, the limits,
//!   that a looser limit only ever accepts more, and that re-encoding the reply (walking arrays
//!   with an explicit stack) gives back exactly the consumed bytes.
//! - [`frames`] decodes a pipeline of replies one after another, as a reader would.

use resplock::resp::{decode, ArrayIter, Limits, ProtocolError, Reply, Status, MAX_DEPTH};

/// What [`decode`] returns.
pub type Decoded<'a> = Result<Status<(Reply<'a>, usize)>, ProtocolError>;

/// No limit at all, except the hard depth ceiling: the loosest limits there are.
pub const LOOSEST: Limits = Limits {
    max_bulk_len: usize::MAX,
    max_array_len: usize::MAX,
    max_depth: MAX_DEPTH,
    max_line_len: usize::MAX,
};

/// Limits from four bytes `[bulk, array, depth, line]`.
///
/// `0xff` means `usize::MAX`; any other byte is the limit itself, so the small limits are hit
/// by short inputs. Depth bytes `0x00..=0x7f` give 0..=31 (both sides of the decoder's small
/// stack); `0x80..=0xfe` give values around [`MAX_DEPTH`].
pub fn limits_from(bytes: [u8; 4]) -> Limits {
    let size = |b: u8| match b {
        0xff => usize::MAX,
        b => usize::from(b),
    };
    let [bulk, array, depth, line] = bytes;
    Limits {
        max_bulk_len: size(bulk),
        max_array_len: size(array),
        max_depth: match depth {
            0xff => usize::MAX,
            0x80..=0xfe => MAX_DEPTH - 64 + usize::from(depth & 0x7f),
            _ => usize::from(depth % 32),
        },
        max_line_len: size(line),
    }
}

/// Decodes `input` once and checks every property of the result; returns the result.
pub fn check_decode<'a>(input: &'a [u8], limits: &Limits) -> Decoded<'a> {
    let result = decode(input, limits);
    let loose = decode(input, &LOOSEST);
    match result {
        Ok(Status::Complete((reply, consumed))) => {
            assert!(consumed > 0, "complete reply consumed nothing");
            assert!(
                consumed <= input.len(),
                "consumed {consumed} of {}",
                input.len()
            );
            let frame = &input[..consumed];
            assert_eq!(
                decode(frame, limits),
                result,
                "re-decoding the consumed prefix"
            );
            assert_eq!(
                decode(&frame[..consumed - 1], limits),
                Ok(Status::Incomplete),
                "a complete frame one byte short must be incomplete"
            );
            assert_eq!(loose, result, "looser limits must accept the same reply");
            let mut out = Vec::with_capacity(consumed);
            encode_reply(reply, limits, &mut out);
            assert_eq!(
                out, frame,
                "re-encoding the reply must give the consumed bytes"
            );
        }
        // Limits only ever reject: a prefix that is fine under tight limits is fine without.
        Ok(Status::Incomplete) => assert_eq!(loose, result, "looser limits on an incomplete"),
        // An error may come from a limit; the check below is the converse.
        Err(_) => {}
    }
    if loose.is_err() {
        assert!(
            result.is_err(),
            "tighter limits accepted what looser ones rejected"
        );
    }
    result
}

/// Decodes replies back to back from `input` until one is incomplete or an error, checking each
/// with [`check_decode`]. Returns the replies with their sizes, and how the stream ended:
/// `Ok(offset)` for an incomplete tail starting at `offset`, or the error.
pub fn frames<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> (Vec<(Reply<'a>, usize)>, Result<usize, ProtocolError>) {
    let mut replies = Vec::new();
    let mut offset = 0;
    loop {
        let rest = &input[offset..];
        match check_decode(rest, limits) {
            Ok(Status::Complete((reply, used))) => {
                replies.push((reply, used));
                offset += used;
            }
            Ok(Status::Incomplete) => return (replies, Ok(offset)),
            Err(error) => return (replies, Err(error)),
        }
    }
}

/// One array being walked: its elements, how many it declared, how many were seen, and where
/// its elements start in the output.
struct Open<'a> {
    iter: ArrayIter<'a>,
    declared: usize,
    seen: usize,
    body_start: usize,
    body: &'a [u8],
}

/// Appends the one RESP2 encoding of `reply` to `out`, checking on the way that every line,
/// length, count and nesting level is within `limits`, and that every array yields exactly
/// `len()` elements whose encodings are exactly its `as_bytes()`. No recursion: arrays are
/// walked with an explicit stack.
pub fn encode_reply(reply: Reply<'_>, limits: &Limits, out: &mut Vec<u8>) {
    let max_depth = limits.max_depth.min(MAX_DEPTH);
    let mut stack: Vec<Open<'_>> = Vec::new();
    let mut next = Some(reply);
    loop {
        let reply = match next.take() {
            Some(reply) => reply,
            None => {
                let Some(open) = stack.last_mut() else { break };
                match open.iter.next() {
                    Some(reply) => {
                        open.seen += 1;
                        assert!(open.seen <= open.declared, "array yields more than len()");
                        assert_eq!(open.iter.len(), open.declared - open.seen, "iter len()");
                        reply
                    }
                    None => {
                        assert_eq!(open.seen, open.declared, "array yields fewer than len()");
                        assert!(open.iter.next().is_none(), "iterator not fused");
                        assert_eq!(&out[open.body_start..], open.body, "array as_bytes()");
                        stack.pop();
                        continue;
                    }
                }
            }
        };
        match reply {
            Reply::Simple(line) | Reply::Error(line) => {
                assert!(
                    !line.contains(&b'\r') && !line.contains(&b'\n'),
                    "cr or lf in a line"
                );
                let kind = if matches!(reply, Reply::Simple(_)) {
                    b'+'
                } else {
                    b'-'
                };
                push_line(out, kind, line, limits);
            }
            Reply::Integer(value) => push_line(out, b':', value.to_string().as_bytes(), limits),
            Reply::Bulk(None) => push_line(out, b'$', b"-1", limits),
            Reply::Bulk(Some(payload)) => {
                assert!(
                    payload.len() <= limits.max_bulk_len,
                    "bulk over max_bulk_len"
                );
                push_line(out, b'$', payload.len().to_string().as_bytes(), limits);
                out.extend_from_slice(payload);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Array(None) => push_line(out, b'*', b"-1", limits),
            Reply::Array(Some(array)) => {
                assert!(
                    array.len() <= limits.max_array_len,
                    "array over max_array_len"
                );
                assert!(
                    stack.len() < max_depth,
                    "arrays nested deeper than max_depth"
                );
                assert_eq!(
                    array.is_empty(),
                    array.iter().next().is_none(),
                    "is_empty()"
                );
                push_line(out, b'*', array.len().to_string().as_bytes(), limits);
                stack.push(Open {
                    iter: array.iter(),
                    declared: array.len(),
                    seen: 0,
                    body_start: out.len(),
                    body: array.as_bytes(),
                });
            }
        }
    }
}

fn push_line(out: &mut Vec<u8>, kind: u8, line: &[u8], limits: &Limits) {
    assert!(line.len() <= limits.max_line_len, "line over max_line_len");
    out.push(kind);
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
}
