"""Alerts through the real atelierd, real workers and a real receiver: signed
webhook deliveries for a failed run, a failed gate, a promotion and a silent
node; retries with backoff recorded in the delivery log; atelierd serving
promptly while a receiver hangs (and still shutting down cleanly); /metrics'
alerting series; and the shipped Prometheus rules and Grafana dashboard
(promtool check rules; every metric they name exists in a live scrape)."""
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import ROOT, wait_until
from daemon import start_atelierd

SECRET = b"s3cret-for-tests\n"  # the trailing newline is not part of the key
RULES = os.path.join(ROOT, "deploy", "prometheus", "atelier-rules.yml")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "atelier-dashboard.json")


class Receiver:
    """A webhook receiver on loopback. Answers with the statuses in `plan`
    (one per request, then 200), or holds every request open while `hang`."""

    def __init__(self, plan=(), hang=False):
        self.plan = list(plan)
        self.hang = threading.Event()
        if hang:
            self.hang.set()
        self.release = threading.Event()
        self.got = []
        self.lock = threading.Lock()
        rcv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with rcv.lock:
                    status = rcv.plan.pop(0) if rcv.plan else 200
                    rcv.got.append({"t": time.time(), "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body": body, "status": status})
                if rcv.hang.is_set():
                    rcv.release.wait(60)  # accept, read, never answer (until the test ends)
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        self.url = "http://127.0.0.1:%d/hook" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def of_kind(self, kind):
        with self.lock:
            return [g for g in self.got if g["headers"].get("x-atelier-event") == kind]

    def close(self):
        self.release.set()
        self.srv.shutdown()
        self.srv.server_close()


def verify(delivery):
    """The signature a receiver checks: HMAC-SHA256(key, TIMESTAMP "." BODY)."""
    h = delivery["headers"]
    ts = h["x-atelier-timestamp"]
    want = "sha256=" + hmac.new(SECRET.strip(), ts.encode() + b"." + delivery["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(h["x-atelier-signature"], want), (h, delivery["body"][:200])
    assert abs(int(ts) - time.time()) < 120, "timestamp must be the attempt's time"
    # a tampered body no longer matches
    bad = "sha256=" + hmac.new(SECRET.strip(), ts.encode() + b"." + delivery["body"] + b" ", hashlib.sha256).hexdigest()
    assert bad != h["x-atelier-signature"]
    return json.loads(delivery["body"])


def secret_file():
    fd, path = tempfile.mkstemp(prefix="hook-secret-")
    os.write(fd, SECRET)
    os.close(fd)
    return path


def yaml_text(name, stages):
    return "pipeline: %s\nmodel: none\nconcurrency: 1\ntriggers:\n  manual: true\nstages:\n%s" % (name, stages)


def register(pg, d, model, data):
    sha = hashlib.sha256(data).hexdigest()
    row = pg.psql("SELECT version_id, version FROM atelier_register_version('%s', '%s', %d, 'fs://x', NULL, NULL, "
                  "NULL, '{}', '{\"holdout\": {\"fid\": 12.5, \"clip\": 0.25}}', NULL)" % (model, sha, len(data)),
                  d.db_url)
    return [int(x) for x in row.split("|")]


def metrics(d):
    return d.http().get("/metrics").body.decode()


@pytest.fixture
def rcv():
    r = Receiver(plan=[500])
    yield r
    r.close()


def test_signed_retried_deliveries_and_log(db_url, pg, rcv):
    d = start_atelierd(db_url, "--local-workers", "1", "--tick-ms", "200", "--webhook-url", rcv.url,
                       "--webhook-secret-file", secret_file(), "--webhook-backoff", "0.4", "--webhook-attempts", "4")
    try:
        api = d.http(d.token("operator"))
        viewer = d.http(d.token("viewer"))
        # ---- a failed run: first attempt answered 500, the retry 200 ----
        r = api.post("/v1/pipelines?filename=p.yaml", yaml_text("failing", "  a:\n    kind: fail\n    retries: 0\n"
                                                                "    params: {message: boom}\n").encode(),
                     headers={"Content-Type": "application/yaml"})
        assert r.status in (200, 201), r
        run_id = api.post("/v1/pipelines/failing/runs").json()["run"]
        got = wait_until(lambda: len(rcv.of_kind("run.failed")) >= 2 and rcv.of_kind("run.failed"), timeout=60,
                         what="run.failed delivered twice (500, then 200)")
        first, second = got[0], got[1]
        assert first["status"] == 500 and second["status"] == 200
        for g in (first, second):
            body = verify(g)
            assert body["kind"] == "run.failed" and body["payload"]["run"] == run_id, body
            assert "boom" in body["payload"]["error"]
        assert first["headers"]["x-atelier-delivery"] == second["headers"]["x-atelier-delivery"]
        assert second["t"] - first["t"] >= 0.35, "the retry must wait for the backoff"
        did = int(first["headers"]["x-atelier-delivery"])

        def logged():
            rows = api.get("/v1/webhooks/deliveries?kind=run.failed").json()["deliveries"]
            return rows and rows[0]["state"] == "delivered" and rows[0]
        row = wait_until(logged, what="the delivery log to say delivered")
        assert row["id"] == did and row["attempts"] == 2 and row["last_status"] == 200, row
        assert row["url"] == rcv.url and row["payload"]["run"] == run_id and row["delivered_at"], row
        assert viewer.get("/v1/webhooks/deliveries").status == 403, "the log is for operators"
        assert api.get("/v1/webhooks/deliveries?state=bogus").status == 400
        assert api.get("/v1/webhooks/deliveries?limit=0").status == 400
        assert api.get("/v1/webhooks/deliveries?kind=run.done").status == 400

        # ---- a failed gate and a promotion ----
        vid, ver = register(pg, d, "m", b"model one" * 50)
        pg.psql("UPDATE model_versions SET verdict = '{\"passed\": false, \"reasons\": [\"fid worse\"]}' "
                "WHERE id = %d" % vid, d.db_url)
        # a version whose gate failed moves only with force (the dashboard's override)
        assert api.post("/v1/models/m/channels/production", {"version": ver, "reason": "first"}).status == 409
        r = api.post("/v1/models/m/channels/production", {"version": ver, "reason": "first", "force": True})
        assert r.status == 200, r
        gate = wait_until(lambda: rcv.of_kind("gate.failed"), what="gate.failed delivered")
        body = verify(gate[0])
        assert body["payload"]["model"] == "m" and body["payload"]["reasons"] == ["fid worse"], body
        promo = wait_until(lambda: rcv.of_kind("model.promoted"), what="model.promoted delivered")
        body = verify(promo[0])
        assert body["payload"]["to_version"] == ver and body["payload"]["reason"] == "override of a failed gate: first", body
        assert body["payload"]["actor"], body

        # ---- a node that went silent: reported once ----
        node = d.http(d.token("node"))
        assert node.post("/v1/nodes/heartbeat", {"node": "n1", "model": "m", "version": ver}).status == 200
        pg.psql("UPDATE nodes SET last_seen = now() - interval '1 hour'", d.db_url)
        assert pg.psql("SELECT atelier_webhook_scan_nodes(60)", d.db_url) == "1"
        assert pg.psql("SELECT atelier_webhook_scan_nodes(60)", d.db_url) == "0"
        unhealthy = wait_until(lambda: rcv.of_kind("node.unhealthy"), what="node.unhealthy delivered")
        assert verify(unhealthy[0])["payload"]["node"] == "n1"

        # ---- /metrics: what the alert rules read ----
        def scraped():
            m = metrics(d)
            return 'atelier_webhook_deliveries_total{outcome="delivered"} 4' in m and m
        m = wait_until(scraped, timeout=20, interval=0.5, what="4 deliveries counted in /metrics")
        assert 'atelier_webhook_deliveries_total{outcome="retried"} 1' in m, m
        assert 'atelier_runs{state="failed"} 1' in m, m
        assert 'atelier_model_production_version{model="m"} %d' % ver in m, m
        assert 'atelier_model_production_score{model="m",metric="fid"} 12.5' in m, m
        assert re.search(r'atelier_model_last_promotion_timestamp_seconds\{model="m"\} (\d+\.?\d*)', m)
        assert 'atelier_node_up{node="n1",model="m"} 0' in m, m
        assert re.search(r'atelier_job_duration_seconds\{kind="test.fail",quantile="0.5"\} [0-9.]+', m), m
    finally:
        assert d.stop() == 0, d.log()[-3000:]


def test_pipeline_notify_targets(db_url):
    """A pipeline's own `notify:` list, with no --webhook-url at all: each
    target signs with the key in the atelierd environment variable it names."""
    rcv = Receiver()
    d = start_atelierd(db_url, "--local-workers", "1", "--tick-ms", "200", env={"HOOK_KEY": SECRET.strip().decode()})
    try:
        api = d.http(d.token("operator"))
        text = yaml_text("noisy", "  a:\n    kind: fail\n    retries: 0\n") + (
            "notify:\n  - {url: '%s', events: [run.failed], secret_env: HOOK_KEY}\n"
            "  - {url: '%s', secret_env: UNSET_HOOK_KEY}\n"
            "  - {url: '%s', events: [model.promoted], secret_env: HOOK_KEY}\n" % (rcv.url, rcv.url + "2", rcv.url + "3"))
        r = api.post("/v1/pipelines?filename=p.yaml", text.encode(), headers={"Content-Type": "application/yaml"})
        assert r.status in (200, 201), r
        bad = api.post("/v1/pipelines?filename=bad.yaml", (text + "  - {url: 'ftp://x', secret_env: K}\n").encode(),
                       headers={"Content-Type": "application/yaml"})
        assert bad.status == 422 and "bad.yaml:14:11: \"notify[3].url\"" in bad.json()["error"], bad
        run_id = api.post("/v1/pipelines/noisy/runs").json()["run"]
        got = wait_until(lambda: rcv.of_kind("run.failed"), timeout=60, what="run.failed at the pipeline's target")
        body = verify(got[0])
        assert body["payload"]["run"] == run_id and got[0]["headers"]["x-atelier-delivery"]

        def failed_unset():
            rows = api.get("/v1/webhooks/deliveries?state=failed").json()["deliveries"]
            return rows and rows[0]
        row = wait_until(failed_unset, what="the target without a key to be logged failed")
        assert row["url"] == rcv.url + "2" and "UNSET_HOOK_KEY is not set" in row["last_error"], row
        rows = api.get("/v1/webhooks/deliveries").json()["deliveries"]
        assert sorted(r["url"] for r in rows) == [rcv.url, rcv.url + "2"], "the third target wants promotions only"
        time.sleep(0.5)
        assert len(rcv.got) == 1, [g["headers"] for g in rcv.got]
    finally:
        assert d.stop() == 0, d.log()[-3000:]
        rcv.close()


def test_hanging_receiver_does_not_block(db_url, pg):
    rcv = Receiver(hang=True)
    d = start_atelierd(db_url, "--webhook-url", rcv.url, "--webhook-secret-file", secret_file(),
                       "--webhook-timeout", "30")
    try:
        api = d.http(d.token("operator"))
        vid, ver = register(pg, d, "h", b"hang" * 64)
        assert api.post("/v1/models/h/channels/production", {"version": ver}).status == 200
        wait_until(lambda: rcv.of_kind("model.promoted"), what="the hanging receiver to get the delivery")
        assert 'atelier_webhook_in_flight 1' in metrics(d)
        worst = 0.0
        for _ in range(10):
            for path, client in (("/healthz", d.http()), ("/v1/models/h/ledger", api)):
                t0 = time.monotonic()
                r = client.get(path)
                worst = max(worst, time.monotonic() - t0)
                assert r.status == 200, (path, r)
        print("slowest of 20 requests while the receiver hung: %.1f ms" % (worst * 1000))
        assert worst < 0.2, "a request took %.3f s while a webhook receiver hung" % worst
        rows = api.get("/v1/webhooks/deliveries").json()["deliveries"]
        assert rows[0]["state"] == "pending" and rows[0]["attempts"] == 0, rows
    finally:
        # shutting down with a transfer in flight: every curl socket's poll closed
        assert d.stop() == 0, d.log()[-3000:]
        rcv.close()
    assert "stopped cleanly" in d.log()


def test_bad_webhook_settings_refused(db_url):
    from conftest import BIN
    env = dict(os.environ, ATELIER_DATABASE_URL=db_url)
    for args, why in ((["--webhook-url", "http://127.0.0.1:9/x"], "needs --webhook-secret-file"),
                      (["--webhook-url", "ftp://x/", "--webhook-secret-file", secret_file()], "only http"),
                      (["--webhook-url", "http://127.0.0.1:9/x", "--webhook-secret-file", secret_file(),
                        "--webhook-events", "run.failed,bogus"], "unknown event kind")):
        out = subprocess.run([os.path.join(BIN, "atelierd"), "--port", "0"] + args, env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 1 and why in out.stdout + out.stderr, (args, out.stdout, out.stderr)


# ---- the shipped rules and dashboard ----

def names_in(expr):
    return set(re.findall(r"\b(atelier_[a-z0-9_]+|process_[a-z_]+)\b", expr))


def rule_exprs():
    text = open(RULES).read()
    # the rules file is YAML; its expressions are single-line `expr:` values
    return [m.group(1) for m in re.finditer(r"^\s*expr:\s*(.+)$", text, re.M)]


def dashboard_targets():
    dash = json.load(open(DASHBOARD))
    prom, sql = [], []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            if "expr" in t:
                prom.append(t["expr"])
            if "rawSql" in t:
                sql.append(t["rawSql"])
    return prom, sql


def test_promtool_checks_rules():
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool is not installed (Debian package prometheus, listed in deps.txt)")
    out = subprocess.run([promtool, "check", "rules", RULES], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_rules_and_dashboard_use_live_metrics(db_url, pg):
    d = start_atelierd(db_url)
    try:
        m = metrics(d)
        live = set(re.findall(r"^# TYPE (\S+) ", m, re.M))
        prom, sql = dashboard_targets()
        exprs = rule_exprs()
        assert len(exprs) >= 5 and len(prom) >= 6, (exprs, prom)
        used = set()
        for e in exprs + prom:
            used |= names_in(e)
        missing = sorted(n for n in used if n not in live and re.sub(r"_(sum|count|bucket)$", "", n) not in live)
        assert not missing, "metrics the rules/dashboard use but /metrics lacks: %s" % missing
        # the dashboard's PostgreSQL panels read views that exist and answer
        assert sql, "the dashboard has PostgreSQL panels"
        for q in sql:
            pg.psql(q.replace("$__timeFrom()", "now() - interval '1 day'").replace("$__timeTo()", "now()"), d.db_url)
    finally:
        assert d.stop() == 0, d.log()[-3000:]
