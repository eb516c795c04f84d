"""Contributors' rights end to end (issue 15, docs/serving.md "Receipts and
withdrawal"): a real atelierd, a real atelier-worker training a tiny model,
and a real atelier-serve node.

A sketch contributed through the node returns a receipt; withdrawing it with
the receipt through the node removes its pixels from PostgreSQL (the bytes
are checked), keeps it out of the next dataset (the `deletions: 1` trigger
runs that collect), its lineage lists the version that trained on it, that
version is flagged, and the audit row exists and cannot be changed. A wrong
receipt is 404 and deletes nothing. Operators withdraw by id and by
contributor with `atelier sketches delete` (dry run, confirmation). A
contribution still in the node's spool is withdrawn from the spool."""
import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess

import pytest

import images
from conftest import BIN, BUILD, free_port, multipart, wait_until
from daemon import start_atelierd
from test_cache import apply, start, tiny, wait_run
from test_serve import models, start_node  # noqa: F401  (the fixture)
from test_training import Env

WORKER = os.path.join(BIN, "atelier-worker")
CLI = os.path.join(BIN, "atelier")
pytestmark = pytest.mark.skipif(not os.path.exists(WORKER), reason="atelier-worker not built")
HDR = "X-Atelier-Receipt"


def cli(d, *args, stdin=None):
    return subprocess.run([CLI] + list(args), env=dict(os.environ, ATELIER_URL=d.url, ATELIER_TOKEN=d.api.token),
                          capture_output=True, text=True, timeout=60, input=stdin)


def contribute(node, seed, who="ada"):
    body, ct = multipart([("image", ("s.png", images.sketch(seed), "image/png")), ("consent", "true"),
                          ("contributor", who)])
    r = node.http.post("/api/contribute", body, headers={"Content-Type": ct})
    assert r.status == 202, r
    return r.json()["receipt"]


def receipt_hex(tok):
    return hashlib.sha256(tok.encode()).hexdigest()


def fake_receipt():
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


@pytest.fixture
def env(pg):
    url = pg.new_database("rights")
    d = start_atelierd(url, "--tick-ms", "200", env={"ATELIER_HOLDOUT_FRACTION": "0.3"})
    d.api = d.http(d.token("operator"))
    e = Env(pg, url, d)
    yield e
    for p in e.procs:
        p.kill()
        p.p.wait()
    assert d.stop() == 0, d.log()[-3000:]


def test_withdraw_by_receipt_through_the_loop(env, models):  # noqa: F811
    d = env.d
    node = start_node("--model-file", models[0], "--atelierd", d.url, "--token", d.token("node"), "--name", "rn",
                      "--heartbeat-interval", "0.2", "--retry-max", "0.5").wait_ready()
    try:
        # contributions until one lands in the training split (the split is a hash of the pixels)
        mine = None
        for seed in range(200, 240):
            tok = contribute(node, seed)
            assert len(tok) == 43
            row = wait_until(lambda: env.sql("SELECT id || '|' || split FROM images WHERE receipt_sha256 = "
                                             "'\\x%s'" % receipt_hex(tok)), timeout=15, what="the contribution")
            sid, split = row.split("|")
            if split == "train":
                mine = (tok, int(sid))
                break
        assert mine, "no contribution landed in train"
        tok, sid = mine
        r = node.http.get("/api/sketches/mine", headers={HDR: tok})
        assert r.status == 200 and r.json()["status"] == "accepted" and r.json()["id"] == sid, r

        # a tiny model trains on it; production serves that version
        subprocess.run([CLI, "synth", "--count", "16", "--size", "32", "--seed", "7"], check=True,
                       env=dict(os.environ, ATELIER_URL=d.url, ATELIER_TOKEN=d.api.token), capture_output=True)
        env.worker("w1")
        apply(env, tiny("rt", triggers="{manual: true, deletions: 1}", evaluate=False))
        r1 = wait_run(env, start(env, "rt"), timeout=300)
        assert r1["run"]["state"] == "succeeded", json.dumps(r1)[:2000]
        ds1 = int(env.sql("SELECT max(id) FROM datasets WHERE pipeline = 'rt'"))
        assert env.sql("SELECT count(*) FROM dataset_members WHERE dataset_id = %d AND image_id = %d" % (ds1, sid)) == "1"
        v1 = env.d.api.get("/v1/models/rt-m/versions").json()["versions"][0]
        assert v1["withdrawn_sketches"] == 0, v1
        r = d.api.post("/v1/models/rt-m/channels/production", {"version": v1["version"], "reason": "test"})
        assert r.status == 200, r

        lin = d.api.get("/v1/sketches/%d/lineage" % sid).json()
        assert [(x["id"], x["role"]) for x in lin["datasets"]] == [(ds1, "train")], lin
        assert [(x["model"], x["version"], x["direct"]) for x in lin["versions"]] == [("rt-m", v1["version"], True)]
        assert lin["versions"][0]["channels"] == ["production"], lin

        # a wrong receipt (well-formed or not) is 404 and deletes nothing
        png = d.api.get("/v1/sketches/%d.png" % sid)
        assert png.status == 200 and len(png.body) > 100
        before = env.sql("SELECT count(*), sum(length(png)) FROM images WHERE status <> 'deleted'")
        for bad in (fake_receipt(), tok[:-1], tok[:-1] + "*", ""):
            r = node.http.request("DELETE", "/api/sketches/mine", headers={HDR: bad} if bad else {})
            assert r.status == 404 and r.json()["code"] == "NOTFOUND", (bad, r)
        r = d.http(d.token("node")).request("DELETE", "/v1/sketches/by-receipt", headers={HDR: fake_receipt()})
        assert r.status == 404, r
        assert env.sql("SELECT count(*), sum(length(png)) FROM images WHERE status <> 'deleted'") == before
        assert env.sql("SELECT count(*) FROM rights_audit") == "0"

        # withdraw with the receipt, through the node
        r = node.http.request("DELETE", "/api/sketches/mine", headers={HDR: tok})
        assert r.status == 200, r
        assert r.json() == {"kind": "sketch", "id": sid, "status": "deleted", "withdrawn": True, "spooled": False}
        row = env.sql("SELECT status, length(png), phash IS NULL, deleted_at IS NOT NULL FROM images WHERE id = %d" % sid)
        assert row == "deleted|0|t|t", row
        # the pixels are nowhere in the table: not in this row, not in another
        hexpng = png.body.hex()
        assert env.sql("SELECT count(*) FROM images WHERE png = '\\x%s'::bytea" % hexpng) == "0"
        assert env.sql("SELECT count(*) FROM images WHERE position('\\x%s'::bytea IN png) > 0" % hexpng[:512]) == "0"
        assert d.api.get("/v1/sketches/%d.png" % sid).status == 404
        # again: nothing more to do, still 200
        r = node.http.request("DELETE", "/api/sketches/mine", headers={HDR: tok})
        assert r.status == 200 and r.json()["withdrawn"] is False, r
        r = node.http.get("/api/sketches/mine", headers={HDR: tok})
        assert r.json()["status"] == "deleted" and r.json()["deleted_at"], r
        # exactly one audit row, naming the receipt by a prefix of its hash, never the pixels
        audit = env.sql("SELECT action, kind, object_id, actor, how FROM rights_audit")
        assert audit == "withdraw|sketch|%d|receipt:%s|receipt" % (sid, receipt_hex(tok)[:12]), audit
        for stmt in ("UPDATE rights_audit SET actor = 'x'", "DELETE FROM rights_audit", "TRUNCATE rights_audit"):
            with pytest.raises(subprocess.CalledProcessError) as e:
                env.sql(stmt)
            assert "append-only" in e.value.stderr, e.value.stderr
        assert env.sql("SELECT count(*) FROM rights_audit") == "1"

        # the version that trained on it is flagged (API and CLI)
        vs = {v["version"]: v for v in d.api.get("/v1/models/rt-m/versions").json()["versions"]}
        assert vs[v1["version"]]["withdrawn_sketches"] == 1, vs
        out = cli(d, "models", "rt-m")
        assert out.returncode == 0 and "!1" in out.stdout, out

        # deletions: 1 fires a run; its collect leaves the sketch out
        def fired():
            runs = d.api.get("/v1/runs?pipeline=rt").json()["runs"]
            return [x for x in runs if x["trigger"] == "deletions"]
        run = wait_until(fired, timeout=30, what="the deletions trigger")[0]
        r2 = wait_run(env, run["run_id"], timeout=300)
        assert r2["run"]["state"] == "succeeded", json.dumps(r2)[:2000]
        assert len(fired()) == 1, "fired twice for one withdrawal"
        ds2 = int(env.sql("SELECT max(id) FROM datasets WHERE pipeline = 'rt'"))
        assert ds2 != ds1
        assert env.sql("SELECT count(*) FROM dataset_members WHERE dataset_id = %d AND image_id = %d" % (ds2, sid)) == "0"
        assert env.sql("SELECT count(*) FROM dataset_holdout WHERE dataset_id = %d AND image_id = %d" % (ds2, sid)) == "0"
        vs = sorted(d.api.get("/v1/models/rt-m/versions").json()["versions"], key=lambda v: v["version"])
        assert vs[-1]["version"] > v1["version"] and vs[-1]["withdrawn_sketches"] == 0, vs
        # the lineage still names the version that saw it, and only that one
        lin = d.api.get("/v1/sketches/%d/lineage" % sid).json()
        assert [x["version"] for x in lin["versions"]] == [v1["version"]], lin
        assert lin["sketch"]["status"] == "deleted"
        out = cli(d, "sketches", "lineage", str(sid))
        assert out.returncode == 0 and "rt-m v%d" % v1["version"] in out.stdout, out
    finally:
        assert node.stop() == 0, node.log()[-3000:]


def test_operator_withdraws_by_id_and_by_contributor(env):
    d = env.d
    ids = {}
    for seed, who in ((300, "bob"), (301, "bob"), (302, "cy"), (303, "cy")):
        body, ct = multipart([("image", ("s.png", images.sketch(seed), "image/png")), ("contributor", who)])
        r = d.api.post("/v1/sketches", body, headers={"Content-Type": ct})
        assert r.status == 201, r
        ids.setdefault(who, []).append(r.json()["id"])
    body, ct = multipart([("image", ("p.png", images.sketch(304), "image/png"))])
    painting = d.api.post("/v1/paintings", body, headers={"Content-Type": ct}).json()["id"]

    # dry run: lists bob's two, changes nothing
    out = cli(d, "sketches", "delete", "--contributor", "bob", "--dry-run")
    assert out.returncode == 0 and "would withdraw 2" in out.stdout, out
    assert all(" %d " % i in out.stdout for i in ids["bob"]), out
    # no terminal and no --yes: refused, nothing changed
    out = cli(d, "sketches", "delete", "--contributor", "bob", stdin="y\n")
    assert out.returncode == 2 and "--yes" in out.stderr, out
    assert env.sql("SELECT count(*) FROM images WHERE status = 'deleted'") == "0"
    out = cli(d, "sketches", "delete", "--contributor", "bob", "--yes")
    assert out.returncode == 0 and "withdrew 2" in out.stdout, out
    assert env.sql("SELECT string_agg(id::text || ':' || length(png), ',' ORDER BY id) FROM images WHERE status = "
                   "'deleted'") == ",".join("%d:0" % i for i in ids["bob"])
    # by id: one of cy's; a painting's id is not a sketch and stays
    out = cli(d, "--json", "sketches", "delete", str(ids["cy"][0]), str(painting), "--yes")
    assert out.returncode == 0, out
    j = json.loads(out.stdout)
    assert [x["id"] for x in j["sketches"]] == [ids["cy"][0]] and j["not_found"] == [painting], j
    assert env.sql("SELECT status, length(png) > 0 FROM images WHERE id = %d" % painting) == "accepted|t"
    assert env.sql("SELECT status FROM images WHERE id = %d" % ids["cy"][1]) == "accepted"
    r = d.api.request("DELETE", "/v1/sketches/%d" % ids["cy"][1])
    assert r.status == 200 and r.json()["withdrawn"] is True, r
    assert d.api.request("DELETE", "/v1/sketches/%d" % painting).status == 404
    assert d.api.request("DELETE", "/v1/sketches/99999").status == 404
    audit = env.sql("SELECT string_agg(object_id || ':' || how, ',' ORDER BY id) FROM rights_audit")
    want = [(i, "contributor") for i in ids["bob"]] + [(ids["cy"][0], "id"), (ids["cy"][1], "id")]
    assert audit == ",".join("%d:%s" % w for w in want), audit
    # the operator's token has no name here: the audit names it by id
    assert env.sql("SELECT count(DISTINCT actor) FROM rights_audit WHERE actor ~ '^operator:token#[0-9]+$'") == "1"
    # the body is checked
    for body in ({}, {"ids": [], "contributor": "x"}, {"ids": [0]}, {"ids": "1"}, {"contributor": ""},
                 {"ids": [1], "dry_run": "yes"}):
        r = d.api.post("/v1/sketches/withdraw", body)
        assert r.status == 422 and r.json()["detail"]["field"], (body, r)
    # a viewer may not withdraw
    assert d.http(d.token("viewer")).request("DELETE", "/v1/sketches/%d" % ids["cy"][1]).status == 403


def test_withdraw_from_the_spool_before_delivery(pg, models, tmp_path):  # noqa: F811
    url = pg.new_database("rights_spool")
    port = free_port()
    d = start_atelierd(url, port=port)
    tok_node = d.token("node")
    assert d.stop() == 0
    node = start_node("--model-file", models[0], "--atelierd", "http://127.0.0.1:%d" % port, "--token", tok_node,
                      "--name", "sn", "--heartbeat-interval", "0.2", "--retry-max", "0.5").wait_ready()
    d = None
    try:
        keep, gone = contribute(node, 400), contribute(node, 401)
        assert node.http.get("/api/sketches/mine", headers={HDR: gone}).json() == {
            "kind": "sketch", "status": "pending", "spooled": True}
        r = node.http.request("DELETE", "/api/sketches/mine", headers={HDR: gone})
        assert r.status == 200 and r.json()["spooled"] is True and r.json()["withdrawn"] is True, r
        assert node.info()["spool_depth"] == 1
        # neither in the spool nor reachable upstream: 503, not a false "unknown"
        r = node.http.get("/api/sketches/mine", headers={HDR: gone})
        assert r.status == 503 and r.headers.get("retry-after"), r
        d = start_atelierd(url, port=port)
        wait_until(lambda: node.info()["spool_depth"] == 0, timeout=30, what="the spool to drain")
        assert pg.psql("SELECT count(*) FROM images", url) == "1"
        assert pg.psql("SELECT encode(receipt_sha256, 'hex') FROM images", url) == receipt_hex(keep)
        assert node.http.get("/api/sketches/mine", headers={HDR: gone}).status == 404
        assert node.http.get("/api/sketches/mine", headers={HDR: keep}).json()["status"] == "accepted"
    finally:
        assert node.stop() == 0, node.log()[-3000:]
        if d:
            d.stop()


def test_my_works_panel_in_chromium(pg, models, tmp_path):  # noqa: F811
    from test_browser import CHROMIUM, HERE, npm_ci
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("%s is not installed" % CHROMIUM)
    npm_ci()
    url = pg.new_database("rights_page")
    d = start_atelierd(url)
    node = start_node("--model-file", models[0], "--atelierd", d.url, "--token", d.token("node"), "--name", "pn",
                      "--retry-max", "0.5").wait_ready()
    try:
        out = subprocess.run(["node", os.path.join(HERE, "mine.mjs"), node.url, str(tmp_path)], cwd=HERE,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stdout + out.stderr + "\n--- node log ---\n" + node.log()[-3000:]
        f = json.loads(out.stdout.strip().splitlines()[-1])
        # on failure: what the page saw, the row and the node's log
        f["logs"] = "%s\n%s\n%s" % (json.dumps(f.get("mine_replies")), pg.psql(
            "SELECT id, status, split, source, encode(receipt_sha256, 'hex') FROM images", url), node.log()[-1500:])
    finally:
        assert node.stop() == 0
        assert d.stop() == 0
    keep = os.path.join(BUILD, "test-artifacts", "rights")
    os.makedirs(keep, exist_ok=True)
    for name in ("mine_before.png", "mine_after.png"):
        if os.path.exists(os.path.join(str(tmp_path), name)):
            shutil.copy(os.path.join(str(tmp_path), name), os.path.join(keep, name))
    print("\nMy works panel: screenshots in %s" % keep)
    tok = f["stored"][0]["token"]
    assert [e["kind"] for e in f["stored"]] == ["sketch"] and len(tok) == 43, f
    assert tok in f["message"], f  # shown once, on the page
    assert f["items"] == ["sketch", "work"] and f["panel_visible"], f
    assert f["sketch_state"] == "in training data", f["logs"]
    del f["logs"]
    # an entry of kind "work" is listed with a status whatever the node says about it
    assert f["work_state"] not in ("", "…"), f
    assert f["after_withdraw"] == "withdrawn" and f["withdraw_disabled"] and f["dialogs"] == 1, f
    assert f["after_forget"] == ["sketch"] and f["items_after_forget"] == 1, f
    assert f["console_errors"] == [] or all("404" in e for e in f["console_errors"]), f
    row = pg.psql("SELECT status, length(png), contributor FROM images WHERE receipt_sha256 = '\\x%s'"
                  % receipt_hex(tok), url)
    assert row == "deleted|0|mina", row
