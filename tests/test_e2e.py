"""The whole loop with real parts: synthetic data uploaded through the API, a
tiny pipeline (collect → prepare → train → evaluate → promote) run by real
workers, the candidate through the gate onto canary and production, and a
serving node long-polling its channel that downloads, verifies and serves it.
Then a canary whose nodes report errors is rolled back automatically."""
import json
import os
import struct
import subprocess
import time

import images
import pytest
from conftest import BIN, ROOT, multipart, wait_until
from daemon import start_atelierd

SERVE = os.path.join(BIN, "atelier-serve")
pytestmark = pytest.mark.skipif(not os.path.exists(SERVE), reason="atelier-serve not built")


def jpeg_size(data):
    """(width, height) from a JPEG's SOF marker."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    raise AssertionError("no SOF marker")


@pytest.fixture
def system(db_url):
    d = start_atelierd(db_url, "--local-workers", "2", "--tick-ms", "200", "--holdout-fraction", "0.3",
                       env={"ATELIER_TRAIN_THREADS": "1"})
    d.api = d.http(d.token("operator"))
    env = dict(os.environ, ATELIER_URL=d.url, ATELIER_TOKEN=d.api.token)
    out = subprocess.run([os.path.join(BIN, "atelier"), "synth", "--count", "24", "--size", "32"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out
    yield d
    assert d.stop() == 0, d.log()[-3000:]


def apply_tiny(d, name, bake="1s", gate_min="0.0", seed=1):
    text = open(os.path.join(ROOT, "pipelines/tiny.yaml")).read()
    # training is deterministic: another seed makes another model (another sha256)
    text = text.replace("seed: 1", "seed: %d" % seed)
    text = text.replace("pipeline: tiny", "pipeline: " + name).replace("canary_bake: 1s", "canary_bake: " + bake)
    text = text.replace("{ metric: edge_f1, min: 0.0 }", "{ metric: edge_f1, min: %s }" % gate_min)
    r = d.api.post("/v1/pipelines?filename=%s.yaml" % name, text.encode(), headers={"Content-Type": "application/yaml"})
    assert r.status in (200, 201), r


def run_and_wait(d, name, timeout=240):
    run_id = d.api.post("/v1/pipelines/%s/runs" % name).json()["run"]

    def done():
        r = d.api.get("/v1/runs/%d" % run_id).json()
        return r if r["run"]["state"] in ("succeeded", "failed", "cancelled") else None
    return wait_until(done, timeout=timeout, interval=0.25, what="run %d" % run_id)


def test_cycle_to_serving_node(system):
    from test_serve import start_node
    d = system
    node_token = d.token("node")
    node = start_node("--atelierd", d.url, "--token", node_token, "--model", "tiny", "--channel", "production",
                      "--name", "e2e-node", "--heartbeat-interval", "0.5")
    try:
        # no model yet: the node is alive but not ready
        assert node.http.get("/healthz").status == 200
        assert node.http.get("/readyz").status == 503
        apply_tiny(d, "tiny")
        r = run_and_wait(d, "tiny")
        assert r["run"]["state"] == "succeeded", json.dumps(r, indent=1)[:3000]
        stages = {j["stage"]: j for j in r["jobs"]}
        assert set(stages) == {"collect", "prepare", "train", "evaluate", "promote"}
        version = stages["promote"]["result"]["version"]
        ledger = d.api.get("/v1/models/tiny/ledger").json()["ledger"]
        assert [(e["channel"], e["to"], e["kind"]) for e in ledger] == [("canary", version, "promote"),
                                                                       ("production", version, "promote")]
        v = d.api.get("/v1/models/tiny/versions/%d" % version).json()
        assert v["version"]["dataset_id"] and v["run"]["run_id"] == r["run"]["run_id"]
        assert v["version"]["verdict"]["passed"] is True
        # the node long-polls production: it downloads, verifies, loads and serves the new version
        node.wait_ready(timeout=60)
        body, ct = multipart([("contentImage", ("s.png", images.sketch(3), "image/png")), ("style", "7")])
        res = node.http.post("/api/stylize", body, headers={"Content-Type": ct})
        assert res.status == 200 and res.headers["content-type"] == "image/jpeg", res
        assert jpeg_size(res.body) == (512, 512)
        # and reports it in its heartbeat
        wait_until(lambda: [n for n in d.api.get("/v1/nodes").json()["nodes"]
                            if n["name"] == "e2e-node" and n["version"] == version], timeout=10,
                   what="the node's heartbeat to name the version it serves")
    finally:
        node.stop()


def test_canary_errors_roll_back(system):
    d = system
    # a first version in production to fall back to
    apply_tiny(d, "tiny")
    first = run_and_wait(d, "tiny")
    assert first["run"]["state"] == "succeeded", first
    v1 = [j for j in first["jobs"] if j["stage"] == "promote"][0]["result"]["version"]
    # the second run bakes on canary long enough for a canary node to report trouble
    apply_tiny(d, "tiny", bake="6s", seed=2)
    run_id = d.api.post("/v1/pipelines/tiny/runs").json()["run"]
    wait_until(lambda: any(e["channel"] == "canary" and e["to"] != v1
                           for e in d.api.get("/v1/models/tiny/ledger").json()["ledger"]),
               timeout=180, interval=0.25, what="the candidate on canary")
    cand = d.api.get("/v1/models/tiny/channels/canary").json()["version"]
    node = d.http(d.token("node"))
    for i in range(3):
        hb = {"node": "canary-1", "channel": "canary", "model": "tiny", "version": cand, "requests": 100 * (i + 1),
              "errors": 30 * (i + 1), "error_rate": 0.3, "p50_ms": 20, "p95_ms": 50, "started_at": time.time()}
        assert node.post("/v1/nodes/heartbeat", hb).status == 200
        time.sleep(0.5)

    def done():
        r = d.api.get("/v1/runs/%d" % run_id).json()
        return r if r["run"]["state"] in ("succeeded", "failed") else None
    r = wait_until(done, timeout=60, what="the second run to finish")
    assert r["run"]["state"] == "failed" and "canary unhealthy" in r["run"]["error"], r["run"]
    ledger = d.api.get("/v1/models/tiny/ledger").json()["ledger"]
    last = ledger[-1]
    assert last["channel"] == "canary" and last["kind"] == "auto-rollback" and last["from"] == cand
    assert d.api.get("/v1/models/tiny/channels/production").json()["version"] == v1


def test_no_canary_evidence_holds_the_move(system):
    d = system
    apply_tiny(d, "tiny")
    first = run_and_wait(d, "tiny")
    assert first["run"]["state"] == "succeeded", first
    v1 = [j for j in first["jobs"] if j["stage"] == "promote"][0]["result"]["version"]
    # no node follows the canary channel: nothing to wait for, and the ledger says so
    prod = [e for e in d.api.get("/v1/models/tiny/ledger").json()["ledger"] if e["channel"] == "production"]
    assert prod[-1]["to"] == v1 and "0 canary nodes on v%d (min 0), 0 requests" % v1 in prod[-1]["reason"], prod
    # now a node follows it, but never reports the candidate: the candidate is held on canary
    node = d.http(d.token("node"))
    assert node.post("/v1/nodes/heartbeat", {"node": "canary-quiet", "channel": "canary", "model": "tiny",
                                             "version": v1, "requests": 0, "errors": 0}).status == 200
    apply_tiny(d, "tiny", bake="2s", seed=2)
    second = run_and_wait(d, "tiny")
    assert second["run"]["state"] == "failed" and "not enough canary evidence" in second["run"]["error"], second
    assert "0 canary nodes" in second["run"]["error"] and "(min 1)" in second["run"]["error"]
    cand = d.api.get("/v1/models/tiny/channels/canary").json()["version"]
    assert cand != v1 and d.api.get("/v1/models/tiny/channels/production").json()["version"] == v1
    # the minimum is a promote parameter: 0 says "no canary evidence needed" explicitly
    text = open(os.path.join(ROOT, "pipelines/tiny.yaml")).read().replace("seed: 1", "seed: 3").replace(
        "canary_bake: 1s", "canary_bake: 1s, min_canary_nodes: 0")
    assert d.api.post("/v1/pipelines?filename=tiny.yaml", text.encode(),
                      headers={"Content-Type": "application/yaml"}).status in (200, 201)
    third = run_and_wait(d, "tiny")
    assert third["run"]["state"] == "succeeded", third
    v3 = [j for j in third["jobs"] if j["stage"] == "promote"][0]["result"]["version"]
    prod = [e for e in d.api.get("/v1/models/tiny/ledger").json()["ledger"] if e["channel"] == "production"]
    assert prod[-1]["to"] == v3 and "no canary evidence required: 0 canary nodes on v%d (min 0)" % v3 in \
        prod[-1]["reason"], prod
