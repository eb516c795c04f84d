"""Trust nothing a client says about itself (issue 14): the hostile probes
that once got through, each with the status it must get now, against the
real atelierd and serving node.

- HTTP framing: a request whose length is ambiguous (two Content-Length
  headers, or Content-Length with chunked) is answered 400 and the connection
  closed, so the bytes after it are never served as a second request
  (smuggling behind a proxy that picked the other length).
- HTTP/2, by prior knowledge or h2c upgrade, gets a valid answer (lower-case
  header names), never a protocol error.
- Lax parsing: ids are digits only within int64, a path holding %00 or
  another control character is refused, a move's body is checked field by
  field, a missing version is named, PostgreSQL's text stays in the log, a
  channel of an unknown model is 404.
"""
import hashlib
import os
import re
import shutil
import socket
import subprocess

import pytest

import images
from conftest import multipart
from daemon import start_atelierd

SMUGGLED = b"GET /smuggled-second-request HTTP/1.1\r\nHost: x\r\n\r\n"


def raw_exchange(port, data, timeout=5):
    """Sends data on one connection; returns (everything the server sent,
    whether it closed the connection before the timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                return out, False
            if not b:
                return out, True
            out += b
    finally:
        s.close()


def ambiguous_requests(path):
    p = path.encode()
    return [
        ("two Content-Length", b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: %d\r\n\r\n" %
         (p, len(SMUGGLED)) + SMUGGLED),
        ("Content-Length then chunked", b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % p + SMUGGLED),
        ("chunked then Content-Length", b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
         b"Content-Length: %d\r\n\r\n0\r\n\r\n" % (p, len(SMUGGLED)) + SMUGGLED),
        ("after a good request on the same connection",
         b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
         b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n" % p + SMUGGLED),
    ]


def check_framing(port, path):
    for name, data in ambiguous_requests(path):
        out, closed = raw_exchange(port, data)
        statuses = re.findall(rb"^HTTP/1\.1 (\d{3}) ", out, re.M)
        want = [b"200", b"400"] if name.startswith("after") else [b"400"]
        assert statuses == want, "%s: want %r then close, got %r" % (name, want, out[:600])
        assert closed, "%s: the connection stayed open after the 400: %r" % (name, out[:600])
        assert b"smuggled" not in out and b'"INVAL"' in out, (name, out[:600])


def check_http2(url, path):
    """curl speaks HTTP/2 by prior knowledge and by h2c upgrade: both must get
    a valid reply (curl exits 0), here a 401 that carries an extra header."""
    if not shutil.which("curl"):
        pytest.skip("curl not installed")
    for mode in ("--http2-prior-knowledge", "--http2"):
        p = subprocess.run(["curl", "-sS", "-i", "--max-time", "10", mode, "-X", "POST", url + path],
                           capture_output=True, timeout=20)
        out = p.stdout.decode(errors="replace")
        assert p.returncode == 0, "%s: curl exit %d: %s %s" % (mode, p.returncode, p.stderr.decode(), out[:400])
        assert re.search(r"^HTTP/2 401", out, re.M), (mode, out[:400])
        assert re.search(r"^www-authenticate: Bearer", out, re.M), (mode, out[:400])


# ---- atelierd ----

@pytest.fixture(scope="module")
def d(pg):
    daemon = start_atelierd(pg.new_database("hostile"))
    daemon.api = daemon.http(daemon.token("operator"))
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
    pg.psql("SELECT version FROM atelier_register_version('%s', '%s', %d, 'fs://x', NULL, NULL, NULL, '{}', '{}', "
            "NULL)" % (model, sha, len(data)), d.db_url)
    return sha


@pytest.fixture(scope="module")
def world(d, pg):
    """A sketch (its id), a model m with versions 1 and 2 (production moved
    1 -> 2, so a rollback would succeed) and an artifact's sha."""
    r = d.api.post("/v1/sketches", images.sketch(1), headers={"Content-Type": "image/png"})
    assert r.status == 201, r
    sha = register(pg, d, "m", b"model one" * 64)
    register(pg, d, "m", b"model two" * 64)
    for v in (1, 2):
        assert d.api.post("/v1/models/m/channels/production", {"version": v}).status == 200
    return {"id": r.json()["id"], "sha": sha}


def no_pg_text(r):
    """PostgreSQL's own words never reach the client."""
    text = r.body.decode(errors="replace")
    return not re.search(r"type integer|type bigint|timestamp with time zone|invalid input syntax|<NULL>", text)


def names(*fields):
    return lambda r: r.json().get("detail", {}).get("fields") == list(fields)


# (name, method, path (with {id}, {sha}), JSON body, status, extra check)
ATELIERD_PROBES = [
    ("id beyond int64", "GET", "/v1/sketches/99999999999999999999", None, 400,
     lambda r: r.json()["detail"]["param"] == "id"),
    ("run id beyond int64", "GET", "/v1/runs/99999999999999999999", None, 400, no_pg_text),
    ("version beyond int64", "GET", "/v1/models/m/versions/99999999999999999999", None, 400, no_pg_text),
    ("id with a plus sign", "GET", "/v1/sketches/+{id}", None, 400, None),
    ("id with a leading space", "GET", "/v1/sketches/%20{id}", None, 400, None),
    ("id with a trailing NUL", "GET", "/v1/sketches/{id}%00", None, 400, None),
    ("png id with a leading space", "GET", "/v1/sketches/%20{id}.png", None, 400, None),
    ("version with a trailing NUL", "GET", "/v1/models/m/versions/1%00", None, 400, None),
    ("pipeline name %00", "GET", "/v1/pipelines/%00", None, 400, None),
    ("artifact sha %00", "GET", "/v1/artifacts/{sha}%00", None, 400, None),
    ("control character in a path", "GET", "/v1/models/m%01/versions", None, 400, None),
    ("version beyond int32: no PostgreSQL text", "GET", "/v1/models/m/versions/9999999999", None, 400, no_pg_text),
    ("bad timestamp: no PostgreSQL text", "GET", "/v1/runs?since=yesterday-ish", None, 400, no_pg_text),
    ("promote a missing version names it", "POST", "/v1/models/m/channels/canary", {"version": 77}, 404,
     lambda r: "77" in r.json()["error"] and no_pg_text(r)),
    ("promote version -1", "POST", "/v1/models/m/channels/canary", {"version": -1}, 422, names("version")),
    ("rollback that names a version", "POST", "/v1/models/m/channels/production",
     {"version": 1, "action": "rollback"}, 422, names("action", "version")),
    ("unknown field in a promote", "POST", "/v1/models/m/channels/canary", {"version": 1, "overwrite": True}, 422,
     names("overwrite")),
    ("force not a boolean", "POST", "/v1/models/m/channels/canary", {"version": 1, "force": "yes"}, 422, names("force")),
    ("reason not a string", "POST", "/v1/models/m/channels/canary", {"version": 1, "reason": 5}, 422,
     names("reason")),
    ("limit with a plus sign", "GET", "/v1/runs?limit=+5", None, 400, lambda r: r.json()["code"] == "RANGE"),
    ("wait with a plus sign", "GET", "/v1/models/m/channels/canary?wait=%2B1", None, 400,
     lambda r: r.json()["code"] == "RANGE"),
    ("channel of an unknown model", "GET", "/v1/models/nosuchmodel/channels/canary?wait=0", None, 404, None),
]


@pytest.mark.parametrize("probe", ATELIERD_PROBES, ids=[p[0] for p in ATELIERD_PROBES])
def test_atelierd_probe(d, world, probe):
    name, method, path, body, status, check = probe
    path = path.replace("{id}", str(world["id"])).replace("{sha}", world["sha"])
    r = d.api.request(method, path, body=body)
    assert r.status == status, "%s: want %d, got %r" % (name, status, r)
    assert r.headers.get("content-type", "").startswith("application/json"), (name, r)
    assert check is None or check(r), "%s: %r" % (name, r)


def test_atelierd_valid_spellings_still_work(d, world):
    """The strict parser still takes what is right (leading zeros are digits)."""
    i = world["id"]
    assert d.api.get("/v1/sketches/%d" % i).status == 200
    assert d.api.get("/v1/sketches/0%d" % i).status == 200
    assert d.api.get("/v1/sketches/%d.png" % i).status == 200
    assert d.api.get("/v1/artifacts/" + world["sha"]).status == 200
    assert d.api.get("/v1/models/m/versions/1").status == 200
    assert d.api.get("/v1/models/m/channels/production").json()["version"] == 2
    # a known model whose channel points nowhere yet is waited on (304), not 404
    assert d.api.get("/v1/models/m/channels/canary?wait=0").status == 304


def test_atelierd_logs_postgres_text_with_request_id(d, world):
    r = d.api.get("/v1/models/m/versions/9999999999", headers={"X-Request-Id": "hostile-pg-text"})
    assert r.status == 400
    log = d.log()
    line = [ln for ln in log.splitlines() if "hostile-pg-text" in ln]
    assert line and "out of range" in line[0], log[-2000:]


def test_atelierd_consent_true_any_case(d, pg):
    """consent=TRUE is stored as true (the issue's report; fixed before, kept here)."""
    body, ct = multipart([("consent", "TRUE"), ("image", ("s.png", images.sketch(7), "image/png"))])
    r = d.api.post("/v1/sketches", body, headers={"Content-Type": ct})
    assert r.status == 201, r
    assert pg.psql("SELECT consent FROM images WHERE id = %d" % r.json()["id"], d.db_url) == "t"


def test_atelierd_ambiguous_length_is_refused_and_closed(d):
    check_framing(d.port, "/v1/tokens")


def test_atelierd_http2(d):
    check_http2(d.url, "/v1/tokens")


# ---- the serving node ----

@pytest.fixture(scope="module")
def node():
    from test_serve import start_node
    from conftest import free_port
    n = start_node("--atelierd", "http://127.0.0.1:%d" % free_port(), "--token", "t")
    yield n
    assert n.stop() == 0, n.log()[-3000:]


def test_node_ambiguous_length_is_refused_and_closed(node):
    check_framing(int(node.url.rsplit(":", 1)[1]), "/api/contribute")


def test_node_http2(node):
    check_http2(node.url, "/admin/reload")


def test_node_control_characters_in_path(node):
    for path in ("/healthz%00", "/api/info%0a", "/%7f"):
        r = node.http.get(path)
        assert r.status == 400 and r.json()["code"] == "INVAL", (path, r)


def test_atelierd_http2_stream_and_long_poll_then_shutdown(db_url, pg):
    """HTTP/2 is served, not just answered: an event stream and a held
    long-poll work over it, and atelierd still stops cleanly (and soon) while
    both are open."""
    if not shutil.which("curl"):
        pytest.skip("curl not installed")
    import time
    d = start_atelierd(db_url)
    try:
        tok = d.token("viewer")
        register(pg, d, "m", b"model one" * 64)
        auth = ["-H", "Authorization: Bearer " + tok]
        events = subprocess.Popen(["curl", "-sS", "-N", "--http2-prior-knowledge", "-D-"] + auth +
                                  [d.url + "/v1/events"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        poll = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}"] +
                                auth + [d.url + "/v1/models/m/channels/canary?wait=60"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        op = d.http(d.token("operator"))
        time.sleep(1.0)
        assert op.post("/v1/models/m/channels/canary", {"version": 1}).status == 200
        out, err = poll.communicate(timeout=20)
        assert out == b"200", (out, err)
        t0 = time.time()
        rc = d.stop()
        took = time.time() - t0
        ev_out, ev_err = events.communicate(timeout=20)
    finally:
        d.stop()
    assert rc == 0, d.log()[-3000:]
    assert took < 12, "atelierd took %.1fs to stop with an HTTP/2 stream open" % took
    assert re.search(rb"^HTTP/2 200", ev_out, re.M) and b"text/event-stream" in ev_out, (ev_out[:500], ev_err)
