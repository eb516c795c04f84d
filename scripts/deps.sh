#!/bin/sh
# Install every Debian package in deps.txt (or the list files given as
# arguments) that is missing. A fast no-op when all are present (one
# dpkg-query per package, no apt call).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
lists=${*:-deps.txt}
want=$(cd "$here" && cat $lists | grep -v '^#' | grep -v '^$')
# What installed packages provide counts as installed: NodeSource's nodejs
# provides (and conflicts with) Debian's npm, which must then not be asked for.
provided=$(dpkg-query -W -f='${Status}|${Provides}\n' 2>/dev/null | sed -n 's/^install ok installed|//p' |
	tr ',' '\n' | sed 's/(.*//; s/ //g' | grep -v '^$' || true)
missing=""
for p in $want; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	*"install ok installed"*) ;;
	*) echo "$provided" | grep -qx "$p" || missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0
echo "deps: installing:$missing"
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages and not root; run: sudo apt-get install$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q -o DPkg::Lock::Timeout=600
apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends $missing
