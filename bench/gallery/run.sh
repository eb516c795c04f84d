#!/bin/sh
# bench/gallery/run.sh — the gallery of a serving node with 10,000 published
# works under 32 keep-alive clients (bench_gallery load):
#   - GET /gallery wall pages (the newest, a random ?before= page, a ?style=
#     filter), p50/p95;
#   - thumbnails: made once (the cold fill rate: fetch from atelierd, decode,
#     fit, JPEG), then from the cache, p50/p95;
#   - the node's RSS with the index and the cache full;
#   - the rate limiter's cost per request: lib/ratelimit in-process, and
#     POST /api/publish refused 415 right after limit_admit, with the limiter
#     on (a budget never spent) and off (--rate-publish 0).
#
# The works are synth-world sketches and paintings (lib/synth, 64 distinct
# pairs) inserted with one SQL statement: publishing 10,000 works through
# POST /api/publish would take the rate limit and the threadpool's
# normalisation, which this bench does not measure.
#
#   bench/gallery/run.sh
#   BENCH_WORKS=2000 BENCH_CLIENTS=8 BENCH_SECONDS=5 bench/gallery/run.sh
set -eu
cd "$(dirname "$0")/../.."
. bench/lib.sh
bench_setup gallery
N=${BENCH_WORKS:-10000}
CLIENTS=${BENCH_CLIENTS:-32}
SECS=${BENCH_SECONDS:-10}
HOT=${BENCH_HOT:-2000}
make --no-print-directory "$BUILD/bin/atelierd" "$BUILD/bin/atelier-serve" "$BUILD/bench/bench_gallery" >/dev/null
B="$BUILD/bench/bench_gallery"
spid=""
stop_node() {
	[ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null || true
	spid=""
}
trap 'stop_node; bench_cleanup' EXIT INT TERM

bench_postgres off
node_tok=$("$BUILD/bin/atelierd" token create --role node)
bench_atelierd

"$B" synth 64 "$tmp/images.sql"
psql "$url" -qAtX -f "$tmp/images.sql" >/dev/null
t0=$(date +%s.%N)
psql "$url" -qAtXc "INSERT INTO works (title, author, style, style_key, model, model_version, sketch, sketch_type,
  painting, painting_type, sketch_sha256, receipt_sha256)
  SELECT 'Work no. ' || i, 'bench', jsonb_build_object('style', i % 50), (i % 50)::text, 'sketch2paint', 1,
         b.sketch, 'image/png', b.painting, 'image/jpeg', sha256(('s' || i)::bytea), sha256(('r' || i)::bytea)
  FROM generate_series(1, $N) i JOIN bench_images b ON b.k = (i - 1) % 64 + 1" >/dev/null
t1=$(date +%s.%N)
echo "works: $N inserted in $(echo "$t1 - $t0" | bc) s ($(psql "$url" -qAtXc "SELECT pg_size_pretty(pg_total_relation_size('works'))"))"

# start_node ARGS: a node on a free port with the gallery synced; sets spid, node
start_node() {
	"$BUILD/bin/atelier-serve" --port 0 --atelierd "$api" --token "$node_tok" --name bench \
		--spool "$tmp/spool" --cache "$tmp/cache" "$@" >"$tmp/serve.log" 2>&1 &
	spid=$!
	node=""
	for i in $(seq 1 100); do
		node=$(sed -n 's/.*listening on \(http:\/\/[0-9.]*:[0-9]*\).*/\1/p' "$tmp/serve.log" | head -n1)
		[ -n "$node" ] && break
		sleep 0.1
	done
	[ -n "$node" ] || { cat "$tmp/serve.log" >&2; exit 1; }
	s0=$(date +%s.%N)
	for i in $(seq 1 600); do
		curl -sf "$node/api/gallery?limit=1" | grep -q "\"total\": *$N" && break
		sleep 0.1
	done
	curl -sf "$node/api/gallery?limit=1" | grep -q "\"total\": *$N" || { echo "the node never synced" >&2; exit 1; }
	sync_s=$(echo "$(date +%s.%N) - $s0" | bc)
}
rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$spid/status"; }

start_node --rate-publish 1000000 --burst-publish 1000000
echo "node: gallery index of $N works synced in ${sync_s} s from atelierd's feed; RSS $(($(rss) / 1024)) MiB"

# wall pages: the newest, random ?before= pages, style filters
{
	echo "/gallery"
	psql "$url" -qAtXc "SELECT '/gallery?before=' || id FROM works ORDER BY random() LIMIT 400"
	psql "$url" -qAtXc "SELECT '/gallery?style=' || s FROM generate_series(0, 49) s"
} >"$tmp/pages"
echo "wall pages ($CLIENTS clients, ${SECS} s): $("$B" load "$node" "$tmp/pages" --clients "$CLIENTS" --seconds "$SECS")"

# thumbnails: HOT works' thumbnails made once, then from the cache
psql "$url" -qAtXc "SELECT '/gallery/thumbs/' || id || '.jpg' FROM works ORDER BY id DESC LIMIT $HOT" >"$tmp/thumbs"
echo "thumbnails made, each once ($CLIENTS clients; fetch from atelierd + decode + fit + JPEG): $("$B" load "$node" "$tmp/thumbs" --clients "$CLIENTS" --once 1)"
echo "thumbnails from cache ($CLIENTS clients, ${SECS} s): $("$B" load "$node" "$tmp/thumbs" --clients "$CLIENTS" --seconds "$SECS")"
cache=$(curl -sf "$node/metrics" | sed -n 's/^atelier_serve_gallery_cache_bytes \(.*\)/\1/p')
echo "node RSS after: $(($(rss) / 1024)) MiB (cache $((${cache%.*} / 1048576)) MiB of thumbnails)"

# the rate limiter: in-process, then per HTTP request (415 right after limit_admit)
echo "/api/publish" >"$tmp/publish"
echo "limiter in-process: $("$B" ratelimit)"
echo "/api/publish, limiter on ($CLIENTS clients): $("$B" load "$node" "$tmp/publish" --clients "$CLIENTS" --seconds "$SECS" --post text/plain 2>&1 | tail -n1)"
stop_node
start_node --rate-publish 0
echo "/api/publish, limiter off ($CLIENTS clients): $("$B" load "$node" "$tmp/publish" --clients "$CLIENTS" --seconds "$SECS" --post text/plain 2>&1 | tail -n1)"
