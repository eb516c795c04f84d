#!/bin/sh
# bench/gang/run.sh — data-parallel training on this machine: samples/s of one
# process on batch B against two ranks of B/2 each (bench/gang/gang_rank.c,
# Gloo over loopback), and what the group costs per step: all-reduce calls,
# bytes this rank contributes, wall time inside them. Each rank runs one
# libtorch thread, so 2 ranks use 2 cores where 1 process uses 1: on a
# 2-core machine shared with others, expect little gain; the communication
# figures are the point (docs/training.md quotes them).
#
#   bench/gang/run.sh                  # ~20 s (10 steps)
#   BENCH_STEPS=40 BENCH_BATCH=16 bench/gang/run.sh
#   BENCH_CONFIG='{"image_size":64,"gen_dim":16}' bench/gang/run.sh
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
STEPS=${BENCH_STEPS:-10}
BATCH=${BENCH_BATCH:-8}
CONFIG=${BENCH_CONFIG:-'{"image_size":32,"gen_dim":8,"dis_dim":8,"mlp_dim":32,"style_dim":8}'}
make --no-print-directory BUILD="$BUILD" ${TORCH_PREFIX:+TORCH_PREFIX="$TORCH_PREFIX"} "$BUILD/bench/gang_rank" >&2
BIN="$BUILD/bench/gang_rank"
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 GANG_CONFIG="$CONFIG"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir "$tmp/one" "$tmp/two"

"$BIN" 0 1 127.0.0.1 0 127.0.0.1 "$STEPS" "$BATCH" "$tmp/one" >"$tmp/one.out"
"$BIN" 0 2 127.0.0.1 0 127.0.0.1 "$STEPS" $((BATCH / 2)) "$tmp/two" >"$tmp/r0.out" &
r0=$!
"$BIN" 1 2 127.0.0.1 0 127.0.0.1 "$STEPS" $((BATCH / 2)) "$tmp/two" >"$tmp/r1.out"
wait $r0

fig() { awk -v k="$2" '$1 == "samples_per_s" { for (i = 1; i < NF; i += 2) if ($i == k) print $(i + 1) }' "$1"; }
sha0=$(awk '$1 == "sha256" { print $2 }' "$tmp/r0.out")
sha1=$(awk '$1 == "sha256" { print $2 }' "$tmp/r1.out")
echo "config: $CONFIG, $STEPS steps, combined batch $BATCH, 1 libtorch thread per process"
printf '1 process : %8.1f samples/s  %7.1f ms/step\n' "$(fig "$tmp/one.out" samples_per_s)" \
	"$(awk "BEGIN { print $(fig "$tmp/one.out" step_s) * 1000 }")"
printf '2 ranks   : %8.1f samples/s  %7.1f ms/step\n' "$(fig "$tmp/r0.out" samples_per_s)" \
	"$(awk "BEGIN { print $(fig "$tmp/r0.out" step_s) * 1000 }")"
awk -v n="$(fig "$tmp/r0.out" allreduces)" -v b="$(fig "$tmp/r0.out" bytes)" -v s="$(fig "$tmp/r0.out" comm_s)" \
	-v t="$(fig "$tmp/r0.out" step_s)" -v k="$STEPS" 'BEGIN {
	printf "comm/step : %d all-reduces, %.1f KiB from each rank, %.2f ms (%.0f %% of the step; %.1f MB/s)\n",
		n / k, b / k / 1024, s / k * 1000, 100 * s / k / t, b / s / 1e6 }'
[ "$sha0" = "$sha1" ] && echo "ranks' final checkpoints: identical ($sha0)" || { echo "ranks differ!"; exit 1; }
