//! The smallest useful program: take one lock, release it, report the outcome. It exists to
//! measure what the crate adds to a stripped release binary (see `BENCHMARKS.md`).
//!
//! `cargo run --release --example lock_release_min -- redis://127.0.0.1:7001 redis://...`
//! (one or more node URLs). Exits 0 when the lock was taken and released, 1 when it was not,
//! 2 on bad arguments.

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let urls: Vec<String> = std::env::args().skip(1).collect();
    let dlm = match resplock::Redlock::new(&urls) {
        Ok(dlm) => dlm,
        Err(e) => {
            eprintln!("usage: lock_release_min URL...: {e}");
            return ExitCode::from(2);
        }
    };
    match dlm
        .lock("lock_release_min", Duration::from_secs(10))
        .and_then(|guard| guard.release())
    {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("released, but the lock had expired");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
