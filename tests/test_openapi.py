"""The OpenAPI documents the daemons generate from their route tables
(atelierd's /v1/openapi.json, atelier-serve's /api/openapi.json) pass a real
validator: @redocly/cli lint with its recommended rules (tests/openapi/,
installed with npm ci from its package-lock.json), zero errors. Also: every
route of `atelierd routes` / `atelier-serve routes` is in the document (one
table feeds both), public routes need no token and the others name the bearer
scheme, and the shapes the documents promise hold for real replies."""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import BIN, ROOT, Http
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
            for ct, media in op["responses"][c].get("content", {}).items():
                assert "schema" in media, (m, p, c, ct)
        if m in ("post", "put") and "requestBody" in op:
            for ct, media in op["requestBody"]["content"].items():
                assert "schema" in media, (m, p, ct)
        for seg in re.findall(r"\{(\w+)\}", p):
            decl = [q for q in op.get("parameters", []) if q["in"] == "path" and q["name"] == seg]
            assert decl and decl[0]["required"] is True, (m, p, seg)
    return ops


def test_atelierd_openapi_is_valid(db_url, tmp_path):
    npm_ci()
    d = start_atelierd(db_url)
    try:
        r = Http(d.url).get("/v1/openapi.json")
        assert r.status == 200, r
        doc = r.json()
        ops = check_doc(doc, os.path.join(BIN, "atelierd"), tmp_path, "atelierd")
        err = doc["components"]["schemas"]["Error"]
        # the error body the document promises is what a refusal really carries
        r = Http(d.url).get("/v1/runs")
        assert r.status == 401, r
        body = r.json()
        for k in err["required"]:
            assert k in body, (k, body)
        assert set(body) <= set(err["properties"]), (body, err["properties"])
        # ids are integers, artifacts are named by their sha256
        assert ops[("get", "/v1/runs/{id}")]["parameters"][0]["schema"]["type"] == "integer"
        sha = [q for q in ops[("get", "/v1/artifacts/{sha256}")]["parameters"] if q["name"] == "sha256"][0]
        assert sha["schema"]["pattern"] == "^[0-9a-f]{64}$"
        assert "text/event-stream" in ops[("get", "/v1/events")]["responses"]["200"]["content"]
        assert "multipart/form-data" in ops[("post", "/v1/sketches")]["requestBody"]["content"]
    finally:
        assert d.stop() == 0, d.log()[-3000:]


@pytest.mark.skipif(not os.path.exists(SERVE), reason="atelier-serve not built")
def test_node_openapi_is_valid(tmp_path):
    npm_ci()
    from test_serve import start_node
    n = start_node()
    try:
        r = n.http.get("/api/openapi.json")
        assert r.status == 200, r
        doc = r.json()
        ops = check_doc(doc, SERVE, tmp_path, "atelier-serve")
        assert "image/jpeg" in ops[("post", "/api/stylize")]["responses"]["200"]["content"]
        assert "multipart/form-data" in ops[("post", "/api/contribute")]["requestBody"]["content"]
        # a real refusal has the shape of the shared error body
        r = n.http.post("/admin/reload")
        assert r.status == 401, r
        err = doc["components"]["schemas"]["Error"]
        assert set(err["required"]) <= set(r.json()) <= set(err["properties"]), r.json()
    finally:
        assert n.stop() == 0, n.log()[-3000:]
