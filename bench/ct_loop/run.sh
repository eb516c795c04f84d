#!/bin/sh
# bench/ct_loop/run.sh — three continuous-training cycles of the shipped
# pipeline (pipelines/sketch2paint.yaml, manual triggers only) on the
# synthetic world with growing data: 300 sketches, then +300, then +600
# (CT_LOOP_GROWTH overrides, e.g. "40 40 80" for a quick look), warm start and
# replay as the pipeline says, on this machine's cores. Prints per cycle the
# wall time, steps, every holdout metric with its interval for candidate and
# champion, per-slice results and the gate verdict, and writes a sample sheet
# per version (sketches x styles) into CT_LOOP_OUT (default var/bench/ct_loop).
# Targets (issue 11): each cycle's candidate beats the previous champion on
# kid and content; the first cycle takes at most 15 minutes. Exits 1 when a
# target is missed (the figures are printed either way).
# Levers: CT_LOOP_PIPELINE (another pipeline file, default the shipped one),
# CT_LOOP_ARGS (more ct_loop.py options, e.g. "--warm-lr 0.0001").
set -eu
cd "$(dirname "$0")/../.."
. bench/lib.sh
bench_setup ct_loop
bench_postgres off
out=${CT_LOOP_OUT:-var/bench/ct_loop}
mkdir -p "$out"
token=$("$BUILD/bin/atelierd" token create --role operator)
export OMP_WAIT_POLICY=PASSIVE
bench_atelierd --local-workers 2
# Manual triggers only, so each cycle starts when the bench says; the stages
# are the shipped ones.
sed -e '/^triggers:/,/^stages:/{/^triggers:/!{/^stages:/!d}}' -e 's/^triggers:.*/triggers: { manual: true }/' \
	"${CT_LOOP_PIPELINE:-pipelines/sketch2paint.yaml}" >"$tmp/pipeline.yaml"
ATELIER_URL=$api ATELIER_TOKEN=$token /usr/bin/python3 bench/ct_loop/ct_loop.py \
	--build "$BUILD" --pipeline "$tmp/pipeline.yaml" --out "$out" --growth "${CT_LOOP_GROWTH:-300 300 600}" ${CT_LOOP_ARGS:-}
