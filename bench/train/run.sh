#!/bin/sh
# bench/train/run.sh — the model shim against the same MUNIT in PyTorch eager
# mode (munit_ref.py): seconds per training step and peak RSS at 64x64 and
# 128x128 (gen dim 32, dis dim 32, batch 1), inference latency at 128x128 and
# 256x256. Builds build/libatelier_model.a through the top Makefile (so
# TORCH_PREFIX works the same) and links bench_train.c against it.
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

TP=${TORCH_PREFIX:-}
if [ -z "$TP" ]; then
	TORCH_LIBS="-ltorch -ltorch_cpu -lc10"
else
	TORCH_LIBS="-L$TP/lib -Wl,-rpath,$TP/lib -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10"
	[ -e "$TP/lib/libtorch_cuda.so" ] && TORCH_LIBS="$TORCH_LIBS -ltorch_cuda -lc10_cuda"
	TORCH_LIBS="$TORCH_LIBS -Wl,--as-needed"
fi

make --no-print-directory BUILD="$BUILD" ${TP:+TORCH_PREFIX="$TP"} "$BUILD/libatelier_model.a" >&2
mkdir -p "$BUILD/bench"
${CC:-gcc} -std=gnu11 -O2 -g -Wall -Wextra -Werror -Imodels -Ilib -c bench/train/bench_train.c -o "$BUILD/bench/bench_train.o"
# shellcheck disable=SC2086,SC2046
${CXX:-g++} -o "$BUILD/bench/bench_train" "$BUILD/bench/bench_train.o" "$BUILD/libatelier_model.a" $TORCH_LIBS \
	$(pkg-config --libs jansson openssl) -lm -lpthread
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
