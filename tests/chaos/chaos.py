"""The chaos suite (`make chaos`): the whole system on loopback — a throwaway
PostgreSQL, atelierd, three atelier-worker processes, two atelier-serve nodes
following the tiny model's production channel — runs continuous-training
cycles of the tiny pipeline while clients paint (/api/stylize), contribute
(/api/contribute on the nodes) and upload (POST /v1/sketches on atelierd), and
a seeded fault injector breaks one thing at a time:

  worker_kill     kill -9 of a worker; a replacement starts at once
  atelierd_kill   kill -9 of atelierd; restarted on the same port
  node_kill       kill -9 of a serving node; restarted on the same port and spool
  pg_fast         pg_ctl restart -m fast
  pg_immediate    pg_ctl restart -m immediate (crash recovery)
  store_ro        the fs:// artifact store read-only (a bind mount remounted ro)
  spool_full      a node's spool filesystem (a small tmpfs) filled by a ballast file

Recovery time of a fault = from the moment it was injected (for store_ro and
spool_full: from the moment it was lifted) until the affected component worked
again, as observed by the injector:
  worker_kill     the replacement worker is registered and the job the killed one
                  held (if any) is no longer held by it (lease expiry + re-claim)
  atelierd_kill   atelierd's /readyz answers 200
  node_kill       the node's /readyz answers 200 (model downloaded and loaded)
  pg_*            atelierd's /readyz answers 200 and a fresh upload is acknowledged
  store_ro        a run that started after the store came back succeeded
  spool_full      a fresh contribution to that node is acknowledged (202)

Afterwards (faults lifted, load stopped, spools drained, runs finished) the
invariants: every acknowledged upload and contribution is in the database
exactly once; no model version registered twice (one run, one version; no
sha256 twice); every run in a final state; each channel's version is the target
of its last ledger move; no process died that the injector did not kill; every
fault recovered; failed stylize requests within the stated bound. Exit status
1 when one fails."""
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import images  # noqa: E402
from conftest import BIN, ROOT, TMP_ROOT, Http, Postgres, Proc, free_port, multipart, wait_until  # noqa: E402
from daemon import Atelierd  # noqa: E402

WORKER = os.path.join(BIN, "atelier-worker")
SERVE = os.path.join(BIN, "atelier-serve")
FINAL = ("succeeded", "failed", "cancelled")
KINDS = ["worker_kill", "atelierd_kill", "node_kill", "pg_fast", "pg_immediate", "store_ro", "spool_full"]
# Stylize requests may fail while a node is killed or atelierd/PostgreSQL are
# away (the node keeps serving its loaded model, so most should not): the run
# fails if more than this fraction of them fail.
SERVE_ERROR_BOUND = 0.10
SPOOL_TMPFS_MB = 8
RECOVERY_TIMEOUT = 120


def log(msg):
    print("[%7.1f] %s" % (time.time() - T0, msg), flush=True)


T0 = time.time()


def sh(*argv, check=True):
    return subprocess.run(list(argv), check=check, capture_output=True, text=True)


def sketch_png(tag):
    """A sketch no other call draws: random strokes seeded by tag (sha256), so
    normalisation (crop to ink, resize) cannot make two of them one row."""
    r = random.Random(hashlib.sha256(tag.encode()).digest())
    n = 96
    canvas = bytearray(b"\xff" * (n * n))
    for _ in range(r.randint(3, 6)):
        x0, y0, x1, y1 = (r.uniform(8, n - 8) for _ in range(4))
        steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        for i in range(steps + 1):
            x = int(x0 + (x1 - x0) * i / steps)
            y = int(y0 + (y1 - y0) * i / steps)
            for dx in (0, 1):
                for dy in (0, 1):
                    canvas[(y + dy) * n + x + dx] = 0
    return images.png(n, n, lambda x, y: canvas[y * n + x])


def lost_and_duplicated(q, uploads, contribs):
    """The acknowledged items missing from `images` or there more than once:
    (lost uploads, lost contributions, duplicated tags). uploads: (tag, sha256
    atelierd answered); contribs: (tag, ...) acknowledged by a node (a 202
    carries no sha256). q runs SQL and returns psql's text. tests/hosts uses
    it too."""
    rows = dict(line.split("|") for line in q("SELECT contributor, count(*) FROM images WHERE contributor IS NOT NULL"
                                              " GROUP BY contributor").splitlines() if line)
    shas = set(q("SELECT encode(sha256, 'hex') FROM images WHERE domain = 'sketch'").split())
    lost_up = [t for t, s in uploads if s not in shas or rows.get(t) != "1"]
    lost_co = [c[0] for c in contribs if rows.get(c[0]) != "1"]
    dup = [t for t, c in rows.items() if int(c) > 1]
    return lost_up, lost_co, dup


def version_counts(q):
    """[versions that share a (model, version), a sha256, a run; all versions],
    as text: the first three must be "0"."""
    return q("SELECT count(*) - count(DISTINCT (model, version)), count(*) - count(DISTINCT sha256),"
             " count(run_id) - count(DISTINCT run_id), count(*) FROM model_versions").split("|")


class AckedLoad:
    """The load both the chaos run and the hosts rig (tests/hosts/) put on the
    system, recording what it was told: acknowledged contributions and uploads
    (the input of lost_and_duplicated) and refusals by status. The class using
    it has self.lock, self.op (the operator's Http), self.contribs,
    self.contrib_fail, self.uploads and self.upload_fail."""

    def post_contribution(self, http, where, tag):
        body, ct = multipart([("image", ("s.png", sketch_png(tag), "image/png")), ("consent", "true"),
                              ("contributor", tag)])
        try:
            st = http.post("/api/contribute", body, headers={"Content-Type": ct}, timeout=30).status
        except Exception as e:  # noqa: BLE001 - a node that is down: not acknowledged
            st = type(e).__name__
        with self.lock:
            if st == 202:
                self.contribs.append((tag, where))
            else:
                self.contrib_fail[st] = self.contrib_fail.get(st, 0) + 1
        return st

    def upload(self, tag):
        body, ct = multipart([("image", ("s.png", sketch_png(tag), "image/png")), ("consent", "true"),
                              ("contributor", tag)])
        try:
            r = self.op.post("/v1/sketches", body, headers={"Content-Type": ct}, timeout=30)
            st = r.status
        except Exception as e:  # noqa: BLE001 - the controller in use was killed: not acknowledged
            r, st = None, type(e).__name__
        with self.lock:
            if st in (200, 201):
                self.uploads.append((tag, r.json()["sha256"]))
            else:
                self.upload_fail[st] = self.upload_fail.get(st, 0) + 1
        return st


class Chaos(AckedLoad):
    def __init__(self, seed, seconds):
        self.seed = seed
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.kinds = os.environ.get("CHAOS_KINDS", "").split(",") if os.environ.get("CHAOS_KINDS") else KINDS
        self.tmp = TMP_ROOT
        self.stop_load = threading.Event()
        self.stop_cycles = threading.Event()
        self.lock = threading.Lock()
        self.mounts = []
        self.procs = {}          # name -> Proc (workers, nodes); atelierd apart
        self.killed = set()      # Proc ids the injector killed on purpose
        self.crashes = []
        self.faults = []         # dicts: kind, target, t, recovery (s) or None
        self.stylize = []        # (t, node, status)
        self.contribs = []       # acknowledged: (tag, node)
        self.contrib_fail = {}   # status -> count
        self.uploads = []        # acknowledged: (tag, sha256 of the stored image)
        self.upload_fail = {}
        self.runs = []           # (run id, final state or None)
        self.worker_n = 0

    # ---- set-up ----

    def mount(self, *argv):
        sh("mount", *argv)

    def setup(self):
        self.pg = Postgres()
        self.pg.start()
        self.db = self.pg.new_database("chaos")
        self.store = os.path.join(self.tmp, "store")
        os.makedirs(self.store)
        # a bind mount onto itself, so that remount,ro turns writes off for
        # everyone, root included (chmod does not stop root)
        self.mount("--bind", self.store, self.store)
        self.mounts.append(self.store)
        self.d = Atelierd(self.db, "--tick-ms", "200", "--holdout-fraction", "0.3", port=free_port())
        self.d.artifacts = self.store
        self.d.start()
        self.op = self.d.http(self.d.token("operator"))
        self.node_token = self.d.token("node")
        env = dict(os.environ, ATELIER_URL=self.d.url, ATELIER_TOKEN=self.op.token)
        out = subprocess.run([os.path.join(BIN, "atelier"), "synth", "--count", "24", "--size", "32"], env=env,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out
        for i in range(3):
            self.start_worker()
        self.nodes = {}
        for i in (1, 2):
            name = "n%d" % i
            work = os.path.join(self.tmp, name)
            spool = os.path.join(work, "spool")
            os.makedirs(spool)
            self.mount("-t", "tmpfs", "-o", "size=%dm" % SPOOL_TMPFS_MB, "tmpfs", spool)
            self.mounts.append(spool)
            self.nodes[name] = {"work": work, "spool": spool, "port": free_port()}
            self.start_node(name)

    def start_worker(self):
        self.worker_n += 1
        name = "w%d" % self.worker_n
        env = dict(os.environ, ATELIER_LOG_LEVEL="info", ATELIER_TRAIN_THREADS="1")
        self.procs[name] = Proc([WORKER, "--database-url", self.db, "--name", name, "--artifacts",
                                 "fs://" + self.store, "--lease", "6", "--poll", "0.5"], env=env)
        return name

    def start_node(self, name):
        n = self.nodes[name]
        argv = [SERVE, "--port", str(n["port"]), "--cache", os.path.join(n["work"], "cache"), "--spool", n["spool"],
                "--atelierd", self.d.url, "--model", "tiny", "--channel", "production",
                "--name", name, "--heartbeat-interval", "1", "--retry-max", "2", "--poll-wait", "5",
                "--threads", "1", "--torch-threads", "1"]
        # the token through the environment, not the command line (ps shows that)
        self.procs[name] = Proc(argv, env=dict(os.environ, ATELIER_LOG_LEVEL="info",
                                               ATELIER_NODE_TOKEN=self.node_token))
        n["http"] = Http("http://127.0.0.1:%d" % n["port"])
        wait_until(lambda: n["http"].get("/healthz").status == 200, timeout=60, what=name + " to listen")

    # ---- load ----

    def apply_tiny(self, seed):
        text = open(os.path.join(ROOT, "pipelines/tiny.yaml")).read().replace("seed: 1", "seed: %d" % seed)
        return self.op.post("/v1/pipelines?filename=tiny.yaml", text.encode(),
                            headers={"Content-Type": "application/yaml"}, timeout=10)

    def retry(self, fn, what, timeout=120):
        deadline = time.time() + timeout
        while True:
            try:
                r = fn()
                if r.status < 500:
                    return r
            except Exception:  # noqa: BLE001 - atelierd or PostgreSQL away: retried
                pass
            if time.time() > deadline:
                raise AssertionError("%s: no answer for %d s" % (what, timeout))
            time.sleep(0.5)

    def cycles(self):
        """Continuous training: a run of the tiny pipeline (a new training seed
        each time, so each run makes another model) as soon as the last ended."""
        k = 0
        while not self.stop_cycles.is_set():
            k += 1
            try:
                r = self.retry(lambda: self.apply_tiny(k), "apply tiny")
                assert r.status in (200, 201), r
                run = self.retry(lambda: self.op.post("/v1/pipelines/tiny/runs", timeout=10), "start run").json()["run"]
            except Exception as e:  # noqa: BLE001
                log("cycle %d: could not start: %s" % (k, e))
                continue
            entry = [run, None, time.time(), None]
            self.runs.append(entry)
            deadline = time.time() + 300
            while time.time() < deadline:
                try:
                    st = self.op.get("/v1/runs/%d" % run, timeout=10).json()["run"]["state"]
                    if st in FINAL:
                        entry[1], entry[3] = st, time.time()
                        break
                except Exception:  # noqa: BLE001
                    pass
                time.sleep(0.5)
            log("run %d: %s" % (run, entry[1] or "not final after 300 s"))

    def stylizer(self, i):
        k = 0
        while not self.stop_load.is_set():
            k += 1
            name = self.rng_load.choice(sorted(self.nodes))
            body, ct = multipart([("contentImage", ("s.png", images.sketch(k % 50 + i), "image/png")),
                                  ("style", str(k % 7))])
            try:
                st = self.nodes[name]["http"].post("/api/stylize", body, headers={"Content-Type": ct},
                                                   timeout=30).status
            except Exception as e:  # noqa: BLE001 - connection refused while the node is down
                st = type(e).__name__
            self.stylize.append((time.time(), name, st))
            time.sleep(0.2)

    def contribute(self, name, tag):
        return self.post_contribution(self.nodes[name]["http"], name, tag)


    def contributor(self):
        k = 0
        while not self.stop_load.is_set():
            k += 1
            self.contribute(self.rng_load.choice(sorted(self.nodes)), "c%d-%d" % (self.seed, k))
            time.sleep(0.3)

    def uploader(self):
        k = 0
        while not self.stop_load.is_set():
            k += 1
            self.upload("u%d-%d" % (self.seed, k))
            time.sleep(0.3)

    def monitor(self):
        """A process that died without the injector killing it is a crash:
        recorded with its log, and restarted so the run goes on."""
        while not self.stop_load.is_set():
            try:
                procs = list(self.procs.items()) + [("atelierd", self.d.proc)]
            except RuntimeError:  # the injector replaced one meanwhile
                continue
            for name, p in procs:
                if p is not None and not p.alive() and id(p) not in self.killed:
                    self.killed.add(id(p))
                    self.crashes.append((name, p.p.returncode, p.log()[-2000:]))
                    log("CRASH: %s exited %r" % (name, p.p.returncode))
            time.sleep(0.5)

    # ---- faults ----

    def kill(self, p):
        self.killed.add(id(p))
        p.kill()
        p.p.wait()

    def readyz(self):
        try:
            return self.d.http().get("/readyz", timeout=2).status == 200
        except Exception:  # noqa: BLE001
            return False

    def recover(self, pred, timeout=RECOVERY_TIMEOUT):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if pred():
                    return True
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.1)
        return False

    def pg_ctl(self, *args):
        bindir = sorted(sh("sh", "-c", "ls -d /usr/lib/postgresql/*/bin").stdout.split())[-1]
        # the restarted server must not inherit a pipe of ours (run would wait
        # for its end): its output goes to the cluster's log, ours to nowhere
        return subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(bindir, "pg_ctl"), "-D",
                               os.path.join(self.pg.dir, "data"), "-l", os.path.join(self.pg.dir, "server.log")]
                              + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=120)

    def remount_store(self, mode):
        deadline = time.time() + 30
        while True:
            r = sh("mount", "-o", "remount,bind," + mode, self.store, check=False)
            if r.returncode == 0:
                return
            if time.time() > deadline:  # EBUSY while a file is open for writing
                raise AssertionError("remount %s: %s" % (mode, r.stderr))
            time.sleep(0.05)

    def inject(self, kind):
        f = {"kind": kind, "t": time.time(), "recovery": None, "target": ""}
        t0 = time.time()
        if kind == "worker_kill":
            name = self.rng.choice(sorted(n for n in self.procs if n.startswith("w") and self.procs[n].alive()))
            held = self.pg.psql("SELECT string_agg(id::text, ',') FROM jobs WHERE state = 'running' AND worker = '%s'"
                                % name, self.db)
            self.kill(self.procs.pop(name))
            new = self.start_worker()
            f["target"] = "%s (held job %s) -> %s" % (name, held or "none", new)

            def ok():
                if self.pg.psql("SELECT count(*) FROM workers WHERE name = '%s'" % new, self.db) != "1":
                    return False
                return self.pg.psql("SELECT count(*) FROM jobs WHERE state = 'running' AND worker = '%s'"
                                    % name, self.db) == "0"
        elif kind == "atelierd_kill":
            self.kill(self.d.proc)
            self.d.start()
            ok = self.readyz
        elif kind == "node_kill":
            name = self.rng.choice(sorted(self.nodes))
            f["target"] = name
            self.kill(self.procs[name])
            self.start_node(name)
            ok = lambda: self.nodes[name]["http"].get("/readyz", timeout=2).status == 200  # noqa: E731
        elif kind in ("pg_fast", "pg_immediate"):
            self.pg_ctl("restart", "-m", kind[3:], "-w", "-t", "60")
            k = [0]

            def ok():
                k[0] += 1
                return self.readyz() and self.upload("p%d-%d-%d" % (self.seed, len(self.faults), k[0])) in (200, 201)
        elif kind == "store_ro":
            hold = self.rng.uniform(8, 20)
            self.remount_store("ro")
            try:  # proof that writes fail, root included
                open(os.path.join(self.store, ".chaos-probe"), "w").close()
                raise AssertionError("the store accepted a write while mounted read-only")
            except OSError as e:
                f["target"] = "writes fail: %s; %.0f s" % (e.strerror, hold)
            time.sleep(hold)
            self.remount_store("rw")
            t0 = time.time()

            def ok():
                return any(st == "succeeded" and start >= t0 for _, st, start, _ in self.runs)
        elif kind == "spool_full":
            name = self.rng.choice(sorted(self.nodes))
            hold = self.rng.uniform(8, 20)
            ballast = os.path.join(self.nodes[name]["spool"], "..ballast")
            # unbuffered: a buffered file would fail in close() and leave the ballast behind
            fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                while os.write(fd, b"\0" * 65536) > 0:
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)
            try:
                fd = os.open(os.path.join(self.nodes[name]["spool"], "..probe"), os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    os.write(fd, b"\0" * 8192)
                finally:
                    os.close(fd)
                raise AssertionError("the spool filesystem took a write while full")
            except OSError as e:
                f["target"] = "%s: writes fail: %s; %.0f s" % (name, e.strerror, hold)
            finally:
                try:
                    os.unlink(os.path.join(self.nodes[name]["spool"], "..probe"))
                except OSError:
                    pass
            try:
                # a contribution while full must not be acknowledged unless stored
                f["while_full"] = self.contribute(name, "f%d-%d" % (self.seed, len(self.faults)))
                time.sleep(hold)
            finally:
                os.unlink(ballast)
            t0 = time.time()
            k = [0]

            def ok():
                k[0] += 1
                return self.contribute(name, "r%d-%d-%d" % (self.seed, len(self.faults), k[0])) == 202
        rec = self.recover(ok)
        f["recovery"] = time.time() - t0 if rec else None
        self.faults.append(f)
        log("fault %-13s %-45s recovery %s" % (kind, f["target"][:45],
                                                 "%.2f s" % f["recovery"] if rec else "NONE"))

    def injector(self, until):
        while time.time() < until:
            time.sleep(self.rng.uniform(3, 10))
            if time.time() >= until:
                break
            kind = self.rng.choice(self.kinds)
            try:
                self.inject(kind)
            except Exception:  # noqa: BLE001 - the harness itself failed: recorded, counted
                self.faults.append({"kind": kind, "t": time.time(), "recovery": None,
                                    "target": "injector error: " + traceback.format_exc()[-300:]})
                log("fault %s: injector error\n%s" % (kind, traceback.format_exc()))

    # ---- the run ----

    def run(self):
        log("chaos: seed %d, fault phase %d s, logs in %s" % (self.seed, self.seconds, self.tmp))
        self.rng_load = random.Random(self.seed + 1)
        self.setup()
        cyc = threading.Thread(target=self.cycles, daemon=True)
        cyc.start()
        # the first version must reach production before the nodes can paint
        wait_until(lambda: all(n["http"].get("/readyz").status == 200 for n in self.nodes.values()),
                   timeout=300, interval=0.5, what="the first version served by both nodes")
        log("both nodes serve; load and faults start")
        threads = [threading.Thread(target=self.stylizer, args=(i,), daemon=True) for i in range(2)]
        threads += [threading.Thread(target=self.contributor, daemon=True),
                    threading.Thread(target=self.uploader, daemon=True),
                    threading.Thread(target=self.monitor, daemon=True)]
        for t in threads:
            t.start()
        self.injector(time.time() + self.seconds)
        log("fault phase over; load stops, runs finish, spools drain")
        self.stop_load.set()
        self.stop_cycles.set()
        for t in threads:
            t.join(60)
        cyc.join(330)
        self.check()

    def check(self):
        fails = []
        drained = self.recover(lambda: all(n["http"].get("/api/info").json()["spool_depth"] == 0
                                           for n in self.nodes.values()), timeout=120)
        if not drained:
            fails.append("spools not drained after 120 s: %s" % {k: n["http"].get("/api/info").json()["spool_depth"]
                                                                 for k, n in self.nodes.items()})
        q = lambda s: self.pg.psql(s, self.db)  # noqa: E731
        lost_up, lost_co, dup = lost_and_duplicated(q, self.uploads, self.contribs)
        if lost_up or lost_co or dup:
            fails.append("lost uploads %s, lost contributions %s, duplicated %s" % (lost_up[:10], lost_co[:10], dup[:10]))
        v = version_counts(q)
        if v[:3] != ["0", "0", "0"]:
            fails.append("duplicate model versions (same number, same sha256, same run): %s" % v[:3])
        open_runs = q("SELECT string_agg(id || ':' || state, ',') FROM runs WHERE state NOT IN "
                      "('succeeded', 'failed', 'cancelled')")
        if open_runs:
            fails.append("runs not in a final state: " + open_runs)
        bad_ledger = q("SELECT string_agg(c.model || '/' || c.channel, ',') FROM channels c WHERE c.version_id IS "
                       "DISTINCT FROM (SELECT p.to_version_id FROM promotions p WHERE p.model = c.model AND "
                       "p.channel = c.channel ORDER BY p.id DESC LIMIT 1)")
        if bad_ledger:
            fails.append("channels whose version is not their last ledger move's target: " + bad_ledger)
        if self.crashes:
            fails.append("processes died unkilled: %s" % [(n, rc) for n, rc, _ in self.crashes])
            for n, rc, tail in self.crashes:
                print("--- %s (rc %r) ---\n%s" % (n, rc, tail))
        unrec = [f["kind"] for f in self.faults if f["recovery"] is None]
        if unrec:
            fails.append("faults never recovered from: %s" % unrec)
        sty_fail = {}
        for _, _, st in self.stylize:
            if st != 200:
                sty_fail[st] = sty_fail.get(st, 0) + 1
        nfail = sum(sty_fail.values())
        if self.stylize and nfail > SERVE_ERROR_BOUND * len(self.stylize):
            fails.append("stylize failures %d of %d, over the %.0f %% bound" % (nfail, len(self.stylize),
                                                                               100 * SERVE_ERROR_BOUND))
        # why runs failed (a fault in their way is a fine reason; the reasons are figures)
        reasons = q("SELECT count(*) || ' x ' || e FROM (SELECT left(regexp_replace(coalesce(error, ''), '\\s+', ' ',"
                    " 'g'), 90) AS e FROM runs WHERE state = 'failed') f GROUP BY e ORDER BY count(*) DESC").splitlines()
        full_acked = [f for f in self.faults if f["kind"] == "spool_full" and f.get("while_full") == 202]
        states = {}
        for _, st, _, _ in self.runs:
            states[st] = states.get(st, 0) + 1
        # ---- figures ----
        by = {}
        for f in self.faults:
            by.setdefault(f["kind"], []).append(f["recovery"])
        fig = {"seed": self.seed, "fault_seconds": self.seconds, "faults": {}, "stylize_requests": len(self.stylize),
               "stylize_failed": {str(k): c for k, c in sorted(sty_fail.items(), key=str)},
               "contributions_acked": len(self.contribs), "contributions_refused": {str(k): c for k, c in
                                                                                    self.contrib_fail.items()},
               "uploads_acked": len(self.uploads), "uploads_refused": {str(k): c for k, c in self.upload_fail.items()},
               "lost": len(lost_up) + len(lost_co), "duplicated": len(dup), "runs": states,
               "model_versions": int(v[3]), "failed_run_reasons": reasons, "acked_while_spool_full": len(full_acked), "failures": fails}
        print("\n==== chaos figures (seed %d) ====" % self.seed)
        print("%-14s %5s %10s %10s" % ("fault", "count", "p50 s", "max s"))
        for kind in KINDS:
            rs = by.get(kind, [])
            ok = sorted(r for r in rs if r is not None)
            p50 = ok[len(ok) // 2] if ok else None
            mx = ok[-1] if ok else None
            fig["faults"][kind] = {"count": len(rs), "recovered": len(ok), "p50_s": p50, "max_s": mx}
            print("%-14s %5d %10s %10s" % (kind, len(rs), "%.2f" % p50 if ok else "-", "%.2f" % mx if ok else "-"))
        print("stylize: %d requests, failed by status: %s" % (len(self.stylize), fig["stylize_failed"] or "none"))
        print("contributions: %d acknowledged, refused by status: %s" % (len(self.contribs),
                                                                         fig["contributions_refused"] or "none"))
        print("uploads: %d acknowledged, refused by status: %s" % (len(self.uploads), fig["uploads_refused"] or "none"))
        print("runs: %s; model versions: %s" % (states, v[3]))
        for line in reasons:
            print("  failed run: " + line)
        print("contributions answered while a spool was full: %s" % [f.get("while_full") for f in self.faults
                                                                   if f["kind"] == "spool_full"])
        print("lost items: %d; duplicated: %d" % (fig["lost"], len(dup)))
        for f in fails:
            print("INVARIANT FAILED: " + f)
        print("result: %s" % ("FAIL" if fails else "PASS"))
        if os.environ.get("CHAOS_REPORT"):
            with open(os.environ["CHAOS_REPORT"], "w") as out:
                json.dump(fig, out, indent=1)
        self.failed = bool(fails)

    def teardown(self):
        for p in list(self.procs.values()) + [getattr(getattr(self, "d", None), "proc", None)]:
            if p is not None and p.alive():
                p.kill()
                p.p.wait()
        for m in reversed(self.mounts):
            sh("mount", "-o", "remount,bind,rw", m, check=False)
            sh("umount", "-l", m, check=False)
        if hasattr(self, "pg"):
            self.pg.stop()


def main():
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 1 << 31))
    c = Chaos(seed, int(os.environ.get("CHAOS_SECONDS", "420")))
    c.failed = True
    try:
        c.run()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
    finally:
        c.teardown()
    if c.failed:
        print("chaos: FAILED (seed %d); logs kept in %s" % (seed, TMP_ROOT))
        sys.exit(1)
    import shutil
    shutil.rmtree(TMP_ROOT, ignore_errors=True)


if __name__ == "__main__":
    main()
