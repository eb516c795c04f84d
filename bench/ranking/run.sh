#!/bin/sh
# bench/ranking/run.sh — do evaluate's metrics rank a model trained longer?
# The slow form of tests/unit/test_ranking.c (docs/training.md, "Do the
# metrics rank models?"): RANK_STEPS (default 1000) steps for the trained
# model, a tenth for the short one, none for the untrained one, per seed
# (RANK_SEEDS, default "1 4"; RANK_JOBS at a time, default 2, one libtorch
# thread each). Prints each seed's table and the shipped gate's decisions,
# then per metric on how many seeds the trained model beat each other model,
# and writes one sheet per seed (rows: untrained, short, trained; two holdout
# sketches x 4 styles) into RANK_OUT (default var/bench/ranking).
# About 3 minutes per seed on one quiet core. Exits 1 when the gate does not
# rank the trained model first on every seed (the figures print either way).
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
STEPS=${RANK_STEPS:-1000}
SEEDS=${RANK_SEEDS:-1 4}
JOBS=${RANK_JOBS:-2}
out=${RANK_OUT:-var/bench/ranking}
mkdir -p "$out"
make --no-print-directory BUILD="$BUILD" ${TORCH_PREFIX:+TORCH_PREFIX="$TORCH_PREFIX"} "$BUILD/tests/test_ranking" >&2
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 ATELIER_RANK_STEPS="$STEPS" ATELIER_ROOT=$(pwd)
# The unit test's own assertions are meant for its 400 steps: its exit status
# is not the bench's; the figures it prints are.
for s in $SEEDS; do echo "$s"; done |
	xargs -P "$JOBS" -I{} sh -c "ATELIER_RANK_SEED={} ATELIER_RANK_SHEET='$out/seed{}.png' \
		'$BUILD/tests/test_ranking' >'$out/seed{}.txt' 2>&1 || true"
exec /usr/bin/python3 - "$out" $SEEDS <<'PY'
import re, sys
out, seeds = sys.argv[1], sys.argv[2:]
lower = {"content": True, "cont_f1": False, "kid": True, "divers": False, "recon": True}
wins = {m: [0, 0] for m in lower}
gate_ok = 0
for s in seeds:
    text = open("%s/seed%s.txt" % (out, s)).read()
    print("---- seed %s (%s/seed%s.png)" % (s, out, s))
    rows = {}
    for line in text.splitlines():
        if line.startswith(("data ", "model ", "untrained ", "short ", "trained ")):
            print(line)
        elif line.startswith("gate: "):
            # the decision; the reasons name every rule and are in seedN.txt
            print(line.split(" [")[0])
        m = re.match(r"(untrained|short|trained)\s+(\d+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+) \[[^]]*\]\s+([-\d.]+)\s+([-\d.]+)", line)
        if m:
            v = [float(x) for x in m.groups()[2:]]
            rows[m.group(1)] = dict(zip(["content", "cont_f1", "kid", "divers", "recon"], v))
    if len(rows) != 3:
        print("seed %s: no figures (see %s/seed%s.txt)" % (s, out, s))
        continue
    for k, lo in lower.items():
        t = rows["trained"][k]
        for i, other in enumerate(("short", "untrained")):
            o = rows[other][k]
            wins[k][i] += (t < o) if lo else (t > o)
    gate = re.findall(r"gate: (\w+) over (\w+): (promoted|refused)", text)
    want = {("trained", "untrained"): "promoted", ("trained", "short"): "promoted",
            ("untrained", "trained"): "refused", ("short", "trained"): "refused"}
    gate_ok += len(gate) == 4 and all(want[(a, b)] == d for a, b, d in gate)
n = len(seeds)
print("---- %d seeds: on how many the trained model beat" % n)
print("%-8s %9s %12s" % ("metric", "short", "untrained"))
for k in lower:
    print("%-8s %6d/%d %9d/%d" % (k, wins[k][0], n, wins[k][1], n))
print("gate (trained promoted over both, neither over it): %d/%d" % (gate_ok, n))
sys.exit(0 if gate_ok == n else 1)
PY
