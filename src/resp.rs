//! Sans-IO RESP2: a strict, bounded, zero-copy decoder and an allocation-free command encoder.
//!
//! Contract:
//! - [`decode`] takes bytes and returns `Complete((reply, consumed))`, `Incomplete`, or a
//!   [`ProtocolError`]. It never does I/O, never allocates, never panics, never recurses, and
//!   its memory use does not depend on any declared length or count.
//! - `Incomplete` is returned only when the input is a strict prefix of a frame that could still
//!   be valid; an error is returned as soon as no continuation could be. (One corner: with a
//!   `max_line_len` below 2, `:` or `:-` waits for the byte that decides *which* error it is.)
//!   Nothing is consumed on `Incomplete`, and bytes after a complete frame are left alone.
//! - Replies borrow from the input; arrays are validated whole, then iterated lazily.
//! - [`encode_command`] appends a RESP2 array of bulk strings, reserving [`encoded_len`] bytes
//!   once and formatting lengths without `fmt`.
//!
//! Strictness follows hiredis' `read.c` (integers and lengths with no `+`, no spaces, no
//! leading zeros, no `-0`, overflow checked; lengths below -1 rejected; a lone CR or LF in a
//! line rejected). It differs in three places: a bulk payload must be followed by exactly
//! CRLF (hiredis takes the two bytes after it on trust), RESP3 type bytes are errors rather
//! than replies, and every limit is applied while a line arrives, before its CRLF.
//!
//! The module depends on nothing else in the crate: it can be fuzzed, benchmarked and reused
//! on its own.

use std::fmt;

/// A RESP2 frame that can never become valid, whatever bytes follow.
///
/// Returned by [`crate::resp::decode`]. A connection that sees one is closed: RESP has no
/// way to resynchronise after a bad frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The first byte of a reply is not one of `+ - : $ *` (RESP3 type bytes included).
    BadTypeByte,
    /// A `:` integer is empty, has a sign other than one leading `-`, a leading zero, `-0`,
    /// a non-digit, or overflows `i64`.
    BadInteger,
    /// A `$` or `*` length has the same defects as a bad integer.
    BadLength,
    /// A `$` or `*` length is below -1.
    LengthOutOfRange,
    /// A bulk payload is not followed by `\r\n`.
    MissingCrlf,
    /// A line holds a lone `\n`, or a `\r` not followed by `\n`.
    BadLine,
    /// Arrays nest deeper than [`crate::resp::Limits::max_depth`].
    TooDeep,
    /// A bulk length exceeds `max_bulk_len`, a line exceeds `max_line_len`, or a reply does
    /// not fit the connection's reply buffer.
    TooLarge,
    /// An array's declared count exceeds `max_array_len`.
    TooManyElements,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadTypeByte => "invalid reply type byte",
            Self::BadInteger => "invalid integer",
            Self::BadLength => "invalid length",
            Self::LengthOutOfRange => "length below -1",
            Self::MissingCrlf => "bulk payload not followed by crlf",
            Self::BadLine => "lone cr or lf in a line",
            Self::TooDeep => "arrays nested too deep",
            Self::TooLarge => "reply too large",
            Self::TooManyElements => "array has too many elements",
        })
    }
}

impl std::error::Error for ProtocolError {}

/// The result of decoding a prefix of a byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// A whole value was decoded.
    Complete(T),
    /// The input is a strict prefix of a value that could still be valid: read more bytes.
    Incomplete,
}

impl<T> Status<T> {
    /// True for `Complete`.
    pub fn is_complete(&self) -> bool {
        matches!(self, Self::Complete(_))
    }
}

/// One RESP2 reply, borrowing from the decoded input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `+OK`: the line after `+`, without CRLF.
    Simple(&'a [u8]),
    /// `-ERR ...`: the whole line after `-`, without CRLF.
    Error(&'a [u8]),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nfoo`; `None` for `$-1`.
    Bulk(Option<&'a [u8]>),
    /// `*N ...`; `None` for `*-1`.
    Array(Option<Array<'a>>),
}

/// A validated array: its elements are known to be well formed and within the limits, and are
/// decoded again lazily by [`Array::iter`].
///
/// Two arrays compare equal when their elements do: RESP2 as accepted here has exactly one
/// encoding per reply.
#[derive(Clone, Copy, Debug)]
pub struct Array<'a> {
    len: usize,
    body: &'a [u8],
    /// Nesting the elements were validated against; sizes the stack when they are re-decoded.
    element_depth: usize,
}

impl PartialEq for Array<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.body == other.body
    }
}

impl Eq for Array<'_> {}

impl<'a> Array<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for `*0`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The encoded elements, back to back, exactly as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.body
    }

    /// Iterates the elements in order.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            rest: self.body,
            remaining: self.len,
            limits: Limits {
                max_depth: self.element_depth,
                ..REVALIDATE
            },
        }
    }
}

impl<'a> IntoIterator for Array<'a> {
    type Item = Reply<'a>;
    type IntoIter = ArrayIter<'a>;
    fn into_iter(self) -> ArrayIter<'a> {
        self.iter()
    }
}

/// Iterator over the elements of an [`Array`].
#[derive(Clone, Debug)]
pub struct ArrayIter<'a> {
    rest: &'a [u8],
    remaining: usize,
    limits: Limits,
}

/// Limits for re-decoding elements that were validated already: only the stack size matters.
const REVALIDATE: Limits = Limits {
    max_bulk_len: usize::MAX,
    max_array_len: usize::MAX,
    max_depth: MAX_DEPTH,
    max_line_len: usize::MAX,
};

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Reply<'a>;

    fn next(&mut self) -> Option<Reply<'a>> {
        if self.remaining == 0 {
            return None;
        }
        // The body was validated with limits at least as strict as these, so this always
        // decodes; stop rather than panic if that invariant were ever broken. Scalars and nil
        // arrays come out of one header; only a non-empty nested array needs a full decode.
        let decoded = match item(self.rest, 0, &self.limits, true) {
            Ok(Status::Complete((Item::Scalar(reply), used))) => {
                Ok(Status::Complete((reply, used)))
            }
            Ok(Status::Complete((Item::NilArray, used))) => {
                Ok(Status::Complete((Reply::Array(None), used)))
            }
            _ => decode(self.rest, &self.limits),
        };
        match decoded {
            Ok(Status::Complete((reply, used))) => {
                self.rest = self.rest.get(used..).unwrap_or_default();
                self.remaining -= 1;
                Some(reply)
            }
            _ => {
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for ArrayIter<'_> {}
impl std::iter::FusedIterator for ArrayIter<'_> {}

/// Hard ceiling on array nesting, whatever [`Limits::max_depth`] says (hiredis' own limit).
/// It sizes the fixed stack that replaces recursion.
pub const MAX_DEPTH: usize = 1024;

/// Bounds on what [`decode`] accepts. A reply that exceeds one is an error as soon as the
/// offending header is seen, so memory never depends on what a peer declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Largest accepted `$` payload, in bytes.
    pub max_bulk_len: usize,
    /// Largest accepted `*` element count.
    pub max_array_len: usize,
    /// Deepest accepted array nesting: 0 accepts no arrays, 1 accepts arrays of scalars.
    /// A nil array (`*-1`) holds nothing and is accepted at any depth. Values above
    /// [`MAX_DEPTH`] act as `MAX_DEPTH`.
    pub max_depth: usize,
    /// Longest accepted line, in bytes after the type byte and before CRLF. Applies to `+`, `-`
    /// and `:` lines and to `$`/`*` headers, and is enforced before the CRLF arrives.
    pub max_line_len: usize,
}

impl Limits {
    /// Defaults for a lock client, whose replies are `+OK`, `$-1`, `:1`, a 40-byte digest or an
    /// error line: 64 KiB bulk strings, 1024 elements, nesting depth 8, 4 KiB lines.
    pub const LOCK_CLIENT: Limits = Limits {
        max_bulk_len: 64 * 1024,
        max_array_len: 1024,
        max_depth: 8,
        max_line_len: 4 * 1024,
    };

    /// Redis' own limits, for general use: 512 MiB bulk strings (`proto-max-bulk-len`),
    /// 2^31 - 1 elements, depth 1024 (as hiredis), 64 KiB lines (Redis' inline limit).
    pub const PERMISSIVE: Limits = Limits {
        max_bulk_len: 512 * 1024 * 1024,
        max_array_len: i32::MAX as usize,
        max_depth: MAX_DEPTH,
        max_line_len: 64 * 1024,
    };
}

impl Default for Limits {
    /// [`Limits::LOCK_CLIENT`].
    fn default() -> Self {
        Self::LOCK_CLIENT
    }
}

/// Decodes one reply from the start of `input`.
///
/// Returns the reply and the number of bytes it used; later bytes are not looked at beyond
/// what is needed to validate this reply.
pub fn decode<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<Status<(Reply<'a>, usize)>, ProtocolError> {
    if limits.max_depth <= SMALL_STACK {
        decode_with::<SMALL_STACK>(input, limits)
    } else {
        decode_with::<MAX_DEPTH>(input, limits)
    }
}

/// Stack size used when `max_depth` is small: cheap to zero on every array reply.
const SMALL_STACK: usize = 16;

/// What one header (or one scalar) turned out to be.
enum Item<'a> {
    Scalar(Reply<'a>),
    NilArray,
    Array(usize),
}

fn decode_with<'a, const STACK: usize>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<Status<(Reply<'a>, usize)>, ProtocolError> {
    let max_depth = limits.max_depth.min(STACK);
    let (count, body_start) = match item(input, 0, limits, max_depth > 0)? {
        Status::Incomplete => return Ok(Status::Incomplete),
        Status::Complete((Item::Scalar(reply), end)) => return Ok(Status::Complete((reply, end))),
        Status::Complete((Item::NilArray, end)) => {
            return Ok(Status::Complete((Reply::Array(None), end)))
        }
        Status::Complete((Item::Array(count), end)) => (count, end),
    };
    // remaining[d] = elements still to read in the open array at nesting level d + 1. Only
    // levels with elements left are kept: when a nested array is the last element of its
    // parent, the parent is finished as soon as the child is.
    let mut remaining = [0usize; STACK];
    let mut depth_of = [0usize; STACK];
    let mut open = 0usize;
    let mut depth = 0usize;
    let mut pos = body_start;
    if count > 0 {
        push(&mut remaining, &mut depth_of, &mut open, count, 1)?;
        depth = 1;
    }
    while open > 0 {
        let top = open - 1;
        let left = remaining.get_mut(top).ok_or(ProtocolError::TooDeep)?;
        *left -= 1;
        if *left == 0 {
            open -= 1;
        }
        let end = match item(input, pos, limits, depth < max_depth)? {
            Status::Incomplete => return Ok(Status::Incomplete),
            Status::Complete((Item::Array(n), end)) if n > 0 => {
                push(&mut remaining, &mut depth_of, &mut open, n, depth + 1)?;
                end
            }
            Status::Complete((_, end)) => end,
        };
        pos = end;
        depth = match open {
            0 => 0,
            _ => *depth_of.get(open - 1).ok_or(ProtocolError::TooDeep)?,
        };
    }
    let body = input.get(body_start..pos).unwrap_or_default();
    let array = Array {
        len: count,
        body,
        element_depth: max_depth.saturating_sub(1),
    };
    Ok(Status::Complete((Reply::Array(Some(array)), pos)))
}

fn push<const STACK: usize>(
    remaining: &mut [usize; STACK],
    depth_of: &mut [usize; STACK],
    open: &mut usize,
    count: usize,
    depth: usize,
) -> Result<(), ProtocolError> {
    *remaining.get_mut(*open).ok_or(ProtocolError::TooDeep)? = count;
    *depth_of.get_mut(*open).ok_or(ProtocolError::TooDeep)? = depth;
    *open += 1;
    Ok(())
}

/// Decodes one header at `pos`: a whole scalar, or an array's count. `nest` says whether a
/// non-nil array may start here without exceeding the depth limit.
fn item<'a>(
    input: &'a [u8],
    pos: usize,
    limits: &Limits,
    nest: bool,
) -> Result<Status<(Item<'a>, usize)>, ProtocolError> {
    let Some(&kind) = input.get(pos) else {
        return Ok(Status::Incomplete);
    };
    let start = pos + 1;
    match kind {
        b'+' | b'-' => {
            let Status::Complete(cr) = line_end(input, start, limits.max_line_len)? else {
                return Ok(Status::Incomplete);
            };
            let line = input.get(start..cr).unwrap_or_default();
            let reply = if kind == b'+' {
                Reply::Simple(line)
            } else {
                Reply::Error(line)
            };
            Ok(Status::Complete((Item::Scalar(reply), cr + 2)))
        }
        b':' => {
            let Status::Complete((value, end)) = number(input, start, limits, Number::Integer)?
            else {
                return Ok(Status::Incomplete);
            };
            Ok(Status::Complete((Item::Scalar(Reply::Integer(value)), end)))
        }
        b'$' => {
            let Status::Complete((len, header_end)) = number(input, start, limits, Number::Bulk)?
            else {
                return Ok(Status::Incomplete);
            };
            if len == -1 {
                return Ok(Status::Complete((
                    Item::Scalar(Reply::Bulk(None)),
                    header_end,
                )));
            }
            let body_end = usize::try_from(len)
                .ok()
                .and_then(|len| header_end.checked_add(len))
                .ok_or(ProtocolError::TooLarge)?;
            match (input.get(body_end), input.get(body_end.saturating_add(1))) {
                (None, _) | (Some(b'\r'), None) => Ok(Status::Incomplete),
                (Some(b'\r'), Some(b'\n')) => {
                    let payload = input.get(header_end..body_end).unwrap_or_default();
                    let reply = Reply::Bulk(Some(payload));
                    Ok(Status::Complete((Item::Scalar(reply), body_end + 2)))
                }
                _ => Err(ProtocolError::MissingCrlf),
            }
        }
        b'*' => {
            let Status::Complete((count, end)) =
                number(input, start, limits, Number::Array { nest })?
            else {
                return Ok(Status::Incomplete);
            };
            if count == -1 {
                return Ok(Status::Complete((Item::NilArray, end)));
            }
            let count = usize::try_from(count).map_err(|_| ProtocolError::TooManyElements)?;
            Ok(Status::Complete((Item::Array(count), end)))
        }
        _ => Err(ProtocolError::BadTypeByte),
    }
}

/// Which number a line holds: the rules differ in range and in the error they report.
#[derive(Clone, Copy)]
enum Number {
    Integer,
    Bulk,
    Array { nest: bool },
}

/// Parses an integer line starting at `start` (after the type byte), failing at the first byte
/// that no valid line could contain. Returns the value and the index after its CRLF.
fn number(
    input: &[u8],
    start: usize,
    limits: &Limits,
    kind: Number,
) -> Result<Status<(i64, usize)>, ProtocolError> {
    let bad = match kind {
        Number::Integer => ProtocolError::BadInteger,
        Number::Bulk | Number::Array { .. } => ProtocolError::BadLength,
    };
    let mut value: i64 = 0;
    let mut negative = false;
    let mut digits = 0usize;
    let mut leading_zero = false;
    let rest = input.get(start..).unwrap_or_default();
    for (index, &byte) in rest.iter().enumerate() {
        if byte == b'\r' {
            if digits == 0 {
                return Err(bad);
            }
            return match rest.get(index + 1) {
                None => Ok(Status::Incomplete),
                Some(b'\n') => Ok(Status::Complete((value, start + index + 2))),
                Some(_) => Err(ProtocolError::BadLine),
            };
        }
        if index >= limits.max_line_len {
            return Err(ProtocolError::TooLarge);
        }
        match byte {
            b'-' if index == 0 => negative = true,
            b'0'..=b'9' => {
                let digit = i64::from(byte - b'0');
                if leading_zero || (digit == 0 && digits == 0 && negative) {
                    return Err(bad);
                }
                leading_zero = digit == 0 && digits == 0;
                value = value.checked_mul(10).ok_or(bad)?;
                value = if negative {
                    value.checked_sub(digit)
                } else {
                    value.checked_add(digit)
                }
                .ok_or(bad)?;
                digits += 1;
                check_range(value, limits, kind)?;
            }
            _ => return Err(bad),
        }
    }
    Ok(Status::Incomplete)
}

/// Range checks on a length prefix as its digits arrive: each further digit only moves the
/// value away from zero, so a prefix already out of range can never become valid.
fn check_range(value: i64, limits: &Limits, kind: Number) -> Result<(), ProtocolError> {
    let (max, too_big) = match kind {
        Number::Integer => return Ok(()),
        Number::Bulk => (limits.max_bulk_len, ProtocolError::TooLarge),
        Number::Array { .. } => (limits.max_array_len, ProtocolError::TooManyElements),
    };
    if value < -1 {
        return Err(ProtocolError::LengthOutOfRange);
    }
    if value >= 0 {
        if let Number::Array { nest: false } = kind {
            return Err(ProtocolError::TooDeep);
        }
        if u64::try_from(value).unwrap_or(u64::MAX) > max as u64 {
            return Err(too_big);
        }
    }
    Ok(())
}

/// Finds the CR ending a simple line that starts at `start`. Errors on a lone LF, a CR not
/// followed by LF, or a line longer than `max_line_len` (even before its CR arrives).
fn line_end(
    input: &[u8],
    start: usize,
    max_line_len: usize,
) -> Result<Status<usize>, ProtocolError> {
    let window_end = input
        .len()
        .min(start.saturating_add(max_line_len).saturating_add(1));
    let window = input.get(start..window_end).unwrap_or_default();
    match find_cr_or_lf(window) {
        Some(index) => {
            let at = start + index;
            match (input.get(at), input.get(at + 1)) {
                (Some(b'\r'), None) => Ok(Status::Incomplete),
                (Some(b'\r'), Some(b'\n')) => Ok(Status::Complete(at)),
                _ => Err(ProtocolError::BadLine),
            }
        }
        None if window.len() > max_line_len => Err(ProtocolError::TooLarge),
        None => Ok(Status::Incomplete),
    }
}

/// Index of the first `\r` or `\n`, eight bytes at a time (the classic "has zero byte" trick).
fn find_cr_or_lf(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const CRS: u64 = u64::from_ne_bytes([b'\r'; 8]);
    const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let is_end = |b: &u8| *b == b'\r' || *b == b'\n';
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = match <[u8; 8]>::try_from(chunk) {
            Ok(array) => u64::from_ne_bytes(array),
            Err(_) => return chunk.iter().position(is_end).map(|i| offset + i),
        };
        if has_zero(word ^ CRS) || has_zero(word ^ LFS) {
            return chunk.iter().position(is_end).map(|i| offset + i);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(is_end)
        .map(|i| offset + i)
}

mod encode;

pub use encode::{encode_command, encoded_len, DecimalBuf};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_line_ends_at_every_offset() {
        for len in 0..40 {
            for at in 0..len {
                for end in [b'\r', b'\n'] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = end;
                    assert_eq!(find_cr_or_lf(&bytes), Some(at));
                }
            }
            assert_eq!(find_cr_or_lf(&vec![b'a'; len]), None);
        }
    }
}
