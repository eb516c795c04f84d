#!/bin/sh
# tests/run.sh — the whole test suite: unit test programs and integration tests
# (real PostgreSQL cluster, real binaries, real HTTP over loopback), driven by
# pytest. Extra arguments go to pytest (e.g. -k ingest). ATELIER_BUILD selects
# the build folder (build, build-asan).
set -eu
cd "$(dirname "$0")/.."
export ATELIER_BUILD="${ATELIER_BUILD:-build}"
export OMP_WAIT_POLICY=PASSIVE
# Debian's python3 has pytest; a pyenv python earlier on PATH may not.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" -m pytest -p no:cacheprovider -q -ra tests "$@"
