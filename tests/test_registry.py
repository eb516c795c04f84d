"""Registry through the real atelierd: channels, promote and roll back, the
append-only ledger, long-poll answered on a move, artifact download with
Range, node heartbeats, roles. Versions are registered the way the train stage
does it (atelier_register_version) with their bytes in the artifact store."""
import hashlib
import json
import os
import threading
import time

import pytest

from conftest import wait_until
from daemon import start_atelierd


@pytest.fixture
def d(db_url):
    daemon = start_atelierd(db_url, "--tick-ms", "200")
    daemon.api = daemon.http(daemon.token("operator"))
    daemon.node = daemon.http(daemon.token("node"))
    daemon.viewer = daemon.http(daemon.token("viewer"))
    yield daemon
    assert daemon.stop() == 0, daemon.log()[-3000:]


def put_artifact(d, data):
    sha = hashlib.sha256(data).hexdigest()
    path = os.path.join(d.artifacts, "sha256", sha[:2])
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, sha), "wb") as f:
        f.write(data)
    return sha


def register(pg, d, model, data):
    sha = put_artifact(d, data)
    row = pg.psql("SELECT version_id, version FROM atelier_register_version('%s', '%s', %d, 'fs://x', NULL, NULL, "
                  "NULL, '{}', '{}', NULL)" % (model, sha, len(data)), d.db_url)
    vid, ver = row.split("|")
    return int(vid), int(ver), sha


def test_promote_rollback_and_ledger(d, pg):
    v1 = register(pg, d, "m", b"model one" * 100)
    v2 = register(pg, d, "m", b"model two" * 100)
    assert v2[1] == 2
    # registering the same bytes again is the same version
    assert register(pg, d, "m", b"model two" * 100)[1] == 2
    r = d.api.post("/v1/models/m/channels/production", {"version": 1})
    assert r.status == 200 and r.json()["moved"] is True, r
    r = d.api.post("/v1/models/m/channels/production", {"version": 2, "reason": "better"})
    assert r.json()["from"] == 1 and r.json()["to"] == 2
    again = d.api.post("/v1/models/m/channels/production", {"version": 2})
    assert again.status == 200 and again.json()["moved"] is False
    r = d.api.post("/v1/models/m/channels/production", {"action": "rollback"})
    assert r.status == 200 and r.json()["to"] == 1, r
    ledger = d.viewer.get("/v1/models/m/ledger").json()["ledger"]
    assert [(e["from"], e["to"], e["kind"]) for e in ledger] == [(None, 1, "promote"), (1, 2, "promote"),
                                                               (2, 1, "rollback")]
    assert ledger[1]["reason"] == "better"
    models = d.viewer.get("/v1/models").json()["models"]
    assert models[0]["channels"] == {"production": 1}
    versions = d.viewer.get("/v1/models/m/versions").json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    one = d.viewer.get("/v1/models/m/versions/1").json()
    assert one["version"]["sha256"] == v1[2]
    # errors
    assert d.api.post("/v1/models/m/channels/production", {"version": 99}).status == 404
    assert d.api.post("/v1/models/m/channels/staging", {"version": 1}).status == 404
    assert d.api.post("/v1/models/m/channels/canary", {"action": "rollback"}).status == 404
    assert d.api.post("/v1/models/m/channels/production", {"nope": 1}).status == 422
    assert d.viewer.get("/v1/models/zzz/versions").status == 404
    # the ledger is append-only, even for someone with SQL access
    with pytest.raises(Exception):
        pg.psql("DELETE FROM promotions", d.db_url)


def test_roles(d, pg):
    register(pg, d, "m", b"x" * 10)
    assert d.node.post("/v1/models/m/channels/production", {"version": 1}).status == 403
    assert d.viewer.post("/v1/models/m/channels/production", {"version": 1}).status == 403
    assert d.node.post("/v1/pipelines", b"pipeline: x\n", headers={"Content-Type": "application/yaml"}).status == 403
    assert d.viewer.post("/v1/sketches", b"\x89PNG", headers={"Content-Type": "image/png"}).status == 403


def test_long_poll_answers_on_move(d, pg):
    register(pg, d, "m", b"one" * 1000)
    register(pg, d, "m", b"two" * 1000)
    # no wait at all: answered at once either way (never a timer racing the read)
    assert d.node.get("/v1/models/m/channels/production").status == 304
    # nothing on the channel yet: wait runs out -> 304
    t0 = time.time()
    r = d.node.get("/v1/models/m/channels/production?after=0&wait=1")
    assert r.status == 304 and 0.9 < time.time() - t0 < 5
    d.api.post("/v1/models/m/channels/production", {"version": 1})
    # already past `after`: at once
    assert d.node.get("/v1/models/m/channels/production").json()["version"] == 1
    r = d.node.get("/v1/models/m/channels/production?after=0&wait=10")
    assert r.status == 200 and r.json()["version"] == 1 and r.json()["artifact"].startswith("/v1/artifacts/")
    results = []

    def poll():
        t = time.time()
        rr = d.node.get("/v1/models/m/channels/production?after=1&wait=30")
        results.append((rr, time.time() - t))
    threads = [threading.Thread(target=poll) for _ in range(10)]
    for t in threads:
        t.start()
    wait_until(lambda: "atelier_longpoll_waiting 10" in d.http().get("/metrics").body.decode(), timeout=10,
               what="10 held long-polls")
    moved_at = time.time()
    d.api.post("/v1/models/m/channels/production", {"version": 2})
    for t in threads:
        t.join(15)
    assert len(results) == 10
    for rr, took in results:
        assert rr.status == 200 and rr.json()["version"] == 2
    # every held poll was answered right after the move (well before its 30 s wait)
    assert time.time() - moved_at < 5
    assert d.node.get("/v1/models/m/channels/production?wait=abc").status == 400
    assert d.node.get("/v1/models/m/channels/qa").status == 404


def test_artifact_download_and_range(d, pg):
    data = os.urandom(700 * 1024)
    _, _, sha = register(pg, d, "m", data)
    r = d.node.get("/v1/artifacts/" + sha)
    assert r.status == 200 and r.body == data
    assert r.headers["x-content-sha256"] == sha
    r = d.node.get("/v1/artifacts/" + sha, headers={"Range": "bytes=1000-"})
    assert r.status == 206 and r.body == data[1000:]
    assert r.headers["content-range"] == "bytes 1000-%d/%d" % (len(data) - 1, len(data))
    r = d.node.get("/v1/artifacts/" + sha, headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == data[10:20]
    assert d.node.get("/v1/artifacts/" + sha, headers={"Range": "bytes=%d-" % len(data)}).status == 416
    # a suffix range is the last bytes; "0--1" is malformed, never the whole file as a 206
    r = d.node.get("/v1/artifacts/" + sha, headers={"Range": "bytes=-500"})
    assert r.status == 206 and r.body == data[-500:]
    assert r.headers["content-range"] == "bytes %d-%d/%d" % (len(data) - 500, len(data) - 1, len(data))
    r = d.node.get("/v1/artifacts/" + sha, headers={"Range": "bytes=0--1"})
    assert r.status == 400 and r.json()["code"] == "INVAL"
    # several ranges are ignored (no multipart/byteranges): the whole file
    r = d.node.get("/v1/artifacts/" + sha, headers={"Range": "bytes=0-5,10-20"})
    assert r.status == 200 and r.body == data
    assert d.node.get("/v1/artifacts/" + "0" * 64).status == 404
    assert d.node.get("/v1/artifacts/nothex").status == 400


def test_heartbeats_and_fleet(d):
    hb = {"node": "n1", "channel": "canary", "model": "m", "version": 3, "requests": 10, "errors": 1,
          "error_rate": 0.1, "p50_ms": 20, "p95_ms": 80, "started_at": time.time()}
    assert d.node.post("/v1/nodes/heartbeat", hb).status == 200
    hb["requests"] = 20
    assert d.node.post("/v1/nodes/heartbeat", hb).status == 200
    nodes = d.viewer.get("/v1/nodes").json()["nodes"]
    assert len(nodes) == 1 and nodes[0]["requests"] == 20 and nodes[0]["alive"] is True
    assert d.node.post("/v1/nodes/heartbeat", {"requests": 1}).status == 422
    assert d.viewer.post("/v1/nodes/heartbeat", hb).status == 403


def test_cli_models_promote_rollback(d, pg):
    import subprocess
    from conftest import BIN
    register(pg, d, "m", b"v1" * 50)
    register(pg, d, "m", b"v2" * 50)
    env = dict(os.environ, ATELIER_URL=d.url, ATELIER_TOKEN=d.api.token)
    cli = os.path.join(BIN, "atelier")

    def run(*args):
        out = subprocess.run([cli] + list(args), env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out
        return out.stdout
    assert "m/production: (none) -> v1" in run("promote", "m", "1")
    assert "m/production: v1 -> v2" in run("promote", "m", "2", "--channel", "production")
    assert "already at v2" in run("promote", "m", "2")
    assert "m/production: v2 -> v1" in run("rollback", "m")
    table = run("models")
    assert "m " in table and "v1" in table
    versions = json.loads(run("--json", "models", "m"))["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    assert "production" in run("models", "m")
    bad = subprocess.run([cli, "promote", "m", "9"], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "404" in bad.stderr
