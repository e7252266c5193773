#!/usr/bin/env bash
# Optional: prebuilds the Python side of the redlock-py interop test (tests/interop_redlock_py.rs)
# ahead of `cargo test`. The test builds it itself on first use (tests/interop/venv.rs); this
# script runs exactly that code, through the test `the_interop_python_is_ready`: a virtualenv at
# <cargo target dir>/interop-venv (target/ is gitignored) with pinned `redlock-py` and `redis`
# from PyPI, built once even when several test processes start together (a lock file under the
# target dir), and renamed into place only once complete. A venv that already has the pins is
# left as is; an incomplete one is rebuilt.
#
# Needs python3 with its venv module (Debian/Ubuntu: `sudo apt-get install -y python3
# python3-venv`) and PyPI; without them it fails and says what is missing (so does the test).
# Run from anywhere: `bash .ci/interop-env.sh`. Prints the interpreter path on success.
#
# Pins (defaults in tests/interop/venv.rs; REDLOCK_PY_VERSION / REDIS_PY_VERSION override them,
# for this script and `cargo test` alike, and a venv with other versions is rebuilt):
#   redlock-py 1.0.8: the latest (and final) release, the one the seed docs describe.
#   redis 5.0.8: redlock-py declares an unpinned `redis` dependency; 5.0.8 is the last 5.0.x,
#     installs on Python >= 3.7, speaks RESP2 and keeps redis-py's historical defaults (no
#     socket timeouts), i.e. what redlock-py was written against. Newer redis-py (8.x, Python
#     >= 3.10) also passes the test: REDIS_PY_VERSION=8.1.0 cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --quiet --test interop_redlock_py -- --exact the_interop_python_is_ready --nocapture
