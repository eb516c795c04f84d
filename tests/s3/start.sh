#!/bin/sh
# start.sh HOST PORT DIR [BUCKET...] — run the tests' S3 server: s3rver behind
# the SigV4-verifying front (front.js), bound to HOST:PORT (PORT 0 = any free
# port), objects under DIR, the buckets created (default: atelier). Installs
# the locked packages first (npm ci) when node_modules is missing or stale.
# Prints "s3: ready http://HOST:PORT" once it listens, then runs in the
# foreground until SIGTERM. Credentials: S3_ACCESS_KEY / S3_SECRET_KEY
# (default atelier / atelier-secret), region S3_REGION (default us-east-1).
set -eu
[ $# -ge 3 ] || { echo "usage: $0 HOST PORT DIR [BUCKET...]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
host=$1 port=$2 dir=$3
shift 3
"$here/install.sh" >&2
mkdir -p "$dir"
set -- $(for b in "$@"; do printf -- '--bucket %s ' "$b"; done)
# s3rver's list continuation tokens are DES-encrypted, which OpenSSL 3 keeps
# in its legacy provider: without it a list past 1000 keys answers 500.
exec node --openssl-legacy-provider "$here/front.js" --host "$host" --port "$port" --dir "$dir" "$@"
