//! Decoder vectors, one `#[test]` per table row.
//!
//! Each row gives the input, the limits (`Limits::LOCK_CLIENT` unless a `[limits]` follows the
//! name) and the exact outcome: `complete(reply, consumed)`, `INCOMPLETE` or `fails(kind)`.
//! Expectations come from the RESP2 spec and the rules documented in `src/resp.rs` and
//! `src/error.rs`, not from running the decoder. Every `Complete` reply is also checked by
//! iterating its arrays (`Array::iter`, nested), by checking that it borrows from the input, and
//! by re-decoding exactly the consumed bytes.

use resplock::resp::{decode, Limits, Reply, Status, MAX_DEPTH};
use resplock::ProtocolError::{
    self, BadInteger, BadLength, BadLine, BadTypeByte, LengthOutOfRange, MissingCrlf, TooDeep,
    TooLarge, TooManyElements,
};

/// An owned reply, to state expectations and compare whole trees.
#[derive(Clone, Debug, PartialEq, Eq)]
enum V {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<V>>),
}

#[derive(Debug)]
enum Expect {
    Complete(V, usize),
    Incomplete,
    Fails(ProtocolError),
}

const INCOMPLETE: Expect = Expect::Incomplete;

fn complete(reply: V, consumed: usize) -> Expect {
    Expect::Complete(reply, consumed)
}

fn fails(kind: ProtocolError) -> Expect {
    Expect::Fails(kind)
}

fn simple(line: &[u8]) -> V {
    V::Simple(line.to_vec())
}

fn error(line: &[u8]) -> V {
    V::Error(line.to_vec())
}

fn int(value: i64) -> V {
    V::Int(value)
}

fn bulk(payload: &[u8]) -> V {
    V::Bulk(Some(payload.to_vec()))
}

fn nil() -> V {
    V::Bulk(None)
}

fn arr<const N: usize>(items: [V; N]) -> V {
    V::Array(Some(items.to_vec()))
}

fn nil_arr() -> V {
    V::Array(None)
}

/// `levels` arrays of one element each, around `leaf`.
fn nested(levels: usize, leaf: &[u8]) -> Vec<u8> {
    let mut out = b"*1\r\n".repeat(levels);
    out.extend_from_slice(leaf);
    out
}

fn nested_v(levels: usize, leaf: V) -> V {
    (0..levels).fold(leaf, |inner, _| V::Array(Some(vec![inner])))
}

/// `+aaa...` (or another type byte) with `len` bytes of line and no CRLF.
fn long_line(kind: u8, len: usize) -> Vec<u8> {
    let mut out = vec![kind];
    out.resize(1 + len, b'a');
    out
}

fn terminated(mut line: Vec<u8>) -> Vec<u8> {
    line.extend_from_slice(b"\r\n");
    line
}

/// `$<len>\r\n` + `len` bytes cycling through every byte value + `\r\n`.
fn bulk_frame(len: usize) -> Vec<u8> {
    let mut out = format!("${len}\r\n").into_bytes();
    out.extend(payload(len));
    out.extend_from_slice(b"\r\n");
    out
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 256) as u8).collect()
}

const fn depth(max_depth: usize) -> Limits {
    Limits {
        max_depth,
        ..Limits::LOCK_CLIENT
    }
}

const fn line(max_line_len: usize) -> Limits {
    Limits {
        max_line_len,
        ..Limits::LOCK_CLIENT
    }
}

/// No bound on declared lengths, so that only the number rules apply.
const UNBOUNDED_LEN: Limits = Limits {
    max_bulk_len: usize::MAX,
    max_array_len: usize::MAX,
    ..Limits::LOCK_CLIENT
};

const PERMISSIVE: Limits = Limits::PERMISSIVE;

/// True when `part` lies inside `whole` (the decoder is zero-copy).
fn borrows_from(whole: &[u8], part: &[u8]) -> bool {
    let whole = whole.as_ptr_range();
    let part = part.as_ptr_range();
    whole.start <= part.start && part.end <= whole.end
}

/// Converts a decoded reply, iterating arrays and checking their accessors on the way.
fn owned(reply: Reply<'_>, input: &[u8]) -> V {
    match reply {
        Reply::Simple(line) => {
            assert!(borrows_from(input, line));
            V::Simple(line.to_vec())
        }
        Reply::Error(line) => {
            assert!(borrows_from(input, line));
            V::Error(line.to_vec())
        }
        Reply::Integer(value) => V::Int(value),
        Reply::Bulk(None) => V::Bulk(None),
        Reply::Bulk(Some(payload)) => {
            assert!(borrows_from(input, payload));
            V::Bulk(Some(payload.to_vec()))
        }
        Reply::Array(None) => V::Array(None),
        Reply::Array(Some(array)) => {
            assert!(borrows_from(input, array.as_bytes()));
            let mut iter = array.iter();
            assert_eq!(iter.len(), array.len());
            let mut items = Vec::new();
            while let Some(item) = iter.next() {
                items.push(owned(item, input));
                assert_eq!(iter.len(), array.len() - items.len());
            }
            assert_eq!(items.len(), array.len());
            assert_eq!(array.is_empty(), items.is_empty());
            assert_eq!(iter.next(), None, "iterator is fused");
            assert!(array.into_iter().eq(array.iter()));
            V::Array(Some(items))
        }
    }
}

fn show(input: &[u8]) -> String {
    let shown: String = input
        .iter()
        .take(80)
        .flat_map(|b| b.escape_ascii())
        .map(char::from)
        .collect();
    if input.len() > 80 {
        format!("{shown}... ({} bytes)", input.len())
    } else {
        shown
    }
}

fn check(input: impl AsRef<[u8]>, limits: &Limits, expect: Expect) {
    let input = input.as_ref();
    let got = decode(input, limits);
    match (got, expect) {
        (Ok(Status::Complete((reply, used))), Expect::Complete(want, want_used)) => {
            assert_eq!(used, want_used, "consumed, for {}", show(input));
            assert_eq!(owned(reply, input), want, "reply, for {}", show(input));
            if let Reply::Array(Some(array)) = reply {
                // The array's bytes are exactly what follows its `*<len>\r\n` header.
                let mut frame = format!("*{}\r\n", array.len()).into_bytes();
                frame.extend_from_slice(array.as_bytes());
                assert_eq!(frame, &input[..used]);
            }
            // Nothing after the frame mattered: the consumed bytes alone decode the same.
            assert_eq!(
                decode(&input[..used], limits),
                Ok(Status::Complete((reply, used)))
            );
        }
        (Ok(Status::Incomplete), Expect::Incomplete) => {}
        (Err(kind), Expect::Fails(want)) => assert_eq!(kind, want, "for {}", show(input)),
        (got, want) => panic!("for {}: got {got:?}, expected {want:?}", show(input)),
    }
}

macro_rules! limits_or_default {
    () => {
        Limits::LOCK_CLIENT
    };
    ($limits:expr) => {
        $limits
    };
}

/// One `#[test]` per row: `name [limits]: input => expectation;`.
macro_rules! vectors {
    ($($(#[$meta:meta])* $name:ident $([$limits:expr])?: $input:expr => $expect:expr;)*) => {
        $(
            $(#[$meta])*
            #[test]
            fn $name() {
                check($input, &limits_or_default!($($limits)?), $expect);
            }
        )*
    };
}

vectors! {
    // Simple strings: whatever lies between `+` and CRLF, except CR and LF.
    simple_ok: b"+OK\r\n" => complete(simple(b"OK"), 5);
    simple_empty: b"+\r\n" => complete(simple(b""), 3);
    simple_spaces: b"+  hello world \r\n" => complete(simple(b"  hello world "), 17);
    simple_non_utf8: b"+\xff\xfe\x80\xc3\r\n" => complete(simple(b"\xff\xfe\x80\xc3"), 7);
    simple_nul_and_tab: b"+a\x00\tb\r\n" => complete(simple(b"a\x00\tb"), 7);
    simple_type_byte_only: b"+" => INCOMPLETE;
    simple_unterminated: b"+OK" => INCOMPLETE;
    simple_cr_awaiting_lf: b"+OK\r" => INCOMPLETE;
    simple_lone_lf_inside: b"+O\nK\r\n" => fails(BadLine);
    simple_lone_lf_at_end: b"+OK\n" => fails(BadLine);
    simple_lone_lf_first: b"+\n" => fails(BadLine);
    simple_lone_cr_inside: b"+O\rK\r\n" => fails(BadLine);
    simple_cr_cr_lf: b"+OK\r\r\n" => fails(BadLine);
    // Past the first eight bytes too, with no other line end in the same eight: lines are
    // scanned a word at a time.
    simple_long: b"+0123456789abcdefghij\r\n" => complete(simple(b"0123456789abcdefghij"), 23);
    simple_lone_lf_after_eight_bytes: b"+01234567\nabcdefgh\r\n" => fails(BadLine);
    simple_lone_cr_after_eight_bytes: b"+01234567\rabcdefgh\r\n" => fails(BadLine);
    simple_at_line_limit [line(4)]: b"+abcd\r\n" => complete(simple(b"abcd"), 7);
    simple_at_line_limit_unterminated [line(4)]: b"+abcd" => INCOMPLETE;
    simple_at_line_limit_awaiting_lf [line(4)]: b"+abcd\r" => INCOMPLETE;
    simple_over_line_limit [line(4)]: b"+abcde\r\n" => fails(TooLarge);
    simple_over_line_limit_without_crlf [line(4)]: b"+abcde" => fails(TooLarge);
    simple_empty_with_zero_line_limit [line(0)]: b"+\r\n" => complete(simple(b""), 3);
    simple_over_zero_line_limit [line(0)]: b"+a" => fails(TooLarge);
    simple_at_default_line_limit: terminated(long_line(b'+', 4096))
        => complete(simple(&[b'a'; 4096]), 4099);
    simple_over_default_line_limit_without_crlf: long_line(b'+', 4097) => fails(TooLarge);

    // Errors: the whole line after `-`, same line rules as simple strings.
    error_err: b"-ERR unknown command 'foo'\r\n"
        => complete(error(b"ERR unknown command 'foo'"), 28);
    error_noscript: b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
        => complete(error(b"NOSCRIPT No matching script. Please use EVAL."), 48);
    error_moved: b"-MOVED 3999 127.0.0.1:6381\r\n"
        => complete(error(b"MOVED 3999 127.0.0.1:6381"), 28);
    error_empty: b"-\r\n" => complete(error(b""), 3);
    error_unterminated: b"-ERR wrong" => INCOMPLETE;
    error_lone_lf: b"-ERR\nx\r\n" => fails(BadLine);
    error_lone_cr: b"-ERR\rx\r\n" => fails(BadLine);
    error_over_line_limit_without_crlf [line(3)]: b"-ERRX" => fails(TooLarge);

    // Integers: optional `-`, digits, no leading zero but `0`, no `-0`, within i64.
    int_zero: b":0\r\n" => complete(int(0), 4);
    int_one: b":1\r\n" => complete(int(1), 4);
    int_minus_one: b":-1\r\n" => complete(int(-1), 5);
    int_with_zeros_inside: b":1000\r\n" => complete(int(1000), 7);
    int_max: b":9223372036854775807\r\n" => complete(int(i64::MAX), 22);
    int_min: b":-9223372036854775808\r\n" => complete(int(i64::MIN), 23);
    int_max_plus_one: b":9223372036854775808\r\n" => fails(BadInteger);
    int_min_minus_one: b":-9223372036854775809\r\n" => fails(BadInteger);
    int_max_times_ten: b":92233720368547758070\r\n" => fails(BadInteger);
    int_overflow_before_crlf: b":9223372036854775808" => fails(BadInteger);
    int_plus_sign: b":+5\r\n" => fails(BadInteger);
    int_leading_space: b": 5\r\n" => fails(BadInteger);
    int_trailing_space: b":5 \r\n" => fails(BadInteger);
    int_leading_zero: b":05\r\n" => fails(BadInteger);
    int_leading_zero_before_crlf: b":05" => fails(BadInteger);
    int_double_zero: b":00\r\n" => fails(BadInteger);
    int_negative_zero: b":-0\r\n" => fails(BadInteger);
    int_negative_leading_zero: b":-01\r\n" => fails(BadInteger);
    int_lone_minus: b":-\r\n" => fails(BadInteger);
    int_empty: b":\r\n" => fails(BadInteger);
    int_trailing_letter: b":1a\r\n" => fails(BadInteger);
    int_double_minus: b":--1\r\n" => fails(BadInteger);
    int_minus_inside: b":1-2\r\n" => fails(BadInteger);
    int_decimal_point: b":1.0\r\n" => fails(BadInteger);
    // In a number line an LF is a non-digit before it is a line end.
    int_lone_lf: b":1\n" => fails(BadInteger);
    int_cr_without_lf: b":1\rx" => fails(BadLine);
    int_type_byte_only: b":" => INCOMPLETE;
    int_unterminated: b":12" => INCOMPLETE;
    int_minus_unterminated: b":-" => INCOMPLETE;
    int_cr_awaiting_lf: b":12\r" => INCOMPLETE;
    int_at_line_limit [line(3)]: b":-12\r\n" => complete(int(-12), 6);
    int_over_line_limit_without_crlf [line(3)]: b":1234" => fails(TooLarge);

    // Bulk strings: `$<len>\r\n`, exactly len bytes of anything, then CRLF; `$-1` is nil.
    bulk_nil: b"$-1\r\n" => complete(nil(), 5);
    bulk_empty: b"$0\r\n\r\n" => complete(bulk(b""), 6);
    bulk_foo: b"$3\r\nfoo\r\n" => complete(bulk(b"foo"), 9);
    bulk_two_digit_len: b"$10\r\n0123456789\r\n" => complete(bulk(b"0123456789"), 17);
    bulk_binary_with_crlf_and_nul: b"$8\r\n\r\n\x00\xff\n\ra\r\r\n"
        => complete(bulk(b"\r\n\x00\xff\n\ra\r"), 14);
    bulk_payload_is_crlf: b"$2\r\n\r\n\r\n" => complete(bulk(b"\r\n"), 8);
    bulk_header_only: b"$3\r\n" => INCOMPLETE;
    bulk_short_body: b"$5\r\nab" => INCOMPLETE;
    bulk_body_awaiting_crlf: b"$3\r\nfoo" => INCOMPLETE;
    bulk_body_awaiting_lf: b"$3\r\nfoo\r" => INCOMPLETE;
    bulk_header_awaiting_lf: b"$3\r" => INCOMPLETE;
    bulk_longer_than_declared: b"$3\r\nfoob\r\n" => fails(MissingCrlf);
    // The payload is `foo\r`; what follows it is a lone LF.
    bulk_shorter_than_declared: b"$4\r\nfoo\r\n" => fails(MissingCrlf);
    bulk_lf_cr_after_payload: b"$3\r\nfoo\n\r" => fails(MissingCrlf);
    bulk_cr_then_junk_after_payload: b"$3\r\nfoo\rx" => fails(MissingCrlf);
    bulk_len_minus_two: b"$-2\r\n" => fails(LengthOutOfRange);
    bulk_len_minus_two_before_crlf: b"$-2" => fails(LengthOutOfRange);
    bulk_len_minus_ten: b"$-10\r\n" => fails(LengthOutOfRange);
    bulk_len_i64_min: b"$-9223372036854775808\r\n" => fails(LengthOutOfRange);
    bulk_len_at_max: bulk_frame(65536) => complete(V::Bulk(Some(payload(65536))), 8 + 65536 + 2);
    bulk_len_at_max_short_body: b"$65536\r\nab" => INCOMPLETE;
    bulk_len_over_max: b"$65537\r\n" => fails(TooLarge);
    bulk_len_over_max_before_crlf: b"$65537" => fails(TooLarge);
    bulk_len_at_custom_max [Limits { max_bulk_len: 3, ..Limits::LOCK_CLIENT }]:
        b"$3\r\nabc\r\n" => complete(bulk(b"abc"), 9);
    bulk_len_over_custom_max [Limits { max_bulk_len: 3, ..Limits::LOCK_CLIENT }]:
        b"$4\r\nabcd\r\n" => fails(TooLarge);
    bulk_len_zero_with_zero_max [Limits { max_bulk_len: 0, ..Limits::LOCK_CLIENT }]:
        b"$0\r\n\r\n" => complete(bulk(b""), 6);
    bulk_len_permissive_max_short_body [PERMISSIVE]: b"$536870912\r\nabc" => INCOMPLETE;
    bulk_len_over_permissive_max [PERMISSIVE]: b"$536870913\r\n" => fails(TooLarge);
    #[cfg(target_pointer_width = "64")]
    bulk_len_i64_max_short_body [UNBOUNDED_LEN]: b"$9223372036854775807\r\nabc" => INCOMPLETE;
    // Over i64: a length with the defects of a bad integer, when no limit catches it first.
    bulk_len_overflowing_i64 [UNBOUNDED_LEN]: b"$9223372036854775808\r\n" => fails(BadLength);
    bulk_len_overflowing_i64_default_limits: b"$9223372036854775808\r\n" => fails(TooLarge);
    bulk_len_plus_sign: b"$+3\r\nfoo\r\n" => fails(BadLength);
    bulk_len_leading_zero: b"$03\r\nfoo\r\n" => fails(BadLength);
    bulk_len_negative_zero: b"$-0\r\n" => fails(BadLength);
    bulk_len_empty: b"$\r\n" => fails(BadLength);
    bulk_len_lone_minus: b"$-\r\n" => fails(BadLength);
    bulk_len_leading_space: b"$ 3\r\nfoo\r\n" => fails(BadLength);
    bulk_len_trailing_letter: b"$3x\r\nfoo\r\n" => fails(BadLength);
    bulk_header_cr_without_lf: b"$3\rfoo" => fails(BadLine);
    bulk_header_over_line_limit_without_crlf [Limits { max_line_len: 2, ..UNBOUNDED_LEN }]:
        b"$123" => fails(TooLarge);

    // Arrays: `*<count>\r\n` then count replies; `*-1` is nil.
    array_nil: b"*-1\r\n" => complete(nil_arr(), 5);
    array_empty: b"*0\r\n" => complete(arr([]), 4);
    array_command: b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"
        => complete(arr([bulk(b"GET"), bulk(b"key")]), 22);
    array_of_every_scalar_and_nils: b"*5\r\n+OK\r\n-ERR x\r\n:7\r\n$-1\r\n*-1\r\n"
        => complete(arr([simple(b"OK"), error(b"ERR x"), int(7), nil(), nil_arr()]), 31);
    array_nested: b"*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n$1\r\nx\r\n"
        => complete(arr([arr([int(1), int(2)]), arr([bulk(b"x")])]), 27);
    array_nested_empty_and_nil: b"*2\r\n*0\r\n*-1\r\n" => complete(arr([arr([]), nil_arr()]), 13);
    array_tree [depth(3)]: b"*3\r\n*1\r\n*1\r\n:1\r\n*2\r\n:2\r\n:3\r\n:4\r\n"
        => complete(arr([arr([arr([int(1)])]), arr([int(2), int(3)]), int(4)]), 32);
    array_deep_element_not_last [depth(3)]: b"*2\r\n*2\r\n*1\r\n:1\r\n:2\r\n:3\r\n"
        => complete(arr([arr([arr([int(1)]), int(2)]), int(3)]), 24);
    array_siblings_at_depth_limit [depth(2)]: b"*2\r\n*1\r\n:1\r\n*1\r\n:2\r\n"
        => complete(arr([arr([int(1)]), arr([int(2)])]), 20);
    array_second_sibling_too_deep [depth(2)]: b"*2\r\n*1\r\n:1\r\n*1\r\n*1\r\n:1\r\n"
        => fails(TooDeep);
    array_element_bad_integer: b"*2\r\n:1\r\n:x\r\n" => fails(BadInteger);
    array_element_resp3: b"*1\r\n_\r\n" => fails(BadTypeByte);
    array_element_missing_crlf: b"*1\r\n$1\r\nab\r\n" => fails(MissingCrlf);
    array_header_only: b"*3\r\n" => INCOMPLETE;
    array_missing_elements: b"*2\r\n:1\r\n" => INCOMPLETE;
    array_nested_missing_elements: b"*2\r\n*2\r\n:1\r\n:2\r\n" => INCOMPLETE;
    array_huge_count_within_limit_short_body: b"*1024\r\n:1\r\n" => INCOMPLETE;
    array_huge_count_over_limit_short_body: b"*1025\r\n:1\r\n" => fails(TooManyElements);
    array_count_over_limit_before_crlf: b"*1025" => fails(TooManyElements);
    array_nested_count_over_limit: b"*1\r\n*1025\r\n" => fails(TooManyElements);
    array_permissive_max_count_short_body [PERMISSIVE]: b"*2147483647\r\n:1\r\n" => INCOMPLETE;
    array_count_over_permissive_max [PERMISSIVE]: b"*2147483648\r\n" => fails(TooManyElements);
    array_count_overflowing_i64 [UNBOUNDED_LEN]: b"*9223372036854775808\r\n" => fails(BadLength);
    array_count_minus_two: b"*-2\r\n" => fails(LengthOutOfRange);
    array_count_leading_zero: b"*01\r\n" => fails(BadLength);
    array_count_plus_sign: b"*+1\r\n" => fails(BadLength);
    array_count_empty: b"*\r\n" => fails(BadLength);
    array_depth_at_limit [depth(3)]: nested(3, b":1\r\n") => complete(nested_v(3, int(1)), 16);
    array_depth_over_limit [depth(3)]: nested(4, b":1\r\n") => fails(TooDeep);
    // The header of the array one level too deep is enough to know.
    array_depth_over_limit_before_body [depth(1)]: b"*1\r\n*1" => fails(TooDeep);
    array_default_depth_at_limit: nested(8, b":1\r\n") => complete(nested_v(8, int(1)), 36);
    array_default_depth_over_limit: nested(9, b":1\r\n") => fails(TooDeep);
    array_depth_16_at_limit [depth(16)]: nested(16, b"+\r\n") => complete(nested_v(16, simple(b"")), 67);
    array_depth_16_over_limit [depth(16)]: nested(17, b"+\r\n") => fails(TooDeep);
    array_depth_17_at_limit [depth(17)]: nested(17, b"+\r\n") => complete(nested_v(17, simple(b"")), 71);
    array_depth_17_over_limit [depth(17)]: nested(18, b"+\r\n") => fails(TooDeep);
    array_permissive_depth_at_limit [PERMISSIVE]: nested(1024, b":1\r\n")
        => complete(nested_v(1024, int(1)), 4 * 1024 + 4);
    array_permissive_depth_over_limit [PERMISSIVE]: nested(1025, b":1\r\n") => fails(TooDeep);
    // Depths above MAX_DEPTH act as MAX_DEPTH.
    array_unbounded_depth_at_max [depth(usize::MAX)]: nested(MAX_DEPTH, b":1\r\n")
        => complete(nested_v(MAX_DEPTH, int(1)), 4 * MAX_DEPTH + 4);
    array_unbounded_depth_over_max [depth(usize::MAX)]: nested(MAX_DEPTH + 1, b":1\r\n")
        => fails(TooDeep);
    array_million_deep [PERMISSIVE]: nested(1_000_000, b":1\r\n") => fails(TooDeep);
    array_depth_zero_rejects_empty_array [depth(0)]: b"*0\r\n" => fails(TooDeep);
    array_depth_zero_accepts_scalars [depth(0)]: b":1\r\n" => complete(int(1), 4);
    array_depth_one_rejects_nested_empty_array [depth(1)]: b"*1\r\n*0\r\n" => fails(TooDeep);
    // A nil array has no elements to nest: the code lets it through at any depth.
    array_depth_zero_accepts_nil [depth(0)]: b"*-1\r\n" => complete(nil_arr(), 5);
    array_depth_one_accepts_nested_nil [depth(1)]: b"*1\r\n*-1\r\n" => complete(arr([nil_arr()]), 9);

    // Junk and RESP3 type bytes: only `+ - : $ *` start a RESP2 reply.
    resp3_null: b"_\r\n" => fails(BadTypeByte);
    resp3_null_type_byte_only: b"_" => fails(BadTypeByte);
    resp3_boolean: b"#t\r\n" => fails(BadTypeByte);
    resp3_double: b",1.5\r\n" => fails(BadTypeByte);
    resp3_map: b"%1\r\n+a\r\n+b\r\n" => fails(BadTypeByte);
    resp3_push: b">2\r\n+a\r\n+b\r\n" => fails(BadTypeByte);
    resp3_big_number: b"(12345678901234567890\r\n" => fails(BadTypeByte);
    resp3_verbatim: b"=8\r\ntxt:text\r\n" => fails(BadTypeByte);
    resp3_blob_error: b"!3\r\nERR\r\n" => fails(BadTypeByte);
    resp3_set: b"~1\r\n:1\r\n" => fails(BadTypeByte);
    resp3_attribute: b"|1\r\n+a\r\n+b\r\n" => fails(BadTypeByte);
    junk_inline_command: b"PING\r\n" => fails(BadTypeByte);
    junk_bare_crlf: b"\r\n" => fails(BadTypeByte);
    junk_nul: b"\x00" => fails(BadTypeByte);
    junk_high_byte: b"\xff+OK\r\n" => fails(BadTypeByte);
    junk_leading_space: b" +OK\r\n" => fails(BadTypeByte);
    empty_input: b"" => INCOMPLETE;

    // Several frames in one buffer: only the first is decoded and consumed.
    frames_two_simple: b"+OK\r\n+QUEUED\r\n" => complete(simple(b"OK"), 5);
    frames_int_then_junk: b":1\r\nthis is not resp" => complete(int(1), 4);
    frames_two_bulks: b"$3\r\nfoo\r\n$3\r\nbar\r\n" => complete(bulk(b"foo"), 9);
    frames_nil_then_partial_bulk: b"$-1\r\n$3\r\nfo" => complete(nil(), 5);
    frames_two_arrays: b"*1\r\n:1\r\n*1\r\n:2\r\n" => complete(arr([int(1)]), 8);
    frames_error_then_partial: b"-ERR x\r\n+" => complete(error(b"ERR x"), 8);
    frames_two_empty_arrays: b"*0\r\n*0\r\n" => complete(arr([]), 4);
}

// A few checks on the array view itself, beyond the table.

#[test]
fn arrays_compare_by_elements_across_buffers_and_limits() {
    let first = b"*2\r\n:1\r\n$1\r\nx\r\n+tail\r\n".to_vec();
    let second = b"junk*2\r\n:1\r\n$1\r\nx\r\n".to_vec();
    let (Ok(Status::Complete((Reply::Array(Some(a)), _))), Ok(Status::Complete((reply, _)))) = (
        decode(&first, &Limits::LOCK_CLIENT),
        decode(&second[4..], &Limits::PERMISSIVE),
    ) else {
        panic!("both buffers hold an array");
    };
    assert_eq!(Reply::Array(Some(a)), reply);
    let Ok(Status::Complete((other, _))) = decode(b"*2\r\n:1\r\n$1\r\ny\r\n", &Limits::LOCK_CLIENT)
    else {
        panic!("an array");
    };
    assert_ne!(Reply::Array(Some(a)), other);
}

#[test]
fn nested_arrays_iterate_lazily_with_their_own_views() {
    let input = b"*3\r\n*2\r\n+a\r\n+b\r\n*0\r\n:5\r\n";
    let Ok(Status::Complete((Reply::Array(Some(outer)), 24))) = decode(input, &depth(2)) else {
        panic!("a two-level array");
    };
    let mut items = outer.iter();
    let Some(Reply::Array(Some(first))) = items.next() else {
        panic!("first element is an array");
    };
    assert_eq!(first.len(), 2);
    assert_eq!(first.as_bytes(), b"+a\r\n+b\r\n");
    assert!(first.iter().eq([Reply::Simple(b"a"), Reply::Simple(b"b")]));
    let Some(Reply::Array(Some(second))) = items.next() else {
        panic!("second element is an array");
    };
    assert!(second.is_empty());
    assert_eq!(second.iter().next(), None);
    assert_eq!(items.size_hint(), (1, Some(1)));
    assert_eq!(items.next(), Some(Reply::Integer(5)));
    assert_eq!(items.next(), None);
    assert_eq!(items.next(), None);
}

#[test]
fn status_reports_completeness() {
    assert!(decode(b"+OK\r\n", &Limits::default()).is_ok_and(|status| status.is_complete()));
    assert!(decode(b"+OK", &Limits::default()).is_ok_and(|status| !status.is_complete()));
    assert_eq!(Limits::default(), Limits::LOCK_CLIENT);
}
