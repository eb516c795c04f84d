#!/bin/sh
# scripts/check-fuzz-list.sh — tests/fuzz/README.md lists every parser and
# its libFuzzer target. Checks that each listed function still exists in its
# file, that each listed target has a source and seeds, and that no target
# is missing from the list. Run by `make test`.
set -eu
cd "$(dirname "$0")/.."
list=tests/fuzz/README.md
status=0
rows=$(grep -E '^\| .* \| `[^`]+`: `[^`]+` \| `fuzz_[a-z0-9_]+` \|$' "$list" |
	sed -E 's/.*\| `([^`]+)`: `([^`]+)` \| `(fuzz_[a-z0-9_]+)` \|$/\1 \2 \3/')
if [ -z "$rows" ]; then
	echo "$list: no parser table found" >&2
	exit 1
fi
listed=""
while read -r file func target; do
	listed="$listed $target"
	if [ ! -f "$file" ] || ! grep -q "\b$func(" "$file"; then
		echo "$list: $func is not defined in $file" >&2
		status=1
	fi
	if [ ! -f "tests/fuzz/$target.c" ] && [ ! -f "tests/fuzz/$target.cpp" ]; then
		echo "$list: $target has no tests/fuzz/$target.c or .cpp" >&2
		status=1
	fi
	if [ -z "$(ls -A "tests/fuzz/seeds/$target" 2>/dev/null)" ]; then
		echo "$list: $target has no seeds in tests/fuzz/seeds/$target/" >&2
		status=1
	fi
done <<ROWS
$rows
ROWS
for src in tests/fuzz/fuzz_*.c tests/fuzz/fuzz_*.cpp; do
	[ -f "$src" ] || continue
	t=$(basename "$src"); t=${t%.*}
	case " $listed " in
	*" $t "*) ;;
	*) echo "$list: $src is not listed" >&2; status=1 ;;
	esac
done
[ $status = 0 ] && echo "fuzz list: $(echo $listed | wc -w) parsers, each with a target and seeds"
exit $status
