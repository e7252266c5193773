#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each one for FUZZ_SECONDS (default 30),
# starting from a temporary copy of the committed seed corpus (fuzz/corpus/<target>/seed-*),
# so fuzz/corpus never grows. Fails on any crash, timeout or out-of-memory; a reproducer is
# left in fuzz/artifacts/<target>/. Skips with exit 0 when no nightly toolchain is installed.
#
# Environment: FUZZ_SECONDS (per target, default 30), FUZZ_MAX_LEN (largest generated input,
# default 8192: room for arrays nested past the 1024 depth ceiling), FUZZ_SANITIZER (default
# address; "none" runs about twice as many inputs).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${FUZZ_SECONDS:-30}"
max_len="${FUZZ_MAX_LEN:-8192}"
sanitizer="${FUZZ_SANITIZER:-address}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: skipped: no nightly toolchain ('cargo +nightly --version' failed); install one with 'rustup toolchain install nightly' to run the fuzz targets"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz missing, installing it"
    cargo install cargo-fuzz --locked
fi

echo "fuzz: $(cargo +nightly --version), $(cargo fuzz --version)"
cargo +nightly fuzz build --sanitizer "$sanitizer"

mapfile -t targets < <(cargo +nightly fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
    echo "fuzz: no fuzz targets found" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failed=()
summary=()
for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    mkdir -p "$corpus"
    seeds=0
    for seed in fuzz/corpus/"$target"/seed-*; do
        [ -e "$seed" ] || continue
        cp "$seed" "$corpus/"
        seeds=$((seeds + 1))
    done
    log="$work/$target.log"
    echo "fuzz: $target: ${seconds}s from $seeds seeds"
    status=0
    cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" "$corpus" -- \
        -max_total_time="$seconds" -max_len="$max_len" -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)"
    execs="${execs:-unknown}"
    if [ "$status" -ne 0 ]; then
        echo "fuzz: $target FAILED (exit $status) after $execs executions; last lines of its log:" >&2
        tail -n 60 "$log" >&2
        failed+=("$target")
        summary+=("$target=$execs (FAILED)")
    else
        grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
        summary+=("$target=$execs")
    fi
done

echo "fuzz summary: executions per target (${seconds}s each): ${summary[*]}; ${#failed[@]} failed"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz: crash reproducers are in fuzz/artifacts/; rerun one with: cargo +nightly fuzz run <target> <file>" >&2
    exit 1
fi
