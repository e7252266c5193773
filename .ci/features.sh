#!/usr/bin/env bash
# Feature matrix: clippy (which also type-checks) with `-D warnings` on every target for the
# default features, for each feature of Cargo.toml alone, and for all features together; then
# the docs of all features with `-D warnings`. Clippy's `incompatible_msrv` lint runs in every
# one of them (see .ci/msrv.sh). Tests run in .ci/run: `cargo test --all-features`, and
# with default features the tests that depend on the tls feature.
#
# Usage: bash .ci/features.sh
set -euo pipefail
cd "$(dirname "$0")/.."

features="$(cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, sys
meta = json.load(sys.stdin)
print(" ".join(sorted(f for f in meta["packages"][0]["features"] if f != "default")))
')"

run() { printf '\n--- %s\n' "$*"; "$@"; }

run cargo clippy --all-targets --locked -- -D warnings
for feature in $features; do
    run cargo clippy --all-targets --locked --no-default-features --features "$feature" -- -D warnings
done
run cargo clippy --all-targets --locked --all-features -- -D warnings
RUSTDOCFLAGS="-D warnings" run cargo doc --no-deps --locked --quiet --all-features
