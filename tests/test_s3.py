"""The s3:// artifact store with the whole system: a real S3-protocol server
(s3rver behind tests/s3/front.js, which verifies every SigV4 signature with
the AWS SDK's own signer) started here on loopback; atelierd, its local
workers and a serving node on it. Also `atelier gc` on both stores, and the
figures behind atelierd's presigned redirect (docs/artifacts.md).

The C unit test build/tests/test_artifact_s3 covers the store itself: put,
get, head, list, multipart, Range, corrupt reads, retries, presigned URLs."""
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse

import pytest

import images
from conftest import BIN, ROOT, Proc, multipart, wait_until
from daemon import start_atelierd

START = os.path.join(ROOT, "tests", "s3", "start.sh")
SERVE = os.path.join(BIN, "atelier-serve")
CLI = os.path.join(BIN, "atelier")
pytestmark = pytest.mark.skipif(not shutil.which("node"), reason="node is not installed (Debian package nodejs)")

KEY, SECRET = "atelier", "atelier-secret"
EMPTY = hashlib.sha256(b"").hexdigest()


class S3:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="atelier-s3-")
        self.proc = Proc([START, "127.0.0.1", "0", self.dir, "atelier"])
        m = wait_until(lambda: re.search(r"s3: ready (http://[0-9.]+:\d+)", self.proc.log()) or
                       (None if self.proc.alive() else pytest.fail("s3 server exited:\n" + self.proc.log())),
                       timeout=120, what="the S3 server")
        self.url = m.group(1)

    def env(self, prefix):
        return {"ATELIER_ARTIFACTS": "s3://atelier/" + prefix, "ATELIER_S3_ENDPOINT": self.url,
                "ATELIER_S3_PATH_STYLE": "true", "ATELIER_S3_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "ATELIER_S3_BACKOFF": "0.05"}

    def front(self, what, method="GET"):
        u = urllib.parse.urlsplit(self.url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        c.request(method, "/__front/" + what)
        r = c.getresponse()
        body = r.read()
        c.close()
        return json.loads(body) if body else None

    def curl(self, method, key, secret=SECRET, data=None, sha=EMPTY):
        """A signed request by the curl tool (libcurl's SigV4, as the store's)."""
        argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method,
                "--aws-sigv4", "aws:amz:us-east-1:s3", "-u", "%s:%s" % (KEY, secret),
                "-H", "x-amz-content-sha256: " + sha, "%s/atelier/%s" % (self.url, key)]
        if data is not None:
            argv[1:1] = ["--data-binary", "@" + data]
        return int(subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout)

    def stop(self):
        self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def s3():
    s = S3()
    yield s
    s.stop()


def test_wrong_secret_gets_403(s3, tmp_path):
    """The front verifies signatures (s3rver alone takes any secret)."""
    f = tmp_path / "x"
    f.write_bytes(b"signed bytes")
    sha = hashlib.sha256(b"signed bytes").hexdigest()
    s3.front("reset", "POST")
    assert s3.curl("PUT", "probe/x", data=str(f), sha=sha) == 200
    assert s3.curl("GET", "probe/x") == 200
    assert s3.curl("GET", "probe/x", secret="wrong-secret") == 403
    assert s3.curl("PUT", "probe/y", secret="wrong-secret", data=str(f), sha=sha) == 403
    # the signed payload hash must match the body, as on AWS
    assert s3.curl("PUT", "probe/z", data=str(f), sha=EMPTY) == 400
    assert s3.curl("GET", "probe/y") == 404
    st = s3.front("stats")
    assert st["rejected"] == 3 and st["verified"] == 3, st


def get_no_redirect(d, path, headers=None):
    u = urllib.parse.urlsplit(d.url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request("GET", path, headers=dict(headers or {}, Authorization="Bearer " + d.api.token))
    r = c.getresponse()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    c.close()
    return out


def fetch(url, headers=None):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    c.request("GET", u.path + ("?" + u.query if u.query else ""), headers=headers or {})
    r = c.getresponse()
    out = (r.status, r.read())
    c.close()
    return out


def gc(d, *args):
    env = dict(os.environ, ATELIER_URL=d.url, ATELIER_TOKEN=d.api.token)
    out = subprocess.run([CLI, "gc"] + list(args), env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out
    return out.stdout


@pytest.mark.skipif(not os.path.exists(SERVE), reason="atelier-serve not built")
def test_cycle_on_s3(s3, pg, db_url):
    """A tiny CT cycle with --artifacts s3://: workers put shards, checkpoints
    and the export in S3, evaluate reads them back, a serving node pulls the
    model through atelierd's presigned redirect; then gc on the S3 store."""
    from test_e2e import apply_tiny, jpeg_size, run_and_wait
    from test_serve import start_node
    env = dict(s3.env("e2e"), ATELIER_TRAIN_THREADS="1")
    d = start_atelierd(db_url, "--local-workers", "2", "--tick-ms", "200", "--holdout-fraction", "0.3", env=env)
    try:
        d.api = d.http(d.token("operator"))
        cli_env = dict(os.environ, ATELIER_URL=d.url, ATELIER_TOKEN=d.api.token)
        out = subprocess.run([CLI, "synth", "--count", "24", "--size", "32"], env=cli_env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out
        s3.front("reset", "POST")
        apply_tiny(d, "tiny")
        r = run_and_wait(d, "tiny")
        assert r["run"]["state"] == "succeeded", json.dumps(r, indent=1)[:3000] + d.log()[-3000:]
        stages = {j["stage"]: j for j in r["jobs"]}
        version = stages["promote"]["result"]["version"]
        sha = d.api.get("/v1/models/tiny/versions/%d" % version).json()["version"]["sha256"]
        uri = pg.psql("SELECT artifact_uri FROM model_versions WHERE model = 'tiny' AND version = %d" % version,
                      db_url)
        assert uri == "s3://atelier/e2e/sha256/%s/%s" % (sha[:2], sha), uri
        # the export is in S3, not on a local disk
        assert s3.curl("HEAD", "e2e/sha256/%s/%s" % (sha[:2], sha)) == 200
        st = s3.front("stats")
        assert st["rejected"] == 0 and st["methods"].get("PUT", 0) >= 3, st

        # atelierd redirects; the presigned URL serves the bytes and Ranges
        status, headers, _ = get_no_redirect(d, "/v1/artifacts/" + sha)
        assert status == 302 and headers["x-content-sha256"] == sha, headers
        loc = headers["location"]
        assert loc.startswith(s3.url + "/atelier/e2e/sha256/") and "X-Amz-Signature=" in loc, loc
        status, body = fetch(loc)
        assert status == 200 and hashlib.sha256(body).hexdigest() == sha
        status, part = fetch(loc, {"Range": "bytes=10-19"})
        assert status == 206 and part == body[10:20]
        # a tampered URL is refused by the verifying front
        status, _ = fetch(loc.replace("X-Amz-Expires=900", "X-Amz-Expires=901"))
        assert status == 403

        # the node follows the redirect, checks the sha and serves
        node = start_node("--atelierd", d.url, "--token", d.token("node"), "--model", "tiny", "--channel",
                          "production", "--name", "s3-node", "--heartbeat-interval", "0.5")
        try:
            node.wait_ready(timeout=90)
            body, ct = multipart([("contentImage", ("s.png", images.sketch(3), "image/png")), ("style", "7")])
            res = node.http.post("/api/stylize", body, headers={"Content-Type": ct})
            assert res.status == 200 and jpeg_size(res.body) == (512, 512), res
        finally:
            node.stop()
        assert s3.front("stats")["presigned"] >= 1

        # evaluate's samples came back through the store too: the CLI fetches one
        out = subprocess.run([CLI, "samples", "tiny", str(version), "--out", str(s3.dir + "-samples")],
                             env=cli_env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out
        assert any(f.endswith(".png") for f in os.listdir(s3.dir + "-samples"))

        # gc: an unreferenced object is listed by --dry-run, then removed; the model stays
        junk = os.path.join(s3.dir + "-junk")
        with open(junk, "wb") as f:
            f.write(b"nothing refers to me")
        jsha = hashlib.sha256(b"nothing refers to me").hexdigest()
        jkey = "e2e/sha256/%s/%s" % (jsha[:2], jsha)
        assert s3.curl("PUT", jkey, data=junk, sha=jsha) == 200
        ckpts = pg.psql("SELECT sha256 FROM train_checkpoints", db_url).split()
        assert ckpts
        out = gc(d, "--dry-run", "--grace", "0")
        assert "would remove " + jsha in out and sha not in out, out
        # the run has ended: its checkpoints go, the export stays
        for ck in ckpts:
            assert "would remove " + ck in out, out
        assert "dry run: nothing removed" in out
        assert s3.curl("HEAD", jkey) == 200
        out = gc(d, "--grace", "3600")  # everything is younger than an hour: nothing goes
        assert "removed 0 artifacts" in out, out
        out = gc(d, "--grace", "0")
        assert "removed " + jsha in out, out
        assert s3.curl("HEAD", jkey) == 404
        assert s3.curl("HEAD", "e2e/sha256/%s/%s" % (sha[:2], sha)) == 200
    finally:
        assert d.stop() == 0, d.log()[-3000:]


def test_gc_on_fs(pg, db_url):
    """The same rules on an fs:// store: referenced and young artifacts stay."""
    d = start_atelierd(db_url)
    try:
        d.api = d.http(d.token("operator"))
        root = os.path.join(d.artifacts, "sha256")

        def put(data, age_s):
            sha = hashlib.sha256(data).hexdigest()
            os.makedirs(os.path.join(root, sha[:2]), exist_ok=True)
            p = os.path.join(root, sha[:2], sha)
            with open(p, "wb") as f:
                f.write(data)
            t = time.time() - age_s
            os.utime(p, (t, t))
            return sha, p
        old_junk, old_p = put(b"old and unreferenced", 7200)
        young_junk, young_p = put(b"young and unreferenced", 10)
        kept, kept_p = put(b"old but a sample", 7200)
        pg.psql("INSERT INTO artifact_refs (sha256, kind, content_type) VALUES ('%s', 'sample', 'image/png')"
                % kept, db_url)
        # a queued train job's checkpoints: the newest is what a resumed attempt reads
        ck1, ck1_p = put(b"checkpoint step 1", 7200)
        ck2, ck2_p = put(b"checkpoint step 2", 7200)
        job = int(pg.psql("SELECT atelier_enqueue(kind => 'train', payload => '{}'::jsonb)", db_url))
        pg.psql("INSERT INTO train_checkpoints (job_id, step, sha256, attempt) VALUES (%d, 1, '%s', 1), "
                "(%d, 2, '%s', 1)" % (job, ck1, job, ck2), db_url)
        out = gc(d, "--dry-run")
        assert "would remove " + old_junk in out and "would remove " + ck1 in out, out
        assert young_junk not in out and kept not in out and ck2 not in out, out
        assert os.path.exists(old_p)
        r = d.api.post("/v1/gc", {"dry_run": False})
        assert r.status == 200, r
        j = r.json()
        assert j["removed"] == 2 and j["referenced"] == 2 and j["young"] == 1, j
        assert j["bytes"] == len(b"old and unreferenced") + len(b"checkpoint step 1"), j
        assert {i["sha256"] for i in j["items"]} == {old_junk, ck1} and j["store"].startswith("fs://")
        assert not os.path.exists(old_p) and os.path.exists(young_p) and os.path.exists(kept_p)
        assert not os.path.exists(ck1_p) and os.path.exists(ck2_p)
        # once the job has ended its last checkpoint is not needed either
        pg.psql("UPDATE jobs SET state = 'cancelled' WHERE id = %d" % job, db_url)
        j = d.api.post("/v1/gc", {"dry_run": False}).json()
        assert [i["sha256"] for i in j["items"]] == [ck2], j
        bad = d.api.post("/v1/gc", {"dry_run": "yes"})
        assert bad.status == 422, bad
        assert d.http().post("/v1/gc", {}).status == 401
    finally:
        assert d.stop() == 0, d.log()[-3000:]


def test_download_figures(s3, pg, db_url, tmp_path):
    """What an artifact download costs atelierd: streaming it from fs:// vs
    answering a 302 for s3:// (the client then reads from the store). Prints
    latency and atelierd's CPU time; docs/artifacts.md quotes them."""
    size = 32 << 20
    data = os.urandom(size)
    sha = hashlib.sha256(data).hexdigest()
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    n = 5
    figures = {}
    for kind in ("fs", "s3"):
        env = s3.env("figures") if kind == "s3" else {}
        d = start_atelierd(db_url, env=env)
        try:
            d.api = d.http(d.token("operator"))
            if kind == "fs":
                os.makedirs(os.path.join(d.artifacts, "sha256", sha[:2]), exist_ok=True)
                shutil.copy(str(blob), os.path.join(d.artifacts, "sha256", sha[:2], sha))
            else:
                assert s3.curl("PUT", "figures/sha256/%s/%s" % (sha[:2], sha), data=str(blob), sha=sha) == 200
            pg.psql("INSERT INTO artifact_refs (sha256, kind, content_type) VALUES ('%s', 'shard', "
                    "'application/octet-stream') ON CONFLICT DO NOTHING" % sha, db_url)

            def cpu():
                f = open("/proc/%d/stat" % d.proc.p.pid).read().rsplit(")", 1)[1].split()
                return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
            c0, t0 = cpu(), time.monotonic()
            for _ in range(n):
                out = subprocess.run(["curl", "-sfL", "-o", str(tmp_path / "got"), "-H",
                                      "Authorization: Bearer " + d.api.token, d.url + "/v1/artifacts/" + sha],
                                     capture_output=True, timeout=120)
                assert out.returncode == 0, out
                assert hashlib.sha256((tmp_path / "got").read_bytes()).hexdigest() == sha
            wall, c1 = (time.monotonic() - t0) / n, cpu()
            figures[kind] = (wall, (c1 - c0) / n)
        finally:
            assert d.stop() == 0, d.log()[-3000:]
    for kind, (wall, cpu_s) in figures.items():
        print("\n%s: 32 MiB artifact download: %.0f ms each, atelierd CPU %.1f ms each" % (kind, wall * 1000,
                                                                                          cpu_s * 1000))
