"""atelierd end to end: health, ingest of sketches and paintings, every bad
input with its status, auth roles, durability across kill -9, and PostgreSQL
restarts under a running daemon."""
import json
import time

import pytest

import images
from conftest import multipart, wait_until
from daemon import start_atelierd, wait_ready


@pytest.fixture
def daemon(db_url):
    d = start_atelierd(db_url, "--max-body", "1MiB")
    d.op = d.token("operator")
    d.api = d.http(d.op)
    yield d
    rc = d.stop()
    assert rc == 0, "atelierd did not stop cleanly (rc %r):\n%s" % (rc, d.log()[-3000:])


def count(pg, db_url, where="true"):
    return int(pg.psql("SELECT count(*) FROM images WHERE " + where, db_url))


def test_health_endpoints(daemon):
    h = daemon.http()
    r = h.get("/healthz")
    assert r.status == 200 and r.json()["status"] == "alive"
    r = h.get("/readyz")
    assert r.status == 200, r
    r = h.get("/metrics")
    assert r.status == 200
    text = r.body.decode()
    assert "atelier_db_up 1" in text
    assert 'atelier_http_requests_total{method="GET",route="/readyz",status="200"} 1' in text
    assert r.headers.get("x-request-id")


def test_unknown_route_and_method(daemon):
    r = daemon.api.get("/v1/nothing")
    assert r.status == 404 and r.json()["error"]
    r = daemon.api.request("DELETE", "/v1/sketches")
    assert r.status == 405


def test_upload_png_sketch(daemon, pg):
    body = images.sketch(1)
    r = daemon.api.post("/v1/sketches", body, headers={"Content-Type": "image/png"})
    assert r.status == 201, r
    j = r.json()
    assert j["id"] > 0 and len(j["sha256"]) == 64 and j["split"] in ("train", "holdout")
    assert 0.002 < j["ink_ratio"] < 0.5
    assert count(pg, daemon.db_url) == 1
    meta = daemon.api.get("/v1/sketches/%d" % j["id"])
    assert meta.status == 200 and meta.json()["sha256"] == j["sha256"]
    img = daemon.api.get("/v1/sketches/%d.png" % j["id"])
    assert img.status == 200 and img.headers["content-type"] == "image/png"
    assert images.png_size(img.body) == (256, 256)
    assert daemon.api.get("/v1/sketches/999999").status == 404
    assert daemon.api.get("/v1/sketches/abc").status == 400


def test_duplicate_creates_no_row(daemon, pg):
    body = images.sketch(2)
    a = daemon.api.post("/v1/sketches", body, headers={"Content-Type": "image/png"})
    b = daemon.api.post("/v1/sketches", body, headers={"Content-Type": "image/png"})
    assert a.status == 201 and b.status == 200, (a, b)
    assert a.json()["id"] == b.json()["id"] and b.json()["duplicate"] is True
    # The same pixels as JPEG at high quality differ slightly (lossy), but the
    # same PNG re-sent through multipart is the same row.
    data, ct = multipart([("image", ("s.png", body, "image/png"))])
    c = daemon.api.post("/v1/sketches", data, headers={"Content-Type": ct})
    assert c.status == 200 and c.json()["id"] == a.json()["id"]
    assert count(pg, daemon.db_url) == 1


def test_jpeg_and_multipart_fields(daemon, pg):
    jpg = images.to_jpeg(images.sketch(3))
    r = daemon.api.post("/v1/sketches", jpg, headers={"Content-Type": "image/jpeg"})
    assert r.status == 201, r
    data, ct = multipart([("contributor", "ada"), ("consent", "true"),
                          ("image", ("s.png", images.sketch(4), "image/png"))])
    r = daemon.api.post("/v1/sketches", data, headers={"Content-Type": ct})
    assert r.status == 201, r
    row = pg.psql("SELECT contributor, consent FROM images WHERE id = %d" % r.json()["id"], daemon.db_url)
    assert row == "ada|t"


def test_consent_words_any_case_and_nothing_else(daemon, pg):
    """consent is read by lib/config.c's config_parse_bool, as on the node: yes/y/true/1/on and
    no/n/false/0/off in any case; an unrecognised answer is a 422 naming the field, never a stored "no"."""
    def upload(seed, consent):
        fields = [("image", ("s.png", images.sketch(seed), "image/png"))]
        if consent is not None:
            fields.append(("consent", consent))
        data, ct = multipart(fields)
        return daemon.api.post("/v1/sketches", data, headers={"Content-Type": ct})
    for seed, word, stored in ((40, "TRUE", "t"), (41, "Y", "t"), (42, "on", "t"), (43, "No", "f"),
                               (44, "n", "f"), (45, "0", "f"), (46, None, "")):
        r = upload(seed, word)
        assert r.status == 201, (word, r)
        got = pg.psql("SELECT consent FROM images WHERE id = %d" % r.json()["id"], daemon.db_url)
        assert got == stored, (word, got)
    before = count(pg, daemon.db_url)
    for word in ("maybe", "", "yes please"):
        r = upload(47, word)
        assert r.status == 422 and r.json()["detail"]["field"] == "consent", (word, r)
    assert count(pg, daemon.db_url) == before


def test_padding_not_stretching(daemon):
    # A 200x100 image: black bar in the middle rows; normalised to 256x256 it
    # must get white bands above and below (letterboxing), not be stretched.
    def px(x, y):
        return 0 if 40 <= y < 60 else 255
    r = daemon.api.post("/v1/sketches", images.png(200, 100, px), headers={"Content-Type": "image/png"})
    assert r.status == 201, r
    img = daemon.api.get("/v1/sketches/%d.png" % r.json()["id"]).body
    assert images.png_size(img) == (256, 256)
    assert images.getpoint(img, 128, 10) == [255.0]    # top band: padding
    assert images.getpoint(img, 128, 245) == [255.0]   # bottom band: padding
    assert images.getpoint(img, 128, 128) == [0.0]     # the bar, scaled by 1.28 around the centre


def test_painting_needs_operator_and_is_rgb(daemon, pg):
    def px(x, y):
        return ((x * 3) % 256, (y * 5) % 256, 128)
    body = images.png(64, 64, px, channels=3)
    r = daemon.api.post("/v1/paintings", body, headers={"Content-Type": "image/png"})
    assert r.status == 201, r
    assert pg.psql("SELECT channels FROM images WHERE id = %d" % r.json()["id"], daemon.db_url) == "3"
    node = daemon.http(daemon.token("node"))
    assert node.post("/v1/paintings", body, headers={"Content-Type": "image/png"}).status == 403


@pytest.mark.parametrize("case", ["text", "garbage_png", "truncated", "too_big", "bomb", "blank", "all_ink",
                                  "no_type", "bad_multipart", "multipart_no_image", "multipart_too_many_parts"])
def test_bad_input(daemon, pg, case):
    good = images.sketch(5)
    if case == "text":
        body, ct, want = b"hello", "text/plain", 415
    elif case == "garbage_png":
        body, ct, want = b"not really a png at all" * 10, "image/png", 415
    elif case == "truncated":
        body, ct, want = good[: len(good) // 2], "image/png", 422
    elif case == "too_big":
        body, ct, want = good + b"\0" * (1200 * 1024), "image/png", 413
    elif case == "bomb":
        body, ct, want = images.bomb_header(), "image/png", 422
    elif case == "blank":
        body, ct, want = images.png(256, 256, lambda x, y: 255), "image/png", 422
    elif case == "all_ink":
        body, ct, want = images.png(256, 256, lambda x, y: 0), "image/png", 422
    elif case == "no_type":
        body, ct, want = good, None, 415
    elif case == "bad_multipart":
        body, ct, want = b"--x\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc", \
            "multipart/form-data; boundary=x", 400
    elif case == "multipart_too_many_parts":
        # over the part cap: 413 here as on the serving node (it was 400 here)
        body, ct = multipart([("image", ("s.png", good, "image/png"))] + [("f%d" % i, "x") for i in range(8)])
        want = 413
    else:
        body, ct = multipart([("other", "x")])
        want = 400
    headers = {"Content-Type": ct} if ct else {}
    t0 = time.time()
    r = daemon.api.post("/v1/sketches", body, headers=headers)
    took = time.time() - t0
    assert r.status == want, r
    j = r.json()
    assert isinstance(j["error"], str) and j["error"]
    assert j["code"], j
    assert j["request_id"]
    if case in ("blank", "all_ink"):
        assert "ink_ratio" in j["detail"], j
        assert (j["detail"]["ink_ratio"] < 0.01) if case == "blank" else (j["detail"]["ink_ratio"] > 0.95)
    if case == "bomb":
        assert took < 1.0, "the pixel cap must be checked before decoding (took %.2fs)" % took
        assert "pixels" in json.dumps(j)
    if case == "too_big":
        assert j["detail"]["limit"] == 1024 * 1024
    assert count(pg, daemon.db_url) == 0, "a rejected upload left a row"


def test_auth_roles(daemon):
    body = images.sketch(6)
    h = {"Content-Type": "image/png"}
    anon = daemon.http()
    assert anon.post("/v1/sketches", body, headers=h).status == 401
    assert daemon.http("atl_notatoken").post("/v1/sketches", body, headers=h).status == 401
    viewer = daemon.http(daemon.token("viewer"))
    r = viewer.post("/v1/sketches", body, headers=h)
    assert r.status == 403 and r.json()["detail"]["role"] == "viewer"
    node = daemon.http(daemon.token("node"))
    r = node.post("/v1/sketches", body, headers=h)
    assert r.status == 201
    assert viewer.get("/v1/sketches/%d" % r.json()["id"]).status == 200
    # tokens through the API: operator only
    assert node.post("/v1/tokens", {"role": "node"}).status == 403
    r = daemon.api.post("/v1/tokens", {"role": "viewer", "name": "dash"})
    assert r.status == 201 and r.json()["token"].startswith("atl_")
    assert daemon.http(r.json()["token"]).get("/v1/sketches/%d" % 1).status in (200, 404)
    assert daemon.api.post("/v1/tokens", {"role": "root"}).status == 422
    assert daemon.api.post("/v1/tokens", b"{not json", headers={"Content-Type": "application/json"}).status == 400


def test_revoked_token_is_refused(daemon, pg):
    tok = daemon.token("node")
    node = daemon.http(tok)
    assert node.get("/v1/sketches/1").status in (200, 404)
    pg.psql("UPDATE api_tokens SET revoked_at = now() WHERE role = 'node'", daemon.db_url)
    # the NOTIFY clears every atelierd's cache
    wait_until(lambda: node.get("/v1/sketches/1").status == 401, timeout=5, what="revocation")


def test_kill9_after_201_keeps_the_row(db_url, pg):
    d = start_atelierd(db_url)
    api = d.http(d.token("operator"))
    r = api.post("/v1/sketches", images.sketch(7), headers={"Content-Type": "image/png"})
    assert r.status == 201
    d.kill9()
    assert count(pg, db_url, "id = %d" % r.json()["id"]) == 1
    d2 = start_atelierd(db_url)
    try:
        api2 = d2.http(api.token)
        r2 = api2.post("/v1/sketches", images.sketch(7), headers={"Content-Type": "image/png"})
        assert r2.status == 200 and r2.json()["id"] == r.json()["id"]
    finally:
        d2.stop()


def test_postgres_restart_under_running_daemon(db_url, pg):
    d = start_atelierd(db_url)
    try:
        api = d.http(d.token("operator"))
        assert api.post("/v1/sketches", images.sketch(8), headers={"Content-Type": "image/png"}).status == 201
        pg.stop()
        wait_ready(api, 503)
        r = api.post("/v1/sketches", images.sketch(9), headers={"Content-Type": "image/png"})
        assert r.status == 503, r
        assert r.json()["error"]
        pg.start()
        wait_ready(api, 200, timeout=30)
        r = api.post("/v1/sketches", images.sketch(10), headers={"Content-Type": "image/png"})
        assert r.status == 201, r
        assert d.proc.alive()
        # the row from the failed attempt was never written
        assert count(pg, db_url) == 2
    finally:
        if not pg.url or pg.psql("SELECT 1") != "1":
            pg.start()
        assert d.stop() == 0


def test_concurrent_migrations_are_safe(db_url, pg):
    import os
    import subprocess
    from conftest import BIN
    env = dict(os.environ, ATELIER_DATABASE_URL=db_url)
    procs = [subprocess.Popen([os.path.join(BIN, "atelierd"), "migrate"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    applied = [int(o[0].split()[2]) for o in outs]
    assert sum(1 for a in applied if a > 0) == 1, applied
    n = int(pg.psql("SELECT count(*) FROM schema_migrations", db_url))
    assert n >= 1


def test_cli_import_summary(daemon, pg, tmp_path):
    import os
    import subprocess
    from conftest import BIN
    (tmp_path / "a.png").write_bytes(images.sketch(20))
    (tmp_path / "b.png").write_bytes(images.sketch(21))
    (tmp_path / "c.jpg").write_bytes(images.to_jpeg(images.sketch(22)))
    (tmp_path / "d.png").write_bytes(images.sketch(20))          # same pixels as a.png
    (tmp_path / "e.png").write_bytes(images.png(64, 64, lambda x, y: 255))   # blank
    (tmp_path / "notes.txt").write_text("not an image, not a candidate")
    env = dict(os.environ, ATELIER_URL=daemon.url, ATELIER_TOKEN=daemon.op)
    out = subprocess.run([os.path.join(BIN, "atelier"), "import", str(tmp_path), "--domain", "sketch"], env=env,
                         capture_output=True, text=True, timeout=60)
    # a rejected file is data that did not get in: the exit status says so (tests/test_cli.py has more)
    assert out.returncode == 1, out
    assert "5 files: 3 accepted, 1 duplicate, 1 rejected" in out.stdout, out.stdout
    assert "rejected e.png" in out.stderr and "ink" in out.stderr
    assert count(pg, daemon.db_url) == 3
    js = subprocess.run([os.path.join(BIN, "atelier"), "--json", "import", str(tmp_path), "--domain", "sketch"],
                        env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(js.stdout)["duplicate"] == 4


# ---- each side capped: memory per upload does not follow the long side ----

# How much an upload refused from its header may raise atelierd's peak RSS.
# Before the cap, a 40,000,000x1 PNG (39 KB) took the peak from 72 MB to 520 MB.
HWM_BOUND_KB = 16 * 1024
_long_pngs = {}


def long_png(w, h):
    if (w, h) not in _long_pngs:
        _long_pngs[(w, h)] = images.long_png(w, h)
    return _long_pngs[(w, h)]


def vm_hwm_kb(pid, reset=False):
    """Peak resident memory of pid in kB; reset first (clear_refs 5) when asked."""
    if reset:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for %d" % pid)


@pytest.mark.parametrize("w,h", [(40000000, 1), (1, 40000000), (8193, 1)])
def test_ingest_caps_each_side_from_the_header(daemon, pg, w, h):
    body = long_png(w, h)
    side = "width (%d)" % w if w > 8192 else "height (%d)" % h
    pid = daemon.proc.p.pid
    for path in ("/v1/sketches", "/v1/paintings"):
        before = vm_hwm_kb(pid, reset=True)
        t0 = time.time()
        r = daemon.api.post(path, body, headers={"Content-Type": "image/png"})
        took = time.time() - t0
        grew = vm_hwm_kb(pid) - before
        assert r.status == 422, (path, r)
        j = r.json()
        assert j["detail"]["field"] == "image", j
        reason = j["detail"]["reason"]
        assert "%dx%d" % (w, h) in reason and side in reason and "cap of 8192 pixels a side" in reason, j
        assert grew < HWM_BOUND_KB, "%s %dx%d raised the peak RSS by %d kB" % (path, w, h, grew)
        assert took < 1.0, "the side cap must be checked before decoding (took %.2fs)" % took
    # 8192 wide is still accepted
    ok = images.png(8192, 8, lambda x, y: 0 if x % 64 < 8 else 255)
    r = daemon.api.post("/v1/sketches", ok, headers={"Content-Type": "image/png"})
    assert r.status == 201, r
    assert count(pg, daemon.db_url) == 1
