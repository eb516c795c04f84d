"""The gallery (issue 15; docs/gallery.md), end to end with the real stack:
atelierd, two atelier-serve nodes following its works feed, PostgreSQL.

A work published on node A (POST /api/publish, or from the drawing page in
headless Chromium) appears in node B's wall, page and JSON list; an operator
hides it and it leaves both nodes (pages, thumbnails, cache) within 5 s; its
receipt reads and withdraws it (pixels erased in PostgreSQL), a wrong receipt
is 404 and changes nothing; a withdrawn sketch withdraws the works drawn from
it (the trigger in sql/013_gallery.sql, set the way a withdrawal sets it);
thumbnails carry an ETag and answer 304; bad input gets its own error; a work
published while atelierd is away waits in the spool and arrives once.

Screenshots of the wall, a work's page and the phone layout are kept in
$ATELIER_BUILD/test-artifacts/gallery/."""
import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest

import images
from conftest import BUILD, ROOT, Http, multipart, wait_until
from daemon import start_atelierd
from test_serve import SERVE, models, start_node  # noqa: F401  (models: fixture)

pytestmark = pytest.mark.skipif(not os.path.exists(SERVE), reason="atelier-serve not built")

CHROMIUM = os.environ.get("ATELIER_CHROMIUM", "/usr/bin/chromium")
HERE = os.path.join(ROOT, "tests", "browser")
ARTIFACTS = os.path.join(BUILD, "test-artifacts", "gallery")
FAST = ("--gallery-poll", "0.2", "--heartbeat-interval", "0.2", "--retry-max", "0.5", "--poll-wait", "2")


def painting(seed=1, size=128):
    return images.png(size, size, lambda x, y: ((x * 2 + seed) % 256, (y * 3) % 256, (x + y + seed * 40) % 256), 3)


def publish(http, seed=1, title="A house", name="Ada", consent="true", style="7", extra=(), sketch=None,
            paint=None):
    fields = [("sketch", ("s.png", sketch if sketch is not None else images.sketch(seed), "image/png")),
              ("painting", ("p.png", paint if paint is not None else painting(seed), "image/png")),
              ("style", style), ("model_version", "3")]
    if title is not None:
        fields.append(("title", title))
    if name is not None:
        fields.append(("name", name))
    if consent is not None:
        fields.append(("consent_display", consent))
    fields += list(extra)
    body, ct = multipart(fields)
    return http.post("/api/publish", body, headers={"Content-Type": ct})


def gallery_ids(node, **q):
    qs = "&".join("%s=%s" % kv for kv in q.items())
    r = node.http.get("/api/gallery" + ("?" + qs if qs else ""))
    assert r.status == 200, r
    return [w["id"] for w in r.json()["works"]]


def mine(node, receipt, method="GET"):
    return node.http.request(method, "/api/works/mine", headers={"X-Atelier-Receipt": receipt} if receipt else {})


@pytest.fixture
def stack(db_url, pg, models):
    d = start_atelierd(db_url)
    nodes = []
    for name in ("ga", "gb"):
        nodes.append(start_node("--model-file", models[0], "--atelierd", d.url, "--token", d.token("node"),
                                "--name", name, "--burst-publish", "100", *FAST).wait_ready())
    yield d, nodes[0], nodes[1]
    for n in nodes:
        assert n.stop() == 0, n.log()[-3000:]
    d.stop()


def test_publish_appears_everywhere_hide_and_withdraw(stack, pg, db_url):
    d, a, b = stack
    op = d.http(d.token("operator"))
    title = 'Tom & "Jerry" <script>alert(1)</script>'
    r = publish(a.http, seed=3, title=title, name="Zoë <b>")
    assert r.status == 202, r
    receipt = r.json()["receipt"]
    assert len(receipt) == 43 and set(receipt) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    # only the receipt's hash reaches the database
    wait_until(lambda: pg.psql("SELECT count(*) FROM works", db_url) == "1", timeout=15, what="the work stored")
    assert pg.psql("SELECT encode(receipt_sha256, 'hex') FROM works", db_url) == hashlib.sha256(receipt.encode()).hexdigest()
    wid = int(pg.psql("SELECT id FROM works", db_url))
    # each node polls the feed on its own clock: both within 5 s, in either order
    wait_until(lambda: gallery_ids(b) == [wid], timeout=5, what="the work in node B's gallery")
    wait_until(lambda: gallery_ids(a) == [wid], timeout=5, what="the work in node A's gallery")

    # the wall and the work's page on B, user text escaped
    wall = b.http.get("/gallery")
    assert wall.status == 200 and wall.headers["content-type"].startswith("text/html")
    html = wall.body.decode()
    assert "<script>alert(1)" not in html and "Tom &amp; &quot;Jerry&quot; &lt;script&gt;" in html, html
    assert "Zoë &lt;b&gt;" in html and "/gallery/thumbs/%d.jpg" % wid in html
    page = b.http.get("/gallery/works/%d" % wid).body.decode()
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert 'href="/?style=7"' in page and "model v3" in page
    assert "/gallery/works/%d/sketch" % wid in page and "/gallery/works/%d/painting" % wid in page
    assert b.http.get("/gallery?style=7").body.decode().count("/gallery/thumbs/%d.jpg" % wid) == 1
    assert "/gallery/thumbs/%d.jpg" % wid not in b.http.get("/gallery?style=8").body.decode()
    assert b.http.get("/gallery?style=x;drop").status == 400

    # thumbnails: made once, then from the cache, with an ETag and 304
    t = b.http.get("/gallery/thumbs/%d.jpg" % wid)
    assert t.status == 200 and t.body[:3] == b"\xff\xd8\xff" and t.headers["content-type"] == "image/jpeg"
    etag = t.headers["etag"]
    assert "max-age" in t.headers["cache-control"]
    t2 = b.http.get("/gallery/thumbs/%d.jpg" % wid)
    assert t2.body == t.body and t2.headers["etag"] == etag
    assert b.metric('atelier_serve_gallery_cache_total{outcome="hit"}') >= 1
    nm = b.http.get("/gallery/thumbs/%d.jpg" % wid, headers={"If-None-Match": etag})
    assert nm.status == 304 and nm.body == b""
    assert b.http.get("/gallery/thumbs/%d.jpg" % wid, headers={"If-None-Match": '"other"'}).status == 200
    sk = b.http.get("/gallery/works/%d/sketch" % wid)
    assert sk.status == 200 and sk.body == images.sketch(3)

    # the receipt reads its work; a wrong one is 404
    m = mine(a, receipt)
    assert m.status == 200 and m.json()["id"] == wid and m.json()["status"] == "published", m
    wrong = receipt[:-1] + ("A" if receipt[-1] != "A" else "B")
    for bad in (wrong, "short", None):
        assert mine(b, bad).status == 404
        assert mine(b, bad, "DELETE").status == 404
    assert pg.psql("SELECT status FROM works", db_url) == "published"

    # hidden by an operator: gone from both nodes within 5 s, thumbnails included
    assert b.metric("atelier_serve_gallery_cache_items") >= 1
    t0 = time.monotonic()
    h = op.post("/v1/works/%d/hide" % wid)
    assert h.status == 200 and h.json()["status"] == "hidden", h
    for n in (a, b):
        wait_until(lambda: n.http.get("/gallery/works/%d" % wid).status == 404, timeout=5, what="hidden")
    assert time.monotonic() - t0 < 5
    assert b.http.get("/gallery/thumbs/%d.jpg" % wid).status == 404
    assert b.http.get("/gallery/thumbs/%d.jpg" % wid, headers={"If-None-Match": etag}).status == 404
    assert gallery_ids(a) == [] and gallery_ids(b) == []
    assert b.metric("atelier_serve_gallery_cache_items") == 0
    assert "/gallery/thumbs/%d.jpg" % wid not in b.http.get("/gallery").body.decode()
    assert op.post("/v1/works/%d/unhide" % wid).status == 200
    wait_until(lambda: gallery_ids(b) == [wid], timeout=5, what="unhidden")
    assert op.get("/v1/works?status=published").json()["works"][0]["id"] == wid
    # a viewer or node may not hide
    assert d.http(d.token("viewer")).post("/v1/works/%d/hide" % wid).status == 403

    # withdrawn with the receipt: pixels erased, gone everywhere
    w = mine(b, receipt, "DELETE")
    assert w.status == 200 and w.json()["status"] == "withdrawn", w
    assert pg.psql("SELECT status, sketch IS NULL, painting IS NULL FROM works", db_url) == "withdrawn|t|t"
    for n in (a, b):
        wait_until(lambda: gallery_ids(n) == [], timeout=5, what="withdrawn")
    assert mine(a, receipt).json()["status"] == "withdrawn"
    # withdrawn is final: an operator cannot bring it back
    assert op.post("/v1/works/%d/unhide" % wid).status == 404
    assert op.get("/v1/works/%d/painting" % wid).status == 404


def test_bad_input(stack, models):
    d, a, b = stack
    r = publish(a.http, consent=None)
    assert r.status == 422 and r.json()["detail"]["field"] == "consent_display", r
    assert publish(a.http, consent="no").status == 422
    # training consent is not display consent
    r = publish(a.http, consent=None, extra=[("consent", "true")])
    assert r.status == 422 and r.json()["detail"]["field"] == "consent_display"
    r = publish(a.http, paint=b"GIF89a not an image")
    assert r.status == 415 and r.json()["detail"]["field"] == "painting", r
    r = publish(a.http, sketch=b"hello")
    assert r.status == 415 and r.json()["detail"]["field"] == "sketch"
    big = painting(1)[:-12] + b"\0" * (4 << 20) + painting(1)[-12:]
    r = publish(a.http, paint=big)
    assert r.status == 413 and r.json()["detail"]["field"] == "painting", r
    r = publish(a.http, title="x" * 121)
    assert r.status == 422 and r.json()["detail"]["field"] == "title"
    assert publish(a.http, title="é" * 120).status == 202  # characters, not bytes
    body, ct = multipart([("sketch", ("s.png", images.sketch(1), "image/png")),
                          ("painting", ("p.png", painting(1), "image/png")), ("style", "1"),
                          ("consent_display", "true"), ("name", b"\xff\xfe")])
    r = a.http.post("/api/publish", body, headers={"Content-Type": ct})
    assert r.status == 422 and r.json()["detail"]["field"] == "name", r
    assert publish(a.http, title="a\x01b").status == 422
    assert publish(a.http, style="-1").status == 422
    assert publish(a.http, style="1", extra=[("style2", "2"), ("alpha", "2")]).status == 422
    assert publish(a.http, style="1", extra=[("style2", "2"), ("alpha", "0.25")]).status == 202
    assert a.http.post("/api/publish", b"{}", headers={"Content-Type": "application/json"}).status == 415
    # a blank sketch: the same normalisation atelierd runs refuses it here
    blank = images.png(64, 64, lambda x, y: 255)
    r = publish(a.http, sketch=blank)
    assert r.status == 422 and r.json()["detail"]["field"] == "sketch", r
    # a node without atelierd cannot publish
    n = start_node("--model-file", models[0]).wait_ready()
    try:
        assert publish(n.http).status == 503
        assert n.http.get("/gallery").status == 200
        assert n.http.get("/gallery/works/1").status == 404
    finally:
        assert n.stop() == 0


def test_publish_rate_limit(db_url, models):
    d = start_atelierd(db_url)
    n = start_node("--model-file", models[0], "--atelierd", d.url, "--token", d.token("node"), "--rate-publish",
                   "0.001", "--burst-publish", "2", *FAST).wait_ready()
    try:
        assert publish(n.http, seed=1).status == 202
        assert publish(n.http, seed=2).status == 202
        r = publish(n.http, seed=3)
        assert r.status == 429 and int(r.headers["retry-after"]) > 900, r
        assert r.json()["detail"]["endpoint"] == "publish"
        assert n.metric('atelier_serve_ratelimited_total{endpoint="publish"}') == 1
    finally:
        assert n.stop() == 0
        d.stop()


def test_sketch_withdrawal_withdraws_its_works(stack, pg, db_url):
    d, a, b = stack
    # the same drawing contributed (as PNG) and published (as JPEG): one hash
    assert publish(a.http, seed=5, sketch=images.to_jpeg(images.sketch(5))).status == 202
    assert publish(a.http, seed=6).status == 202
    body, ct = multipart([("image", ("s.png", images.sketch(5), "image/png")), ("consent", "true")])
    assert a.http.post("/api/contribute", body, headers={"Content-Type": ct}).status == 202
    wait_until(lambda: pg.psql("SELECT count(*) FROM works", db_url) == "2"
               and pg.psql("SELECT count(*) FROM images WHERE domain = 'sketch'", db_url) == "1",
               timeout=15, what="works and the sketch stored")
    assert pg.psql("SELECT count(*) FROM works w JOIN images i ON i.domain = 'sketch' "
                   "AND i.sha256 = w.sketch_sha256", db_url) == "1"
    ids = {int(x) for x in pg.psql("SELECT id FROM works", db_url).split()}
    wait_until(lambda: set(gallery_ids(b)) == ids, timeout=5, what="both works on B")
    drawn = int(pg.psql("SELECT w.id FROM works w JOIN images i ON i.sha256 = w.sketch_sha256", db_url))
    assert b.http.get("/gallery/thumbs/%d.jpg" % drawn).status == 200
    # the withdrawal as the rights code makes it: the status set to deleted
    pg.psql("UPDATE images SET status = 'deleted' WHERE domain = 'sketch'", db_url)
    assert pg.psql("SELECT status, sketch IS NULL, painting IS NULL, changed_by FROM works WHERE id = %d" % drawn,
                   db_url) == "withdrawn|t|t|sketch withdrawn"
    assert pg.psql("SELECT status FROM works WHERE id <> %d" % drawn, db_url) == "published"
    for n in (a, b):
        wait_until(lambda: gallery_ids(n) == sorted(ids - {drawn}, reverse=True), timeout=5, what="withdrawn")
    assert b.http.get("/gallery/thumbs/%d.jpg" % drawn).status == 404
    # the same drawing published again after its withdrawal stays out
    assert publish(a.http, seed=5).status == 202
    wait_until(lambda: pg.psql("SELECT count(*) FROM works", db_url) == "3", timeout=15, what="third work")
    assert pg.psql("SELECT status FROM works ORDER BY id DESC LIMIT 1", db_url) == "withdrawn"


def test_spooled_work_arrives_once(db_url, pg, models):
    d = start_atelierd(db_url)
    port = d.port
    tok = d.token("node")
    n = start_node("--model-file", models[0], "--atelierd", d.url, "--token", tok, *FAST).wait_ready()
    try:
        assert d.stop() == 0
        r1 = publish(n.http, seed=7)
        r2 = publish(n.http, seed=8)
        assert r1.status == 202 and r2.status == 202
        assert n.metric("atelier_serve_works_spool_depth") == 2
        # a spooled work is found, and withdrawn, on the node
        assert mine(n, r2.json()["receipt"]).json()["status"] == "queued"
        assert mine(n, r2.json()["receipt"], "DELETE").json()["status"] == "withdrawn"
        assert n.metric("atelier_serve_works_spool_depth") == 1
        d = start_atelierd(db_url, port=port)
        wait_until(lambda: n.metric("atelier_serve_works_spool_depth") == 0, timeout=30, what="spool drained")
        assert pg.psql("SELECT count(*) FROM works", db_url) == "1"
        wait_until(lambda: len(gallery_ids(n)) == 1, timeout=5, what="in the gallery")
        assert mine(n, r1.json()["receipt"]).json()["status"] == "published"
        assert mine(n, r2.json()["receipt"]).status == 404
        # a resend (the answer lost) is the same work
        op = d.http(d.token("operator"))
        w = op.get("/v1/works").json()["works"][0]
        assert w["title"] == "A house" and w["style"] == {"style": 7} and w["model_version"] == 3
    finally:
        assert n.stop() == 0
        d.stop()


def test_routes_match_their_schemas(stack, pg, db_url):
    """Every gallery route's real replies, successes and refusals, against
    the OpenAPI documents (test_openapi.py lints the documents and leaves
    these routes to this test: they need two nodes and atelierd)."""
    import secrets
    from test_openapi import Conformance
    d, a, b = stack
    dc = Conformance(Http(d.url).get("/v1/openapi.json").json())
    nc = Conformance(a.http.get("/api/openapi.json").json())
    node = d.http(d.token("node"))
    op = d.http(d.token("operator"))
    receipt = secrets.token_urlsafe(32)
    fields = [("sketch", ("s.png", images.sketch(9), "image/png")), ("painting", ("p.png", painting(9), "image/png")),
              ("style", '{"style":3,"style2":4,"alpha":0.3}'), ("title", "t"), ("model_version", "2"),
              ("receipt_sha256", hashlib.sha256(receipt.encode()).hexdigest())]
    body, ct = multipart(fields)
    w = dc.check("POST", "/v1/works", node.post("/v1/works", body, headers={"Content-Type": ct}), 201)
    assert dc.check("POST", "/v1/works", node.post("/v1/works", body, headers={"Content-Type": ct}), 200)["duplicate"]
    body, ct = multipart(fields[:2] + [("style", '{"style":"x"}')] + fields[3:])
    dc.check("POST", "/v1/works", node.post("/v1/works", body, headers={"Content-Type": ct}), 422)
    wid = w["id"]
    assert dc.check("GET", "/v1/works/{id}", op.get("/v1/works/%d" % wid), 200)["style_key"] == "3+4@0.30"
    dc.check("GET", "/v1/works/{id}", op.get("/v1/works/999999"), 404)
    dc.check("GET", "/v1/works", op.get("/v1/works?style=3%2B4@0.30"), 200)
    dc.check("GET", "/v1/works", op.get("/v1/works?status=gone"), 400)
    dc.check("GET", "/v1/works/changes", node.get("/v1/works/changes?after=0"), 200)
    dc.check("GET", "/v1/works/changes", node.get("/v1/works/changes?after=x"), 400)
    dc.check("POST", "/v1/works/{id}/hide", op.post("/v1/works/%d/hide" % wid), 200)
    dc.check("POST", "/v1/works/{id}/unhide", op.post("/v1/works/%d/unhide" % wid), 200)
    dc.check("POST", "/v1/works/{id}/hide", op.post("/v1/works/999999/hide"), 404)
    dc.check("POST", "/v1/works/{id}/hide", node.post("/v1/works/%d/hide" % wid), 403)
    hdr = {"X-Atelier-Receipt": receipt}
    dc.check("GET", "/v1/works/by-receipt", node.get("/v1/works/by-receipt", headers=hdr), 200)
    dc.check("GET", "/v1/works/by-receipt", node.get("/v1/works/by-receipt"), 404)
    dc.check("GET", "/v1/works/{id}/painting", op.get("/v1/works/%d/painting" % wid), 200)
    dc.check("GET", "/v1/works/{id}/sketch", op.get("/v1/works/%d/sketch" % wid), 200)

    # the node's
    r = nc.check("POST", "/api/publish", publish(a.http, seed=10), 202)
    nc.check("POST", "/api/publish", publish(a.http, seed=10, consent=None), 422)
    nc.check("POST", "/api/publish", a.http.post("/api/publish", b"x", headers={"Content-Type": "text/plain"}), 415)
    mine_hdr = {"X-Atelier-Receipt": r["receipt"]}
    wait_until(lambda: a.http.get("/api/works/mine", headers=mine_hdr).json()["status"] == "published", timeout=10,
               what="the work delivered")
    nc.check("GET", "/api/works/mine", a.http.get("/api/works/mine", headers=mine_hdr), 200)
    nc.check("GET", "/api/works/mine", a.http.get("/api/works/mine", headers={"X-Atelier-Receipt": "x"}), 404)
    wait_until(lambda: len(gallery_ids(a)) == 2, timeout=5, what="both works on A")
    nc.check("GET", "/api/gallery", a.http.get("/api/gallery?limit=1"), 200)
    nc.check("GET", "/api/gallery", a.http.get("/api/gallery?limit=0"), 400)
    nc.check("GET", "/gallery", a.http.get("/gallery"), 200)
    nc.check("GET", "/gallery/works/{id}", a.http.get("/gallery/works/%d" % wid), 200)
    nc.check("GET", "/gallery/works/{id}", a.http.get("/gallery/works/999999"), 404)
    nc.check("GET", "/gallery/thumbs/{id}.jpg", a.http.get("/gallery/thumbs/%d.jpg" % wid), 200)
    nc.check("GET", "/gallery/works/{id}/painting", a.http.get("/gallery/works/%d/painting" % wid), 200)
    nc.check("GET", "/gallery.css", a.http.get("/gallery.css"), 200)
    nc.check("DELETE", "/api/works/mine", a.http.request("DELETE", "/api/works/mine", headers=mine_hdr), 200)
    nc.check("DELETE", "/api/works/mine", a.http.request("DELETE", "/api/works/mine"), 404)
    dc.check("DELETE", "/v1/works/by-receipt", node.request("DELETE", "/v1/works/by-receipt", headers=hdr), 200)
    dc.check("DELETE", "/v1/works/by-receipt", node.request("DELETE", "/v1/works/by-receipt"), 404)
    assert {p for p in dc.seen if p[1].startswith("/v1/works")} == {
        (m, p) for p, ms in dc.doc["paths"].items() if p.startswith("/v1/works") for m in ms
        if "application/json" in ms[m]["responses"][min(c for c in ms[m]["responses"] if c[0] == "2")]
        .get("content", {})}


def test_works_feed_and_list_are_paged(db_url, pg):
    d = start_atelierd(db_url)
    try:
        op = d.http(d.token("operator"))
        pg.psql("INSERT INTO works (style, style_key, sketch, sketch_type, painting, painting_type, sketch_sha256, "
                "receipt_sha256) SELECT jsonb_build_object('style', i % 3), (i % 3)::text, '\\x00', 'image/png', "
                "'\\x00', 'image/png', sha256(('s' || i)::bytea), sha256(('r' || i)::bytea) "
                "FROM generate_series(1, 25) i", db_url)
        r = op.get("/v1/works/changes?after=0&limit=10").json()
        assert len(r["works"]) == 10 and r["more"] is True
        revs = [w["rev"] for w in r["works"]]
        assert revs == sorted(revs)
        r2 = op.get("/v1/works/changes?after=%d&limit=100" % r["rev"]).json()
        assert len(r2["works"]) == 15 and r2["more"] is False
        l1 = op.get("/v1/works?limit=10&style=1").json()
        assert [w["style_key"] for w in l1["works"]] == ["1"] * 9 and l1["next"] is None
        ids = [w["id"] for w in op.get("/v1/works?limit=10").json()["works"]]
        assert ids == sorted(ids, reverse=True)
        assert op.get("/v1/works?style=bad;").status == 400
        # a hide is a change after the cursor
        op.post("/v1/works/%d/hide" % ids[0])
        r3 = op.get("/v1/works/changes?after=%d" % r2["rev"]).json()
        assert [(w["id"], w["status"]) for w in r3["works"]] == [(ids[0], "hidden")]
    finally:
        d.stop()


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="%s is not installed" % CHROMIUM)
def test_publish_from_the_page_in_chromium(stack, tmp_path):
    from test_browser import npm_ci
    npm_ci()
    d, a, b = stack
    # a few works first, so that the wall in the screenshots is a wall
    for seed in range(1, 8):
        assert publish(a.http, seed=seed, title="Study no. %d" % seed, name="Test suite", style=str(seed % 3),
                       paint=painting(seed * 37, 256)).status == 202
    wait_until(lambda: len(gallery_ids(b)) == 7, timeout=10, what="the first works on B")
    out = subprocess.run(["node", os.path.join(HERE, "gallery.mjs"), a.url, b.url, str(tmp_path), d.url,
                          d.token("operator")],
                         capture_output=True, text=True, timeout=240)
    os.makedirs(ARTIFACTS, exist_ok=True)
    for f in os.listdir(tmp_path):
        if f.endswith(".png"):
            shutil.copy(os.path.join(tmp_path, f), ARTIFACTS)
    print("gallery screenshots in", ARTIFACTS)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["publish"] == "done", facts
    assert facts["disabled_without_consent"] is True
    assert facts["receipt_shown"] == facts["receipts"][0]["token"]
    assert len(facts["receipts"]) == 1 and facts["receipts"][0]["kind"] == "work", facts
    assert len(facts["receipts"][0]["token"]) == 43
    # node B shows it (it was published on A)
    assert facts["wall_count"] >= 1 and facts["title_on_b"] == "Published from Chromium", facts
    assert facts["work_images_loaded"] == 2, facts
    assert facts["use_style"].endswith("/?style=42"), facts
    assert facts["style_preselected"] == "42", facts
    for size in ("desktop", "phone"):
        for pg in ("wall", "work"):
            lay = facts["layout"][size + "_" + pg]
            assert lay["scrollWidth"] <= lay["innerWidth"] and not lay["over"], (size, pg, lay)
    # the phone wall shows two works a row, the work's page keeps sketch beside painting
    assert facts["layout"]["phone_wall"]["columns"] == 2, facts["layout"]
    assert facts["layout"]["phone_work"]["side_by_side"] and facts["layout"]["desktop_work"]["side_by_side"]
    # hidden from the dashboard: gone from both nodes within 5 s
    for n in (a, b):
        wait_until(lambda: n.http.get("/gallery/works/%d" % facts["hidden_id"]).status == 404, timeout=5,
                   what="hidden from the dashboard")
    assert facts["hidden_id"] not in gallery_ids(b)
    assert Http(b.url).get("/api/gallery").json()["works"][0]["title"] == "Study no. 7"
