//! `decode` on arbitrary bytes: never panics, and every result satisfies the contract checked
//! by `resplock_fuzz::check_decode` (consumed <= len, re-decoding the consumed prefix gives the
//! same reply, arrays iterate to exactly `len()` elements, re-encoding gives the input back,
//! limits hold and only ever reject).
//!
//! The whole input is decoded with `Limits::default()`. When it has at least four bytes, the
//! rest is also decoded with small limits made from those four (see `limits_from`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use resplock::resp::Limits;
use resplock_fuzz::{check_decode, limits_from};

fuzz_target!(|data: &[u8]| {
    let _ = check_decode(data, &Limits::default());
    if let Some((head, rest)) = data.split_first_chunk::<4>() {
        let _ = check_decode(rest, &limits_from(*head));
    }
});
