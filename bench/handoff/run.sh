#!/bin/sh
# bench/handoff/run.sh — scheduler figures with the real atelierd and workers:
#   stage hand-off: job A completes -> job B of the same run starts on a
#   worker (a 20-stage chain of noop stages, run 5 times; gaps from the jobs
#   table's timestamps);
#   atelierd RSS with 8 local workers and 1,000 runs in flight.
set -eu
cd "$(dirname "$0")/../.."
. bench/lib.sh
bench_setup handoff
bench_postgres on
token=$("$BUILD/bin/atelierd" token create --role operator)
start_daemon() { bench_atelierd --local-workers "$1"; }
post() { curl -fsS -H "Authorization: Bearer $token" -X POST "$@"; }

start_daemon 2
{
	printf 'pipeline: chain\nmodel: none\ntriggers: {manual: true}\nstages:\n  s00: {kind: noop}\n'
	for i in $(seq 1 19); do printf '  s%02d: {kind: noop, needs: [s%02d]}\n' "$i" $((i - 1)); done
} >"$tmp/chain.yaml"
post -H 'Content-Type: application/yaml' --data-binary @"$tmp/chain.yaml" "$api/v1/pipelines" >/dev/null
sleep 1
for r in 1 2 3 4 5; do
	id=$(post "$api/v1/pipelines/chain/runs" | sed -n 's/.*"run":\([0-9]*\).*/\1/p')
	for i in $(seq 1 200); do
		st=$(psql "$url" -qAtXc "SELECT state FROM runs WHERE id = $id")
		[ "$st" = succeeded ] && break
		sleep 0.05
	done
done
echo "handoff: 5 runs x 19 hand-offs (2 local workers, fsync on)"
psql "$url" -qAtX -F ' ' -c "
WITH g AS (
  SELECT extract(epoch FROM b.started_at - a.finished_at) * 1000 AS ms
  FROM jobs a JOIN jobs b ON b.run_id = a.run_id AND b.stage = 's' || lpad((substr(a.stage, 2)::int + 1)::text, 2, '0'))
SELECT 'handoff: p50 ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2) || ' ms, p99 ' ||
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2) || ' ms, max ' || round(max(ms)::numeric, 2) ||
       ' ms over ' || count(*) || ' hand-offs' FROM g"
echo "handoff: whole 20-stage run: $(psql "$url" -qAtXc "SELECT round(avg(extract(epoch FROM finished_at - started_at)) * 1000) FROM runs WHERE pipeline = 'chain'") ms on average"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""

start_daemon 8
# concurrency is at most 64 per pipeline: 20 pipelines x 50 runs = 1,000 runs
for p in $(seq -w 1 20); do
	printf 'pipeline: load%s\nmodel: none\nconcurrency: 50\ntriggers: {manual: true}\nstages:\n  a: {kind: sleep, params: {duration: 120s}}\n' "$p" >"$tmp/load.yaml"
	post -H 'Content-Type: application/yaml' --data-binary @"$tmp/load.yaml" "$api/v1/pipelines" >/dev/null
done
for p in $(seq -w 1 20); do for i in $(seq 1 50); do echo "$p"; done; done |
	xargs -P 8 -I{} curl -fsS -o /dev/null -H "Authorization: Bearer $token" -X POST "$api/v1/pipelines/load{}/runs"
sleep 2
runs=$(psql "$url" -qAtXc "SELECT count(*) FROM runs WHERE pipeline LIKE 'load%' AND state IN ('queued', 'running')")
jobs=$(psql "$url" -qAtXc "SELECT count(*) FILTER (WHERE state = 'running') || ' running, ' || count(*) FILTER (WHERE state = 'queued') || ' queued' FROM jobs WHERE stage = 'a'")
curl -fsS "$api/v1/runs?limit=500" -H "Authorization: Bearer $token" >/dev/null
echo "rss: $runs runs in flight ($jobs jobs), 8 local workers"
echo "rss: atelierd VmRSS $(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/$pid/status), peak $(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' /proc/$pid/status)"
