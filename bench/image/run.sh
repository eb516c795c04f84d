#!/bin/sh
# bench/image/run.sh — lib/image.c's PNG decoder, encoder and checksums
# against libpng, libspng, zlib and libdeflate on synthetic sketches and
# paintings (no server, no database). N rounds per image (default 20).
#   N=50 bench/image/run.sh
set -eu
cd "$(dirname "$0")/../.."
BUILD=${ATELIER_BUILD:-build}
make --no-print-directory "$BUILD/bench/bench_image" >/dev/null
"$BUILD/bench/bench_image" "${N:-20}"
