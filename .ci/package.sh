#!/usr/bin/env bash
# What a user gets from crates.io:
# 1. `cargo package --list` holds only what a user needs: the sources under src/, the
#    manifest (and the lock file cargo adds), README.md, LICENSE, CHANGELOG.md, SAFETY.md,
#    ARCHITECTURE.md, BENCHMARKS.md. No tests, benches, examples, fuzz targets or CI scripts.
# 2. The packaged crate builds on its own: `cargo package` unpacks it under target/package and
#    builds it with the default features (its `[[bench]]` entries, whose files are not
#    shipped, are dropped by cargo), then `cargo check` builds it with every feature.
# 3. The default build's dependency tree is still rand + socket2: 7 crates, resplock
#    included (`cargo tree -e normal`, default features).
#
# Usage: bash .ci/package.sh      (works on a dirty tree: packaging uses --allow-dirty)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "--- package file list"
list="$(cargo package --list --locked --allow-dirty 2>/dev/null)"
echo "$list"
allowed='^(src/.+\.rs|Cargo\.toml|Cargo\.toml\.orig|Cargo\.lock|\.cargo_vcs_info\.json|README\.md|LICENSE|CHANGELOG\.md|SAFETY\.md|ARCHITECTURE\.md|BENCHMARKS\.md)$'
unexpected="$(grep -Ev "$allowed" <<<"$list" || true)"
if [ -n "$unexpected" ]; then
    echo "package: files a user does not need are in the package:" >&2
    echo "$unexpected" >&2
    exit 1
fi
for needed in src/lib.rs Cargo.toml README.md LICENSE CHANGELOG.md SAFETY.md ARCHITECTURE.md; do
    if ! grep -qx "$needed" <<<"$list"; then
        echo "package: $needed is missing from the package" >&2
        exit 1
    fi
done

echo "--- cargo package (builds the unpacked crate, default features)"
cargo package --locked --allow-dirty
read -r version target_dir < <(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json,sys; m=json.load(sys.stdin); print(m["packages"][0]["version"], m["target_directory"])')
unpacked="$target_dir/package/resplock-$version"

echo "--- cargo check of the unpacked crate, all features"
CARGO_TARGET_DIR="$target_dir/package/check" cargo check --locked --all-features \
    --manifest-path "$unpacked/Cargo.toml"

echo "--- default dependency tree"
tree="$(cargo tree -e normal --locked --prefix none | sed 's/ (\*)$//' | sort -u)"
echo "$tree"
count="$(wc -l <<<"$tree")"
if [ "$count" -ne 7 ]; then
    echo "package: the default build has $count crates (resplock included), not 7" >&2
    exit 1
fi
echo "package: ok"
