#!/bin/sh
# bench/ingest/run.sh — ingest throughput: a throwaway PostgreSQL, a real
# atelierd, N distinct PNG sketches uploaded with concurrency C.
#   N=5000 C=16 bench/ingest/run.sh
set -eu
cd "$(dirname "$0")/../.."
BUILD=${ATELIER_BUILD:-build}
N=${N:-5000}
C=${C:-32}
tmp=$(mktemp -d /tmp/atelier-bench-ingest.XXXXXX)
chmod 755 "$tmp"
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	scripts/pgctl.sh stop "$tmp/pg" || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
make --no-print-directory "$BUILD/bench/bench_ingest" >/dev/null
url=$(PG_FSYNC=${PG_FSYNC:-on} scripts/pgctl.sh start "$tmp/pg")
export ATELIER_DATABASE_URL="$url" ATELIER_LOG_LEVEL=warn
token=$("$BUILD/bin/atelierd" token create --role operator)
"$BUILD/bin/atelierd" --port 0 >"$tmp/atelierd.log" 2>&1 &
pid=$!
for i in $(seq 1 100); do
	port=$(sed -n 's/.*listening on http:\/\/[0-9.]*:\([0-9]*\).*/\1/p' "$tmp/atelierd.log" | head -n 1)
	[ -n "$port" ] && break
	sleep 0.1
done
echo "ingest: atelierd on port $port, PostgreSQL with fsync on (synchronous commit)"
"$BUILD/bench/bench_ingest" "http://127.0.0.1:$port" "$token" "$N" "$C" "$pid"
grep -E "RssAnon|RssFile" /proc/$pid/status | tr -s " \t" " " | sed "s/^/ingest: after the run: /"
