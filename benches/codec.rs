//! Codec benchmarks: decode the replies a lock client sees and encode its `SET`, each next to a
//! floor that only scans the same bytes for CRLF.
//!
//! `cargo bench --bench codec` prints criterion's time per operation and bytes/s for every case,
//! then a table with, per case, ns/op of the codec and of its floor and their ratio. The table
//! is the median of the very samples criterion measured (warm-up excluded), not a second run.
//! Every case asserts its result once before timing, and the timed loop keeps each result
//! through `black_box`.
//!
//! The floor is a plain byte loop finding every CRLF in the input: the least work a line-based
//! reader does. The decoder can beat it on bulk strings, whose payload it jumps over by length.
//! Encoding is also compared with copying the already-encoded bytes into the same buffer.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use resplock::resp::{decode, encode_command, encoded_len, Limits, Reply, Status};

const WARM_UP: Duration = Duration::from_millis(500);
const MEASUREMENT: Duration = Duration::from_secs(2);
/// Bootstrap resamples per analysis: a fifth of criterion's default keeps the run under a minute.
const RESAMPLES: usize = 20_000;

/// One line of the summary table: nanoseconds per operation, `None` when filtered out.
struct Row {
    case: String,
    bytes: usize,
    codec: Option<f64>,
    floor: Option<f64>,
    floor_name: &'static str,
}

/// Finds every CRLF with a plain byte loop: the floor for reading these bytes.
fn crlf_scan(bytes: &[u8]) -> usize {
    bytes.windows(2).filter(|pair| *pair == b"\r\n").count()
}

/// Runs `op` as one criterion benchmark of `group` and returns the median ns per call over
/// criterion's measurement samples.
fn bench<R>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut op: impl FnMut() -> R,
) -> Option<f64> {
    let mut samples = Vec::new();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(op());
            }
            let elapsed = start.elapsed();
            samples.push((iters, elapsed));
            elapsed
        });
    });
    median_ns_per_op(&samples)
}

/// Criterion warms up by calling the routine with 1, 2, 4, ... iterations until their total
/// time passes the warm-up time; the calls after that are its samples.
fn median_ns_per_op(samples: &[(u64, Duration)]) -> Option<f64> {
    let mut total = Duration::ZERO;
    let warm_up = samples
        .iter()
        .position(|&(_, elapsed)| {
            total += elapsed;
            total > WARM_UP
        })
        .map_or(0, |last| last + 1);
    let measured = if warm_up < samples.len() {
        &samples[warm_up..]
    } else {
        samples
    };
    let mut per_op: Vec<f64> = measured
        .iter()
        .filter(|&&(iters, _)| iters > 0)
        .map(|&(iters, elapsed)| elapsed.as_nanos() as f64 / iters as f64)
        .collect();
    per_op.sort_by(f64::total_cmp);
    per_op.get(per_op.len() / 2).copied()
}

/// Benchmarks decoding `input` (and, with `iterate`, walking the array it holds) against the
/// CRLF scan of the same bytes. `check` asserts the decoded value before anything is timed.
fn decode_case(
    c: &mut Criterion,
    rows: &mut Vec<Row>,
    case: &str,
    input: &[u8],
    check: impl Fn(&[u8]),
    iterate: bool,
) {
    let limits = Limits::default();
    check(input);
    let crlfs = crlf_scan(input);
    assert!(crlfs > 0, "{case}: floor found no crlf");

    let mut group = c.benchmark_group(case);
    group.throughput(Throughput::Bytes(input.len() as u64));
    let codec = if iterate {
        bench(&mut group, "decode+iter", || {
            let Ok(Status::Complete((Reply::Array(Some(array)), used))) =
                decode(black_box(input), &limits)
            else {
                return (0, 0);
            };
            let payload: usize = array
                .iter()
                .map(|element| match element {
                    Reply::Bulk(Some(bytes)) => bytes.len(),
                    _ => 0,
                })
                .sum();
            (used, payload)
        })
    } else {
        bench(&mut group, "decode", || decode(black_box(input), &limits))
    };
    let floor = bench(&mut group, "crlf_scan", || crlf_scan(black_box(input)));
    group.finish();
    rows.push(Row {
        case: case.to_owned(),
        bytes: input.len(),
        codec,
        floor,
        floor_name: "crlf scan",
    });
}

fn bulk(payload: &[u8]) -> Vec<u8> {
    let mut frame = format!("${}\r\n", payload.len()).into_bytes();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame
}

/// Asserts that `input` decodes, with the default limits, to `want` using all of its bytes.
fn expect(want: Reply<'static>) -> impl Fn(&[u8]) {
    move |input| {
        assert_eq!(
            decode(input, &Limits::default()),
            Ok(Status::Complete((want, input.len())))
        );
    }
}

fn decode_cases(c: &mut Criterion, rows: &mut Vec<Row>) {
    let ok = b"+OK\r\n";
    decode_case(
        c,
        rows,
        "decode +OK",
        ok,
        expect(Reply::Simple(b"OK")),
        false,
    );
    let one = b":1\r\n";
    decode_case(c, rows, "decode :1", one, expect(Reply::Integer(1)), false);
    let nil = b"$-1\r\n";
    decode_case(c, rows, "decode $-1", nil, expect(Reply::Bulk(None)), false);

    let small = bulk(b"0123456789abcdef");
    let check_small = expect(Reply::Bulk(Some(b"0123456789abcdef")));
    decode_case(c, rows, "decode bulk 16 B", &small, check_small, false);

    let payload: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let large = bulk(&payload);
    let check_large = |input: &[u8]| {
        let decoded = decode(input, &Limits::default());
        assert_eq!(
            decoded,
            Ok(Status::Complete((
                Reply::Bulk(Some(payload.as_slice())),
                input.len()
            )))
        );
    };
    decode_case(c, rows, "decode bulk 64 KiB", &large, check_large, false);

    let elements: Vec<String> = (0..100).map(|i| format!("element-{i:02}")).collect();
    let mut array = b"*100\r\n".to_vec();
    for element in &elements {
        array.extend_from_slice(&bulk(element.as_bytes()));
    }
    let check_array = |input: &[u8]| {
        let decoded = decode(input, &Limits::default());
        let Ok(Status::Complete((Reply::Array(Some(array)), used))) = decoded else {
            panic!("array of 100 bulks did not decode: {decoded:?}");
        };
        assert_eq!(used, input.len());
        assert_eq!(array.len(), 100);
        let got: Vec<Reply<'_>> = array.iter().collect();
        let want: Vec<Reply<'_>> = elements
            .iter()
            .map(|element| Reply::Bulk(Some(element.as_bytes())))
            .collect();
        assert_eq!(got, want);
    };
    decode_case(
        c,
        rows,
        "decode array 100 bulks",
        &array,
        check_array,
        false,
    );
    decode_case(
        c,
        rows,
        "decode+iter array 100 bulks",
        &array,
        check_array,
        true,
    );
}

fn encode_cases(c: &mut Criterion, rows: &mut Vec<Row>) {
    let value = b"c0ffee00c0ffee00c0ff";
    let args: [&[u8]; 6] = [b"SET", b"resplock:orders", value, b"NX", b"PX", b"30000"];
    let encoded: &[u8] =
        b"*6\r\n$3\r\nSET\r\n$15\r\nresplock:orders\r\n$20\r\nc0ffee00c0ffee00c0ff\r\n\
        $2\r\nNX\r\n$2\r\nPX\r\n$5\r\n30000\r\n";
    assert_eq!(value.len(), 20);
    assert_eq!(encoded_len(&args), encoded.len());
    let mut out = Vec::with_capacity(encoded.len());
    encode_command(&mut out, &args);
    assert_eq!(out, encoded);

    let case = "encode SET NX PX";
    let mut group = c.benchmark_group(case);
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    let codec = bench(&mut group, "encode", || {
        out.clear();
        encode_command(&mut out, black_box(&args));
        out.len()
    });
    assert_eq!(out, encoded);
    let scan = bench(&mut group, "crlf_scan", || crlf_scan(black_box(encoded)));
    let copy = bench(&mut group, "copy", || {
        out.clear();
        out.extend_from_slice(black_box(encoded));
        out.len()
    });
    group.finish();
    for (floor, floor_name) in [(scan, "crlf scan"), (copy, "copy")] {
        rows.push(Row {
            case: case.to_owned(),
            bytes: encoded.len(),
            codec,
            floor,
            floor_name,
        });
    }
}

fn print_table(rows: &[Row]) {
    let show = |ns: Option<f64>| ns.map_or_else(|| "-".to_owned(), |ns| format!("{ns:.1}"));
    println!();
    println!("codec summary (median of criterion's samples; ratio = codec / floor)");
    println!(
        "{:<28} {:>7} {:>12} {:>11} {:>10} {:>12} {:>7}",
        "case", "bytes", "codec ns/op", "codec MiB/s", "floor", "floor ns/op", "ratio"
    );
    for row in rows {
        let mib_per_s = row
            .codec
            .map(|ns| format!("{:.0}", row.bytes as f64 / ns * 1e9 / (1024.0 * 1024.0)));
        let ratio = match (row.codec, row.floor) {
            (Some(codec), Some(floor)) if codec / floor < 0.1 => format!("{:.4}", codec / floor),
            (Some(codec), Some(floor)) => format!("{:.2}", codec / floor),
            _ => "-".to_owned(),
        };
        println!(
            "{:<28} {:>7} {:>12} {:>11} {:>10} {:>12} {:>7}",
            row.case,
            row.bytes,
            show(row.codec),
            mib_per_s.unwrap_or_else(|| "-".to_owned()),
            row.floor_name,
            show(row.floor),
            ratio
        );
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(WARM_UP)
        .measurement_time(MEASUREMENT)
        .nresamples(RESAMPLES)
        .configure_from_args();
    let mut rows = Vec::new();
    decode_cases(&mut c, &mut rows);
    encode_cases(&mut c, &mut rows);
    c.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` runs each case once, untimed.
    if std::env::args().any(|arg| arg == "--bench") {
        print_table(&rows);
    }
}
