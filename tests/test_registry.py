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


def test_promote_failed_gate_needs_force(d, pg):
    """A version whose gate failed is promoted only with force: true, and the
    ledger's reason says it was an override; a passed or unevaluated one needs none."""
    register(pg, d, "g", b"good" * 100)
    _, bad, _ = register(pg, d, "g", b"bad" * 100)
    pg.psql("UPDATE model_versions SET verdict = '{\"passed\": false}' WHERE model = 'g' AND version = %d" % bad,
            d.db_url)
    assert d.api.post("/v1/models/g/channels/production", {"version": 1}).status == 200
    r = d.api.post("/v1/models/g/channels/production", {"version": bad, "reason": "hotfix"})
    assert r.status == 409 and r.json()["detail"]["gate"] == "failed", r
    assert d.api.post("/v1/models/g/channels/production", {"version": bad, "force": "yes"}).status == 422
    assert d.viewer.post("/v1/models/g/channels/production", {"version": bad, "force": True}).status == 403
    r = d.api.post("/v1/models/g/channels/production", {"version": bad, "force": True, "reason": "hotfix"})
    assert r.status == 200 and r.json()["to"] == bad, r
    ledger = d.viewer.get("/v1/models/g/ledger").json()["ledger"]
    assert ledger[-1]["reason"] == "override of a failed gate: hotfix", ledger
    assert [e["to"] for e in ledger] == [1, bad]


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


# ---- node trust (issue 14): tokens bound to node names, validated heartbeats, retention, source ----

def hb_for(name, **kw):
    hb = {"node": name, "channel": "canary", "model": "m", "version": 1, "requests": 10, "errors": 0,
          "error_rate": 0.0, "p50_ms": 20, "p95_ms": 80, "started_at": time.time()}
    hb.update(kw)
    return hb


def node_token_for(d, node):
    import subprocess
    from conftest import BIN
    out = subprocess.run([os.path.join(BIN, "atelierd"), "token", "create", "--role", "node", "--node", node],
                         env=d.env(), check=True, capture_output=True, text=True)
    return out.stdout.strip()


def test_a_node_token_speaks_for_one_node(d, pg):
    # unbound (made before the binding existed, or without --node): bound to the first name it reports
    assert d.node.post("/v1/nodes/heartbeat", hb_for("canary-a")).status == 200
    r = d.node.post("/v1/nodes/heartbeat", hb_for("canary-fake"))
    assert r.status == 403 and r.json()["detail"]["bound_to"] == "canary-a", r
    assert pg.psql("SELECT node FROM api_tokens WHERE node IS NOT NULL", d.db_url) == "canary-a"
    # another unbound token cannot take a name that is held
    other = d.http(d.token("node"))
    assert other.post("/v1/nodes/heartbeat", hb_for("canary-a")).status == 403
    # bound at creation: only that name, from the first heartbeat on
    bound = d.http(node_token_for(d, "canary-b"))
    assert bound.post("/v1/nodes/heartbeat", hb_for("canary-a")).status == 403
    assert bound.post("/v1/nodes/heartbeat", hb_for("canary-b")).status == 200
    # an operator may report for any node
    assert d.api.post("/v1/nodes/heartbeat", hb_for("canary-c")).status == 200
    assert sorted(n["name"] for n in d.viewer.get("/v1/nodes").json()["nodes"]) == ["canary-a", "canary-b",
                                                                                   "canary-c"]
    # the fake report left nothing behind
    assert pg.psql("SELECT count(*) FROM node_heartbeats WHERE node = 'canary-fake'", d.db_url) == "0"
    # a revoked token's binding goes with it: the name is free for a new token
    pg.psql("UPDATE api_tokens SET revoked_at = now() WHERE node = 'canary-b'", d.db_url)
    fresh = d.http(d.token("node"))
    assert wait_until(lambda: fresh.post("/v1/nodes/heartbeat", hb_for("canary-b")).status == 200, timeout=10,
                      what="the revoked token's name to be free")
    import subprocess
    from conftest import BIN
    bad = subprocess.run([os.path.join(BIN, "atelierd"), "token", "create", "--role", "viewer", "--node", "x"],
                         env=d.env(), capture_output=True, text=True)
    assert bad.returncode == 2 and "--node" in bad.stderr


@pytest.mark.parametrize("field,value", [
    ("error_rate", -1), ("error_rate", 1.5), ("error_rate", "0.1"), ("version", -1), ("version", 0),
    ("version", 2 ** 31), ("version", 1.5), ("channel", "staging"), ("model", "Not A Model"), ("model", 7),
    ("node", "x" * 65), ("node", "a/b"), ("node", ""), ("node", None), ("requests", "ten"), ("requests", -3),
    ("errors", [1]), ("p95_ms", -5), ("p50_ms", 1e12), ("started_at", 1e300), ("last_error", "e" * 2000),
    ("sha256", "zz"), ("device", {"a": 1})])
def test_heartbeat_fields_are_checked(d, field, value):
    r = d.api.post("/v1/nodes/heartbeat", hb_for("v1", **{field: value}))
    assert r.status == 422 and r.json()["detail"]["field"] == field, (field, value, r)


def test_heartbeat_stores_only_known_fields_and_is_capped(d, pg):
    hb = hb_for("n-known", junk="x" * 4000, sha256="ab" * 32, swaps=2, device="cpu")
    hb["nested"] = {"deep": list(range(100))}
    assert d.node.post("/v1/nodes/heartbeat", hb).status == 200
    info = json.loads(pg.psql("SELECT info FROM nodes WHERE name = 'n-known'", d.db_url))
    assert info == {"sha256": "ab" * 32, "swaps": 2, "device": "cpu"}
    # nulls are absent values, not type errors
    assert d.node.post("/v1/nodes/heartbeat", hb_for("n-known", version=None, error_rate=None,
                                                     last_error=None)).status == 200
    # a body far beyond any heartbeat: refused before parsing
    r = d.node.post("/v1/nodes/heartbeat", hb_for("n-known", junk="x" * 7_000_000))
    assert r.status == 413, r
    assert int(pg.psql("SELECT max(length(info::text)) FROM nodes", d.db_url)) < 500


def test_heartbeat_history_is_pruned(db_url, pg):
    d = start_atelierd(db_url, "--node-heartbeat-days", "3")
    try:
        op = d.http(d.token("operator"))
        pg.psql("INSERT INTO node_heartbeats (node, ts) SELECT 'old', now() - interval '4 days' "
                "FROM generate_series(1, 1500); INSERT INTO node_heartbeats (node, ts) "
                "VALUES ('recent', now() - interval '2 days')", db_url)
        assert op.post("/v1/nodes/heartbeat", hb_for("n-prune")).status == 200
        # bounded work per heartbeat: 1000 of the 1500 old rows, the rest next time
        assert pg.psql("SELECT count(*) FROM node_heartbeats WHERE node = 'old'", db_url) == "500"
        assert op.post("/v1/nodes/heartbeat", hb_for("n-prune")).status == 200
        assert pg.psql("SELECT count(*) FROM node_heartbeats WHERE node = 'old'", db_url) == "0"
        assert pg.psql("SELECT count(*) FROM node_heartbeats WHERE node <> 'old'", db_url) == "3"
    finally:
        assert d.stop() == 0, d.log()[-3000:]


def test_upload_source_comes_from_the_token(d, pg):
    import images
    from conftest import multipart

    def up(client, seed, source):
        fields = [("image", ("s.png", images.sketch(seed), "image/png"))]
        if source is not None:
            fields.insert(0, ("source", source))
        data, ct = multipart(fields)
        return client.post("/v1/sketches", data, headers={"Content-Type": ct})

    def source_of(r):
        return pg.psql("SELECT source FROM images WHERE id = %d" % r.json()["id"], d.db_url)
    # a node token that has not reported yet: its token id stands in for the name
    r = up(d.node, 11, "node:evil")
    assert r.status == 201 and source_of(r) == "node:#%s" % pg.psql(
        "SELECT id FROM api_tokens WHERE role = 'node'", d.db_url), r
    assert d.node.post("/v1/nodes/heartbeat", hb_for("painter-1")).status == 200
    # once bound, whatever it claims, its uploads say its name, at once
    for seed, claim in ((12, "node:evil"), (13, None), (14, "import"), (15, "photo")):
        r = up(d.node, seed, claim)
        assert r.status == 201 and source_of(r) == "node:painter-1", (claim, r)
    # an operator names imports, but may not pose as a node
    r = up(d.api, 16, "import-batch-7")
    assert r.status == 201 and source_of(r) == "import-batch-7"
    for claim in ("node:evil", "NODE:x", "node"):
        r = up(d.api, 17, claim)
        assert r.status == 422 and r.json()["detail"]["field"] == "source", (claim, r)


def test_token_api_binds_node_tokens(d):
    r = d.api.post("/v1/tokens", {"role": "node", "name": "edge", "node": "edge-1"})
    assert r.status == 201, r
    t = d.http(r.json()["token"])
    assert t.post("/v1/nodes/heartbeat", hb_for("edge-2")).status == 403
    assert t.post("/v1/nodes/heartbeat", hb_for("edge-1")).status == 200
    for body in ({"role": "viewer", "node": "edge-3"}, {"role": "node", "node": "bad name"},
                 {"role": "node", "node": 5}):
        r = d.api.post("/v1/tokens", body)
        assert r.status == 422 and r.json()["detail"]["field"] == "node", (body, r)
