#!/bin/sh
# tests/run.sh — the whole test suite: unit test programs and integration tests
# (real PostgreSQL cluster, real binaries, real HTTP over loopback), driven by
# pytest. Extra arguments go to pytest (e.g. -k ingest); test files or
# folders among them replace the default "tests" (tests/run.sh tests/test_cli.py
# runs that file only). ATELIER_BUILD selects the build folder (build, build-asan).
set -eu
cd "$(dirname "$0")/.."
export ATELIER_BUILD="${ATELIER_BUILD:-build}"
export OMP_WAIT_POLICY=PASSIVE
# Debian's python3 has pytest; a pyenv python earlier on PATH may not.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
where=tests
for a in "$@"; do
	case "$a" in
	tests/* | ./tests/*) where= ;;
	esac
done
exec "$PY" -m pytest -p no:cacheprovider -q -ra $where "$@"
