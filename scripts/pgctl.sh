#!/bin/sh
# pgctl.sh — a private PostgreSQL cluster in a folder (used by `make run` for
# var/pg and by the test harness for throwaway clusters).
#
#   pgctl.sh start DIR [PORT]   init if needed, start on 127.0.0.1:PORT (free port if omitted),
#                               print the database URL
#   pgctl.sh stop DIR           fast shutdown
#   pgctl.sh url DIR            print the URL of a running cluster
#   pgctl.sh socket-url DIR     the same over its Unix socket (in DIR): cheaper
#                               per round trip for processes on this host
#
# PostgreSQL refuses to run as root, so as root the cluster belongs to the
# `postgres` user and its commands run through runuser.
set -eu
cmd=${1:?usage: pgctl.sh start|stop|url|socket-url DIR [PORT]}
dir=${2:?usage: pgctl.sh start|stop|url|socket-url DIR [PORT]}
port=${3:-}
bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$bindir/initdb" ] || { echo "pgctl: PostgreSQL server binaries not found (run make deps)" >&2; exit 1; }

as_owner() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

case "$cmd" in
start)
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [ "$(id -u)" = 0 ]; then
		chown postgres:postgres "$dir" && chmod 700 "$dir"
		# A folder under a private home (e.g. /root) is out of the postgres
		# user's reach: keep the cluster under /var/lib/atelier and link it.
		if ! runuser -u postgres -- test -w "$dir"; then
			alt=/var/lib/atelier/pg-$(echo "$dir" | cksum | cut -d' ' -f1)
			mkdir -p "$alt" && chown postgres:postgres "$alt" && chmod 700 "$alt"
			rmdir "$dir" 2>/dev/null || true
			[ -L "$dir" ] || ln -s "$alt" "$dir"
			dir=$alt
		fi
	fi
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		as_owner "$bindir/initdb" -D "$dir/data" -U atelier --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
			{ cat "$dir/initdb.log" >&2; exit 1; }
	fi
	if [ -z "$port" ]; then
		if [ -f "$dir/port" ]; then port=$(cat "$dir/port"); else port=$(free_port); fi
	fi
	echo "$port" >"$dir/port.tmp" && mv "$dir/port.tmp" "$dir/port"
	[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/port"
	if ! as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
			-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=${PG_FSYNC:-on} -c shared_buffers=128MB" \
			start >/dev/null || { tail -20 "$dir/server.log" >&2; exit 1; }
		as_owner "$bindir/psql" -h "$dir" -p "$port" -U atelier -d postgres -qAtc \
			"SELECT 1 FROM pg_database WHERE datname='atelier'" | grep -q 1 ||
			as_owner "$bindir/createdb" -h "$dir" -p "$port" -U atelier atelier
	fi
	echo "postgresql://atelier@127.0.0.1:$port/atelier"
	;;
stop)
	[ -d "$dir/data" ] || exit 0
	dir=$(cd "$dir" && pwd -P)
	as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
	;;
url)
	echo "postgresql://atelier@127.0.0.1:$(cat "$dir/port")/atelier"
	;;
socket-url)
	echo "postgresql:///atelier?host=$(cd "$dir" && pwd -P)&port=$(cat "$dir/port")&user=atelier"
	;;
*)
	echo "pgctl: unknown command $cmd" >&2
	exit 2
	;;
esac
