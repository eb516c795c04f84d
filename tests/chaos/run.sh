#!/bin/sh
# tests/chaos/run.sh — `make chaos`: full CT cycles on the tiny pipeline with
# serving load and contributions flowing while a seeded fault injector kills
# and breaks things; then the invariants (tests/chaos/chaos.py says which).
# Not part of `make test`: it takes about ten minutes and needs root (it mounts
# a tmpfs for each node's spool and bind-mounts the artifact store read-only).
#   CHAOS_SEED=N      the injector's seed (default: random, printed)
#   CHAOS_SECONDS=N   length of the fault phase (default 420)
#   CHAOS_REPORT=F    also write the figures as JSON to F
#   CHAOS_KINDS=a,b   only these fault kinds (default: all; chaos.py lists them)
set -eu
cd "$(dirname "$0")/../.."
export ATELIER_BUILD="${ATELIER_BUILD:-build}"
export OMP_WAIT_POLICY=PASSIVE
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" tests/chaos/chaos.py "$@"
