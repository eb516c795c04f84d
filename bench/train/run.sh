#!/bin/sh
# bench/train/run.sh — the model shim against the same MUNIT in PyTorch eager
# mode (munit_ref.py): seconds per training step and peak RSS at 64x64 and
# 128x128 (gen dim 32, dis dim 32, batch 1), inference latency at 128x128 and
# 256x256. bench_train.c is built by the top Makefile ($BUILD/bench/bench_train,
# so TORCH_PREFIX works the same).
#
#   bench/train/run.sh                 # all figures, < 3 minutes on 2 cores
#   BENCH_THREADS=4 bench/train/run.sh # thread count for both sides
#   BENCH_STEPS=10 bench/train/run.sh  # timed steps per training figure
#   BENCH_DEVICE=cpu bench/train/run.sh # auto (cuda when seen), cpu or cuda
#
# Both sides: same thread count, OMP_WAIT_POLICY=PASSIVE, one warm-up step
# or image before timing, one process per figure (peak RSS is per process).
set -eu
cd "$(dirname "$0")/../.."

BUILD=${BUILD:-build}
THREADS=${BENCH_THREADS:-$(nproc)}
STEPS=${BENCH_STEPS:-4}
RUNS=${BENCH_RUNS:-5}
PY=${PYTHON:-/usr/bin/python3}
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS="$THREADS" BENCH_THREADS="$THREADS"

# Built by the Makefile (with `make`), so TORCH_PREFIX works as it does there.
make --no-print-directory BUILD="$BUILD" ${TORCH_PREFIX:+TORCH_PREFIX="$TORCH_PREFIX"} "$BUILD/bench/bench_train" >&2
BIN="$BUILD/bench/bench_train"

have_py=1
"$PY" -c 'import torch' 2>/dev/null || have_py=0

# field KEY LINE: the value of KEY=... in a key=value line ("-" when absent).
field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n1 | grep . || echo -; }

row() { printf '%-34s %12s %12s\n' "$1" "$2" "$3"; }

echo "model shim vs PyTorch eager: threads=$THREADS device=${BENCH_DEVICE:-auto} ($(nproc) cores here)"
row "figure" "shim" "pytorch"
for spec in "train 64 1 32 32 $STEPS" "train 128 1 32 32 $STEPS" "infer 128 32 $RUNS" "infer 256 32 $RUNS"; do
	# shellcheck disable=SC2086
	set -- $spec
	a=$($BIN "$@")
	b=-
	# shellcheck disable=SC2086
	[ $have_py = 1 ] && b=$("$PY" bench/train/munit_ref.py "$@")
	if [ "$1" = train ]; then
		row "train ${2}x${2} b$3 g$4 d$5 s/step" "$(field s_per_step "$a")" "$(field s_per_step "$b")"
		row "train ${2}x${2} b$3 g$4 d$5 peak MB" "$(field peak_rss_mb "$a")" "$(field peak_rss_mb "$b")"
	else
		row "infer ${2}x${2} g$3 ms/image" "$(field ms_per_image "$a")" "$(field ms_per_image "$b")"
	fi
done
