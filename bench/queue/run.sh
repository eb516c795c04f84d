#!/bin/sh
# bench/queue/run.sh — the job queue's figures on a throwaway PostgreSQL
# cluster (scripts/pgctl.sh), stopped and removed afterwards. Bounded: well
# under two minutes.
#
#   claim->complete throughput with 1, 4, 8 workers (threads, one connection
#   each, the worker's own path: lib/queue.c, complete+claim in one call);
#   enqueue -> idle-worker-start latency p50/p99 with 4 LISTENing workers;
#   the throughput again over the cluster's Unix socket, and pinned to one
#   CPU (a diagnostic: how much of the 1-worker figure is cross-CPU wake-ups
#   and how much is CPU per job); the real
#   atelier-worker binary, N processes x --concurrency C (workers.sh); and the
#   8-worker throughput with fsync=on (durable commits).
#
# Environment: ATELIER_BUILD (build folder), JOBS (jobs per throughput run,
# default 20000), ATELIER_BENCH_HANDOFF_CMD (stage hand-off hook: run with
# ATELIER_DATABASE_URL pointing at the migrated bench database, e.g. a script
# that starts atelierd and workers and times a pipeline's stage hand-offs).
set -eu
cd "$(dirname "$0")/../.."
BUILD=${ATELIER_BUILD:-build}
# Built by the Makefile (with `make`, so a library change that breaks it fails there).
make --no-print-directory BUILD="$BUILD" "$BUILD/bench/bench_queue" >&2

dir=$(mktemp -d /tmp/atelier-bench-queue.XXXXXX)
cleanup() { scripts/pgctl.sh stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
url=$(PG_FSYNC=off scripts/pgctl.sh start "$dir" | tail -n 1)
# The URLs carry no password: libpq reads the cluster's from this file.
PGPASSFILE=$(scripts/pgctl.sh passfile "$dir")
export PGPASSFILE
for f in sql/[0-9]*.sql; do
	psql "$url" -qAtX -v ON_ERROR_STOP=1 -1 -f "$f" >/dev/null
done
echo "queue bench: PostgreSQL $(psql "$url" -qAtXc 'SHOW server_version'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "-- fsync=off (as the test harness runs PostgreSQL), TCP over loopback"
timeout 100 "$BUILD/bench/bench_queue" "$url" --jobs "${JOBS:-20000}" --workers 1,2,4,8 \
	--latency-workers 4 --samples 500 --max-seconds 10
# The same over the cluster's Unix socket: what make run's workers use, and
# what any worker on the database's host should (libpq host= names the folder).
sock=$(scripts/pgctl.sh socket-url "$dir")
echo "-- fsync=off, Unix socket (as make run's own processes connect)"
timeout 60 "$BUILD/bench/bench_queue" "$sock" --jobs "${JOBS:-20000}" --workers 1,2,4,8 --samples 0 --max-seconds 10
# Where the 1-worker figure's limit lies (docs/queue.md, "Where the time goes"):
# every thread and its backend on one CPU. 1 worker: no round trip wakes the
# other, idle CPU; 2 workers: what one CPU does, worker and PostgreSQL both.
echo "-- diagnostic: fsync=off, Unix socket, workers and their backends pinned to CPU 0"
timeout 40 "$BUILD/bench/bench_queue" "$sock" --jobs "${JOBS:-20000}" --workers 1,2 --samples 0 --max-seconds 10 \
	--pin 0 || echo "(not measured: pinning needs PostgreSQL's processes to be ours to move)"

# The real atelier-worker binary (test.noop jobs): N processes x --concurrency C.
if [ -x "$BUILD/bin/atelier-worker" ]; then
	echo "-- fsync=off, Unix socket, atelier-worker processes (N x --concurrency C)"
	ATELIER_BUILD=$BUILD bench/queue/workers.sh "$sock" "${JOBS:-20000}" 1x1 1x2 1x4 4x1 8x1 2x4
else
	echo "-- atelier-worker processes: not measured ($BUILD/bin/atelier-worker not built: make)"
fi

scripts/pgctl.sh stop "$dir" >/dev/null
url=$(PG_FSYNC=on scripts/pgctl.sh start "$dir" | tail -n 1)
echo "-- fsync=on (durable commits, this machine's disk)"
timeout 30 "$BUILD/bench/bench_queue" "$url" --jobs "${JOBS:-20000}" --workers 8 --samples 0 --max-seconds 8

if [ -n "${ATELIER_BENCH_HANDOFF_CMD:-}" ]; then
	echo "-- stage hand-off: $ATELIER_BENCH_HANDOFF_CMD"
	ATELIER_DATABASE_URL=$url sh -c "$ATELIER_BENCH_HANDOFF_CMD"
else
	echo "-- stage hand-off: not measured here (set ATELIER_BENCH_HANDOFF_CMD)"
fi
