#!/bin/sh
# install.sh — npm ci the harness's locked packages once (again when the lock
# changed). Quiet when nothing is to be done.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
stamp="$here/node_modules/.atelier-lock.sha256"
want=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
[ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && exit 0
for tool in node npm; do
	command -v $tool >/dev/null || { echo "$tool is not installed (Debian package nodejs)" >&2; exit 1; }
done
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
echo "$want" >"$stamp"
