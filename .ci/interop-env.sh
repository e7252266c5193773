#!/usr/bin/env bash
# Sets up the Python side of the redlock-py interop test (tests/interop_redlock_py.rs): a
# virtualenv at target/interop-venv (target/ is gitignored) with pinned `redlock-py` and `redis`
# from PyPI. Idempotent: an existing venv that already has the pinned versions is left as is.
# Run from anywhere: `bash .ci/interop-env.sh`. Prints the interpreter path on success.
#
# Without python3 it exits 0 with a message: the interop test itself then fails and says so
# (it never skips silently).
#
# Pins (see the test's module docs for why):
#   redlock-py 1.0.8: the latest (and final) release, the one the seed docs describe.
#   redis 5.0.8: redlock-py declares an unpinned `redis` dependency; 5.0.8 is the last 5.0.x,
#     installs on Python >= 3.7, speaks RESP2 and keeps redis-py's historical defaults (no
#     socket timeouts), i.e. what redlock-py was written against. Newer redis-py (8.x, Python
#     >= 3.10) also passes the test: override with REDIS_PY_VERSION=8.1.0.
set -euo pipefail
cd "$(dirname "$0")/.."

REDLOCK_PY_VERSION="${REDLOCK_PY_VERSION:-1.0.8}"
REDIS_PY_VERSION="${REDIS_PY_VERSION:-5.0.8}"
VENV=target/interop-venv
PY="$VENV/bin/python"

if ! command -v python3 >/dev/null 2>&1; then
    echo "interop-env: python3 not found: redlock-py interop venv NOT set up;" \
        "tests/interop_redlock_py.rs will fail until python3 is installed and this script is rerun"
    exit 0
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

make_venv() {
    rm -rf "$VENV"
    mkdir -p target
    if python3 -m venv "$VENV"; then
        return 0
    fi
    # Debian/Ubuntu ship the venv module separately.
    rm -rf "$VENV"
    if command -v apt-get >/dev/null 2>&1; then
        echo "interop-env: 'python3 -m venv' failed; installing python3-venv"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        python3 -m venv "$VENV" && return 0
    fi
    echo "interop-env: cannot create a virtualenv with $(command -v python3);" \
        "install the venv module (e.g. apt-get install python3-venv) and rerun" >&2
    exit 1
}

# A venv whose interpreter no longer runs (base python moved or removed) is rebuilt.
if ! "$PY" -c 'import sys' >/dev/null 2>&1; then
    make_venv
fi

installed() {
    "$PY" - "$REDLOCK_PY_VERSION" "$REDIS_PY_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
import redlock, redis  # noqa: F401  (both must import, not just be listed)
sys.exit(0 if (version("redlock-py"), version("redis")) == (sys.argv[1], sys.argv[2]) else 1)
EOF
}

if ! installed; then
    "$PY" -m pip install --quiet --disable-pip-version-check \
        "redlock-py==$REDLOCK_PY_VERSION" "redis==$REDIS_PY_VERSION"
    if ! installed; then
        echo "interop-env: redlock-py $REDLOCK_PY_VERSION / redis $REDIS_PY_VERSION" \
            "installed but do not import in $PY" >&2
        exit 1
    fi
fi

"$PY" - <<'EOF'
import sys
from importlib.metadata import version
print(f"interop-env: python {sys.version.split()[0]}, redlock-py {version('redlock-py')}, "
      f"redis {version('redis')}")
EOF
echo "interop-env: interpreter $(cd "$(dirname "$PY")" && pwd)/python"
