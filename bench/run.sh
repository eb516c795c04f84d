#!/bin/sh
# bench/run.sh — `make bench`: every benchmark, each printing its figures.
# Each runs against its own throwaway PostgreSQL cluster and is bounded.
set -u
cd "$(dirname "$0")/.."
status=0
for b in image ingest queue handoff longpoll gallery train gang serve ranking ct_loop; do
	[ -x "bench/$b/run.sh" ] || continue
	echo "==== bench/$b ===="
	"bench/$b/run.sh" || { echo "bench/$b failed"; status=1; }
	echo
done
exit $status
