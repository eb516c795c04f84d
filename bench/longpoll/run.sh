#!/bin/sh
# bench/longpoll/run.sh — promotion -> N held long-polls notified (N=200), and
# atelierd's RSS with 1,000 held long-polls.
set -eu
cd "$(dirname "$0")/../.."
. bench/lib.sh
bench_setup lp
make --no-print-directory "$BUILD/bench/bench_longpoll" >/dev/null
ulimit -n 8192 2>/dev/null || true
bench_postgres
op=$("$BUILD/bin/atelierd" token create --role operator)
node=$("$BUILD/bin/atelierd" token create --role node)
bench_atelierd
# two registered versions (the train stage's SQL function), version 1 in production
for v in 1 2; do
	sha=$(printf 'model %s' "$v" | sha256sum | cut -d' ' -f1)
	psql "$url" -qAtXc "SELECT atelier_register_version('lp', '$sha', 7, 'fs://x', NULL, NULL, NULL, '{}', '{}', NULL)" >/dev/null
done
psql "$url" -qAtXc "SELECT atelier_move_channel('lp', 'production', (SELECT id FROM model_versions WHERE model = 'lp' AND version = 1), 'bench', NULL, 'promote', NULL)" >/dev/null
"$BUILD/bench/bench_longpoll" "http://127.0.0.1:$port" "$node" "$op" lp "${N:-200}" "$pid"
# 1,000 held polls, for memory
psql "$url" -qAtXc "SELECT atelier_rollback('lp', 'production', 'bench', NULL, 'rollback', NULL)" >/dev/null
"$BUILD/bench/bench_longpoll" "http://127.0.0.1:$port" "$node" "$op" lp 1000 "$pid" | grep -E "held|peak"
