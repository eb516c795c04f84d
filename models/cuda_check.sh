#!/bin/sh
# models/cuda_check.sh — build the shim and its unit test against a pip
# PyTorch (the CUDA one a GPU host has), run the test on the GPU, then time
# training steps and inference for the shim and bench/train/munit_ref.py on
# CUDA and on the CPU.
#
# Compiles with g++ directly rather than through the Makefile: a GPU host
# may lack the Debian packages the rest of Atelier needs. jansson and
# OpenSSL headers/libraries come from the system when present, else from
# build/cuda_deps (copies carried from a build host: include/, lib/).
#
#   models/cuda_check.sh            # PYTHON=python3, BUILD=build-cuda
set -u
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python3}
B=${BUILD:-build-cuda}
DEPS=build/cuda_deps
mkdir -p "$B"
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0))s] $*"; }

TP=$($PY -c 'import torch,os;print(os.path.dirname(torch.__file__))') || { echo "no PyTorch for $PY"; exit 1; }
ABI=$($PY -c 'import torch;print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
$PY -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
command -v g++ >/dev/null || { echo "no g++ here"; exit 1; }

INC="-Ilib -Imodels -isystem $TP/include -isystem $TP/include/torch/csrc/api/include"
if ! printf '#include <jansson.h>\n#include <openssl/evp.h>\n' | gcc -E -x c - >/dev/null 2>&1; then
	INC="$INC -isystem $DEPS/include"
	echo "using carried jansson/openssl headers"
fi
LIBS=""
for l in jansson:libjansson.so.4 crypto:libcrypto.so.3; do
	name=${l%%:*} file=${l#*:}
	if echo 'int main(void){return 0;}' | gcc -x c - -l"$name" -o "$B/probe" 2>/dev/null; then
		LIBS="$LIBS -l$name"
	else
		LIBS="$LIBS $PWD/$DEPS/lib/$file -Wl,-rpath,$PWD/$DEPS/lib"
		echo "using carried $file"
	fi
done
TLIBS="-L$TP/lib -Wl,-rpath,$TP/lib -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10"
[ -e "$TP/lib/libtorch_cuda.so" ] && TLIBS="$TLIBS -ltorch_cuda -lc10_cuda"
CXXF="-std=gnu++17 -O2 -g0 -D_GNU_SOURCE -D_GLIBCXX_USE_CXX11_ABI=$ABI -w"

stamp "compiling models/*.cpp (ABI $ABI)"
pids=""
for f in models/*.cpp; do
	o="$B/$(basename "$f" .cpp).o"
	# shellcheck disable=SC2086
	(g++ $CXXF $INC -c "$f" -o "$o" 2>"$o.err" || { echo "FAILED $f"; head -c 3000 "$o.err"; }) &
	pids="$pids $!"
done
gcc -std=gnu11 -O2 -Ilib -Imodels -c lib/err.c -o "$B/err.o"
gcc -std=gnu11 -O2 -Ilib -Imodels -c tests/unit/test_model.c -o "$B/test_model.o"
gcc -std=gnu11 -O2 -Ilib -Imodels -c bench/train/bench_train.c -o "$B/bench_train.o"
wait
OBJS=$(ls "$B"/am_*.o "$B"/munit.o)
# shellcheck disable=SC2086
g++ -o "$B/test_model" "$B/test_model.o" $OBJS "$B/err.o" $TLIBS -Wl,--as-needed $LIBS -lm -lpthread || exit 1
# shellcheck disable=SC2086
g++ -o "$B/bench_train" "$B/bench_train.o" $OBJS $TLIBS -Wl,--as-needed $LIBS -lm -lpthread || exit 1
stamp "built"

stamp "unit test (device auto)"
timeout 120 "$B/test_model" 2>&1 | tail -20
stamp "unit test done"

export OMP_WAIT_POLICY=PASSIVE BENCH_THREADS="${BENCH_THREADS:-8}"
export OMP_NUM_THREADS="$BENCH_THREADS"
bench() {
	timeout 60 "$B/bench_train" "$@" 2>&1 | tail -1
	timeout 60 "$PY" bench/train/munit_ref.py "$@" 2>&1 | tail -1
}
if $PY -c 'import torch,sys;sys.exit(0 if torch.cuda.is_available() else 1)'; then
	stamp "CUDA figures"
	export BENCH_DEVICE=cuda
	bench train 128 1 32 32 10
	bench train 256 1 64 64 5
	bench infer 256 32 10
fi
stamp "CPU figures, $BENCH_THREADS threads"
export BENCH_DEVICE=cpu
bench train 128 1 32 32 3
bench infer 256 32 3
stamp "done"
