"""atelier-serve end to end: the stylize API (PNG and JPEG in, 512x512 JPEG
out, styles by number, reference image and mix, every bad input with its
status), readiness before a model, hot swap under load with zero failed
requests, the drawing page, metrics, clean shutdown; contributions through
the on-disk spool to a real atelierd that goes away and comes back (exactly
once as rows); and, once atelierd's registry exists (probed from its OpenAPI
document), pulling a channel, swapping to a new version, and refusing a
tampered artifact while the old model keeps serving.

Models are real serving exports of the real architecture, untrained
(`atelier-serve export-random`), small so that a painting takes milliseconds."""
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import time

import pytest

import images
from conftest import BIN, Http, Proc, free_port, multipart, wait_until
from daemon import start_atelierd

SERVE = os.path.join(BIN, "atelier-serve")
ADMIN = "test-admin-token"
TINY = {"image_size": 64, "gen_dim": 8, "style_dim": 8, "n_res": 1, "mlp_dim": 32,
        "dis_dim": 8, "n_layer": 2, "num_scales": 1}

pytestmark = pytest.mark.skipif(not os.path.exists(SERVE), reason="atelier-serve not built")


# ---- helpers ----

def export_model(path, seed):
    cfg = dict(TINY, seed=seed)
    import subprocess
    subprocess.run([SERVE, "export-random", "--out", path, "--config", json.dumps(cfg)],
                   check=True, capture_output=True, timeout=120)
    return path


@pytest.fixture(scope="module")
def models():
    d = tempfile.mkdtemp(prefix="atelier-models-")
    paths = [export_model(os.path.join(d, "m%d.am" % i), seed=11 + i) for i in range(3)]
    yield paths
    shutil.rmtree(d, ignore_errors=True)


class Node:
    """A real atelier-serve on a free port."""

    def __init__(self, *args, env=None, workdir=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="atelier-serve-")
        self.args = ["--port", "0", "--admin-token", ADMIN, "--cache", os.path.join(self.dir, "cache"),
                     "--spool", os.path.join(self.dir, "spool")] + list(args)
        self.env = dict(os.environ, ATELIER_LOG_LEVEL="info", **(env or {}))
        self.proc = None

    def start(self):
        self.proc = Proc([SERVE] + self.args, env=self.env)

        def listening():
            if not self.proc.alive():
                raise AssertionError("atelier-serve exited:\n" + self.proc.log())
            return re.search(r"atelier-serve: listening on (http://[0-9.]+:\d+)", self.proc.log())
        self.url = wait_until(listening, timeout=30, what="atelier-serve to listen").group(1)
        self.http = Http(self.url)
        self.admin = Http(self.url, ADMIN)
        return self

    def wait_ready(self, timeout=30):
        try:
            wait_until(lambda: self.http.get("/readyz").status == 200, timeout=timeout, what="a model loaded")
        except AssertionError as e:
            raise AssertionError("%s\n--- atelier-serve log ---\n%s" % (e, self.log()[-4000:])) from None
        return self

    def info(self):
        return self.http.get("/api/info").json()

    def metric(self, name):
        text = self.http.get("/metrics").body.decode()
        m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
        return float(m.group(1)) if m else None

    def stop(self):
        rc = self.proc.stop(timeout=20)
        return rc

    def log(self):
        return self.proc.log()


def start_node(*args, **kw):
    return Node(*args, **kw).start()


@pytest.fixture
def node(models):
    n = start_node("--model-file", models[0], "--threads", "2").wait_ready()
    yield n
    rc = n.stop()
    assert rc == 0, "atelier-serve did not stop cleanly (rc %r):\n%s" % (rc, n.log()[-3000:])
    assert "stopped cleanly" in n.log()


def jpeg_size(data):
    """(width, height) from a JPEG's SOF marker."""
    assert data[:3] == b"\xff\xd8\xff", "not a JPEG: %r" % data[:16]
    i = 2
    while i < len(data):
        assert data[i] == 0xFF
        marker = data[i + 1]
        seglen = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + seglen
    raise AssertionError("no SOF marker")


def stylize(http, fields, **kw):
    body, ct = multipart(fields)
    return http.post("/api/stylize", body, headers={"Content-Type": ct}, **kw)


def sketch_field(seed=1, jpeg=False):
    png = images.sketch(seed)
    if jpeg:
        return ("contentImage", ("s.jpg", images.to_jpeg(png), "image/jpeg"))
    return ("contentImage", ("s.png", png, "image/png"))


def painting(seed=0, size=64):
    return images.png(size, size, lambda x, y: ((x * 4 + seed * 50) % 256, (y * 3) % 256, (x * y + seed) % 256),
                      channels=3)


# ---- the stylize API ----

@pytest.mark.parametrize("jpeg", [False, True], ids=["png", "jpeg"])
def test_stylize_returns_512_jpeg(node, jpeg):
    r = stylize(node.http, [sketch_field(1, jpeg), ("style", "3")])
    assert r.status == 200, r
    assert r.headers["content-type"] == "image/jpeg"
    assert jpeg_size(r.body) == (512, 512)


def boxes(canvas, pen):
    """A house's body and door (axis-aligned boxes, in fractions of the
    canvas) drawn with a square pen of `pen` pixels."""
    rects = [(0.25, 0.40, 0.75, 0.85), (0.45, 0.65, 0.55, 0.85)]

    def px(x, y):
        for x0, y0, x1, y1 in rects:
            X0, Y0, X1, Y1 = x0 * canvas, y0 * canvas, x1 * canvas, y1 * canvas
            near_v = (abs(x - X0) < pen / 2 or abs(x - X1) < pen / 2) and Y0 - pen / 2 < y < Y1 + pen / 2
            near_h = (abs(y - Y0) < pen / 2 or abs(y - Y1) < pen / 2) and X0 - pen / 2 < x < X1 + pen / 2
            if near_v or near_h:
                return 0
        return 255
    return images.png(canvas, canvas, px)


def test_sketch_is_normalised_before_the_model(node):
    """The node crops a sketch to its ink (lib/sketchnorm) and says which
    square it painted: the same drawing on a 4x larger canvas with a 4x pen
    gives the same square, 4x larger; a blank page goes to the model as it is."""
    crops = {}
    for canvas, pen in ((128, 1), (512, 4)):
        r = stylize(node.http, [("contentImage", ("s.png", boxes(canvas, pen), "image/png")), ("style", "1")])
        assert r.status == 200, r
        crops[canvas] = [float(v) for v in r.headers["x-sketch-crop"].split(",")]
    x, y, side = crops[512]
    # the body is 0.5 of the canvas wide and 0.45 high: the square is its
    # longer side (centre lines) plus 8 % margins, centred on it
    assert abs(side - 0.5 * 512 * 1.16) < 8, crops
    assert abs(x + side / 2 - 256) < 4 and abs(y + side / 2 - 0.625 * 512) < 4, crops
    for a, b in zip(crops[128], crops[512]):
        assert abs(4 * a - b) < 6, crops
    blank = images.png(64, 64, lambda x, y: 255)
    r = stylize(node.http, [("contentImage", ("b.png", blank, "image/png")), ("style", "1")])
    assert r.status == 200 and "x-sketch-crop" not in r.headers, r


def test_style_number_is_reproducible(node):
    a = stylize(node.http, [sketch_field(2), ("style", "7")])
    b = stylize(node.http, [sketch_field(2), ("style", "7")])
    c = stylize(node.http, [sketch_field(2), ("style", "8")])
    assert a.status == b.status == c.status == 200
    assert a.body == b.body, "same style number must give the same bytes"
    assert a.body != c.body, "different style numbers must give different paintings"
    # no style at all: the seed service's default, style 0
    d = stylize(node.http, [sketch_field(2)])
    e = stylize(node.http, [sketch_field(2), ("style", "0")])
    assert d.status == 200 and d.body == e.body


def test_reference_style_and_mixing(node):
    ref = ("styleImage", ("p.png", painting(1), "image/png"))
    a = stylize(node.http, [sketch_field(3), ref])
    assert a.status == 200, a
    assert jpeg_size(a.body) == (512, 512)
    b = stylize(node.http, [sketch_field(3), ("styleImage", ("p.png", painting(2), "image/png"))])
    assert b.status == 200 and a.body != b.body, "different references must give different styles"
    # a JPEG reference works too
    j = stylize(node.http, [sketch_field(3), ("styleImage", ("p.jpg", images.to_jpeg(painting(1)), "image/jpeg"))])
    assert j.status == 200, j

    s5 = stylize(node.http, [sketch_field(3), ("style", "5")])
    s9 = stylize(node.http, [sketch_field(3), ("style", "9")])
    mix0 = stylize(node.http, [sketch_field(3), ("style", "5"), ("style2", "9"), ("alpha", "0")])
    mixh = stylize(node.http, [sketch_field(3), ("style", "5"), ("style2", "9"), ("alpha", "0.5")])
    mixd = stylize(node.http, [sketch_field(3), ("style", "5"), ("style2", "9")])
    assert all(r.status == 200 for r in (s5, s9, mix0, mixh, mixd)), (s5, s9, mix0, mixh, mixd)
    assert mix0.body == s5.body, "alpha 0 is the first style"
    assert mixh.body not in (s5.body, s9.body)
    assert mixd.body == mixh.body, "alpha defaults to 0.5"
    # a reference mixed with a number
    rm = stylize(node.http, [sketch_field(3), ref, ("style2", "9"), ("alpha", "0.25")])
    assert rm.status == 200 and rm.body not in (a.body, s9.body)


BAD = {
    # name: (fields or raw (body, content type), status, words expected in the error)
    "not_multipart": ((images.sketch(1), "image/png"), 415, "multipart"),
    "no_content_type": ((images.sketch(1), None), 415, "multipart"),
    "not_an_image": ([("contentImage", ("s.txt", b"hello, not an image", "text/plain")), ("style", "1")], 415,
                     "PNG or JPEG"),
    "corrupt_png": ([("contentImage", ("s.png", images.sketch(1)[:300], "image/png")), ("style", "1")], 422,
                    "contentImage"),
    "pixel_bomb": ([("contentImage", ("s.png", images.bomb_header(), "image/png")), ("style", "1")], 422,
                   "contentImage"),
    "style_not_int": ([sketch_field(), ("style", "abc")], 422, "style"),
    "style_negative": ([sketch_field(), ("style", "-1")], 422, "style"),
    "style_float": ([sketch_field(), ("style", "1.5")], 422, "style"),
    "style_huge": ([sketch_field(), ("style", "99999999999999999999999")], 422, "style"),
    # the model reads a style's low 32 bits: 2^32 would paint as 0 does
    "style_2_pow_32": ([sketch_field(), ("style", "4294967296")], 422, "4294967295"),
    "style_plus": ([sketch_field(), ("style", "+5")], 422, "style"),
    "style_blank": ([sketch_field(), ("style", " 5")], 422, "style"),
    "style_suffix": ([sketch_field(), ("style", "5x")], 422, "style"),
    "alpha_blank": ([sketch_field(), ("style", "1"), ("style2", "2"), ("alpha", " 0.5")], 422, "alpha"),
    "alpha_out_of_range": ([sketch_field(), ("style", "1"), ("style2", "2"), ("alpha", "1.5")], 422, "alpha"),
    "alpha_nan": ([sketch_field(), ("style", "1"), ("style2", "2"), ("alpha", "nan")], 422, "alpha"),
    "alpha_without_style2": ([sketch_field(), ("style", "1"), ("alpha", "0.3")], 422, "style2"),
    "style_and_style_image": ([sketch_field(), ("style", "1"), ("styleImage", ("p.png", painting(), "image/png"))],
                              422, "either"),
    "style_image_not_image": ([sketch_field(), ("styleImage", ("p.txt", b"nope" * 10, "text/plain"))], 415,
                              "style image"),
    "style_image_corrupt": ([sketch_field(), ("styleImage", ("p.png", painting()[:100], "image/png"))], 422,
                            "styleImage"),
    "missing_content": ([("style", "1")], 400, "contentImage"),
    "malformed_multipart": ((b"--x\r\nContent-Disposition: form-data; name=\"contentImage\"\r\n\r\nabc",
                             "multipart/form-data; boundary=x"), 400, "multipart"),
    "too_big": ([sketch_field(), ("style", "1"), ("pad", b"\0" * (1100 * 1024))], 413, "too large"),
}


@pytest.fixture(scope="module")
def small_node(models):
    """One node for the bad-input cases: body cap 1 MiB."""
    n = start_node("--model-file", models[0], "--max-body", "1MiB").wait_ready()
    yield n
    assert n.stop() == 0


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(small_node, case):
    spec, want, words = BAD[case]
    if isinstance(spec, tuple):
        body, ct = spec
    else:
        body, ct = multipart(spec)
    t0 = time.time()
    r = small_node.http.post("/api/stylize", body, headers={"Content-Type": ct} if ct else {})
    assert r.status == want, r
    j = r.json()
    assert isinstance(j["error"], str) and j["request_id"]
    assert words.lower() in json.dumps(j).lower(), j
    if case == "pixel_bomb":
        assert time.time() - t0 < 1.0, "the pixel cap must be checked before decoding"
    # and the node still paints afterwards
    assert stylize(small_node.http, [sketch_field(), ("style", "1")]).status == 200


def test_503_before_a_model_is_loaded():
    n = start_node()
    try:
        assert n.http.get("/healthz").status == 200
        r = n.http.get("/readyz")
        assert r.status == 503 and r.json()["error"] == "no model loaded yet"
        r = stylize(n.http, [sketch_field(), ("style", "1")])
        assert r.status == 503, r
        assert r.json()["error"] == "no model loaded yet"
        assert r.headers.get("retry-after") == "5"
        # and bad input is still judged as bad input
        assert stylize(n.http, [("style", "1")]).status == 400
        # offline node: contributions have nowhere to go
        body, ct = multipart([("image", ("s.png", images.sketch(1), "image/png")), ("consent", "true")])
        r = n.http.post("/api/contribute", body, headers={"Content-Type": ct})
        assert r.status == 503 and "atelierd" in r.json()["error"]
        # a reload without --model-file is a conflict, and needs the admin token
        assert n.http.post("/admin/reload").status == 401
        assert Http(n.url, "wrong").post("/admin/reload").status == 401
        assert n.admin.post("/admin/reload").status == 409
    finally:
        assert n.stop() == 0


def test_bad_model_file_keeps_serving_the_old_one(models, tmp_path):
    path = str(tmp_path / "model.am")
    shutil.copy(models[0], path)
    n = start_node("--model-file", path).wait_ready()
    try:
        before = stylize(n.http, [sketch_field(4), ("style", "2")])
        assert before.status == 200
        with open(path, "r+b") as f:  # truncate the export: a corrupt file
            f.truncate(os.path.getsize(path) // 2)
        r = n.admin.post("/admin/reload")
        assert r.status == 500, r
        assert "previous model" in r.json()["error"]
        info = n.info()
        assert info["swap_failures"] == 1 and info["last_error"], info
        after = stylize(n.http, [sketch_field(4), ("style", "2")])
        assert after.status == 200 and after.body == before.body
        assert n.metric("atelier_serve_swap_failures_total") == 1
        # a good file clears last_error
        shutil.copy(models[1], path)
        assert n.admin.post("/admin/reload").status == 200
        info = n.info()
        assert info["last_error"] is None and info["swaps"] == 2
    finally:
        assert n.stop() == 0


def test_hot_swap_under_load(models, tmp_path):
    path = str(tmp_path / "model.am")
    shutil.copy(models[0], path)
    # three clients from one address as fast as they can: no rate limit here
    n = start_node("--model-file", path, "--threads", "2", "--rate-stylize", "0").wait_ready()
    results = []
    stop = threading.Event()

    def client(seed):
        h = Http(n.url)
        while not stop.is_set():
            r = stylize(h, [sketch_field(seed), ("style", "4")], timeout=30)
            results.append((r.status, hashlib.sha256(r.body).hexdigest() if r.status == 200 else r.body,
                            r.headers.get("x-model-sha256")))

    threads = [threading.Thread(target=client, args=(s,)) for s in (5, 5, 6)]
    try:
        for t in threads:
            t.start()
        for i in range(5):
            time.sleep(0.3)
            tmp = path + ".new"
            shutil.copy(models[(i + 1) % len(models)], tmp)
            os.replace(tmp, path)
            r = n.admin.post("/admin/reload")
            assert r.status == 200, r
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    failures = [r for r in results if r[0] != 200]
    assert not failures, "requests failed during hot swaps: %r" % failures[:5]
    assert len(results) > 20, "too few requests to say anything (%d)" % len(results)
    assert n.info()["swaps"] == 6
    # the answers changed with the model (same sketch, same style, other weights)
    assert len({h for s, h, m in results}) >= 3
    assert len({m for s, h, m in results}) >= 3, "x-model-sha256 names the model that answered"
    assert n.metric("atelier_serve_swaps_total") == 6
    rc = n.stop()
    assert rc == 0, n.log()[-3000:]
    # every model but the last was freed once its requests were done
    assert n.log().count("model: freeing") >= 5


def test_sighup_reloads(models, tmp_path):
    import signal
    path = str(tmp_path / "model.am")
    shutil.copy(models[0], path)
    n = start_node("--model-file", path).wait_ready()
    try:
        sha0 = n.info()["sha256"]
        shutil.copy(models[2], path)
        n.proc.p.send_signal(signal.SIGHUP)
        wait_until(lambda: n.info()["sha256"] != sha0, timeout=15, what="SIGHUP reload")
        assert n.info()["sha256"] == hashlib.sha256(open(models[2], "rb").read()).hexdigest()
    finally:
        assert n.stop() == 0


def test_metrics_and_info(node):
    for s in range(3):
        assert stylize(node.http, [sketch_field(), ("style", str(s))]).status == 200
    assert stylize(node.http, [("style", "1")]).status == 400
    text = node.http.get("/metrics").body.decode()
    assert 'atelier_http_requests_total{method="POST",route="/api/stylize",status="200"} 3' in text
    assert 'atelier_http_requests_total{method="POST",route="/api/stylize",status="400"} 1' in text
    assert "atelier_stylize_duration_seconds_count 3" in text
    assert re.search(r'atelier_stylize_latency_seconds\{quantile="0.95"\} 0\.\d+', text)
    assert "atelier_serve_model_loaded 1" in text
    assert "atelier_serve_swaps_total 1" in text
    info = node.info()
    assert info["loaded"] and len(info["sha256"]) == 64 and info["output_size"] == 512
    doc = node.http.get("/api/openapi.json").json()
    assert "/api/stylize" in doc["paths"] and "post" in doc["paths"]["/api/stylize"]


def test_drawing_page(node):
    r = node.http.get("/")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    page = r.body.decode()
    assert "<canvas" in page and "app.js" in page and "style.css" in page
    js = node.http.get("/app.js")
    css = node.http.get("/style.css")
    assert js.status == 200 and "javascript" in js.headers["content-type"]
    assert css.status == 200 and "text/css" in css.headers["content-type"]
    code = js.body.decode()
    for needle in ("pointerdown", "api/stylize", "api/contribute", "consent", "undo"):
        assert needle in code, needle
    # nothing from the internet: no absolute URLs in any asset
    for text in (page, code, css.body.decode()):
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), "external resource in the page"


def test_jpeg_decode_of_painting_output(node):
    """The JPEG is a real image: libvips reads it back at 512x512 RGB."""
    r = stylize(node.http, [sketch_field(9), ("style", "12")])
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "o.jpg")
        with open(p, "wb") as f:
            f.write(r.body)
        import subprocess
        out = subprocess.run(["vipsheader", "-a", p], capture_output=True, text=True, check=True).stdout
        assert "width: 512" in out and "height: 512" in out and "bands: 3" in out


# ---- contributions through the spool ----

def rows(pg, db_url, where="true"):
    return int(pg.psql("SELECT count(*) FROM images WHERE " + where, db_url))


def contribute(http, seed, consent="true", who="ada"):
    fields = [("image", ("s.png", images.sketch(seed), "image/png"))]
    if consent is not None:
        fields.append(("consent", consent))
    if who:
        fields.append(("contributor", who))
    body, ct = multipart(fields)
    return http.post("/api/contribute", body, headers={"Content-Type": ct})


def test_contributions_wait_for_atelierd_exactly_once(db_url, pg, models):
    port = free_port()
    d = start_atelierd(db_url, port=port)
    tok = d.token("node")
    n = start_node("--model-file", models[0], "--atelierd", d.url, "--token", tok, "--name", "n1",
                   "--heartbeat-interval", "0.2", "--retry-max", "0.5", "--poll-wait", "2").wait_ready()
    try:
        # while atelierd is up, a contribution arrives at once
        assert contribute(n.http, 21).status == 202
        wait_until(lambda: rows(pg, db_url, "source = 'node:n1'") == 1, timeout=15, what="first contribution")
        assert pg.psql("SELECT contributor, consent FROM images WHERE source = 'node:n1'", db_url) == "ada|t"

        assert d.stop() == 0
        for s in (22, 23, 24):
            r = contribute(n.http, s)
            assert r.status == 202, r
        # the same sketch twice: atelierd's dedup makes it one row
        assert contribute(n.http, 24).status == 202
        time.sleep(1.0)  # retries against a closed port
        assert n.info()["spool_depth"] == 4
        assert rows(pg, db_url) == 1

        # atelierd comes back on the same port
        d = start_atelierd(db_url, port=port)
        wait_until(lambda: n.info()["spool_depth"] == 0, timeout=30, what="the spool to drain")
        assert rows(pg, db_url, "source = 'node:n1'") == 4
        assert rows(pg, db_url) == 4
        assert n.metric("atelier_serve_spool_depth") == 0
        # consent is required; bad images are refused before the spool
        r = contribute(n.http, 25, consent=None)
        assert r.status == 422 and "consent" in r.json()["error"]
        r = contribute(n.http, 25, consent="false")
        assert r.status == 422
        # the same yes/no words as atelierd (lib/config.c), in any case; anything else names the field
        r = contribute(n.http, 25, consent="maybe")
        assert r.status == 422 and r.json()["detail"]["field"] == "consent", r
        for seed, word in ((26, "Y"), (27, "TRUE"), (28, "On")):
            assert contribute(n.http, seed, consent=word).status == 202, word
        body, ct = multipart([("image", ("s.txt", b"text", "text/plain")), ("consent", "true")])
        assert n.http.post("/api/contribute", body, headers={"Content-Type": ct}).status == 415
        body, ct = multipart([("consent", "true")])
        assert n.http.post("/api/contribute", body, headers={"Content-Type": ct}).status == 400
    finally:
        assert n.stop() == 0
        d.stop()


def test_several_atelierd_urls_fail_over(db_url, pg, models):
    """--atelierd takes a list (atelierd replicas on one database): the node
    stays on the first while it answers; when it goes away the channel
    follower and the spool move to the next (tests/hosts/ does this across
    network namespaces, with the leader killed)."""
    d1 = start_atelierd(db_url, port=free_port())
    d2 = start_atelierd(db_url, port=free_port())
    tok = d1.token("node")
    n = start_node("--model-file", models[0], "--atelierd", "%s, %s/" % (d1.url, d2.url), "--token", tok,
                   "--name", "n3", "--heartbeat-interval", "0.2", "--retry-max", "0.5", "--poll-wait", "2").wait_ready()
    try:
        in_use = 'atelier_serve_atelierd_in_use{url="%s"}'
        assert contribute(n.http, 41).status == 202
        wait_until(lambda: rows(pg, db_url, "source = 'node:n3'") == 1, timeout=15, what="the first contribution")
        assert n.metric(in_use % d1.url) == 1 and n.metric("atelier_serve_atelierd_failovers_total") == 0
        assert d1.stop() == 0
        assert contribute(n.http, 42).status == 202
        wait_until(lambda: rows(pg, db_url, "source = 'node:n3'") == 2, timeout=15, what="a contribution via d2")
        wait_until(lambda: n.metric(in_use % d2.url) == 1, timeout=15, what="the follower to poll d2")
        assert n.metric("atelier_serve_atelierd_failovers_total") >= 1
        assert n.info()["spool_depth"] == 0
    finally:
        assert n.stop() == 0
        d2.stop()
    # a list with an entry that is not an http(s) URL is refused at start, naming it
    bad = Node("--atelierd", "http://127.0.0.1:1,ftp://x", "--token", "t")
    p = subprocess.run([SERVE] + bad.args, capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "ftp://x" in p.stderr, p


def test_request_work_starts_at_the_url_the_puller_found(db_url, pg, models):
    """A request's one-off call to atelierd (a receipt's lookup, a gallery
    image) starts at the URL the channel follower last reached, not at the
    list's first: a first URL that fails slowly (a partitioned or hung
    controller) costs the follower once, not every visitor's request."""
    import http.server

    class Slow503(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(2)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    slow = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow503)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    d = start_atelierd(db_url, port=free_port())
    n = start_node("--model-file", models[0], "--atelierd", "http://127.0.0.1:%d,%s" % (slow.server_port, d.url),
                   "--token", d.token("node"), "--name", "n4", "--poll-wait", "2").wait_ready()
    try:
        in_use = 'atelier_serve_atelierd_in_use{url="%s"}' % d.url
        wait_until(lambda: n.metric(in_use) == 1, timeout=20, what="the follower on the second URL")
        receipt = "A" * 43  # well formed, names nothing
        t0 = time.monotonic()
        r = n.http.get("/api/sketches/mine", headers={"X-Atelier-Receipt": receipt}, timeout=30)
        took = time.monotonic() - t0
        assert r.status == 404, r
        assert took < 1.5, "the lookup went to the slow first URL first (%.2f s)" % took
    finally:
        assert n.stop() == 0
        d.stop()
        slow.shutdown()


def test_spool_survives_a_node_restart_and_rejections_are_dropped(db_url, pg, models, tmp_path):
    port = free_port()  # nothing listens here yet
    url = "http://127.0.0.1:%d" % port
    work = str(tmp_path)
    # --min-ink 0: this node lets a blank through (its default, atelierd's, refuses it
    # at once; see test_contribute_refuses_what_atelierd_would), so that one reaches
    # atelierd and is refused there
    args = ("--model-file", models[0], "--atelierd", url, "--name", "n2", "--heartbeat-interval", "0.2",
            "--retry-max", "0.5", "--poll-wait", "2", "--min-ink", "0")
    d = start_atelierd(db_url, port=port)
    tok = d.token("node")
    assert d.stop() == 0
    n = start_node(*args, "--token", tok, workdir=work).wait_ready()
    try:
        for s in (31, 32):
            assert contribute(n.http, s).status == 202
        # blank: atelierd will reject it for good (422), and it must not block the others
        body, ct = multipart([("image", ("b.png", images.png(64, 64, lambda x, y: 255), "image/png")),
                              ("consent", "true")])
        assert n.http.post("/api/contribute", body, headers={"Content-Type": ct}).status == 202
        assert n.stop() == 0
    finally:
        if n.proc.alive():
            n.stop()
    assert len([f for f in os.listdir(os.path.join(work, "spool")) if f.endswith(".sk")]) == 3
    d = start_atelierd(db_url, port=port)
    n = start_node(*args, "--token", tok, workdir=work)
    try:
        wait_until(lambda: n.info()["spool_depth"] == 0, timeout=30, what="the spool to drain after restart")
        assert rows(pg, db_url, "source = 'node:n2'") == 2
        assert n.metric('atelier_serve_contributions_sent_total{outcome="rejected"}') == 1
    finally:
        assert n.stop() == 0
        d.stop()


def test_contribute_refuses_what_atelierd_would(db_url, models):
    """The node runs a contribution through atelierd's own check (lib/image's
    image_normalize with the same --min-ink/--max-ink) before it answers: what
    atelierd's ingest refuses, the node refuses with the same status, message
    and reason, so the sender hears it instead of a thank-you; nothing of it is
    spooled. What atelierd takes, the node takes."""
    d = start_atelierd(db_url)
    api = d.http(d.token("operator"))
    port = free_port()  # the node's atelierd unreachable: the spool keeps what it takes
    n = start_node("--model-file", models[0], "--atelierd", "http://127.0.0.1:%d" % port, "--token", "x",
                   "--retry-max", "30")
    ok = images.sketch(51)
    cases = {
        "blank": images.png(64, 64, lambda x, y: 255),
        "one dot": images.png(256, 256, lambda x, y: 0 if (x, y) == (128, 128) else 255),
        "all ink": images.png(64, 64, lambda x, y: 0),
        "truncated": ok[:len(ok) // 2],
        "accepted": ok,
    }
    try:
        for name, png in cases.items():
            fields = [("image", ("s.png", png, "image/png")), ("consent", "true")]
            body, ct = multipart(fields)
            want = api.post("/v1/sketches", body, headers={"Content-Type": ct})
            got = n.http.post("/api/contribute", body, headers={"Content-Type": ct})
            if name == "accepted":
                assert want.status == 201 and got.status == 202, (want, got)
                continue
            assert want.status == 422 or want.status == 400, (name, want)
            assert got.status == want.status, (name, want, got.json())
            w, g = want.json(), got.json()
            assert g["error"] == w["error"], (name, w, g)
            assert g["detail"]["reason"] == w["detail"]["reason"], (name, w, g)
            for k in ("ink_ratio", "min_ink", "max_ink"):
                assert g["detail"].get(k) == w["detail"].get(k), (name, k, w, g)
        assert n.info()["spool_depth"] == 1
    finally:
        assert n.stop() == 0
        d.stop()


def test_contribute_checks_sides_before_ingest(models):
    """A node keeps contributions undecoded, but refuses from the header what
    atelierd's ingest would (a side over 8192, too many pixels), so its
    sender hears it and the spool never carries it."""
    from test_ingest import HWM_BOUND_KB, long_png, vm_hwm_kb
    port = free_port()  # atelierd configured but unreachable: nothing leaves the spool
    n = start_node("--model-file", models[0], "--atelierd", "http://127.0.0.1:%d" % port, "--token", "x",
                   "--retry-max", "5")
    try:
        pid = n.proc.p.pid
        for w, h in ((40000000, 1), (1, 40000000), (8193, 1)):
            body, ct = multipart([("image", ("w.png", long_png(w, h), "image/png")), ("consent", "true")])
            before = vm_hwm_kb(pid, reset=True)
            r = n.http.post("/api/contribute", body, headers={"Content-Type": ct})
            grew = vm_hwm_kb(pid) - before
            assert r.status == 422, r
            j = r.json()
            side = "width (%d)" % w if w > 8192 else "height (%d)" % h
            assert side in j["error"] and "cap of 8192 pixels a side" in j["error"], j
            assert j["detail"]["field"] == "image", j
            assert grew < HWM_BOUND_KB, "%dx%d raised the node's peak RSS by %d kB" % (w, h, grew)
        assert n.info()["spool_depth"] == 0
        assert contribute(n.http, 44).status == 202
        assert n.info()["spool_depth"] == 1
    finally:
        assert n.stop() == 0


def test_spool_full_is_503(models, tmp_path):
    port = free_port()  # atelierd configured but unreachable
    n = start_node("--model-file", models[0], "--atelierd", "http://127.0.0.1:%d" % port, "--token", "x",
                   "--spool-max", "2", "--retry-max", "5")
    try:
        assert contribute(n.http, 41).status == 202
        assert contribute(n.http, 42).status == 202
        r = contribute(n.http, 43)
        assert r.status == 503 and "full" in r.json()["error"], r
        assert n.info()["spool_depth"] == 2
        assert n.metric("atelier_serve_spool_full_total") == 1
        # painting still works while atelierd is away
        n.wait_ready()
        assert stylize(n.http, [sketch_field(), ("style", "1")]).status == 200
    finally:
        assert n.stop() == 0


# ---- the registry (atelierd side): pull, swap, refuse tampered artifacts ----

REGISTRY_ROUTES = [("GET", "/v1/models/{}/channels/{}"), ("POST", "/v1/models/{}/channels/{}"),
                   ("GET", "/v1/artifacts/{}"), ("POST", "/v1/nodes/heartbeat")]


def registry_missing(d):
    """The registry routes atelierd does not list (parameter names ignored)."""
    paths = d.http().get("/v1/openapi.json").json().get("paths", {})
    have = {(m.upper(), re.sub(r"\{[^}]*\}", "{}", p)) for p, ms in paths.items() for m in ms}
    return [m + " " + p for m, p in REGISTRY_ROUTES if (m, p) not in have]


@pytest.fixture
def registry(db_url, pg, tmp_path):
    store = tmp_path / "artifacts"
    store.mkdir()
    d = start_atelierd(db_url, "--artifacts", "fs://" + str(store))
    missing = registry_missing(d)
    if missing:
        d.stop()
        pytest.skip("atelierd has no registry routes yet: " + ", ".join(missing))
    d.store = str(store)
    d.pg = pg
    d.op = d.http(d.token("operator"))
    yield d
    d.stop()


def register(d, model_path, model="sketch2paint"):
    """Puts a serving export into the artifact store (fs layout: sha256/ab/<hex>)
    and registers it with atelierd's own SQL function, as the promote job does."""
    with open(model_path, "rb") as f:
        data = f.read()
    sha = hashlib.sha256(data).hexdigest()
    path = os.path.join(d.store, "sha256", sha[:2], sha)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    out = d.pg.psql("SELECT version FROM atelier_register_version('%s', '%s', %d, 'fs://%s', NULL, NULL, NULL, "
                    "NULL, NULL, NULL)" % (model, sha, len(data), path), d.db_url)
    return {"version": int(out), "sha256": sha, "path": path, "size": len(data)}


def promote(d, version, channel="production", model="sketch2paint"):
    r = d.op.post("/v1/models/%s/channels/%s" % (model, channel), {"version": version})
    assert r.status in (200, 201), r


def publish(d, model_path, channel="production"):
    v = register(d, model_path)
    promote(d, v["version"], channel)
    return v


def test_pull_swap_and_heartbeat(registry, models):
    v1 = publish(registry, models[0])
    n = start_node("--atelierd", registry.url, "--token", registry.token("node"), "--name", "p1",
                   "--heartbeat-interval", "0.2", "--poll-wait", "5")
    try:
        n.wait_ready()
        assert n.info()["version"] == v1["version"]
        results = []
        stop = threading.Event()

        def client():
            h = Http(n.url)
            while not stop.is_set():
                results.append(stylize(h, [sketch_field(5), ("style", "4")]).status)
        t = threading.Thread(target=client)
        t.start()
        try:
            v2 = publish(registry, models[1])
            wait_until(lambda: n.info()["version"] == v2["version"], timeout=20, what="the node to swap to v2")
        finally:
            stop.set()
            t.join()
        assert results and all(s == 200 for s in results), results
        assert n.metric('atelier_serve_heartbeats_total{outcome="ok"}') > 0
    finally:
        assert n.stop() == 0


def test_tampered_artifact_is_refused(registry, models):
    v1 = publish(registry, models[0])
    n = start_node("--atelierd", registry.url, "--token", registry.token("node"), "--name", "p2",
                   "--heartbeat-interval", "0.2", "--poll-wait", "5", "--retry-max", "0.5")
    try:
        n.wait_ready()
        assert n.info()["version"] == v1["version"]
        before = stylize(n.http, [sketch_field(6), ("style", "3")])
        # register v2, flip bytes of its stored artifact, then promote it
        v2 = register(registry, models[1])
        with open(v2["path"], "r+b") as f:
            f.seek(v2["size"] // 2)
            f.write(b"\xde\xad\xbe\xef")
        promote(registry, v2["version"])
        wait_until(lambda: n.info()["swap_failures"] >= 1, timeout=20, what="the refusal")
        info = n.info()
        assert info["version"] == v1["version"] and info["last_error"], info
        after = stylize(n.http, [sketch_field(6), ("style", "3")])
        assert after.status == 200 and after.body == before.body
        # it does not fetch the bad version in a loop
        time.sleep(1.5)
        assert n.metric("atelier_serve_downloads_total") <= 4
        # a good v3 is taken up, and last_error clears
        v3 = publish(registry, models[2])
        wait_until(lambda: n.info()["version"] == v3["version"], timeout=20, what="v3")
        assert n.info()["last_error"] is None
    finally:
        assert n.stop() == 0
