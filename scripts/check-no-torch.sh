#!/bin/sh
# scripts/check-no-torch.sh [BUILD|none] — programs that do not run the model must
# not load libtorch (about 1 s and 160 MB at start, STYLE.md): checks the
# NEEDED entries of the node's spool unit test ($BUILD/tests/test_serve_spool,
# linked like every unit test with libtorch on the line and --as-needed) and
# of every libFuzzer target in build-fuzz/ (their rules link no libtorch;
# checked when `make fuzz-bins` built them). Run by `make test`, and by
# `make fuzz-bins` with "none" (the fuzz targets only).
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
status=0
checked=0
check() {
	needed=$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
	torch=$(echo "$needed" | grep -E '^lib(torch|c10)' || true)
	if [ -n "$torch" ]; then
		echo "$1 links libtorch: $(echo $torch)" >&2
		status=1
	fi
	checked=$((checked + 1))
}
if [ "$build" != none ]; then
	if [ ! -x "$build/tests/test_serve_spool" ]; then
		echo "$build/tests/test_serve_spool is missing (make all builds it)" >&2
		exit 1
	fi
	check "$build/tests/test_serve_spool"
fi
fuzz=0
for f in build-fuzz/fuzz/fuzz_*; do
	[ -x "$f" ] || continue
	check "$f"
	fuzz=$((fuzz + 1))
done
[ $fuzz -gt 0 ] || echo "no-torch: no fuzz targets in build-fuzz/ to check (make fuzz-bins builds them)"
[ $status = 0 ] && echo "no-torch: $checked programs link no libtorch"
exit $status
