#!/bin/sh
# deploy/with-secrets.sh — the compose services' entrypoint: every file in
# /run/secrets whose name is an environment variable's (PGPASSWORD,
# ATELIER_NODE_TOKEN, AWS_SECRET_ACCESS_KEY, ...) becomes that variable, then
# the command runs. Compose hands secrets over as files only, and the programs
# read these settings from their environment; this keeps them off every
# command line (any user of the host can read argv in ps). Kubernetes needs no
# such step: its manifests take the same variables from Secrets directly.
set -eu
dir=${ATELIER_SECRETS_DIR:-/run/secrets}
if [ -d "$dir" ]; then
	for f in "$dir"/*; do
		[ -f "$f" ] || continue
		name=$(basename "$f")
		case "$name" in
		[!A-Z]* | *[!A-Z0-9_]*) continue ;;
		esac
		# A trailing newline (echo > file) is not part of the value, nor a
		# carriage return before it (a file written through a terminal).
		val=$(cat "$f")
		val=${val%"$(printf '\r')"}
		export "$name=$val"
	done
fi
exec "$@"
