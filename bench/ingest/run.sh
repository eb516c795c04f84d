#!/bin/sh
# bench/ingest/run.sh — ingest throughput: a throwaway PostgreSQL, a real
# atelierd, N distinct PNG sketches uploaded with concurrency C.
#   N=5000 C=16 bench/ingest/run.sh
set -eu
cd "$(dirname "$0")/../.."
. bench/lib.sh
N=${N:-5000}
C=${C:-32}
bench_setup ingest
make --no-print-directory "$BUILD/bench/bench_ingest" >/dev/null
bench_postgres "${PG_FSYNC:-on}"
token=$("$BUILD/bin/atelierd" token create --role operator)
bench_atelierd
echo "ingest: atelierd on port $port, PostgreSQL with fsync on (synchronous commit)"
"$BUILD/bench/bench_ingest" "http://127.0.0.1:$port" "$token" "$N" "$C" "$pid"
grep -E "RssAnon|RssFile" /proc/$pid/status | tr -s " \t" " " | sed "s/^/ingest: after the run: /"
