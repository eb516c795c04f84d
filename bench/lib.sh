# bench/lib.sh — sourced by the benches that run a real atelierd: a temp
# folder, a throwaway PostgreSQL cluster, atelierd on a free port, and a
# cleanup trap that stops both. Call from the repository root.
#
#   bench_setup NAME        tmp=/tmp/atelier-bench-NAME.*; trap for cleanup
#   bench_postgres [FSYNC]  url=... and ATELIER_*, PGPASSFILE exported (FSYNC default on)
#   bench_atelierd [ARGS]   pid=... port=... api=http://127.0.0.1:PORT
BUILD=${ATELIER_BUILD:-build}
pid=""

bench_cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	scripts/pgctl.sh stop "$tmp/pg" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}

bench_setup() {
	tmp=$(mktemp -d "/tmp/atelier-bench-$1.XXXXXX")
	chmod 755 "$tmp" # the postgres user must reach the cluster inside
	trap bench_cleanup EXIT INT TERM
}

bench_postgres() {
	url=$(PG_FSYNC=${1:-on} scripts/pgctl.sh start "$tmp/pg")
	export ATELIER_DATABASE_URL="$url" ATELIER_LOG_LEVEL=warn ATELIER_ARTIFACTS="fs://$tmp/artifacts"
	PGPASSFILE=$(scripts/pgctl.sh passfile "$tmp/pg")
	export PGPASSFILE
}

bench_atelierd() {
	: >"$tmp/atelierd.log"
	"$BUILD/bin/atelierd" --port 0 "$@" >"$tmp/atelierd.log" 2>&1 &
	pid=$!
	port=""
	for i in $(seq 1 100); do
		port=$(sed -n 's/.*listening on http:\/\/[0-9.]*:\([0-9]*\).*/\1/p' "$tmp/atelierd.log" | head -n 1)
		[ -n "$port" ] && break
		sleep 0.1
	done
	[ -n "$port" ] || { cat "$tmp/atelierd.log" >&2; exit 1; }
	api="http://127.0.0.1:$port"
}
