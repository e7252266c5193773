#!/usr/bin/env bash
# Keeps the declared rust-version honest without an old compiler.
#
# 1. Every normal or build dependency (not dev-only) that Cargo.lock resolves, with every
#    feature on and for every target, must declare a `rust-version` no newer than ours (or
#    none). Dev-dependencies (proptest, criterion, rcgen) may need a newer compiler: only the
#    tests and benches use them, and the table lists them apart for information.
# 2. Our own code is checked by clippy's `incompatible_msrv` lint, which reads `rust-version`
#    and flags any std API stabilised after it; `.ci/run` runs clippy with `-D warnings` for
#    the default and for all features, so this script does not repeat it.
#
# Usage: bash .ci/msrv.sh        (needs cargo and python3; no network with --locked)
set -euo pipefail
cd "$(dirname "$0")/.."

metadata="$(mktemp)"
trap 'rm -f "$metadata"' EXIT
cargo metadata --format-version 1 --locked --all-features >"$metadata"
python3 - "$metadata" <<'EOF'
import json, sys

meta = json.load(open(sys.argv[1]))
packages = {p["id"]: p for p in meta["packages"]}
root = meta["resolve"]["root"]
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}


def version(text):
    parts = [int(x) for x in (text or "0").split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


ours = packages[root]["rust_version"]
if not ours:
    sys.exit("msrv: Cargo.toml declares no rust-version")


def reach(kinds_allowed):
    """Packages reachable from the root through edges of the allowed kinds (at the first
    hop); past the first hop every edge a dependency declares for itself counts, since dev
    edges of dependencies are never resolved."""
    seen, todo = set(), []
    for dep in nodes[root]["deps"]:
        if any(k["kind"] in kinds_allowed for k in dep["dep_kinds"]):
            todo.append(dep["pkg"])
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        seen.add(pkg)
        for dep in nodes[pkg]["deps"]:
            if any(k["kind"] in (None, "build") for k in dep["dep_kinds"]):
                todo.append(dep["pkg"])
    return seen


normal = reach((None, "build"))
dev_only = reach((None, "build", "dev")) - normal

bad = []
print(f"msrv: resplock declares rust-version {ours}")
print(f"{'dependency':<28} {'version':<12} {'rust-version':<12} kind")
for kind, ids in (("normal/build", normal), ("dev only", dev_only)):
    for pkg in sorted(ids, key=lambda i: packages[i]["name"]):
        p = packages[pkg]
        rv = p["rust_version"] or "-"
        newer = p["rust_version"] and version(p["rust_version"]) > version(ours)
        flag = "  NEWER" if newer else ""
        print(f"{p['name']:<28} {p['version']:<12} {rv:<12} {kind}{flag}")
        if newer and kind == "normal/build":
            bad.append(f"{p['name']} {p['version']} needs Rust {p['rust_version']}")

if bad:
    print("\nmsrv: these normal dependencies need a newer Rust than rust-version " + ours + ":")
    for line in bad:
        print("  " + line)
    print("pin an older version in Cargo.lock (cargo update -p NAME --precise V) or raise "
          "rust-version (a minor-version change, noted in CHANGELOG.md)")
    sys.exit(1)
print(f"\nmsrv: ok, {len(normal)} normal/build dependencies, none newer than {ours}")
EOF
