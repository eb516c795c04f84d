#!/bin/sh
# bench/queue/workers.sh — claim->complete throughput of the real
# atelier-worker binary (test.noop jobs), as "NxC": N worker processes with
# --concurrency C each. Called by run.sh with the bench database's URL.
#
# The rate is the jobs' own span in the database: N jobs over
# max(finished_at) - min(started_at), so process start-up is not counted.
# The table is not ANALYZEd first: the claim's plan must not need statistics
# (lib/queue.c, session_settings).
#
# usage: workers.sh URL JOBS SPEC...   e.g. workers.sh "$url" 20000 1x1 1x4 4x1 8x1
set -eu
url=$1
jobs=$2
shift 2
BIN=${ATELIER_BUILD:-build}/bin

# wait_for SECONDS WHAT SQL VALUE: poll until SQL answers VALUE (every 0.5 s:
# each psql costs CPU the bench needs); after SECONDS, stop the workers, fail.
wait_for() {
	deadline=$(($(date +%s) + $1))
	until [ "$(psql "$url" -qAtXc "$3")" = "$4" ]; do
		if [ "$(date +%s)" -gt "$deadline" ]; then
			echo "workers $spec: $2 not within $1 s" >&2
			kill $pids 2>/dev/null || true
			exit 1
		fi
		sleep 0.5
	done
}

for spec in "$@"; do
	n=${spec%x*}
	c=${spec#*x}
	psql "$url" -qAtX -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET client_min_messages = warning;
TRUNCATE jobs CASCADE;
DELETE FROM workers;
SQL
	# Start the workers and wait until every one is connected (a process
	# linking libtorch takes a good fraction of a CPU-second to start), then
	# queue the jobs: the span measures the queue, not process start-up.
	pids=""
	i=0
	while [ "$i" -lt "$n" ]; do
		ATELIER_LOG_LEVEL=warn "$BIN/atelier-worker" --database-url "$url" --name "bench-$i" \
			--kinds test.noop --concurrency "$c" --poll 1 --no-reap >/dev/null 2>&1 &
		pids="$pids $!"
		i=$((i + 1))
	done
	wait_for 30 "every worker connected" "SELECT count(*) FROM workers" "$n"
	sleep 0.5 # every slot connected, not just the first
	psql "$url" -qAtXc "INSERT INTO jobs (kind) SELECT 'test.noop' FROM generate_series(1, $jobs)" >/dev/null
	wait_for 60 "every job done" "SELECT count(*) FROM jobs WHERE state = 'succeeded'" "$jobs"
	kill $pids 2>/dev/null || true
	wait $pids 2>/dev/null || true
	psql "$url" -qAtX -c "SELECT format('atelier-worker  %s x --concurrency %s  jobs=%s  span=%ss  %s jobs/s (claim->complete, the real binary)',
		'$n', '$c', count(*), round(extract(epoch FROM max(finished_at) - min(started_at))::numeric, 2),
		round(count(*) / extract(epoch FROM max(finished_at) - min(started_at))))
		FROM jobs WHERE state = 'succeeded'"
done
