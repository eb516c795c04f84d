"""Test harness: a throwaway PostgreSQL cluster per test session, helpers to
start the real binaries on free ports and to speak HTTP to them.

Everything started here is stopped here (fixtures' finalisers), even when a
test fails."""
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("ATELIER_BUILD", "build"))
BIN = os.path.join(BUILD, "bin")

# Every temporary file and folder of a test session (process logs, artifact
# stores, clusters, the binaries' own temp folders through TMPDIR) lives in one
# folder: removed when the session passes, kept (and named) when it fails.
# Readable by all, so the postgres user can reach the clusters inside.
TMP_ROOT = tempfile.mkdtemp(prefix="atelier-tests-")
os.chmod(TMP_ROOT, 0o755)
tempfile.tempdir = TMP_ROOT
os.environ["TMPDIR"] = TMP_ROOT


_session_status = [None]


def pytest_sessionfinish(session, exitstatus):
    _session_status[0] = exitstatus
    if exitstatus != 0:
        print("\ntest logs and temporary files kept in " + TMP_ROOT)


@atexit.register
def _remove_tmp_root():
    # At exit, after pytest's own clean-up of its tmp_path folders in there
    # (registered later, so run earlier).
    if _session_status[0] == 0:
        shutil.rmtree(TMP_ROOT, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Postgres:
    """A private cluster in a temp folder, through scripts/pgctl.sh."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="atelier-pg-")
        self.url = None

    def start(self):
        out = subprocess.run([os.path.join(ROOT, "scripts/pgctl.sh"), "start", self.dir],
                             check=True, capture_output=True, text=True,
                             env=dict(os.environ, PG_FSYNC=os.environ.get("PG_FSYNC", "off")))
        self.url = out.stdout.strip().splitlines()[-1]
        # The URL carries no password (scripts/pgctl.sh): libpq in every
        # process the tests start (psql, atelierd, workers) reads it from here.
        os.environ["PGPASSFILE"] = self.passfile()
        return self.url

    def passfile(self):
        return subprocess.run([os.path.join(ROOT, "scripts/pgctl.sh"), "passfile", self.dir],
                              check=True, capture_output=True, text=True).stdout.strip()

    def stop(self):
        subprocess.run([os.path.join(ROOT, "scripts/pgctl.sh"), "stop", self.dir],
                       capture_output=True)

    def restart(self):
        self.stop()
        self.start()

    def psql(self, sql, db_url=None):
        out = subprocess.run(["psql", db_url or self.url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def new_database(self, name):
        """A fresh database in this cluster, for a test that needs a clean schema."""
        self.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
        self.psql('CREATE DATABASE "%s"' % name)
        return self.url.rsplit("/", 1)[0] + "/" + name

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg():
    p = Postgres()
    p.start()
    yield p
    p.remove()


_db_counter = [0]


@pytest.fixture
def db_url(pg, request):
    """A fresh, empty database for one test."""
    _db_counter[0] += 1
    name = "t%d_%s" % (_db_counter[0], "".join(c for c in request.node.name.lower() if c.isalnum())[:40])
    return pg.new_database(name)


class Proc:
    """A real binary running in the background; killed on cleanup."""

    def __init__(self, argv, env=None, log=None):
        self.argv = argv
        self.log_path = log or tempfile.mktemp(prefix="atelier-log-")
        self.logf = open(self.log_path, "wb")
        self.p = subprocess.Popen(argv, env=env, stdout=self.logf, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def alive(self):
        return self.p.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout=10):
        """SIGTERM, wait; returns the exit code (SIGKILL after timeout)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.p.wait()
        self.logf.close()
        return self.p.returncode


class Http:
    """Minimal HTTP client over loopback (stdlib only)."""

    def __init__(self, base, token=None):
        self.base = base
        self.token = token

    def request(self, method, path, body=None, headers=None, token=None, timeout=30):
        h = dict(headers or {})
        tok = token if token is not None else self.token
        if tok:
            h["Authorization"] = "Bearer " + tok
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:300])


def wait_until(fn, timeout=15, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def multipart(fields):
    """fields: list of (name, value) or (name, (filename, bytes, content_type))."""
    boundary = "----atelier%d" % int(time.time() * 1e6)
    out = []
    for name, val in fields:
        out.append(("--" + boundary + "\r\n").encode())
        if isinstance(val, tuple):
            fn, data, ct = val
            out.append(('Content-Disposition: form-data; name="%s"; filename="%s"\r\n' % (name, fn)).encode())
            out.append(("Content-Type: %s\r\n\r\n" % ct).encode())
            out.append(data)
        else:
            out.append(('Content-Disposition: form-data; name="%s"\r\n\r\n' % name).encode())
            out.append(val.encode() if isinstance(val, str) else val)
        out.append(b"\r\n")
    out.append(("--" + boundary + "--\r\n").encode())
    return b"".join(out), "multipart/form-data; boundary=" + boundary
