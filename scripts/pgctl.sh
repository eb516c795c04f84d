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
#   pgctl.sh passfile DIR       the cluster's password file (libpq's PGPASSFILE)
#
# No `trust`: any local user can reach 127.0.0.1, and the role is a superuser
# (it could mint tokens or run programs as the cluster's owner). The role
# `atelier` gets a random password at initdb, kept in DIR/pgpass (mode 600,
# inside DIR, mode 700) and checked with scram-sha-256 on TCP and on the
# socket alike. The URLs carry no password: clients set PGPASSFILE to
# DIR/pgpass, so it never shows on a command line. A cluster made by an older
# pgctl.sh (trust) gets a password and the same pg_hba.conf at its next start.
#
# PG_LISTEN (default 127.0.0.1) is the address it listens on and the URLs
# name; PG_HBA (a CIDR, e.g. 10.77.0.0/24) also lets that network in, with
# the same scram-sha-256 (tests/hosts/ runs the cluster in a network
# namespace of its own, reached only at its namespace address).
#
# PostgreSQL refuses to run as root, so as root the cluster belongs to the
# `postgres` user and its commands run through runuser.
set -eu
cmd=${1:?usage: pgctl.sh start|stop|url|socket-url|passfile DIR [PORT]}
dir=${2:?usage: pgctl.sh start|stop|url|socket-url|passfile DIR [PORT]}
port=${3:-}
listen=${PG_LISTEN:-127.0.0.1}
bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$bindir/initdb" ] || { echo "pgctl: PostgreSQL server binaries not found (run make deps)" >&2; exit 1; }

as_owner() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# A random password (hex: nothing pgpass or SQL would need to escape).
new_password() {
	od -An -N24 -tx1 /dev/urandom | tr -d ' \n'
}

# DIR/pgpass for password PW, mode 600, owned by the cluster's owner (who runs
# initdb and psql here); root's clients read it as root.
write_pgpass() {
	(umask 077 && printf '*:*:*:atelier:%s\n' "$2" >"$1/pgpass.tmp")
	[ "$(id -u)" = 0 ] && chown postgres:postgres "$1/pgpass.tmp"
	mv "$1/pgpass.tmp" "$1/pgpass"
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
	export PGPASSFILE="$dir/pgpass"
	upgrade=""
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		pw=$(new_password)
		(umask 077 && printf '%s\n' "$pw" >"$dir/initdb.pw")
		[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/initdb.pw"
		as_owner "$bindir/initdb" -D "$dir/data" -U atelier --auth-local=scram-sha-256 \
			--auth-host=scram-sha-256 --pwfile="$dir/initdb.pw" -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
			{ rm -f "$dir/initdb.pw"; cat "$dir/initdb.log" >&2; exit 1; }
		rm -f "$dir/initdb.pw"
		write_pgpass "$dir" "$pw"
	elif [ ! -s "$dir/pgpass" ] || grep -q '^[^#]*[[:space:]]trust[[:space:]]*$' "$dir/data/pg_hba.conf"; then
		upgrade=1 # made with trust: given a password below, once it runs
	fi
	if [ -z "$port" ]; then
		if [ -f "$dir/port" ]; then port=$(cat "$dir/port"); else port=$(free_port); fi
	fi
	echo "$port" >"$dir/port.tmp" && mv "$dir/port.tmp" "$dir/port"
	[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/port"
	if [ -n "${PG_HBA:-}" ] && ! grep -q "^host all all $PG_HBA " "$dir/data/pg_hba.conf"; then
		printf 'host all all %s scram-sha-256\n' "$PG_HBA" | as_owner tee -a "$dir/data/pg_hba.conf" >/dev/null
	fi
	if ! as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		# The socket is the owner's alone (its folder is mode 700 as well).
		opts="-p $port -k $dir -c listen_addresses=$listen -c unix_socket_permissions=0700"
		opts="$opts -c max_connections=200 -c fsync=${PG_FSYNC:-on} -c shared_buffers=128MB"
		as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$opts" \
			start >/dev/null || { tail -20 "$dir/server.log" >&2; exit 1; }
		as_owner "$bindir/psql" -h "$dir" -p "$port" -U atelier -d postgres -qAtc \
			"SELECT 1 FROM pg_database WHERE datname='atelier'" | grep -q 1 ||
			as_owner "$bindir/createdb" -h "$dir" -p "$port" -U atelier atelier
	fi
	if [ -n "$upgrade" ]; then
		# Still trust until the reload; the password goes through stdin
		# (printf is a builtin), not psql's argv.
		pw=$(new_password)
		printf "ALTER ROLE atelier PASSWORD '%s'" "$pw" |
			as_owner "$bindir/psql" -h "$dir" -p "$port" -U atelier -d postgres -qAtX -v ON_ERROR_STOP=1 >/dev/null
		write_pgpass "$dir" "$pw"
		as_owner sed -i '/^[^#]/s/[[:space:]]trust[[:space:]]*$/ scram-sha-256/' "$dir/data/pg_hba.conf"
		as_owner "$bindir/pg_ctl" -D "$dir/data" reload >/dev/null
	fi
	echo "postgresql://atelier@$listen:$port/atelier"
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
passfile)
	echo "$(cd "$dir" && pwd -P)/pgpass"
	;;
*)
	echo "pgctl: unknown command $cmd" >&2
	exit 2
	;;
esac
