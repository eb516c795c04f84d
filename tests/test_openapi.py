"""The OpenAPI documents the daemons generate from their route tables
(atelierd's /v1/openapi.json, atelier-serve's /api/openapi.json) pass a real
validator: @redocly/cli lint with its recommended rules (tests/openapi/,
installed with npm ci from its package-lock.json), zero errors. Also: every
route of `atelierd routes` / `atelier-serve routes` is in the document (one
table feeds both), public routes need no token and the others name the bearer
scheme, and the shapes the documents promise hold for real replies."""
import hashlib
import json
import os
import re
import shutil
import subprocess

import images
import pytest

from conftest import BIN, ROOT, Http, multipart, wait_until
from daemon import start_atelierd

HERE = os.path.join(ROOT, "tests", "openapi")
SERVE = os.path.join(BIN, "atelier-serve")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def npm_ci():
    """@redocly/cli from package-lock.json, once (npm ci when missing or not
    the locked version)."""
    lock = json.load(open(os.path.join(HERE, "package-lock.json")))
    want = lock["packages"]["node_modules/@redocly/cli"]["version"]
    have = os.path.join(HERE, "node_modules", "@redocly", "cli", "package.json")
    if os.path.exists(have) and json.load(open(have))["version"] == want:
        return
    for tool in ("node", "npm"):
        assert shutil.which(tool), "%s is not installed (Debian package nodejs)" % tool
    out = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def lint(doc, path):
    """Run redocly lint over doc (written to path); returns (errors, warnings, problems)."""
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    out = subprocess.run([os.path.join(HERE, "node_modules", ".bin", "redocly"), "lint", "--format=json",
                          "--config", os.path.join(HERE, "redocly.yaml"), path],
                         cwd=HERE, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true"))
    m = re.search(r"\{.*\}", out.stdout, re.S)
    assert m, "redocly printed no JSON (rc %d):\n%s\n%s" % (out.returncode, out.stdout, out.stderr)
    res = json.loads(m.group(0))
    problems = ["%s %s: %s at %s" % (p["severity"], p["ruleId"], p["message"],
                                     (p.get("location") or [{}])[0].get("pointer"))
                for p in res["problems"]]
    return res["totals"]["errors"], res["totals"]["warnings"], problems


def routes_of(binary):
    out = subprocess.run([binary, "routes"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    rows = [line.split()[:2] for line in out.stdout.splitlines() if line.strip()]
    return {(m.lower(), re.sub(r"\{(\w+)\*\}", r"{\1}", p)) for m, p in rows}


def check_doc(doc, binary, tmp_path, name):
    errors, warnings, problems = lint(doc, str(tmp_path / (name + ".json")))
    print("\n%s: redocly lint (recommended): %d errors, %d warnings" % (name, errors, warnings))
    for p in problems:
        print("  " + p)
    assert errors == 0, "\n".join(problems)

    ops = {(m, p): op for p, item in doc["paths"].items() for m, op in item.items() if m in METHODS}
    # one table: `routes` and the document list the same endpoints
    assert set(ops) == routes_of(binary)
    ids = [op["operationId"] for op in ops.values()]
    assert len(ids) == len(set(ids)), ids
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearer": []}]
    for (m, p), op in ops.items():
        public = op["x-roles"] == []
        assert (op.get("security") == []) == public, (m, p, op.get("security"), op["x-roles"])
        assert op["tags"], (m, p)
        ok = [c for c in op["responses"] if c.startswith("2")]
        assert ok, (m, p)
        for c in ok:
            # a route added without .reply would promise a 200 with no body
            assert op["responses"][c].get("content") or c == "204", ("no reply schema", m, p, c)
            for ct, media in op["responses"][c].get("content", {}).items():
                assert "schema" in media, (m, p, c, ct)
        if m in ("post", "put") and "requestBody" in op:
            for ct, media in op["requestBody"]["content"].items():
                assert "schema" in media, (m, p, ct)
        for seg in re.findall(r"\{(\w+)\}", p):
            decl = [q for q in op.get("parameters", []) if q["in"] == "path" and q["name"] == seg]
            assert decl and decl[0]["required"] is True, (m, p, seg)
    return ops


def json_schema(doc, s):
    """An OpenAPI 3.0 schema as JSON Schema: $refs resolved, nullable as
    anyOf null, binary/int64 formats left to the content type."""
    if isinstance(s, list):
        return [json_schema(doc, x) for x in s]
    if not isinstance(s, dict):
        return s
    if "$ref" in s:
        node = doc
        for part in s["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return json_schema(doc, node)
    out = {k: json_schema(doc, v) for k, v in s.items() if k != "nullable"}
    if "properties" in s:
        out["properties"] = {k: json_schema(doc, v) for k, v in s["properties"].items()}
    return {"anyOf": [{"type": "null"}, out]} if s.get("nullable") else out


TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
# what each keyword the documents use means; an unknown one fails the check
# rather than passing unchecked
IGNORED = {"description", "default", "format", "properties", "items", "nullable"}


def validate(v, s, at="$"):
    """The subset of JSON Schema the documents use (no jsonschema module in
    Debian's python3 base)."""
    def fail(why):
        raise AssertionError("%s: %s (value %s)" % (at, why, json.dumps(v)[:200]))
    for k in s:
        if k not in IGNORED | {"type", "required", "enum", "additionalProperties", "anyOf", "allOf", "minimum",
                               "maximum", "pattern", "minLength", "maxLength", "minItems", "maxItems"}:
            fail("unknown keyword " + k)
    t = s.get("type")
    if t == "integer":
        if not isinstance(v, int) or isinstance(v, bool):
            fail("not an integer")
    elif t == "number":
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            fail("not a number")
    elif t is not None and not isinstance(v, TYPES[t]):
        fail("not a " + t)
    if "enum" in s and v not in s["enum"]:
        fail("not one of %s" % s["enum"])
    if "minimum" in s and v < s["minimum"] or "maximum" in s and v > s["maximum"]:
        fail("out of range")
    if "pattern" in s and not re.search(s["pattern"], v):
        fail("does not match " + s["pattern"])
    if "minLength" in s and len(v) < s["minLength"] or "maxLength" in s and len(v) > s["maxLength"]:
        fail("bad length")
    if "minItems" in s and len(v) < s["minItems"] or "maxItems" in s and len(v) > s["maxItems"]:
        fail("bad number of items")
    for k in s.get("required", []):
        if k not in v:
            fail("no " + k)
    if isinstance(v, dict):
        for k, x in v.items():
            if k in s.get("properties", {}):
                validate(x, s["properties"][k], at + "." + k)
            elif isinstance(s.get("additionalProperties"), dict):
                validate(x, s["additionalProperties"], at + "." + k)
    if isinstance(v, list) and "items" in s:
        for i, x in enumerate(v):
            validate(x, s["items"], "%s[%d]" % (at, i))
    for sub in s.get("allOf", []):
        validate(v, sub, at)
    if "anyOf" in s:
        errs = []
        for sub in s["anyOf"]:
            try:
                return validate(v, sub, at)
            except AssertionError as e:
                errs.append(str(e))
        fail("matches none of anyOf: " + "; ".join(errs))


class Conformance:
    """Checks real replies against what the document promises for them."""

    def __init__(self, doc):
        self.doc = doc
        self.seen = set()

    def check(self, method, route, r, want=None):
        if want is not None:
            assert r.status == want, (method, route, r)
        op = self.doc["paths"][route][method.lower()]
        resp = op["responses"].get(str(r.status)) or op["responses"]["%dXX" % (r.status // 100)]
        if "$ref" in resp:
            resp = json_schema(self.doc, resp)
        ctype = r.headers.get("content-type", "").split(";")[0]
        content = resp.get("content", {})
        if not content:
            assert not r.body, (method, route, r)
            return None
        assert ctype in content, (method, route, r.status, ctype, list(content))
        if ctype != "application/json":
            return r.body
        body = r.json()
        try:
            validate(body, json_schema(self.doc, content[ctype]["schema"]))
        except AssertionError as e:
            raise AssertionError("%s %s -> %d does not match its schema: %s\n%s" % (
                method, route, r.status, e, json.dumps(body)[:2000])) from None
        self.seen.add((method.lower(), route))
        return body


def test_atelierd_openapi_is_valid(db_url, pg, tmp_path):
    npm_ci()
    d = start_atelierd(db_url)
    try:
        anon = Http(d.url)
        r = anon.get("/v1/openapi.json")
        assert r.status == 200, r
        doc = r.json()
        ops = check_doc(doc, os.path.join(BIN, "atelierd"), tmp_path, "atelierd")
        # ids are integers, artifacts are named by their sha256
        assert ops[("get", "/v1/runs/{id}")]["parameters"][0]["schema"]["type"] == "integer"
        sha = [q for q in ops[("get", "/v1/artifacts/{sha256}")]["parameters"] if q["name"] == "sha256"][0]
        assert sha["schema"]["pattern"] == "^[0-9a-f]{64}$"
        assert "text/event-stream" in ops[("get", "/v1/events")]["responses"]["200"]["content"]
        assert "multipart/form-data" in ops[("post", "/v1/sketches")]["requestBody"]["content"]

        # real replies, successes and refusals, have the shapes the document gives
        c = Conformance(doc)
        api = Http(d.url, d.token("operator"))
        c.check("GET", "/healthz", anon.get("/healthz"), 200)
        c.check("GET", "/readyz", anon.get("/readyz"), 200)
        c.check("GET", "/v1/runs", anon.get("/v1/runs"), 401)
        c.check("POST", "/v1/tokens", api.post("/v1/tokens", {"role": "viewer", "name": "v"}), 201)
        c.check("POST", "/v1/tokens", api.post("/v1/tokens", {"role": "king"}), 422)
        png = images.sketch(seed=3, size=64)
        up = c.check("POST", "/v1/sketches", api.post("/v1/sketches", png, headers={"Content-Type": "image/png"}), 201)
        c.check("POST", "/v1/sketches", api.post("/v1/sketches", png, headers={"Content-Type": "image/png"}), 200)
        c.check("POST", "/v1/sketches", api.post("/v1/sketches", b"nope", headers={"Content-Type": "text/plain"}), 415)
        c.check("GET", "/v1/sketches/{id}", api.get("/v1/sketches/%d" % up["id"]), 200)
        c.check("GET", "/v1/sketches/{id}.png", api.get("/v1/sketches/%d.png" % up["id"]), 200)
        c.check("GET", "/v1/sketches/{id}", api.get("/v1/sketches/x"), 400)
        c.check("GET", "/v1/sketches", api.get("/v1/sketches?limit=1"), 200)
        c.check("GET", "/v1/sketches", api.get("/v1/sketches?limit=0"), 400)
        c.check("GET", "/v1/paintings", api.get("/v1/paintings?split=train"), 200)
        c.check("DELETE", "/v1/sketches/{id}", api.request("DELETE", "/v1/sketches/%d" % up["id"]), 200)
        c.check("DELETE", "/v1/sketches/{id}", api.request("DELETE", "/v1/sketches/999999"), 404)
        # contributors' rights: a sketch sent with a receipt's hash, as a node sends it
        receipt = "R" * 43
        body, ct = multipart([("image", ("s.png", images.sketch(seed=4, size=64), "image/png")),
                              ("receipt_sha256", hashlib.sha256(receipt.encode()).hexdigest())])
        mine = c.check("POST", "/v1/sketches", api.post("/v1/sketches", body, headers={"Content-Type": ct}), 201)
        c.check("GET", "/v1/sketches/{id}/lineage", api.get("/v1/sketches/%d/lineage" % mine["id"]), 200)
        c.check("GET", "/v1/sketches/{id}/lineage", api.get("/v1/sketches/999999/lineage"), 404)
        c.check("GET", "/v1/sketches/by-receipt", api.get("/v1/sketches/by-receipt", headers={
            "X-Atelier-Receipt": receipt}), 200)
        c.check("GET", "/v1/sketches/by-receipt", api.get("/v1/sketches/by-receipt", headers={
            "X-Atelier-Receipt": "S" * 43}), 404)
        c.check("POST", "/v1/sketches/withdraw", api.post("/v1/sketches/withdraw", {"ids": [mine["id"]],
                                                                                     "dry_run": True}), 200)
        c.check("POST", "/v1/sketches/withdraw", api.post("/v1/sketches/withdraw", {}), 422)
        c.check("DELETE", "/v1/sketches/by-receipt", api.request("DELETE", "/v1/sketches/by-receipt", headers={
            "X-Atelier-Receipt": receipt}), 200)
        c.check("GET", "/v1/whoami", api.get("/v1/whoami"), 200)
        # the 415 above is recorded asynchronously
        wait_until(lambda: api.get("/v1/uploads/rejected").json()["items"], what="the rejection recorded")
        c.check("GET", "/v1/uploads/rejected", api.get("/v1/uploads/rejected"), 200)
        yaml = open(os.path.join(ROOT, "pipelines/tiny.yaml")).read().encode()
        c.check("POST", "/v1/pipelines", api.post("/v1/pipelines?filename=t.yaml", yaml,
                                                  headers={"Content-Type": "application/yaml"}), 201)
        c.check("POST", "/v1/pipelines", api.post("/v1/pipelines", {"yaml": yaml.decode()}), 200)
        c.check("GET", "/v1/pipelines", api.get("/v1/pipelines"), 200)
        c.check("GET", "/v1/pipelines/{name}", api.get("/v1/pipelines/tiny"), 200)
        run = c.check("POST", "/v1/pipelines/{name}/runs", api.post("/v1/pipelines/tiny/runs"), 201)["run"]
        c.check("POST", "/v1/pipelines/{name}/runs", api.post("/v1/pipelines/none/runs"), 404)
        c.check("GET", "/v1/runs", api.get("/v1/runs?limit=1"), 200)
        c.check("GET", "/v1/runs", api.get("/v1/runs?state=odd"), 400)
        c.check("GET", "/v1/runs/{id}", api.get("/v1/runs/%d" % run), 200)
        c.check("GET", "/v1/runs/{id}/metrics", api.get("/v1/runs/%d/metrics" % run), 200)
        c.check("POST", "/v1/runs/{id}/cancel", api.post("/v1/runs/%d/cancel" % run), 200)
        job = api.get("/v1/runs/%d" % run).json()["jobs"][0]["id"]
        pg.psql("SELECT atelier_job_log_append(%d, '[[1700000000000, \"info\", \"hello\"]]', 0)" % job, db_url)
        c.check("GET", "/v1/jobs/{id}/log", api.get("/v1/jobs/%d/log" % job), 200)
        c.check("GET", "/v1/jobs/{id}/log", api.get("/v1/jobs/%d/log?after=x" % job), 400)
        c.check("POST", "/v1/nodes/heartbeat", api.post("/v1/nodes/heartbeat", {
            "node": "n1", "model": "m", "channel": "production", "version": None, "requests": 3, "errors": 0,
            "error_rate": 0.0, "p50_ms": 1.5, "p95_ms": 2.5, "last_error": None, "started_at": 1e9}), 200)
        c.check("GET", "/v1/nodes", api.get("/v1/nodes"), 200)
        data = b"model bytes" * 50
        sha = hashlib.sha256(data).hexdigest()
        os.makedirs(os.path.join(d.artifacts, "sha256", sha[:2]), exist_ok=True)
        with open(os.path.join(d.artifacts, "sha256", sha[:2], sha), "wb") as f:
            f.write(data)
        pg.psql("SELECT atelier_register_version('m', '%s', %d, 'fs://x', NULL, NULL, NULL, '{}', '{}', NULL)"
                % (sha, len(data)), db_url)
        c.check("POST", "/v1/models/{name}/channels/{channel}",
                api.post("/v1/models/m/channels/production", {"version": 1, "reason": "first"}), 200)
        c.check("POST", "/v1/models/{name}/channels/{channel}",
                api.post("/v1/models/m/channels/production", {"action": "sideways"}), 422)
        pg.psql("UPDATE model_versions SET verdict = '{\"passed\": false}' WHERE model = 'm'", db_url)
        c.check("POST", "/v1/models/{name}/channels/{channel}",
                api.post("/v1/models/m/channels/canary", {"version": 1}), 409)
        c.check("GET", "/v1/models/{name}/channels/{channel}", api.get("/v1/models/m/channels/production"), 200)
        c.check("GET", "/v1/models/{name}/channels/{channel}",
                api.get("/v1/models/m/channels/production?after=1&wait=0"), 304)
        c.check("GET", "/v1/models", api.get("/v1/models"), 200)
        c.check("GET", "/v1/models/{name}/versions", api.get("/v1/models/m/versions"), 200)
        c.check("GET", "/v1/models/{name}/versions/{version}", api.get("/v1/models/m/versions/1"), 200)
        c.check("GET", "/v1/models/{name}/versions/{version}/samples", api.get("/v1/models/m/versions/1/samples"), 200)
        c.check("GET", "/v1/models/{name}/ledger", api.get("/v1/models/m/ledger"), 200)
        assert c.check("GET", "/v1/artifacts/{sha256}", api.get("/v1/artifacts/" + sha), 200) == data
        part = api.get("/v1/artifacts/" + sha, headers={"Range": "bytes=0-3"})
        assert c.check("GET", "/v1/artifacts/{sha256}", part, 206) == data[:4]
        c.check("GET", "/v1/artifacts/{sha256}", api.get("/v1/artifacts/" + "0" * 64), 404)
        # gc's dry run: lists what nothing references, removes nothing
        assert c.check("POST", "/v1/gc", api.post("/v1/gc", {"dry_run": True}), 200)["dry_run"] is True
        # the webhook delivery log: a row as notify.c writes it (a delivered one and a pending one)
        pg.psql("SELECT atelier_webhook_emit('test', '{\"x\": 1}'); INSERT INTO webhook_deliveries (event_id, kind, "
                "url, state, attempts, last_status, delivered_at) SELECT id, kind, 'http://h/', 'delivered', 1, 200, "
                "now() FROM webhook_events WHERE kind = 'test'; INSERT INTO webhook_deliveries (event_id, kind, url, state) "
                "VALUES (NULL, 'test', 'http://h/', 'pending')", db_url)
        assert len(c.check("GET", "/v1/webhooks/deliveries", api.get("/v1/webhooks/deliveries"), 200)["deliveries"]) == 2
        c.check("GET", "/v1/webhooks/deliveries", api.get("/v1/webhooks/deliveries?state=x"), 400)
        json_ops = {k for k, op in ops.items()
                    if "application/json" in op["responses"][min(c for c in op["responses"] if c[0] == "2")]
                    .get("content", {})}
        print("atelierd: %d of %d JSON routes checked against real replies" % (len(c.seen & json_ops), len(json_ops)))
        # the gallery's routes are checked against real replies in test_gallery.py (test_routes_match_their_schemas)
        json_ops = {k for k in json_ops if not k[1].startswith("/v1/works")}
        assert json_ops - c.seen <= {("get", "/v1/openapi.json"), ("get", "/v1/paintings/{id}"),
                                     ("post", "/v1/paintings")}, json_ops - c.seen
    finally:
        assert d.stop() == 0, d.log()[-3000:]


@pytest.mark.skipif(not os.path.exists(SERVE), reason="atelier-serve not built")
def test_node_openapi_is_valid(tmp_path):
    npm_ci()
    from test_serve import ADMIN, export_model, start_node, stylize
    n = start_node("--model-file", export_model(str(tmp_path / "m.am"), seed=5), "--threads", "1")
    try:
        r = n.http.get("/api/openapi.json")
        assert r.status == 200, r
        doc = r.json()
        ops = check_doc(doc, SERVE, tmp_path, "atelier-serve")
        assert "image/jpeg" in ops[("post", "/api/stylize")]["responses"]["200"]["content"]
        assert "multipart/form-data" in ops[("post", "/api/contribute")]["requestBody"]["content"]

        c = Conformance(doc)
        n.wait_ready()
        c.check("GET", "/healthz", n.http.get("/healthz"), 200)
        c.check("GET", "/readyz", n.http.get("/readyz"), 200)
        c.check("GET", "/api/info", n.http.get("/api/info"), 200)
        c.check("GET", "/", n.http.get("/"), 200)
        c.check("GET", "/app.js", n.http.get("/app.js"), 200)
        c.check("GET", "/style.css", n.http.get("/style.css"), 200)
        c.check("GET", "/metrics", n.http.get("/metrics"), 200)
        jpeg = c.check("POST", "/api/stylize", stylize(n.http, [("contentImage", ("s.png", images.sketch(1, 64),
                                                                                    "image/png")), ("style", "2")]), 200)
        assert jpeg[:3] == b"\xff\xd8\xff"
        c.check("POST", "/api/stylize", stylize(n.http, [("style", "2")]), 400)
        # no --atelierd: contributions are off
        c.check("POST", "/api/contribute", n.http.post("/api/contribute", b"x",
                                                       headers={"Content-Type": "text/plain"}), 503)
        c.check("POST", "/admin/reload", n.http.post("/admin/reload"), 401)
        # a receipt no node knows (200 replies: tests/test_rights.py, against a real atelierd)
        for m in ("GET", "DELETE"):
            c.check(m, "/api/sketches/mine", n.http.request(m, "/api/sketches/mine", headers={
                "X-Atelier-Receipt": "S" * 43}), 404)
        c.check("POST", "/admin/reload", n.http.post("/admin/reload", token=ADMIN), 200)
        json_ops = {k for k, op in ops.items()
                    if "application/json" in op["responses"][min(c for c in op["responses"] if c[0] == "2")]
                    .get("content", {})}
        # the gallery's routes are checked against real replies in test_gallery.py (test_routes_match_their_schemas)
        json_ops -= {("post", "/api/publish"), ("get", "/api/works/mine"), ("delete", "/api/works/mine"),
                     ("get", "/api/gallery")}
        print("atelier-serve: %d of %d JSON routes checked against real replies" % (len(c.seen & json_ops),
                                                                                    len(json_ops)))
        assert json_ops - c.seen <= {("get", "/api/openapi.json"), ("post", "/api/contribute")}, json_ops - c.seen
    finally:
        assert n.stop() == 0, n.log()[-3000:]
