#!/bin/sh
# bench/serve/run.sh — atelier-serve against the original-style Flask +
# PyTorch stack (flask_ref.py), same MUNIT architecture at 256x256, same
# client (bench_serve.c, libcurl, keep-alive):
#   - /api/stylize latency p50/p95, one client
#   - throughput with 8 concurrent clients
#   - atelier-serve only: failed requests across 10 hot swaps under 8 clients
#   - the bare forward pass: the shim (bench_train infer) against
#     bench/serve/munit_plain.py, MUNIT + PONO-MS written plainly from the papers
#
# Every figure is taken in BENCH_ROUNDS rounds (default 3) that alternate the
# two sides, so that load from elsewhere on the host drifts into both columns
# alike; each cell is the median over rounds with the min..max spread.
#
#   bench/serve/run.sh                    # ~4 minutes on 2 cores
#   BENCH_THREADS=4 bench/serve/run.sh    # libtorch threads for both sides
#   BENCH_N1=10 BENCH_N8=24 bench/serve/run.sh
#   BENCH_CONFIG='{"image_size":256,"gen_dim":32}' bench/serve/run.sh   # a smaller model
#
# Both sides: same thread count, OMP_WAIT_POLICY=PASSIVE, two warm-up requests
# before timing, the same sketch (drawn by bench_serve). The models are
# untrained exports of the default architecture (weights do not change the
# cost of a forward pass).
set -eu
cd "$(dirname "$0")/../.."

BUILD=${BUILD:-build}
THREADS=${BENCH_THREADS:-$(nproc)}
N1=${BENCH_N1:-10}
N8=${BENCH_N8:-24}
ROUNDS=${BENCH_ROUNDS:-3}
CONFIG=${BENCH_CONFIG:-'{"image_size":256}'}
PY=${PYTHON:-/usr/bin/python3}
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS="$THREADS"

make --no-print-directory BUILD="$BUILD" ${TORCH_PREFIX:+TORCH_PREFIX="$TORCH_PREFIX"} "$BUILD/bin/atelier-serve" \
	"$BUILD/bench/bench_serve" "$BUILD/bench/bench_train" >&2
BENCH="$BUILD/bench/bench_serve"
SERVE="$BUILD/bin/atelier-serve"

TMP=$(mktemp -d)
PIDS=""
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	for p in $PIDS; do wait "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# wait_url FILE: the URL a server printed in FILE ("listening on http://...")
wait_url() {
	i=0
	while [ $i -lt 600 ]; do
		u=$(sed -n 's/.*listening on \(http:\/\/[0-9.]*:[0-9]*\).*/\1/p' "$1" | head -n1)
		[ -n "$u" ] && { echo "$u"; return 0; }
		i=$((i + 1))
		sleep 0.1
	done
	echo "server did not start:" >&2
	cat "$1" >&2
	return 1
}
wait_ok() {
	i=0
	while [ $i -lt 600 ]; do
		curl -sf "$1" >/dev/null 2>&1 && return 0
		i=$((i + 1))
		sleep 0.2
	done
	echo "timed out waiting for $1" >&2
	return 1
}
field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n1 | grep . || echo -; }
row() { printf "%-46s %22s %22s\n" "$1" "$2" "$3"; }

"$SERVE" export-random --out "$TMP/model.am" --config "$CONFIG" >/dev/null

# Both servers run side by side (an idle one costs nothing: OMP_WAIT_POLICY
# is passive) and each figure is taken for one, then the other, so that load
# from elsewhere on the host drifts into both columns alike.
"$SERVE" --port 0 --model-file "$TMP/model.am" --torch-threads "$THREADS" --admin-token bench --rate-stylize 0 \
	--cache "$TMP/cache" --spool "$TMP/spool" >"$TMP/serve.log" 2>&1 &
PIDS="$PIDS $!"
URL=$(wait_url "$TMP/serve.log")
wait_ok "$URL/readyz"
FURL=""
if "$PY" -c 'import flask, torch, PIL' 2>/dev/null; then
	PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	GEN_DIM=$(printf '%s' "$CONFIG" | sed -n 's/.*"gen_dim": *\([0-9]*\).*/\1/p')
	SIZE=$(printf '%s' "$CONFIG" | sed -n 's/.*"image_size": *\([0-9]*\).*/\1/p')
	"$PY" bench/serve/flask_ref.py --port "$PORT" --threads "$THREADS" --gen-dim "${GEN_DIM:-64}" \
		--size "${SIZE:-256}" >"$TMP/flask.log" 2>&1 &
	PIDS="$PIDS $!"
	FURL=$(wait_url "$TMP/flask.log")
	wait_ok "$FURL/healthz"
else
	echo "(flask, torch or PIL missing for $PY: no reference figures; apt-get install python3-flask)" >&2
fi
# side: URL ARGS... -> a bench line, or "-" without a server
side() { u=$1; shift; [ -n "$u" ] && "$BENCH" "$u" "$@" || echo -; }

GEN_DIM=$(printf '%s' "$CONFIG" | sed -n 's/.*"gen_dim": *\([0-9]*\).*/\1/p')
SIZE=$(printf '%s' "$CONFIG" | sed -n 's/.*"image_size": *\([0-9]*\).*/\1/p')
GEN_DIM=${GEN_DIM:-64}
SIZE=${SIZE:-256}
side "$URL" --clients 1 --requests 2 >/dev/null
side "$FURL" --clients 1 --requests 2 >/dev/null
# Rounds: each appends one value per figure and side to $TMP/<figure>.<side>.
add() { printf '%s\n' "$3" >>"$TMP/$1.$2"; }
r=0
while [ $r -lt "$ROUNDS" ]; do
	r=$((r + 1))
	echo "round $r/$ROUNDS: $(uptime)" >&2
	S=$("$BUILD/bench/bench_train" infer "$SIZE" "$GEN_DIM" 3 2>/dev/null || echo -)
	add fwd s "$(field ms_per_image "$S")"
	P=$("$PY" bench/serve/munit_plain.py infer "$SIZE" "$GEN_DIM" 3 2>/dev/null || echo -)
	add fwd f "$(field ms_per_image "$P")"
	S1=$(side "$URL" --clients 1 --requests "$N1")
	F1=$(side "$FURL" --clients 1 --requests "$N1")
	S8=$(side "$URL" --clients 8 --requests "$N8")
	F8=$(side "$FURL" --clients 8 --requests "$N8")
	add p50 s "$(field p50_ms "$S1")"; add p50 f "$(field p50_ms "$F1")"
	add p95 s "$(field p95_ms "$S1")"; add p95 f "$(field p95_ms "$F1")"
	add rps s "$(field rps "$S8")"; add rps f "$(field rps "$F8")"
	add p95x8 s "$(field p95_ms "$S8")"; add p95x8 f "$(field p95_ms "$F8")"
	add fail s "$(field failed "$S1")+$(field failed "$S8")"; add fail f "$(field failed "$F1")+$(field failed "$F8")"
done
# cell FIGURE SIDE: "median (min..max)" over the rounds, "-" without figures
cell() {
	grep -E '^[0-9.]+$' "$TMP/$1.$2" 2>/dev/null | sort -n | awk '{v[NR]=$1} END {
		if (NR == 0) { print "-"; exit }
		printf "%s (%s..%s)\n", v[int((NR + 1) / 2)], v[1], v[NR] }'
}
SW=$("$BENCH" "$URL" --clients 8 --reloads 10 --reload-every-ms 1500 --admin-token bench || true)
SWAPS=$(curl -s "$URL/metrics" | sed -n 's/^atelier_serve_swaps_total //p')

echo "/api/stylize, ${SIZE}x$SIZE sketch in, 512x512 JPEG out; model $CONFIG; libtorch threads=$THREADS; $(nproc) cores"
echo "median (min..max) over $ROUNDS alternating rounds; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
row "figure" "atelier-serve" "flask+pytorch"
row "forward pass, bare (ms; shim vs munit_plain)" "$(cell fwd s)" "$(cell fwd f)"
row "latency p50, 1 client (ms)" "$(cell p50 s)" "$(cell p50 f)"
row "latency p95, 1 client (ms)" "$(cell p95 s)" "$(cell p95 f)"
row "throughput, 8 clients (req/s)" "$(cell rps s)" "$(cell rps f)"
row "latency p95, 8 clients (ms)" "$(cell p95x8 s)" "$(cell p95x8 f)"
row "failed requests, 1 + 8 clients, per round" "$(tr '\n' ' ' <"$TMP/fail.s")" "$(tr '\n' ' ' <"$TMP/fail.f")"
row "hot swaps under 8 clients (ok/failed)" "$(field reloads_ok "$SW")/$(field reloads_failed "$SW")" "n/a"
row "requests during the swaps (ok/failed)" "$(field ok "$SW")/$(field failed "$SW")" "n/a"
row "swaps counted by the node" "$SWAPS" "n/a"
