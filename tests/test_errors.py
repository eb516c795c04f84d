"""One error path: every error reply of atelierd and of the serving node is
checked against the one error table (lib/err.h, printed by `atelierd errors
--json`): its status is the table's status for the body's "code", and
/metrics counted it under that code and status. A source check keeps
literal HTTP statuses out of the reply functions everywhere but lib/http.c.

The requests below provoke a broad set of errors: bad JSON, unknown route,
wrong method, missing and invalid token, wrong role, over-cap body, bad ids,
not found, unsupported media, malformed and oversized multipart, range and
readiness errors."""
import collections
import json
import os
import re
import subprocess

import pytest

import images
from conftest import BIN, ROOT, Http, free_port, multipart
from daemon import start_atelierd

ATELIERD = os.path.join(BIN, "atelierd")
SERVE = os.path.join(BIN, "atelier-serve")


@pytest.fixture(scope="module")
def table():
    out = subprocess.run([ATELIERD, "errors", "--json"], check=True, capture_output=True, timeout=30).stdout
    rows = json.loads(out)
    t = {r["code"]: r["status"] for r in rows}
    assert len(t) == len(rows), "duplicate code names in the error table"
    return t


def test_table_is_lib_err_h(table):
    """The binary prints the table the source declares (parsed from lib/err.h)."""
    src = open(os.path.join(ROOT, "lib", "err.h")).read()
    rows = re.findall(r'^\s*X\((\w+),\s*(\d+),\s*"', src, re.M)
    assert rows, "no X(...) rows found in lib/err.h"
    assert table == {name: int(status) for name, status in rows}
    assert table["TOOBIG"] == 413 and table["METHOD"] == 405


def metrics_errors(http):
    text = http.get("/metrics").body.decode()
    assert "# TYPE atelier_http_errors_total counter" in text
    got = {}
    for code, status, n in re.findall(r'^atelier_http_errors_total\{code="(\w+)",status="(\d+)"\} (\d+)$', text, re.M):
        got[code] = (int(status), int(n))
    return got


def check_all(table, http, cases):
    """Runs every case; returns how many replies each code had."""
    seen = collections.Counter()
    for name, send, want in cases:
        r = send()
        assert r.headers.get("content-type", "").startswith("application/json"), (name, r)
        j = r.json()
        code = j.get("code")
        assert code in table, "%s: code %r is not in the error table (%r)" % (name, code, r)
        assert r.status == table[code], "%s: status %d but the table says %s is %d" % (name, r.status, code,
                                                                                       table[code])
        assert code == want, "%s: want %s, got %r" % (name, want, r)
        assert isinstance(j["error"], str) and j["error"] and j["request_id"], (name, j)
        seen[code] += 1
    counted = metrics_errors(http)
    for code, n in seen.items():
        assert code in counted, "/metrics has no atelier_http_errors_total for %s" % code
        assert counted[code] == (table[code], n), "%s: /metrics says %r, sent %d" % (code, counted[code], n)
    assert set(counted) == set(seen), "/metrics counted errors nobody provoked: %r" % counted
    return seen


def too_many_parts(n, image_field="image"):
    return multipart([(image_field, ("s.png", images.sketch(1), "image/png"))] +
                     [("f%d" % i, "x") for i in range(n)])


def test_atelierd_errors_follow_the_table(db_url, table):
    d = start_atelierd(db_url, "--max-body", "1MiB")
    try:
        op = d.http(d.token("operator"))
        viewer = d.http(d.token("viewer"))
        anon = d.http()
        png = {"Content-Type": "image/png"}
        many, many_ct = too_many_parts(9)
        bad_mp = (b"--x\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc", "multipart/form-data; boundary=x")
        cases = [
            ("bad JSON", lambda: op.post("/v1/tokens", b"{not json", headers={"Content-Type": "application/json"}),
             "PARSE"),
            ("JSON not an object", lambda: op.post("/v1/tokens", b"[1]", headers={"Content-Type": "application/json"}),
             "INVAL"),
            ("unknown route", lambda: op.get("/v1/nothing"), "NOTFOUND"),
            ("wrong method", lambda: op.request("DELETE", "/v1/sketches"), "METHOD"),
            ("path too long", lambda: op.get("/v1/" + "a" * 3000), "URITOOLONG"),
            ("missing token", lambda: anon.get("/v1/runs"), "UNAUTHORIZED"),
            ("invalid token", lambda: d.http("atl_notatoken").get("/v1/runs"), "UNAUTHORIZED"),
            ("wrong role", lambda: viewer.post("/v1/tokens", {"role": "node"}), "FORBIDDEN"),
            ("unknown role", lambda: op.post("/v1/tokens", {"role": "root"}), "UNPROCESSABLE"),
            ("over-cap body", lambda: op.post("/v1/sketches", images.sketch(5) + b"\0" * (1200 * 1024), headers=png),
             "TOOBIG"),
            ("multipart with too many parts", lambda: op.post("/v1/sketches", many, headers={"Content-Type": many_ct}),
             "TOOBIG"),
            ("malformed multipart", lambda: op.post("/v1/sketches", bad_mp[0], headers={"Content-Type": bad_mp[1]}),
             "PARSE"),
            ("unsupported type", lambda: op.post("/v1/sketches", b"hello", headers={"Content-Type": "text/plain"}),
             "UNSUPPORTED"),
            ("truncated PNG", lambda: op.post("/v1/sketches", images.sketch(5)[:200], headers=png), "CORRUPT"),
            ("bad sketch id", lambda: op.get("/v1/sketches/abc"), "INVAL"),
            ("no such sketch", lambda: op.get("/v1/sketches/987654"), "NOTFOUND"),
            ("bad run id", lambda: op.get("/v1/runs/abc"), "INVAL"),
            ("no such run", lambda: op.get("/v1/runs/987654"), "NOTFOUND"),
            ("limit out of range", lambda: op.get("/v1/runs?limit=0"), "RANGE"),
            ("no such pipeline", lambda: op.post("/v1/pipelines/nope/runs"), "NOTFOUND"),
            ("invalid pipeline", lambda: op.post("/v1/pipelines", b"name: [", headers={"Content-Type": "text/yaml"}),
             "UNPROCESSABLE"),
            ("no such channel", lambda: op.get("/v1/models/m/channels/beta"), "NOTFOUND"),
            ("wait out of range", lambda: op.get("/v1/models/m/channels/canary?wait=999"), "RANGE"),
            ("bad promote body", lambda: op.post("/v1/models/m/channels/canary", {"version": "x"}), "UNPROCESSABLE"),
            ("bad sha256", lambda: op.get("/v1/artifacts/xyz"), "INVAL"),
            ("unknown artifact", lambda: op.get("/v1/artifacts/" + "0" * 64), "NOTFOUND"),
            ("heartbeat without a name", lambda: op.post("/v1/nodes/heartbeat", {}), "UNPROCESSABLE"),
        ]
        seen = check_all(table, op, cases)
        assert len(seen) >= 10
    finally:
        rc = d.stop()
    assert rc == 0, "atelierd did not stop cleanly (rc %r):\n%s" % (rc, d.log()[-3000:])


@pytest.mark.skipif(not os.path.exists(SERVE), reason="atelier-serve not built")
def test_serving_node_errors_follow_the_table(table):
    from test_serve import ADMIN, start_node
    # no model (readiness errors) and an atelierd that is not there (the
    # contribution form is judged before anything is sent)
    n = start_node("--max-body", "1MiB", "--atelierd", "http://127.0.0.1:%d" % free_port(), "--token", "t")
    try:
        h = n.http
        admin = n.admin

        def form(path, fields):
            body, ct = multipart(fields)
            return h.post(path, body, headers={"Content-Type": ct})

        sketch = ("s.png", images.sketch(1), "image/png")
        many, many_ct = too_many_parts(9)
        many_s, many_s_ct = too_many_parts(17, "contentImage")
        bad_mp = b"--x\r\nContent-Disposition: form-data; name=\"contentImage\"\r\n\r\nabc"
        cases = [
            ("not ready", lambda: h.get("/readyz"), "NOTREADY"),
            ("unknown route", lambda: h.get("/nope"), "NOTFOUND"),
            ("wrong method", lambda: h.request("DELETE", "/api/stylize"), "METHOD"),
            ("missing token", lambda: h.post("/admin/reload"), "UNAUTHORIZED"),
            ("invalid token", lambda: Http(n.url, "wrong").post("/admin/reload"), "UNAUTHORIZED"),
            ("nothing to reload", lambda: admin.post("/admin/reload"), "CONFLICT"),
            ("over-cap body", lambda: form("/api/stylize", [("contentImage", sketch), ("pad", b"\0" * (1100 * 1024))]),
             "TOOBIG"),
            ("stylize: unsupported type", lambda: h.post("/api/stylize", b"x", headers={"Content-Type": "text/plain"}),
             "UNSUPPORTED"),
            ("stylize: malformed multipart",
             lambda: h.post("/api/stylize", bad_mp, headers={"Content-Type": "multipart/form-data; boundary=x"}),
             "PARSE"),
            ("stylize: too many parts", lambda: h.post("/api/stylize", many_s, headers={"Content-Type": many_s_ct}),
             "TOOBIG"),
            ("stylize: no contentImage", lambda: form("/api/stylize", [("style", "1")]), "INVAL"),
            ("stylize: bad style", lambda: form("/api/stylize", [("contentImage", sketch), ("style", "-1")]),
             "UNPROCESSABLE"),
            ("stylize: no model", lambda: form("/api/stylize", [("contentImage", sketch), ("style", "1")]), "NOTREADY"),
            ("contribute: too many parts", lambda: h.post("/api/contribute", many, headers={"Content-Type": many_ct}),
             "TOOBIG"),
            ("contribute: no consent", lambda: form("/api/contribute", [("image", sketch)]), "UNPROCESSABLE"),
            ("contribute: not an image", lambda: form("/api/contribute", [("image", ("a.txt", b"text" * 9, "text/plain"))]),
             "UNSUPPORTED"),
        ]
        check_all(table, h, cases)
    finally:
        rc = n.stop()
    assert rc == 0, "atelier-serve did not stop cleanly (rc %r):\n%s" % (rc, n.log()[-3000:])


# ---- the source check ----

REPLY_FNS = r"http_reply_(?:err|json|bytes|owned|empty|buf)|http_stream_start(?:_sized)?|reply_bad"


def test_no_literal_error_status_outside_lib_http():
    """Outside lib/http.c no reply passes a literal error status (4xx/5xx) or
    calls a status-taking error function: errors go through http_reply_err
    with an AT_E* code, so the table decides the status."""
    bad = []
    call = re.compile(r"\b(%s)\s*\(" % REPLY_FNS)
    for folder in ("orchestrator", "serving", "cli", "workers", "lib", "bench"):
        base = os.path.join(ROOT, folder)
        for dirpath, _, files in os.walk(base):
            for f in files:
                if not f.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, ROOT)
                if rel == os.path.join("lib", "http.c"):
                    continue
                src = open(path, errors="replace").read()
                if re.search(r"\bhttp_reply_error\s*\(", src):
                    bad.append("%s: calls http_reply_error (use http_reply_err with an AT_E* code)" % rel)
                for m in call.finditer(src):
                    args = split_args(src, m.end())
                    if args is None:
                        continue
                    why = literal_status(m.group(1), args)
                    if why:
                        line = src.count("\n", 0, m.start()) + 1
                        bad.append("%s:%d: %s" % (rel, line, why))
    assert not bad, "\n".join(bad)


def literal_status(fn, args):
    """Why this call passes a literal status, or None."""
    # the status argument: 2nd for http_reply_*, 4th for reply_bad(app, req, t0, err, ...)
    idx = 3 if fn == "reply_bad" else 1
    if len(args) <= idx:
        return None
    a = args[idx].strip()
    if fn in ("http_reply_err", "reply_bad", "http_reply_buf"):
        # these take an AT_E* code: any number there is a status in disguise
        if re.match(r"^\(?\s*-?\d", a) or re.search(r"[?:]\s*\d{3}\b", a):
            return "%s with a literal status %r" % (fn, a)
    elif re.match(r"^[45]\d\d$", a):
        return "%s with a literal error status %s" % (fn, a)
    return None


def split_args(src, i):
    """The top-level arguments of a call whose '(' ends just before i."""
    depth, cur, args, in_str = 0, [], [], None
    while i < len(src):
        c = src[i]
        if in_str:
            cur.append(c)
            if c == "\\":
                cur.append(src[i + 1])
                i += 2
                continue
            if c == in_str:
                in_str = None
        elif c in "\"'":
            in_str = c
            cur.append(c)
        elif c in "([{":
            depth += 1
            cur.append(c)
        elif c in ")]}":
            if depth == 0:
                args.append("".join(cur))
                return args
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            args.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    return None


def test_source_check_catches_a_literal_status():
    """The check above would have caught the old calls, and passes the new ones."""
    for snippet in ('http_reply_err(req, 413, "x", NULL);', 'reply_bad(app, req, t0, 503, "busy", NULL);',
                    'http_reply_json(req, 400, o);', 'http_reply_err(req, rc == AT_ETOOBIG ? 413 : 400, "m", d);'):
        m = re.search(r"\b(%s)\s*\(" % REPLY_FNS, snippet)
        assert literal_status(m.group(1), split_args(snippet, m.end())), snippet
    for snippet in ('http_reply_err(req, AT_ETOOBIG, "x", NULL);', 'http_reply_json(req, 201, o);',
                    'http_reply_empty(req, HTTP_STATUS_CLIENT_GONE);', 'http_reply_err(req, rc, "m", d);'):
        m = re.search(r"\b(%s)\s*\(" % REPLY_FNS, snippet)
        assert not literal_status(m.group(1), split_args(snippet, m.end())), snippet
