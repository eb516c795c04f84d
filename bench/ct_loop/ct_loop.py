#!/usr/bin/env python3
"""ct_loop.py: the driver of bench/ct_loop/run.sh (which starts PostgreSQL and
atelierd and passes ATELIER_URL / ATELIER_TOKEN). Standard library only.

For each cycle: upload the cycle's synthetic sketches and paintings
(`atelier synth`, a seed per cycle, so the data grows and never repeats),
start a run of the pipeline, wait for it, and print what the run produced:
wall time, train steps, the holdout metrics of candidate and champion with
their intervals, the paired change of each score against the champion (on the
same sketches and styles) with its interval, per-slice scores, the gate
verdict, and a sample sheet.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

API = os.environ["ATELIER_URL"]
TOKEN = os.environ["ATELIER_TOKEN"]
TERMINAL = {"succeeded", "failed", "cancelled", "skipped"}
# Lower is better for these; the rest are higher-is-better (docs/training.md).
LOWER = {"kid", "content", "recon_l1", "realism_mmd"}


def call(method, path, body=None, ctype="application/json"):
    req = urllib.request.Request(API + path, data=body, method=method)
    req.add_header("Authorization", "Bearer " + TOKEN)
    if body is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {path}: {e.code} {e.read()[:400]!r}")
    except (urllib.error.URLError, OSError, ValueError) as e:
        # the daemon gone, a timeout or a body that is not JSON: one line, not a traceback
        raise SystemExit(f"{method} {path}: {e}")


def value(m):
    """A metric as (value, lo, hi): a number, or {value, lo, hi}."""
    if isinstance(m, dict):
        return m.get("value"), m.get("lo"), m.get("hi")
    return m, None, None


def fmt(m):
    v, lo, hi = value(m)
    if v is None:
        return "-"
    s = f"{v:.4f}"
    if lo is not None and hi is not None:
        s += f" [{lo:.4f}, {hi:.4f}]"
    return s


def metrics_of(block):
    """The metrics of a verdict's candidate/champion block (or of one slice),
    each with its interval where "intervals" gives one: name -> number or
    {value, lo, hi}. Counts (n, outputs) and slices are left out."""
    if not isinstance(block, dict):
        return {}
    m = block.get("metrics", block)
    iv = m.get("intervals") or {}
    out = {}
    for k, v in m.items():
        if k in ("slices", "samples", "intervals", "n", "outputs") or not isinstance(v, (int, float)):
            continue
        if isinstance(iv.get(k), list) and len(iv[k]) == 2:
            v = {"value": v, "lo": iv[k][0], "hi": iv[k][1]}
        out[k] = v
    return out


def better(name, cand, champ):
    c, _, _ = value(cand)
    h, _, _ = value(champ)
    if c is None or h is None:
        return None
    return c < h if name in LOWER else c > h


def wait_run(run_id, limit_s):
    t0 = time.time()
    while time.time() - t0 < limit_s:
        r = call("GET", f"/v1/runs/{run_id}")
        st = r.get("state") or r.get("run", {}).get("state")
        if st in TERMINAL:
            return r, st
        time.sleep(2)
    raise SystemExit(f"run {run_id} did not finish in {limit_s} s")


def jobs_of(run):
    return run.get("jobs") or run.get("run", {}).get("jobs") or []


def main():
    sys.stdout.reconfigure(line_buffering=True)  # a cycle's lines as they come, also into a log file
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--pipeline", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--growth", default="300 300 600")
    ap.add_argument("--size", default="256")
    ap.add_argument("--warm-lr", type=float, default=None,
                    help="a lever: from cycle 2 on, apply the pipeline again with the train stage's lr set to "
                         "this (warm-started cycles fine-tune more gently)")
    a = ap.parse_args()
    cli = os.path.join(a.build, "bin", "atelier")
    env = dict(os.environ)
    with open(a.pipeline, "rb") as f:
        yaml = f.read()
    applied = call("POST", "/v1/pipelines", yaml, "application/yaml")
    # the names the YAML gives: runs go by the pipeline, versions by the model
    pipeline = (applied or {}).get("pipeline") or "sketch2paint"
    m = re.search(rb"^model:\s*([a-z0-9_-]+)", yaml, re.M)
    model = m.group(1).decode() if m else pipeline
    targets_met = True
    for cycle, n in enumerate(int(x) for x in a.growth.split()):
        cycle += 1
        if cycle == 2 and a.warm_lr is not None:
            # the train stage's own lr (six spaces in; the gpu preset's is deeper)
            warm, n_sub = re.subn(rb"^(      lr: )\S+", b"\\g<1>" + repr(a.warm_lr).encode(), yaml, flags=re.M)
            if n_sub != 1:
                raise SystemExit("--warm-lr: the pipeline has no train-stage 'lr:' line to change")
            call("POST", "/v1/pipelines", warm, "application/yaml")
            print(f"cycle 2 on: train lr {a.warm_lr} (--warm-lr)")
        t0 = time.time()
        subprocess.run([cli, "synth", "--count", str(n), "--seed", str(1000 + cycle), "--size", a.size],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        t_data = time.time() - t0
        run_id = call("POST", f"/v1/pipelines/{pipeline}/runs", b"{}")["run"]
        t1 = time.time()
        run, state = wait_run(run_id, 3600)
        wall = time.time() - t1
        print(f"cycle {cycle}: +{n} sketches (upload {t_data:.0f} s), run {run_id} {state} in {wall:.0f} s")
        for j in jobs_of(run):
            res = j.get("result") or {}
            extra = ""
            if j.get("stage") == "train" or j.get("kind") == "train":
                extra = f" steps={res.get('steps')} warm_start={res.get('warm_start')} device={res.get('device')}"
            if res.get("cached_from"):
                extra += f" cached_from={json.dumps(res['cached_from'])}"
            started, finished = j.get("started_at"), j.get("finished_at")
            print(f"  {j.get('stage')}: {j.get('state')}{extra} {started or ''} -> {finished or ''}")
        versions = call("GET", f"/v1/models/{model}/versions")
        versions = versions.get("versions", versions) if isinstance(versions, dict) else versions
        mine = [v for v in versions if v.get("run") == run_id or v.get("run_id") == run_id]
        if not mine:
            print("  no version registered")
            targets_met = False
            continue
        v = mine[0]
        verdict = v.get("verdict") or {}
        cand = metrics_of(verdict.get("candidate") or v.get("metrics", {}).get("holdout"))
        champ = metrics_of(verdict.get("champion"))
        print(f"  version {v.get('version')} vs champion {verdict.get('champion_version')}: "
              f"gate {'passed' if verdict.get('passed') else 'failed'}")
        for name in sorted(cand):
            b = better(name, cand[name], champ.get(name))
            mark = "" if b is None else (" (better)" if b else " (worse)")
            print(f"    {name:14s} candidate {fmt(cand[name]):36s} champion {fmt(champ.get(name)):36s}{mark}")
            if name in ("kid", "content") and b is False:
                targets_met = False
        # the change on the same sketches and styles, with the interval of the
        # per-sketch differences: does it exceed the holdout's sampling noise?
        for name, p in sorted((verdict.get("paired") or {}).items()):
            lo, hi = (p.get("interval") or [None, None])[:2]
            if lo is None or p.get("change") is None:
                continue
            noise = " (within noise)" if lo <= 0 <= hi else ""
            print(f"    change {name:14s} {p['change']:+.4f} [{lo:+.4f}, {hi:+.4f}]{noise}")
        # after the first cycle there is a champion to beat: no comparison is no evidence
        if cycle > 1 and any(better(k, cand.get(k), champ.get(k)) is None for k in ("kid", "content")):
            print("    kid/content: no comparison with the champion")
            targets_met = False
        slices = (verdict.get("candidate") or {}).get("slices") or {}
        cslices = (verdict.get("champion") or {}).get("slices") or {}
        for s in sorted(slices):
            if not isinstance(slices[s], dict) or not slices[s].get("n"):
                continue
            cm, hm = metrics_of(slices[s]), metrics_of(cslices.get(s) if isinstance(cslices, dict) else None)
            print(f"    slice {s} ({slices[s]['n']} sketches):")
            for name in sorted(cm):
                print(f"      {name:12s} candidate {fmt(cm[name]):36s} champion {fmt(hm.get(name))}")
        for r in verdict.get("reasons", []):
            print(f"    gate: {r}")
        sheet = os.path.join(a.out, f"cycle{cycle}_v{v.get('version')}.png")
        p = subprocess.run([cli, "samples", model, str(v.get("version")), "--sheet", sheet], env=env,
                           capture_output=True, text=True)
        print(f"  sheet: {sheet}" if p.returncode == 0 else f"  sheet: failed: {p.stderr.strip()[:200]}")
        if cycle == 1 and wall > 15 * 60:
            print(f"  first cycle took {wall / 60:.1f} min, over 15")
            targets_met = False
    print("targets: " + ("met" if targets_met else "NOT met"))
    return 0 if targets_met else 1


if __name__ == "__main__":
    sys.exit(main())
