"""The training stages (collect, prepare, train, evaluate) with real
atelier-worker processes, a real atelierd (ingest, pipelines) and synthetic
data uploaded through the API (`atelier synth`). One database and one data
set for the module; each test adds the rows it needs.

Shard files are read straight from the fs:// artifact store (format in
workers/dataset.h and docs/training.md)."""
import hashlib
import json
import os
import signal
import struct
import subprocess
import tempfile
import time

import pytest

import images
from conftest import BIN, Proc, wait_until
from daemon import start_atelierd

WORKER = os.path.join(BIN, "atelier-worker")
pytestmark = pytest.mark.skipif(not os.path.exists(WORKER), reason="atelier-worker not built")

KINDS = "collect,prepare,train,evaluate"
STAGE_KINDS = ("collect", "prepare", "train", "evaluate", "promote")
# A model small enough that a step takes milliseconds on one core.
TINY = {"gen_dim": 4, "dis_dim": 4, "style_dim": 2, "n_res": 1, "n_downsample": 1, "mlp_dim": 8,
        "num_scales": 1, "n_layer": 2}
TERMINAL = ("succeeded", "failed", "cancelled")


class Env:
    def __init__(self, pg, url, daemon):
        self.pg = pg
        self.url = url
        self.d = daemon
        self.artifacts = daemon.artifacts
        self.procs = []
        self.state = {}

    def sql(self, q):
        return self.pg.psql(q, self.url)

    def worker(self, name, *args, extra_env=None):
        env = dict(os.environ, ATELIER_LOG_LEVEL="info", ATELIER_ARTIFACTS="fs://" + self.artifacts,
                   ATELIER_TRAIN_THREADS="1", OMP_WAIT_POLICY="PASSIVE", ATELIER_DEVICE="cpu")
        env.update(extra_env or {})
        p = Proc([WORKER, "--database-url", self.url, "--name", name, "--kinds", KINDS, "--poll", "0.2"]
                 + list(args), env=env)
        self.procs.append(p)
        return p

    def stage_params(self, kind, params):
        """params as a pipeline stage of this kind gets them: applied through atelierd, which checks them
        and fills in every default (workers/params.h: the workers keep none of their own)."""
        text = json.dumps(params, sort_keys=True)
        name = "params-%s-%s" % (kind, hashlib.sha256(text.encode()).hexdigest()[:12])
        yaml = "pipeline: %s\nmodel: tiny-t\nstages:\n  s:\n    kind: %s\n    params: %s\n" % (name, kind, text)
        r = self.d.api.post("/v1/pipelines", {"yaml": yaml})
        assert r.status in (200, 201), r
        return json.loads(self.sql("SELECT parsed->'stages'->'s'->'params' FROM pipeline_versions WHERE id = %d"
                                   % r.json()["version_id"]))

    def enqueue(self, kind, payload, **kw):
        if kind in STAGE_KINDS and "params" in payload:
            payload = dict(payload, params=self.stage_params(kind, payload["params"]))
        args = ["kind => '%s'" % kind, "payload => '%s'::jsonb" % json.dumps(payload).replace("'", "''")]
        args += ["%s => %s" % (k, v) for k, v in kw.items()]
        return int(self.sql("SELECT atelier_enqueue(%s)" % ", ".join(args)))

    def wait_job(self, job, timeout=60):
        def done():
            row = self.sql("SELECT state FROM jobs WHERE id = %d" % job)
            return row if row in TERMINAL else None
        wait_until(done, timeout=timeout, interval=0.1, what="job %d to finish" % job)
        row = self.sql("SELECT json_build_object('state', state, 'attempts', attempts, 'result', result,"
                       " 'error', error) FROM jobs WHERE id = %d" % job)
        return json.loads(row)

    def run_job(self, kind, payload, want="succeeded", timeout=60):
        j = self.wait_job(self.enqueue(kind, payload), timeout)
        assert j["state"] == want, j
        return j

    def prepared(self, size=32):
        """collect + prepare of the data as it is now, once per size."""
        key = "prepared%d" % size
        if key not in self.state:
            col = self.run_job("collect", collect_params())["result"]
            self.state[key] = self.run_job("prepare", {"params": {"size": size, "augment": {"flip": True}},
                                                       "inputs": {"collect": col}})["result"]
        return self.state[key]

    def shard(self, sha):
        with open(os.path.join(self.artifacts, "sha256", sha[:2], sha), "rb") as f:
            return read_shard(f.read())


def read_shard(b):
    assert b[:8] == b"ATLRSHRD"
    ver, size, ns, np_ = struct.unpack("<IIII", b[8:24])
    assert ver == 1
    ss = size * size
    off = 32
    sketches = [b[off + i * ss: off + (i + 1) * ss] for i in range(ns)]
    off += ns * ss
    paintings = [b[off + i * 3 * ss: off + (i + 1) * 3 * ss] for i in range(np_)]
    off += np_ * 3 * ss
    sflags, pflags = b[off: off + ns], b[off + ns: off + ns + np_]
    off += ns + np_
    ids = struct.unpack("<%dq" % (ns + np_), b[off:])
    assert off + 8 * (ns + np_) == len(b)
    return {"size": size, "sketches": sketches, "paintings": paintings, "sketch_flags": sflags,
            "painting_flags": pflags, "sketch_ids": ids[:ns], "painting_ids": ids[ns:]}


def ink(gray):
    return sum(1 for v in gray if v < 128) / len(gray)


def photo_png(size=48):
    """A photo-like image: a sky-to-ground gradient, a dark disc and a box."""
    def px(x, y):
        if (x - 30) ** 2 + (y - 20) ** 2 <= 81:
            return (150, 30, 40)
        if 6 <= x <= 18 and 26 <= y <= 40:
            return (40, 60, 150)
        g = 120 + y * 2
        return (g // 2, g // 2 + 20, min(g, 220))
    return images.png(size, size, px, channels=3)


@pytest.fixture(scope="module")
def env(pg):
    url = pg.new_database("training")
    d = start_atelierd(url, "--tick-ms", "200", env={"ATELIER_HOLDOUT_FRACTION": "0.3"})
    token = d.token("operator")
    d.api = d.http(token)
    out = subprocess.run([os.path.join(BIN, "atelier"), "--json", "synth", "--count", "30", "--size", "32"],
                         env=dict(os.environ, ATELIER_URL=d.url, ATELIER_TOKEN=token),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out
    e = Env(pg, url, d)
    e.worker("w1")
    yield e
    for p in e.procs:
        p.kill()
        p.p.wait()
    d.stop()


def collect_params(**kw):
    p = {"min_sketches": 1, "min_paintings": 1, "max_items": 1000}
    p.update(kw)
    return {"params": p, "model": "tiny-t", "stage": "collect"}


def test_collect_freezes_accepted_training_images_only(env):
    counts = env.sql("SELECT count(*) FILTER (WHERE split = 'train'), count(*) FILTER (WHERE split = 'holdout')"
                     " FROM images WHERE domain = 'sketch'").split("|")
    assert int(counts[0]) >= 6 and int(counts[1]) >= 2, counts
    # some training sketches rejected or deleted after ingest
    env.sql("UPDATE images SET status = 'rejected' WHERE id IN (SELECT id FROM images WHERE domain = 'sketch'"
            " AND split = 'train' ORDER BY id LIMIT 2)")
    env.sql("UPDATE images SET status = 'deleted' WHERE id IN (SELECT id FROM images WHERE domain = 'sketch'"
            " AND split = 'train' AND status = 'accepted' ORDER BY id LIMIT 1)")
    r1 = env.run_job("collect", collect_params())["result"]
    ds = r1["dataset"]
    bad = env.sql("SELECT count(*) FROM dataset_members m JOIN images i ON i.id = m.image_id"
                  " WHERE m.dataset_id = %d AND (i.split <> 'train' OR i.status <> 'accepted')" % ds)
    assert bad == "0"
    want = env.sql("SELECT count(*) FILTER (WHERE domain = 'sketch'), count(*) FILTER (WHERE domain = 'painting')"
                   " FROM images WHERE split = 'train' AND status = 'accepted'").split("|")
    assert [r1["sketches"], r1["paintings"]] == [int(want[0]), int(want[1])], r1
    assert env.sql("SELECT count(*) FROM dataset_members WHERE dataset_id = %d" % ds) == \
        str(r1["sketches"] + r1["paintings"])
    # the holdout is frozen beside it, and only holdout images are in it
    assert r1["holdout"]["sketches"] >= 1
    assert env.sql("SELECT count(*) FROM dataset_holdout h JOIN images i ON i.id = h.image_id"
                   " WHERE h.dataset_id = %d AND (i.split <> 'holdout' OR i.status <> 'accepted')" % ds) == "0"
    row = env.sql("SELECT manifest_sha256, sketches, paintings, params->>'job' FROM datasets WHERE id = %d" % ds)
    assert row.split("|")[:3] == [r1["manifest_sha256"], str(r1["sketches"]), str(r1["paintings"])]
    # the same job run again (as after a lost completion) returns its dataset, freezing no second one
    job = int(env.sql("SELECT id FROM jobs WHERE kind = 'collect' ORDER BY id DESC LIMIT 1"))
    n = env.sql("SELECT count(*) FROM datasets")
    # (made queued by hand: lower the queue floor too, as docs/queue.md says)
    env.sql("UPDATE jobs SET state = 'queued', result = NULL, finished_at = NULL, run_after = now() WHERE id = %d;"
            " SELECT atelier_queue_floor_lower(priority, id) FROM jobs WHERE id = %d" % (job, job))
    env.sql("NOTIFY atelier_jobs, 'collect'")
    again = env.wait_job(job)
    assert again["state"] == "succeeded" and again["attempts"] == 2, again
    assert again["result"] == r1 and env.sql("SELECT count(*) FROM datasets") == n
    # the same data frozen again: a new dataset, the same manifest
    r2 = env.run_job("collect", collect_params())["result"]
    assert r2["dataset"] != ds and r2["manifest_sha256"] == r1["manifest_sha256"]
    # max_items keeps the newest
    r3 = env.run_job("collect", collect_params(max_items=2))["result"]
    newest = env.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM (SELECT id FROM images WHERE domain ="
                     " 'sketch' AND split = 'train' AND status = 'accepted' ORDER BY id DESC LIMIT 2) x")
    got = env.sql("SELECT string_agg(m.image_id::text, ',' ORDER BY m.image_id) FROM dataset_members m JOIN images i"
                  " ON i.id = m.image_id WHERE m.dataset_id = %d AND i.domain = 'sketch'" % r3["dataset"])
    assert r3["sketches"] == 2 and got == newest and r3["manifest_sha256"] != r1["manifest_sha256"]
    # too little data: fails at once, no retry
    j = env.run_job("collect", collect_params(min_sketches=100000, max_items=100000), want="failed")
    assert j["attempts"] == 1 and "not enough training data" in j["error"], j


def test_prepare_drops_blank_and_extracts_photo_sketches(env):
    blank = images.png(32, 32, lambda x, y: 255).hex()
    blank_id = int(env.sql(
        "INSERT INTO images (domain, sha256, width, height, channels, png, ink_ratio, split, status, source)"
        " VALUES ('sketch', sha256('blank-test'::bytea), 32, 32, 1, '\\x%s'::bytea, 0, 'train', 'accepted', 'test')"
        " RETURNING id" % blank))
    photo_id = int(env.sql(
        "INSERT INTO images (domain, sha256, width, height, channels, png, ink_ratio, split, status, source)"
        " VALUES ('painting', sha256('photo-test'::bytea), 48, 48, 3, '\\x%s'::bytea, 0.5, 'train', 'accepted',"
        " 'photo') RETURNING id" % photo_png().hex()))
    col = env.run_job("collect", collect_params())["result"]
    t0 = time.time()
    payload = {"params": {"size": 32, "augment": {"flip": True, "jitter": 0.1},
                          "photo_to_sketch": {"blur_sigma": 1.0, "canny_low": 0.1, "canny_high": 0.3, "dilate": 1,
                                              "min_ink": 0.01}},
               "inputs": {"collect": col}}
    j = env.run_job("prepare", payload)
    res = j["result"]
    prep_s = time.time() - t0
    assert res["dropped_blank"] >= 1 and res["photos"] == 1, res
    assert res["augmented"] == res["source_sketches"] + res["source_paintings"], res
    train = env.shard(res["train_shard"])
    assert train["size"] == 32
    assert len(train["sketches"]) == res["sketches"] and len(train["paintings"]) == res["paintings"]
    assert blank_id not in train["sketch_ids"]
    rejected = [int(x) for x in env.sql("SELECT id FROM images WHERE status <> 'accepted'").split()]
    assert not set(rejected) & set(train["sketch_ids"])
    # the photo became sketch samples (never a painting), with real lines
    photo = [i for i, f in enumerate(train["sketch_flags"]) if f & 1]
    assert photo and all(train["sketch_ids"][i] == photo_id for i in photo)
    assert photo_id not in train["painting_ids"]
    for i in photo:
        assert 0.002 < ink(train["sketches"][i]) < 0.6, ink(train["sketches"][i])
    # every kept drawn sketch has ink; augmented copies are flagged
    assert all(ink(s) >= 0.002 for s in train["sketches"])
    assert sum(1 for f in train["sketch_flags"] if f & 2) >= 1
    hold = env.shard(res["holdout_shard"])
    assert len(hold["sketches"]) == res["holdout_sketches"] >= 1
    assert not set(hold["sketch_ids"]) & set(train["sketch_ids"])
    # the same dataset prepared again gives the same bytes
    again = env.run_job("prepare", payload)["result"]
    assert again["train_shard"] == res["train_shard"] and again["holdout_shard"] == res["holdout_shard"]
    print("prepare: %.1f s" % prep_s)


def train_payload(prepared, steps, **kw):
    p = {"steps": steps, "batch": 2, "checkpoint_every": 10, "metrics_every": 1, "warm_start": "scratch",
         "lr": 0.002, "seed": 3, "model": TINY}
    p.update(kw)
    return {"params": p, "model": "tiny-t", "stage": "train", "inputs": {"prepare": prepared}}


def test_train_loss_falls_and_registers_a_version(env):
    t0 = time.time()
    prepared = env.prepared()
    t0 = time.time()
    j = env.run_job("train", train_payload(prepared, 24), timeout=120)
    elapsed = time.time() - t0
    res = j["result"]
    assert res["steps"] == 24 and res["parent_version"] is None and res["resumed_from_step"] is None, res
    # losses were streamed every step
    series = env.sql("SELECT string_agg(value::text, ',' ORDER BY step) FROM metrics WHERE job_id = (SELECT id FROM"
                     " jobs WHERE kind = 'train' ORDER BY id DESC LIMIT 1) AND name = 'recon_x_b'")
    vals = [float(x) for x in series.split(",")]
    assert len(vals) == 24
    first, last = sum(vals[:5]) / 5, sum(vals[-5:]) / 5
    assert last < first, (first, last, vals)
    # checkpoints on the way, the export registered as a version of the dataset
    assert env.sql("SELECT string_agg(step::text, ',' ORDER BY step) FROM train_checkpoints WHERE job_id = (SELECT id"
                   " FROM jobs WHERE kind = 'train' ORDER BY id DESC LIMIT 1)") == "10,20"
    row = env.sql("SELECT version, sha256, size, dataset_id, parent_version_id IS NULL FROM model_versions"
                  " WHERE id = %d" % res["version_id"]).split("|")
    assert row == [str(res["version"]), res["sha256"], str(res["size"]), str(prepared["dataset"]), "t"]
    assert os.path.getsize(os.path.join(env.artifacts, "sha256", res["sha256"][:2], res["sha256"])) == res["size"]
    print("train 24 steps: %.1f s" % elapsed)


def test_train_resumes_after_kill9(env):
    STEPS = 60
    prepared = env.prepared(16)
    # a dedicated worker with a short lease; the module's worker must not take the job
    env.procs[0].stop()
    a = env.worker("resume-a", "--lease", "2")
    job = env.enqueue("train", train_payload(prepared, STEPS, checkpoint_every=5, seed=4, batch=1), backoff_s=0.2)
    wait_until(lambda: env.sql("SELECT coalesce(max(step), 0) FROM train_checkpoints WHERE job_id = %d" % job)
               not in ("0", ""), timeout=60, interval=0.02, what="a first checkpoint")
    a.kill(signal.SIGKILL)
    a.p.wait()
    assert env.sql("SELECT state FROM jobs WHERE id = %d" % job) == "running"
    k = int(env.sql("SELECT max(step) FROM train_checkpoints WHERE job_id = %d" % job))
    t_kill = time.time()
    b = env.worker("resume-b", "--lease", "2")
    j = env.wait_job(job, timeout=150)
    print("resume: killed at checkpoint %d, the rest took %.1f s" % (k, time.time() - t_kill))
    assert j["state"] == "succeeded" and j["attempts"] == 2, j
    assert j["result"]["resumed_from_step"] == k and j["result"]["steps"] == STEPS, j["result"]
    assert "resumed from step %d" % k in b.log()
    # no step up to the checkpoint ran twice; every step was reported
    dup = env.sql("SELECT count(*) FROM (SELECT step FROM metrics WHERE job_id = %d AND name = 'loss_gen'"
                  " AND step <= %d GROUP BY step HAVING count(*) > 1) x" % (job, k))
    assert dup == "0"
    assert env.sql("SELECT count(DISTINCT step) FROM metrics WHERE job_id = %d AND name = 'loss_gen'" % job) == str(STEPS)
    b.stop()
    env.worker("w2")


def test_train_gpu_preset_replaces_params_on_a_gpu_worker(env):
    """params.gpu is ignored on a CPU worker and replaces the stage's params (model keys one by one) on a
    worker that trains on CUDA; ATELIER_TRAIN_PRESET=gpu reaches that path on this CPU-only host."""
    prepared = env.prepared()
    gpu = {"steps": 5, "batch": 1, "model": {"gen_dim": 6}}
    cpu = env.run_job("train", train_payload(prepared, 3, gpu=gpu), timeout=120)["result"]
    assert cpu["preset"] == "cpu" and cpu["steps"] == 3 and cpu["config"]["gen_dim"] == TINY["gen_dim"], cpu
    for p in env.procs:
        p.stop()
    w = env.worker("gpu-preset", extra_env={"ATELIER_TRAIN_PRESET": "gpu"})
    try:
        res = env.run_job("train", train_payload(prepared, 3, gpu=gpu), timeout=120)["result"]
    finally:
        w.stop()
        env.worker("w3")
    assert res["preset"] == "gpu" and res["steps"] == 5, res
    # the preset's model key replaced its own; the others stayed the stage's
    assert res["config"]["gen_dim"] == 6 and res["config"]["style_dim"] == TINY["style_dim"], res["config"]


def pipeline(name, gate, extra=""):
    return """pipeline: %s
model: tiny-t
triggers: {manual: true}
stages:
  collect:
    params: {min_sketches: 1, min_paintings: 1, max_items: 64}
  prepare:
    needs: [collect]
    params: {size: 32, augment: {flip: true}}
  train:
    needs: [prepare]
    retries: 1
    params:
      steps: 6
      batch: 1
      checkpoint_every: 3
      metrics_every: 1
      warm_start: production
      lr: 0.002
      seed: 1
      model: {gen_dim: 4, dis_dim: 4, style_dim: 2, n_res: 1, n_downsample: 1, mlp_dim: 8, num_scales: 1,
              n_layer: 2}
  evaluate:
    needs: [train]
    params: {samples: 2, styles: 2}
    gate:
%s
%s""" % (name, gate, extra)


def run_pipeline(env, text, name):
    r = env.d.api.post("/v1/pipelines", text.encode(), headers={"Content-Type": "application/yaml"})
    assert r.status in (200, 201), r
    r = env.d.api.post("/v1/pipelines/%s/runs" % name)
    assert r.status in (200, 201), r
    run_id = r.json()["run"]

    def done():
        x = env.d.api.get("/v1/runs/%d" % run_id).json()
        return x if x["run"]["state"] in TERMINAL else None
    return wait_until(done, timeout=120, interval=0.2, what="run %d" % run_id)


def test_pipeline_end_to_end_then_gate_rejects(env):
    t0 = time.time()
    r = run_pipeline(env, pipeline("tiny-train", "      - {metric: edge_f1, min: 0.0}\n"
                                                 "      - {metric: recon_l1, max_regression: 0.05}"), "tiny-train")
    assert r["run"]["state"] == "succeeded", r
    jobs = {j["stage"]: j for j in r["jobs"]}
    ev = jobs["evaluate"]["result"]
    assert ev["passed"] and ev["champion"] is None, ev
    assert any("no champion" in x for x in ev["reasons"]), ev["reasons"]
    for k in ("content", "content_f1", "edge_f1", "kid", "diversity", "recon_l1"):
        assert isinstance(ev["candidate"]["metrics"][k], float), (k, ev)
    assert "realism_acc" not in ev["candidate"]["metrics"], "retired (docs/training.md)"
    cm = ev["candidate"]["metrics"]
    for k in ("kid", "content", "content_f1", "edge_f1", "diversity", "recon_l1"):
        lo, hi = cm["intervals"][k]   # every score has its 90 % interval (docs/training.md "Intervals")
        assert lo <= hi, (k, cm)
        if k != "kid":  # kid's is a bootstrap of an unbiased statistic; the means' hold their mean
            assert lo - 1e-9 <= cm[k] <= hi + 1e-9, (k, cm)
    assert "paired" not in ev["verdict"], "no champion: nothing to pair"
    for s in ev["samples"]["candidate"]:
        assert os.path.exists(os.path.join(env.artifacts, "sha256", s["output"][:2], s["output"]))
    vid = jobs["train"]["result"]["version_id"]
    v = json.loads(env.sql("SELECT json_build_object('verdict', verdict, 'metrics', metrics) FROM model_versions"
                           " WHERE id = %d" % vid))
    assert v["verdict"]["passed"] is True and len(v["metrics"]["samples"]) == len(ev["samples"]["candidate"])
    first_s = time.time() - t0

    # v1 goes to production; the next run warm-starts from it and must beat it by an impossible margin
    env.sql("SELECT atelier_move_channel('tiny-t', 'production', %d, 'test', 'test', 'promote', NULL)" % vid)
    r = run_pipeline(env, pipeline("tiny-strict", "      - {metric: edge_f1, min: 2.0}\n"
                                                  "      - {metric: recon_l1, min_improvement: 0.9}",
                                   "  after:\n    kind: noop\n    needs: [evaluate]\n"), "tiny-strict")
    assert r["run"]["state"] == "failed", r
    jobs = {j["stage"]: j for j in r["jobs"]}
    assert "after" not in jobs, "nothing runs after a failed gate"
    assert jobs["evaluate"]["attempts"] == 1 and "gate failed" in jobs["evaluate"]["error"], jobs["evaluate"]
    assert "edge_f1" in jobs["evaluate"]["error"] and "recon_l1" in jobs["evaluate"]["error"]
    assert "gate failed" in r["run"]["error"]
    tr = jobs["train"]["result"]
    assert tr["parent_version_id"] == vid and tr["parent_version"] == jobs_version(env, vid), tr
    v = json.loads(env.sql("SELECT verdict FROM model_versions WHERE id = %d" % tr["version_id"]))
    assert v["passed"] is False and len(v["failed"]) == 2 and v["champion"]["recon_l1"] >= 0, v
    assert v["champion_version"] == jobs_version(env, vid)
    # the paired changes: candidate − champion on the same sketches, with the interval of the differences
    for k in ("content", "content_f1", "edge_f1", "diversity", "recon_l1"):
        p = v["paired"][k]
        want = v["candidate"][k] - v["champion"][k]
        assert abs(p["change"] - want) < 1e-6 + 1e-6 * abs(want), (k, p, want)
        lo, hi = p["interval"]
        assert lo - 1e-9 <= p["change"] <= hi + 1e-9, (k, p)
    print("pipeline run: %.1f s" % first_s)


def test_gallery_slices_and_artifacts(env):
    """Evaluate stores candidate and champion samples on the same inputs, lists them on the samples route,
    serves every PNG through /v1/artifacts, scores per slice, and a slice rule fails the gate naming it."""
    # a few holdout drawings from a serving node: the "contributions" slice
    for i in range(3):
        png = images.png(40, 40, lambda x, y, i=i: 0 if abs(x - y - 4 * i) <= 1 or x in (8, 30) else 255).hex()
        env.sql("INSERT INTO images (domain, sha256, width, height, channels, png, ink_ratio, split, status, source)"
                " VALUES ('sketch', sha256('gallery-%d'::bytea), 40, 40, 1, '\\x%s'::bytea, 0.1, 'holdout',"
                " 'accepted', 'node:n1')" % (i, png))
    n_hold = int(env.sql("SELECT count(*) FROM images WHERE domain = 'sketch' AND split = 'holdout'"
                         " AND status = 'accepted'"))
    assert n_hold >= 8, n_hold

    def gallery_pipeline(name, gate):
        return pipeline(name, gate).replace("model: tiny-t", "model: tiny-g").replace(
            "{samples: 2, styles: 2}", "{samples: 8, styles: 4}")

    r = run_pipeline(env, gallery_pipeline("gal-1", "      - {metric: kid, max: 100}"), "gal-1")
    assert r["run"]["state"] == "succeeded", r
    jobs = {j["stage"]: j for j in r["jobs"]}
    v1 = jobs["train"]["result"]["version"]
    m = jobs["evaluate"]["result"]["candidate"]["metrics"]
    # per slice: the node's drawings were picked (stratified) and scored on their own
    assert m["slices"]["contributions"]["n"] >= 1 and m["slices"]["synth"]["n"] >= 1, m["slices"]
    assert m["slices"]["contributions"]["n"] + m["slices"]["synth"]["n"] == 8
    assert isinstance(m["slices"]["contributions"]["kid"], float) and m["slices"]["photo"]["n"] == 0
    lo, hi = m["intervals"]["kid"]
    assert lo <= m["kid"] <= hi, m
    print("v%d holdout: %s" % (v1, {k: m[k] for k in ("content", "content_f1", "kid", "diversity", "recon_l1")}))
    g = env.d.api.get("/v1/models/tiny-g/versions/%d/samples" % v1)
    assert g.status == 200, g
    g = g.json()
    assert g["version"] == v1 and len(g["samples"]) == 8 * 4, g
    assert {s["role"] for s in g["samples"]} == {"candidate"}
    assert {s["style"] for s in g["samples"]} == {0, 1, 2, 3}
    assert {s["slice"] for s in g["samples"]} == {"synth", "contributions"}
    size = None
    for sha in {s["sketch"] for s in g["samples"]} | {s["output"] for s in g["samples"]}:
        a = env.d.api.get("/v1/artifacts/" + sha)
        assert a.status == 200 and a.headers["content-type"] == "image/png", (sha, a)
        w, h = images.png_size(a.body)
        assert size in (None, (w, h)), (size, w, h)
        size = (w, h)
    assert size == (32, 32)
    # the shards the run scored on are served too; unknown and malformed shas are not
    hold = jobs["train"]["result"]["holdout_shard"]
    a = env.d.api.get("/v1/artifacts/" + hold)
    assert a.status == 200 and a.body[:8] == b"ATLRSHRD" and a.headers["content-type"] == "application/octet-stream"
    train_shard = jobs["prepare"]["result"]["train_shard"]
    a = env.d.api.get("/v1/artifacts/" + train_shard, headers={"Range": "bytes=0-7"})
    assert a.status == 206 and a.body == b"ATLRSHRD", a
    ckpt = env.sql("SELECT sha256 FROM train_checkpoints WHERE job_id = %d LIMIT 1" % jobs["train"]["id"])
    a = env.d.api.get("/v1/artifacts/" + ckpt)
    assert a.status == 200 and a.headers["content-type"] == "application/octet-stream" and len(a.body) > 0
    assert env.d.api.get("/v1/artifacts/" + "0" * 64).status == 404
    assert env.d.api.get("/v1/artifacts/../../etc").status in (400, 404)
    assert env.d.api.get("/v1/artifacts/" + "A" * 64).status == 400
    assert env.d.api.get("/v1/models/tiny-g/versions/999/samples").status == 404
    routes = subprocess.run([os.path.join(BIN, "atelierd"), "routes"], capture_output=True, text=True, timeout=30)
    assert "/v1/models/{name}/versions/{version}/samples" in routes.stdout, routes.stdout

    # v1 becomes the champion; an impossible rule on one slice fails the gate, naming the slice,
    # while the overall rule passes; both galleries survive on the failed version
    env.sql("SELECT atelier_move_channel('tiny-g', 'production', %d, 'test', 'test', 'promote', NULL)"
            % jobs["train"]["result"]["version_id"])
    r = run_pipeline(env, gallery_pipeline("gal-2", "      - {metric: kid, max: 100}\n"
                                                    "      - {metric: content, slice: contributions, max: -1}\n"
                                                    "      - {metric: kid, slice: photo, max: 0}"), "gal-2")
    assert r["run"]["state"] == "failed", r["run"]
    jobs = {j["stage"]: j for j in r["jobs"]}
    err = jobs["evaluate"]["error"]
    assert "gate failed" in err and "slice contributions: content" in err, err
    assert "photo" not in err, err
    v2 = jobs["train"]["result"]["version"]
    verdict = json.loads(env.sql("SELECT verdict FROM model_versions WHERE model = 'tiny-g' AND version = %d" % v2))
    assert verdict["passed"] is False and "no samples in slice photo" in verdict["reasons"][2], verdict
    g = env.d.api.get("/v1/models/tiny-g/versions/%d/samples" % v2).json()
    cand = [s for s in g["samples"] if s["role"] == "candidate"]
    champ = [s for s in g["samples"] if s["role"] == "champion"]
    assert len(cand) == 32 and len(champ) == 32, g
    # the same inputs: the same sketches and style seeds, in the same order
    assert [(s["sketch"], s["style"], s["image_id"]) for s in cand] == \
        [(s["sketch"], s["style"], s["image_id"]) for s in champ]
    # the champion (v1) scored again now draws the same outputs as when it was the candidate
    assert sorted(s["output"] for s in champ) == sorted(
        s["output"] for s in env.d.api.get("/v1/models/tiny-g/versions/%d/samples" % v1).json()["samples"])
    for s in champ[:4]:
        a = env.d.api.get("/v1/artifacts/" + s["output"])
        assert a.status == 200 and a.headers["content-type"] == "image/png"
        images.png_size(a.body)
    # `atelier samples --sheet`: a row per sketch, 4 candidate then 4 champion cells of 128 px and a 16 px gap
    cli_env = dict(os.environ, ATELIER_URL=env.d.url, ATELIER_TOKEN=env.d.api.token)
    fd, sheet = tempfile.mkstemp(suffix=".png")
    os.close(fd)
    out = subprocess.run([os.path.join(BIN, "atelier"), "samples", "tiny-g", str(v2), "--sheet", sheet], env=cli_env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out
    with open(sheet, "rb") as f:
        w, h = images.png_size(f.read())
    os.unlink(sheet)
    rows = len({s["sketch"] for s in cand})
    assert (w, h) == ((1 + 4 * 2) * 128 + 16, rows * 128), (w, h, rows)
    bad = subprocess.run([os.path.join(BIN, "atelier"), "samples", "tiny-g", str(v2), "--sheet"], env=cli_env,
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "usage" in bad.stderr, bad


def jobs_version(env, vid):
    return int(env.sql("SELECT version FROM model_versions WHERE id = %d" % vid))


def test_pipelines_tiny_yaml_without_promote(env):
    """The demo pipeline as shipped (its promote stage cut off: promote is not a kind these workers run)."""
    from conftest import ROOT
    text = open(os.path.join(ROOT, "pipelines/tiny.yaml")).read()
    text = text[:text.index("  promote:")].replace("pipeline: tiny", "pipeline: tiny-nopromote")
    r = run_pipeline(env, text, "tiny-nopromote")
    jobs = {j["stage"]: j for j in r["jobs"]}
    assert r["run"]["state"] == "succeeded", (r["run"], {k: (j["state"], j["error"]) for k, j in jobs.items()})
    assert jobs["train"]["result"]["steps"] == 4 and jobs["evaluate"]["result"]["passed"]


def test_cli_metrics_sparklines_and_samples_out(env, tmp_path):
    """`atelier metrics RUN` and `atelier samples MODEL VERSION --out DIR` on a tiny pipeline's run (the one
    test_pipeline_end_to_end made when it ran first, else a run of its own)."""
    runs = env.d.api.get("/v1/runs?pipeline=tiny-train&state=succeeded").json()["runs"]
    if runs:
        r = env.d.api.get("/v1/runs/%d" % runs[0]["run_id"]).json()
    else:
        r = run_pipeline(env, pipeline("tiny-train", "      - {metric: edge_f1, min: 0.0}"), "tiny-train")
    assert r["run"]["state"] == "succeeded", r["run"]
    run_id = r["run"]["run_id"]
    cli_env = dict(os.environ, ATELIER_URL=env.d.url, ATELIER_TOKEN=env.d.api.token)
    cli = os.path.join(BIN, "atelier")
    series = env.d.api.get("/v1/runs/%d/metrics" % run_id).json()["series"]
    assert len(series) >= 2, series
    out = subprocess.run([cli, "metrics", str(run_id)], env=cli_env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out
    head, *rows = out.stdout.splitlines()
    assert head.split() == ["SERIES", "POINTS", "FIRST", "LAST", "MIN", "CURVE"], head
    assert sorted(x.split()[0] for x in rows) == sorted(series), out.stdout
    for row in rows:
        name, points, first, last, lo, spark = row.split()
        pts = [p[1] for p in series[name]]
        assert int(points) == len(pts)
        for got, want in ((first, pts[0]), (last, pts[-1]), (lo, min(pts))):
            assert abs(float(got) - want) <= 1e-4 * max(1.0, abs(want)), (name, got, want)
        assert len(spark) == min(40, len(pts)) and set(spark) <= set("▁▂▃▄▅▆▇█"), row
        if max(pts) > min(pts):   # the lowest and highest columns of a varying series span the range
            assert "▁" in spark and "█" in spark, row

    train = {j["stage"]: j for j in r["jobs"]}["train"]["result"]
    version = train["version"] if "version" in train else jobs_version(env, train["version_id"])
    samples = env.d.api.get("/v1/models/tiny-t/versions/%d/samples" % version).json()["samples"]
    assert samples, "the version has evaluation samples"
    dest = tmp_path / "samples"
    out = subprocess.run([cli, "samples", "tiny-t", str(version), "--out", str(dest)], env=cli_env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out
    want = {"%s-%d-%s.png" % (s["sketch"][:12], s["style"], s.get("role") or "candidate") for s in samples}
    want |= {"%s-sketch.png" % s["sketch"][:12] for s in samples}
    assert set(os.listdir(dest)) == want, (sorted(os.listdir(dest)), sorted(want))
    for f in want:
        data = (dest / f).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", f
    one = next(s for s in samples)
    got = (dest / ("%s-%d-%s.png" % (one["sketch"][:12], one["style"], one.get("role") or "candidate"))).read_bytes()
    assert hashlib.sha256(got).hexdigest() == one["output"]


def test_job_after_its_idle_handler_session_was_ended(env):
    """A handler's connection (job_db) idles between jobs. When PostgreSQL ends
    that session meanwhile (a restart; here pg_terminate_backend), libpq still
    reports it healthy until its next query. make chaos found the next collect
    failing on it ("server closed the connection unexpectedly"): the worker must
    notice before the job runs, so the job succeeds on its first attempt."""
    env.run_job("collect", collect_params())
    # every idle session but ours: the handler's among them (the worker's queue and supervisor
    # sessions and atelierd's reconnect; other tests check that)
    ended = env.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname ="
                    " current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                    " AND application_name = '' AND state = 'idle'")
    assert int(ended) >= 1, ended
    time.sleep(0.2)
    j = env.run_job("collect", collect_params())
    assert j["attempts"] == 1 and j["error"] is None, j


def test_an_attempt_that_lost_its_job_writes_no_checkpoint_or_version(env):
    """A worker cut off from the database keeps training; its lease runs out and the job is re-claimed
    elsewhere (tests/hosts/ partitions a worker so). Its completion was always refused (owner token), but
    its checkpoint rows went in unfenced, upserted over the new owner's at the same step, and so would
    its model version. Here the job is taken from under a live worker (a new owner token, as a re-claim
    makes) between two checkpoints: its next checkpoint must be refused, nothing registered, and the new
    owner's row left alone. atelier_job_owned (sql/017_hosts.sql) also says no once the lease ran out."""
    prepared = env.prepared(16)
    for p in env.procs:  # the job must be fence-a's: no other worker of the module may take it
        if p.alive():
            p.stop()
    # a lease long enough that no heartbeat (every lease/3) notices the theft first
    a = env.worker("fence-a", "--lease", "60")
    job = env.enqueue("train", train_payload(prepared, 400, checkpoint_every=1, metrics_every=1000, seed=7,
                                             batch=1))
    wait_until(lambda: env.sql("SELECT count(*) FROM train_checkpoints WHERE job_id = %d AND worker = 'fence-a'"
                               % job) not in ("0", ""), timeout=60, interval=0.02, what="fence-a's first checkpoint")
    stolen_at = env.sql("UPDATE jobs SET owner_token = nextval('jobs_owner_token_seq'), worker = 'thief',"
                        " lease_expires_at = now() + interval '1 hour' WHERE id = %d AND state = 'running'"
                        " RETURNING clock_timestamp()" % job)
    assert stolen_at, "the job finished before it could be taken"
    wait_until(lambda: "not recorded" in a.log(), timeout=60, what="the next checkpoint to be refused")
    assert env.sql("SELECT count(*) FROM train_checkpoints WHERE job_id = %d AND created_at > '%s'"
                   % (job, stolen_at)) == "0"
    wait_until(lambda: "outcome rejected" in a.log(), timeout=30, what="the failure report to be refused")
    # the thief still owns it; the lost attempt registered nothing
    assert env.sql("SELECT state || ',' || worker FROM jobs WHERE id = %d" % job) == "running,thief"
    assert env.sql("SELECT count(*) FROM model_versions WHERE created_at > '%s'" % stolen_at) == "0"
    token = env.sql("SELECT owner_token FROM jobs WHERE id = %d" % job)
    assert env.sql("SELECT atelier_job_owned(%d, %s)" % (job, token)) == "t"
    assert env.sql("SELECT atelier_job_owned(%d, %s + 1)" % (job, token)) == "f"
    env.sql("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %d" % job)
    assert env.sql("SELECT atelier_job_owned(%d, %s)" % (job, token)) == "f"
    env.sql("UPDATE jobs SET state = 'cancelled', owner_token = NULL, lease_expires_at = NULL,"
            " finished_at = now() WHERE id = %d" % job)
    a.stop()
    env.worker("w3")
