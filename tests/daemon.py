"""Starting the real atelierd for integration tests."""
import os
import re
import subprocess
import tempfile
import time

from conftest import BIN, Http, Proc, wait_until


class Atelierd:
    def __init__(self, db_url, *args, env=None, port=0):
        self.db_url = db_url
        self.args = list(args)
        self.extra_env = env or {}
        self.port = port
        self.proc = None
        self.url = None
        # a command the binary runs under (tests/hosts: ["ip", "netns", "exec", NS])
        self.wrap = []
        # the artifact store URI, when not fs:// on self.artifacts
        self.artifacts_uri = None

    def env(self):
        if not hasattr(self, "artifacts"):
            self.artifacts = tempfile.mkdtemp(prefix="atelier-art-")
        env = dict(os.environ, ATELIER_DATABASE_URL=self.db_url, ATELIER_LOG_LEVEL="info",
                   ATELIER_ARTIFACTS=self.artifacts_uri or "fs://" + self.artifacts)
        env.update(self.extra_env)
        return env

    def start(self):
        self.proc = Proc(self.wrap + [os.path.join(BIN, "atelierd"), "--port", str(self.port)] + self.args,
                         env=self.env())

        def listening():
            m = re.search(r"listening on (http://[0-9.]+:(\d+))", self.proc.log())
            if not self.proc.alive():
                raise AssertionError("atelierd exited:\n" + self.proc.log())
            return m
        m = wait_until(listening, timeout=60, what="atelierd to listen")
        self.url = m.group(1)
        self.port = int(m.group(2))
        return self

    def token(self, role):
        out = subprocess.run([os.path.join(BIN, "atelierd"), "token", "create", "--role", role],
                             env=self.env(), check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def http(self, token=None):
        return Http(self.url, token)

    def stop(self):
        return self.proc.stop() if self.proc else 0

    def kill9(self):
        self.proc.kill()
        self.proc.p.wait()

    def log(self):
        return self.proc.log()


def start_atelierd(db_url, *args, **kw):
    d = Atelierd(db_url, *args, **kw)
    d.start()
    return d


def wait_ready(http, want=200, timeout=30):
    return wait_until(lambda: http.get("/readyz").status == want, timeout=timeout,
                      what="/readyz to answer %d" % want)


def now_ms():
    return time.time() * 1000
