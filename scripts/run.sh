#!/bin/sh
# scripts/run.sh — `make run`: the whole system on this machine.
#
#   PostgreSQL  embedded cluster under var/pg (unless ATELIER_DATABASE_URL is set)
#   atelierd    API on :${ATELIER_PORT:-8080}, with ${ATELIER_LOCAL_WORKERS:-2} local workers
#   pipeline    pipelines/sketch2paint.yaml applied
#   data        `atelier synth` on the first run (an empty store)
#   serving     atelier-serve on :${ATELIER_SERVE_PORT:-8081}, channel production
#
# Ctrl-C stops everything (serving node, atelierd and its workers, PostgreSQL).
#
# Secrets never go on a command line (any user on the machine can read every
# process's argv in ps): the database password is in var/pg/pgpass (PGPASSFILE),
# tokens are in var/*.token (mode 600) and reach each program through its
# environment (ATELIER_TOKEN, ATELIER_NODE_TOKEN), which only its user can read.
# ATELIER_VAR moves var/ elsewhere (the tests run this script in a temp folder).
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
BUILD=${ATELIER_BUILD:-build}
BIN="$root/$BUILD/bin"
VAR=${ATELIER_VAR:-$root/var}
PORT=${ATELIER_PORT:-8080}
SERVE_PORT=${ATELIER_SERVE_PORT:-8081}
HOST=${ATELIER_HOST:-127.0.0.1}
mkdir -p "$VAR/log" "$VAR/artifacts"

pids=""
embedded=""
stop_all() {
	trap - INT TERM EXIT
	echo
	echo "stopping..."
	for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	[ -n "$embedded" ] && scripts/pgctl.sh stop "$VAR/pg"
	echo "stopped."
}
trap stop_all INT TERM EXIT

if [ -z "${ATELIER_DATABASE_URL:-}" ]; then
	echo "postgres: embedded cluster in var/pg"
	scripts/pgctl.sh start "$VAR/pg" >/dev/null
	# This host's processes use the Unix socket (a cheaper round trip than
	# TCP over loopback: bench/queue measures both); the TCP URL is printed too.
	ATELIER_DATABASE_URL=$(scripts/pgctl.sh socket-url "$VAR/pg")
	tcp_url=$(scripts/pgctl.sh url "$VAR/pg")
	PGPASSFILE=$(scripts/pgctl.sh passfile "$VAR/pg")
	export PGPASSFILE
	embedded=1
fi
export ATELIER_DATABASE_URL
export ATELIER_ARTIFACTS="${ATELIER_ARTIFACTS:-fs://$VAR/artifacts}"
export OMP_WAIT_POLICY=PASSIVE

"$BIN/atelierd" migrate >>"$VAR/log/atelierd.log" 2>&1

# One operator token for this machine, kept (mode 600) so runs can reuse it.
tokfile="$VAR/operator.token"
if [ ! -s "$tokfile" ]; then
	(umask 077 && "$BIN/atelierd" token create --role operator --name make-run >"$tokfile")
fi
# Only the CLI gets it (not atelierd, its workers or the serving node).
optok=$(cat "$tokfile")
export ATELIER_URL="http://$HOST:$PORT"
cli() { ATELIER_TOKEN=$optok "$BIN/atelier" "$@"; }

"$BIN/atelierd" --host "$HOST" --port "$PORT" --local-workers "${ATELIER_LOCAL_WORKERS:-2}" \
	>>"$VAR/log/atelierd.log" 2>&1 &
pids="$!"
for i in $(seq 1 100); do
	curl -fsS "$ATELIER_URL/readyz" >/dev/null 2>&1 && break
	sleep 0.2
done
curl -fsS "$ATELIER_URL/readyz" >/dev/null || { echo "atelierd did not come up; see var/log/atelierd.log"; exit 1; }

cli apply -f pipelines/sketch2paint.yaml

# curl reads the header from stdin (-K -; printf is a builtin): not in argv.
count=$(printf 'header = "Authorization: Bearer %s"\n' "$optok" |
	curl -fsS -K - "$ATELIER_URL/v1/sketches/1" >/dev/null 2>&1 && echo some || echo none)
if [ "$count" = none ]; then
	echo "data: generating the synthetic sketch/painting set (first run)"
	cli synth --count "${ATELIER_SYNTH_COUNT:-400}" --size 256
fi

serve_line=""
if [ -x "$BIN/atelier-serve" ]; then
	nodetok_file="$VAR/node.token"
	if [ ! -s "$nodetok_file" ]; then
		(umask 077 && "$BIN/atelierd" token create --role node --name local-node >"$nodetok_file")
	fi
	ATELIER_NODE_TOKEN=$(cat "$nodetok_file") "$BIN/atelier-serve" --host "$HOST" --port "$SERVE_PORT" \
		--atelierd "$ATELIER_URL" --model sketch2paint --channel production --name local-node \
		--cache "$VAR/serve-cache" --spool "$VAR/spool" >>"$VAR/log/serve.log" 2>&1 &
	pids="$pids $!"
	serve_line="  drawing page   http://$HOST:$SERVE_PORT/
  stylize API    POST http://$HOST:$SERVE_PORT/api/stylize"
fi

# The first cycle: if uploading the data did not already trigger a run
# (new_sketches), start one now rather than waiting.
if ! cli --json runs --pipeline sketch2paint --limit 1 2>/dev/null | grep -q '"run_id"'; then
	cli run sketch2paint >/dev/null 2>&1 || true
fi

cat <<EOF

Atelier is up.
$serve_line
  API            $ATELIER_URL   (routes: $ATELIER_URL/v1/openapi.json)
  metrics        $ATELIER_URL/metrics
  runs           ATELIER_URL=$ATELIER_URL ATELIER_TOKEN=\$(cat var/operator.token) $BUILD/bin/atelier runs --watch
  database       $ATELIER_DATABASE_URL${tcp_url:+
                 $tcp_url
                 password: PGPASSFILE=$PGPASSFILE}
  operator token $optok   (in var/operator.token)
  logs           var/log/

Ctrl-C stops everything.
EOF
wait
