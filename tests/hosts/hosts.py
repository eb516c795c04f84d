"""Several hosts, real network (issue 16; docs/hosts.md): the whole system on
seven network namespaces joined by veth pairs to one bridge (10.77.0.0/24),
every process reaching the others only at their namespace addresses
(loopback is down in every host but `db` when the netem relay needs it):

  db      10.77.0.2   PostgreSQL (listen_addresses = this address; pg_hba lets
                      the subnet in, scram-sha-256)
  ctl-a   10.77.0.3   atelierd :8080 (started first: the leader, by the
                      advisory lock of orchestrator/scheduler.c)
  ctl-b   10.77.0.4   atelierd :8080 (standby)
  gpu-1   10.77.0.5   atelier-worker
  gpu-2   10.77.0.6   atelier-worker
  edge-1  10.77.0.7   atelier-serve :8090 --atelierd http://10.77.0.3:8080,http://10.77.0.4:8080
  edge-2  10.77.0.8   atelier-serve :8090 (the same list)

The driver (this program) sits on the machine's side of the bridge
(10.77.0.1): it uploads, paints and contributes like clients would, and reads
the database for the invariants. Scenarios, in order:

  cycle          a CT cycle of the tiny pipeline across the hosts; both edges
                 pull the new version
  gpu_partition  gpu-1 trains (gpu-2 held), its link goes down after the first
                 checkpoint: the lease runs out, gpu-2 resumes from the
                 checkpoint and the run completes; link up: gpu-1's late
                 attempt is refused and registers nothing
  edge_partition edge-1 cut from both controllers for HOSTS_EDGE_PARTITION_S
                 (default 60): it keeps serving, spools contributions; a new
                 version is promoted meanwhile; after the heal it delivers
                 them exactly once and catches up to the channel
  leader_kill    kill -9 of the leader ctl-a: ctl-b takes the lead, the edges'
                 long-polls move to ctl-b, a cycle runs through ctl-b; ctl-a
                 comes back as standby
  netem          50 ms +- 20 ms and 1 % loss on db's link: a cycle still
                 completes; its time against a clean one

Throughout, a painter calls /api/stylize on both edges, a contributor posts
to the edges and an uploader to the controller in use; each scenario prints
its recovery time. Afterwards the invariants (tests/chaos's, on this
topology): every acknowledged upload and contribution in `images` exactly
once; no model version twice (number, sha256, run); every run succeeded;
every stylize answered 200. Exit status 1 when one fails.

Settings (environment):
  ATELIER_HOSTS_ARTIFACTS   the artifact store every host uses: "s3" (the
                            default: tests/s3's server on host db) or an
                            fs:// URI on a folder all namespaces share
  HOSTS_EDGE_PARTITION_S    edge-1's partition (default 60; make test: 15)
  HOSTS_SCENARIOS           a comma list of the above (default: all)
  HOSTS_REPORT              also write the figures as JSON to this file
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "chaos"))
sys.path.insert(0, HERE)

import images  # noqa: E402
from chaos import AckedLoad, lost_and_duplicated, version_counts  # noqa: E402
from conftest import BIN, ROOT, TMP_ROOT, Http, Postgres, Proc, multipart, wait_until  # noqa: E402
from daemon import Atelierd  # noqa: E402
from netns import Busy, Net, NetemUnavailable, can_run, netem_available  # noqa: E402

WORKER = os.path.join(BIN, "atelier-worker")
SERVE = os.path.join(BIN, "atelier-serve")
SCENARIOS = ["cycle", "gpu_partition", "edge_partition", "leader_kill", "netem"]
SUBNET = "10.77.0"
CTL_PORT, EDGE_PORT, PG_PORT, S3_PORT = 8080, 8090, 5432, 9000
LEASE_S = 4
NETEM = "delay 50ms 20ms loss 1%"
FINAL = ("succeeded", "failed", "cancelled")
T0 = time.time()


def log(msg):
    print("[%6.1f] %s" % (time.time() - T0, msg), flush=True)


class HostPostgres(Postgres):
    """conftest's throwaway cluster, run inside host `db` and listening on its
    address only (scripts/pgctl.sh PG_LISTEN / PG_HBA)."""

    def __init__(self, host, port, public_port):
        super().__init__()
        self.host = host
        self.port = port
        self.public_port = public_port

    def start(self):
        env = dict(os.environ, PG_FSYNC="off", PG_LISTEN=self.host.ip, PG_HBA=SUBNET + ".0/24")
        out = self.host.run([os.path.join(ROOT, "scripts/pgctl.sh"), "start", self.dir, str(self.port)],
                            check=True, capture_output=True, text=True, env=env)
        self.url = out.stdout.strip().splitlines()[-1].replace(":%d/" % self.port, ":%d/" % self.public_port)
        os.environ["PGPASSFILE"] = self.passfile()
        return self.url


class Rig(AckedLoad):
    def __init__(self):
        self.partition_s = float(os.environ.get("HOSTS_EDGE_PARTITION_S", "60"))
        only = os.environ.get("HOSTS_SCENARIOS")
        self.scenarios = only.split(",") if only else SCENARIOS
        self.net = Net("atelier", SUBNET)
        self.lock = threading.Lock()
        self.stop_load = threading.Event()
        self.procs = {}
        self.ctl = {}
        self.stylize = []        # (t, edge, status)
        self.contribs = []       # acknowledged (tag, edge)
        self.contrib_fail = {}
        self.uploads = []        # acknowledged (tag, sha256)
        self.upload_fail = {}
        self.runs = []           # (scenario, run id, state)
        self.figures = {}
        self.fails = []
        self.seed = 0

    # ---- set-up ----

    def setup(self):
        self.net.start()
        self.use_netem = netem_available()
        names = ["db", "ctl-a", "ctl-b", "gpu-1", "gpu-2", "edge-1", "edge-2"]
        # without netem a relay in db delays its traffic: it reaches PostgreSQL
        # at db's own address, which needs db's loopback device up
        # db's loopback is up: the relay (when netem is missing) and the S3
        # front reach their own servers there; no other host has one
        self.h = {n: self.net.add(n, lo=(n == "db")) for n in names}
        log("hosts: %s; netem %s" % (", ".join("%s %s" % (n, h.ip) for n, h in self.h.items()),
                                     "available" if self.use_netem else "missing: the relay stands in"))
        db = self.h["db"]
        self.pg = HostPostgres(db, PG_PORT if self.use_netem else PG_PORT + 1, PG_PORT)
        self.pg.start()
        if not self.use_netem:
            self.relay_ctl = os.path.join(TMP_ROOT, "relay.shape")
            open(self.relay_ctl, "w").close()
            self.start("relay", db, [sys.executable, os.path.join(HERE, "relay.py"), "%s:%d" % (db.ip, PG_PORT),
                                     "%s:%d" % (db.ip, PG_PORT + 1), self.relay_ctl])
            wait_until(lambda: "relay:" in self.procs["relay"].log(), timeout=20, what="the relay")
        self.db = self.pg.url
        log("PostgreSQL at %s" % self.db)
        self.start_store()
        for name in ("ctl-a", "ctl-b"):
            self.start_ctl(name)
            if name == "ctl-a":
                wait_until(lambda: self.leader() == "ctl-a", timeout=30, what="ctl-a to lead")
        self.op_token = self.ctl["ctl-a"].token("operator")
        self.node_token = self.ctl["ctl-a"].token("node")
        self.use_ctl("ctl-a")
        env = dict(os.environ, ATELIER_URL=self.ctl_urls(), ATELIER_TOKEN=self.op_token)
        out = subprocess.run([os.path.join(BIN, "atelier"), "synth", "--count", "24", "--size", "32"], env=env,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out
        for name in ("gpu-1", "gpu-2"):
            self.start_worker(name)
        for name in ("edge-1", "edge-2"):
            self.start_edge(name)

    def start_store(self):
        """The artifact store, one setting for every host: ATELIER_HOSTS_ARTIFACTS.
        The default, "s3", starts tests/s3's server (s3rver behind the
        SigV4-verifying front) on host db and gives every process its
        endpoint and credentials through the environment, so the model
        the edges pull comes from S3 by atelierd's presigned redirect.
        fs://PATH uses a folder instead (namespaces share the filesystem)."""
        want = os.environ.get("ATELIER_HOSTS_ARTIFACTS") or "s3"
        if want != "s3":
            self.artifacts = want
            if want.startswith("fs://"):
                os.makedirs(want[5:], exist_ok=True)
            return
        db = self.h["db"]
        self.start("s3", db, [os.path.join(ROOT, "tests/s3/start.sh"), db.ip, str(S3_PORT),
                              os.path.join(TMP_ROOT, "s3"), "atelier"])
        wait_until(lambda: "s3: ready" in self.procs["s3"].log(), timeout=120, what="the S3 server on db")
        os.environ.update({"ATELIER_S3_ENDPOINT": "http://%s:%d" % (db.ip, S3_PORT), "ATELIER_S3_PATH_STYLE": "true",
                           "ATELIER_S3_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "atelier",
                           "AWS_SECRET_ACCESS_KEY": "atelier-secret", "ATELIER_S3_BACKOFF": "0.2"})
        self.artifacts = "s3://atelier/hosts"

    def start(self, name, host, argv, env=None):
        self.procs[name] = Proc(host.argv(argv), env=env)
        return self.procs[name]

    def start_ctl(self, name):
        h = self.h[name]
        d = Atelierd(self.db, "--host", h.ip, "--tick-ms", "200", "--holdout-fraction", "0.3", port=CTL_PORT)
        d.wrap = h.argv([])
        d.artifacts_uri = self.artifacts
        d.start()
        self.ctl[name] = d
        wait_until(lambda: Http(d.url).get("/readyz", timeout=2).status == 200, timeout=30, what=name + " ready")

    def ctl_urls(self):
        return ",".join("http://%s:%d" % (self.h[n].ip, CTL_PORT) for n in ("ctl-a", "ctl-b"))

    def use_ctl(self, name):
        self.op = Http("http://%s:%d" % (self.h[name].ip, CTL_PORT), self.op_token)
        self.op_name = name

    def leader(self):
        for name, d in self.ctl.items():
            try:
                text = Http(d.url).get("/metrics", timeout=2).body.decode()
                if d.proc.alive() and "\natelier_scheduler_leader 1\n" in text:
                    return name
            except Exception:  # noqa: BLE001 - a controller that is away leads nothing
                pass
        return None

    def start_worker(self, name):
        env = dict(os.environ, ATELIER_LOG_LEVEL="info", ATELIER_TRAIN_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
        self.start(name, self.h[name], [WORKER, "--database-url", self.db, "--name", name, "--artifacts",
                                        self.artifacts, "--lease", str(LEASE_S), "--poll", "0.5"], env=env)

    def start_edge(self, name):
        h = self.h[name]
        work = os.path.join(TMP_ROOT, name)
        argv = [SERVE, "--host", h.ip, "--port", str(EDGE_PORT), "--cache", os.path.join(work, "cache"),
                "--spool", os.path.join(work, "spool"), "--atelierd", self.ctl_urls(), "--model", "tiny",
                "--channel", "production", "--name", name, "--heartbeat-interval", "1", "--retry-max", "2",
                "--poll-wait", "5", "--threads", "1", "--torch-threads", "1", "--rate-contribute", "0"]
        self.start(name, h, argv, env=dict(os.environ, ATELIER_LOG_LEVEL="info", ATELIER_NODE_TOKEN=self.node_token))
        h.http = Http("http://%s:%d" % (h.ip, EDGE_PORT))
        wait_until(lambda: h.http.get("/healthz", timeout=2).status == 200, timeout=60, what=name + " to listen")

    # ---- helpers ----

    def q(self, sql):
        return self.pg.psql(sql, self.db)

    def edge_info(self, name):
        return self.h[name].http.get("/api/info", timeout=5).json()

    def channel_version(self):
        v = self.q("SELECT v.version FROM channels c JOIN model_versions v ON v.id = c.version_id"
                   " WHERE c.model = 'tiny' AND c.channel = 'production'")
        return int(v) if v else None

    def apply_tiny(self, steps=4, checkpoint_every=2):
        self.seed += 1
        text = open(os.path.join(ROOT, "pipelines/tiny.yaml")).read()
        text = text.replace("seed: 1", "seed: %d" % self.seed).replace("steps: 4", "steps: %d" % steps)
        text = text.replace("checkpoint_every: 2", "checkpoint_every: %d" % checkpoint_every)
        r = self.op.post("/v1/pipelines?filename=tiny.yaml", text.encode(),
                         headers={"Content-Type": "application/yaml"}, timeout=30)
        assert r.status in (200, 201), r

    def start_run(self, scenario, **kw):
        self.apply_tiny(**kw)
        r = self.op.post("/v1/pipelines/tiny/runs", timeout=30)
        assert r.status in (200, 201), r
        run = r.json()["run"]
        self.runs.append([scenario, run, None])
        return run

    def wait_run(self, run, timeout=240):
        def final():
            st = self.q("SELECT state FROM runs WHERE id = %d" % run)
            return st if st in FINAL else None
        st = wait_until(final, timeout=timeout, interval=0.2, what="run %d to end" % run)
        for r in self.runs:
            if r[1] == run:
                r[2] = st
        if st != "succeeded":
            self.fails.append("run %d %s: %s" % (run, st, self.q("SELECT error FROM runs WHERE id = %d" % run)))
        return st

    def run_version(self, run):
        v = self.q("SELECT version FROM model_versions WHERE run_id = %d" % run)
        return int(v) if v else None

    def edges_serve(self, version, names=("edge-1", "edge-2"), timeout=120):
        wait_until(lambda: all(self.edge_info(n).get("version") == version for n in names), timeout=timeout,
                   interval=0.1, what="%s to serve v%s" % ("+".join(names), version))

    def cycle(self, scenario):
        """One run to production and both edges on it: (run time, time to both edges)."""
        t0 = time.time()
        run = self.start_run(scenario)
        self.wait_run(run)
        t_run = time.time() - t0
        self.edges_serve(self.run_version(run))
        return run, t_run, time.time() - t0

    # ---- load ----

    def painter(self):
        k = 0
        while not self.stop_load.is_set():
            k += 1
            name = ("edge-1", "edge-2")[k % 2]
            body, ct = multipart([("contentImage", ("s.png", images.sketch(k % 50), "image/png")),
                                  ("style", str(k % 7))])
            try:
                st = self.h[name].http.post("/api/stylize", body, headers={"Content-Type": ct}, timeout=30).status
            except Exception as e:  # noqa: BLE001 - recorded: the invariant says none may fail
                st = type(e).__name__
            self.stylize.append((time.time(), name, st))
            time.sleep(0.3)

    def contribute(self, edge, tag):
        return self.post_contribution(self.h[edge].http, edge, tag)

    def feeder(self):
        k = 0
        while not self.stop_load.is_set():
            k += 1
            self.contribute(("edge-1", "edge-2")[k % 2], "hc-%d" % k)
            self.upload("hu-%d" % k)
            time.sleep(1.0)

    # ---- scenarios ----

    def sc_cycle(self):
        run, t_run, t_edges = self.cycle("cycle")
        v = self.run_version(run)
        log("cycle: run %d succeeded in %.1f s; v%d served by edge-1 and edge-2 %.1f s after the start"
            % (run, t_run, v, t_edges))
        self.figures["cycle"] = {"run_s": round(t_run, 2), "both_edges_s": round(t_edges, 2), "version": v}

    def sc_gpu_partition(self):
        g1 = self.h["gpu-1"]
        self.procs["gpu-2"].kill(signal.SIGSTOP)  # gpu-1 takes every stage up to train
        try:
            run = self.start_run("gpu_partition", steps=150, checkpoint_every=10)

            def train_job():
                return self.q("SELECT id FROM jobs WHERE run_id = %d AND kind = 'train'" % run)
            job = int(wait_until(train_job, timeout=120, interval=0.2, what="the train job"))
            wait_until(lambda: self.q("SELECT count(*) FROM train_checkpoints WHERE job_id = %d AND worker = 'gpu-1'"
                                      % job) not in ("", "0"), timeout=120, interval=0.05,
                       what="gpu-1's first checkpoint")
            ck = int(self.q("SELECT max(step) FROM train_checkpoints WHERE job_id = %d" % job))
            g1.link(False)
            t0 = time.time()
            log("gpu_partition: gpu-1's link down at checkpoint step %d of job %d" % (ck, job))
        finally:
            self.procs["gpu-2"].kill(signal.SIGCONT)
        wait_until(lambda: self.q("SELECT worker FROM jobs WHERE id = %d AND state = 'running'" % job) == "gpu-2",
                   timeout=120, interval=0.1, what="gpu-2 to take the train job")
        t_claim = time.time() - t0
        self.wait_run(run)
        t_run = time.time() - t0
        res = json.loads(self.q("SELECT result FROM jobs WHERE id = %d" % job))
        g1.link(True)
        t_heal = time.time()
        log("gpu_partition: gpu-2 took the job after %.1f s (lease %d s), resumed from step %s; run %d done %.1f s "
            "after the cut; gpu-1 back" % (t_claim, LEASE_S, res.get("resumed_from_step"), run, t_run))
        if not res.get("resumed_from_step"):
            self.fails.append("gpu_partition: gpu-2 did not resume from a checkpoint: %s" % res)
        refusals = ("outcome rejected", "no longer ours", "lease lost", "not recorded", "not registered")
        try:
            wait_until(lambda: any(r in self.procs["gpu-1"].log() for r in refusals), timeout=120, interval=0.2,
                       what="gpu-1's late attempt to be refused")
            said = [r for r in refusals if r in self.procs["gpu-1"].log()]
            log("gpu_partition: gpu-1's late attempt refused %.1f s after the heal (%s)"
                % (time.time() - t_heal, ", ".join(said)))
        except AssertionError as e:
            self.fails.append("gpu_partition: %s" % e)
            said = []
        n = self.q("SELECT count(*) FROM model_versions WHERE run_id = %d" % run)
        if n != "1":
            self.fails.append("gpu_partition: run %d has %s model versions" % (run, n))
        if self.q("SELECT count(*) FROM train_checkpoints WHERE job_id = %d AND worker = 'gpu-1' AND step > %d"
                  % (job, ck)) != "0" and res.get("resumed_from_step") == ck:
            log("gpu_partition: note: gpu-1 recorded checkpoints past step %d before its lease ran out" % ck)
        self.edges_serve(self.run_version(run))
        self.figures["gpu_partition"] = {"lease_s": LEASE_S, "checkpoint_step": ck,
                                         "resumed_from_step": res.get("resumed_from_step"),
                                         "taken_over_s": round(t_claim, 2), "run_done_s": round(t_run, 2),
                                         "late_attempt_refused_by": said}

    def sc_edge_partition(self):
        e1 = self.h["edge-1"]
        ctls = [self.h["ctl-a"].ip, self.h["ctl-b"].ip]
        before = self.edge_info("edge-1")["version"]
        e1.cut(ctls)
        t0 = time.time()
        log("edge_partition: edge-1 cut from ctl-a and ctl-b for %.0f s (serving v%s)" % (self.partition_s, before))
        run = self.start_run("edge_partition")
        tags, k = [], 0
        served_during = set()
        while time.time() - t0 < self.partition_s:
            k += 1
            tag = "hp-%d" % k
            st = self.contribute("edge-1", tag)
            if st != 202:
                self.fails.append("edge_partition: contribution %s to edge-1 answered %s" % (tag, st))
            tags.append(tag)
            served_during.add(self.edge_info("edge-1")["version"])
            time.sleep(min(2.0, max(0.2, self.partition_s / 12)))
        spooled = self.edge_info("edge-1")["spool_depth"]
        self.wait_run(run)
        target = self.run_version(run)
        e1.mend(ctls)
        t_heal = time.time()
        # whether the channel moved while edge-1 was cut off (a cycle takes
        # seconds; on a slow machine it may end after a short partition)
        moved_during = self.q("SELECT max(p.created_at) < to_timestamp(%f) FROM promotions p WHERE p.model = 'tiny'"
                              " AND p.channel = 'production'" % t_heal) == "t"
        log("edge_partition: healed; edge-1 served %s meanwhile, %d contributions spooled; channel now v%s"
            % (sorted(served_during), spooled, target))
        wait_until(lambda: self.edge_info("edge-1")["spool_depth"] == 0, timeout=120, interval=0.1,
                   what="edge-1's spool to drain")
        t_drain = time.time() - t_heal
        self.edges_serve(target, names=("edge-1",))
        t_catch = time.time() - t_heal
        if served_during != {before}:
            self.fails.append("edge_partition: edge-1 changed model while cut off: %s" % served_during)
        got = self.q("SELECT string_agg(contributor || ':' || n, ',') FROM (SELECT contributor, count(*) n FROM images"
                     " WHERE contributor LIKE 'hp-%%' GROUP BY contributor) x")
        counts = dict(x.split(":") for x in got.split(",")) if got else {}
        bad = [t for t in tags if counts.get(t) != "1"]
        if bad:
            self.fails.append("edge_partition: contributions not delivered exactly once: %s" % bad)
        log("edge_partition: spool drained %.1f s after the heal (%d contributions, each stored once: %s); edge-1 on "
            "v%d %.1f s after the heal" % (t_drain, len(tags), "yes" if not bad else "NO", target, t_catch))
        self.figures["edge_partition"] = {"partition_s": self.partition_s, "contributions": len(tags),
                                          "spooled_at_heal": spooled, "channel_moved_during": moved_during,
                                          "spool_drained_s": round(t_drain, 2), "caught_up_s": round(t_catch, 2)}

    def edge_on(self, edge, ctl):
        """Whether edge's channel follower polls ctl now (its metrics say)."""
        want = 'atelier_serve_atelierd_in_use{url="http://%s:%d"} 1' % (self.h[ctl].ip, CTL_PORT)
        return want in self.h[edge].http.get("/metrics", timeout=5).body.decode()

    def edge_polls_on(self, ctl):
        return all(self.edge_on(e, ctl) for e in ("edge-1", "edge-2"))

    def sc_leader_kill(self):
        assert self.leader() == "ctl-a", "ctl-a does not lead: %s" % self.leader()
        # an edge that was cut off from both (edge_partition) may have come back
        # on ctl-b: then only the other one has a long-poll to move
        on_a = [e for e in ("edge-1", "edge-2") if self.edge_on(e, "ctl-a")]
        if not on_a:
            self.fails.append("leader_kill: neither edge polled ctl-a before it was killed")
        a = self.ctl["ctl-a"]
        t0 = time.time()
        a.kill9()
        self.procs["killed-ctl-a"] = a.proc
        self.use_ctl("ctl-b")
        # both timed from the kill, each on its own
        seen = {}

        def both():
            now = time.time() - t0
            if "lead" not in seen and self.leader() == "ctl-b":
                seen["lead"] = now
            if "polls" not in seen and self.edge_polls_on("ctl-b"):
                seen["polls"] = now
            return len(seen) == 2
        wait_until(both, timeout=60, interval=0.05, what="ctl-b to lead and the edges to poll it")
        t_lead, t_polls = seen["lead"], seen["polls"]
        waiting = [ln for ln in Http(self.ctl["ctl-b"].url).get("/metrics").body.decode().splitlines()
                   if ln.startswith("atelier_longpoll_waiting")]
        log("leader_kill: ctl-a killed; ctl-b leads after %.3f s; both edges poll ctl-b after %.3f s (%s polled ctl-a;"
            " %s)" % (t_lead, t_polls, " and ".join(on_a), "; ".join(waiting)))
        run, t_run, t_edges = self.cycle("leader_kill")
        log("leader_kill: a cycle through ctl-b: run %d in %.1f s, both edges on it after %.1f s"
            % (run, t_run, t_edges))
        self.start_ctl("ctl-a")
        time.sleep(1.0)
        if self.leader() != "ctl-b":
            self.fails.append("leader_kill: after ctl-a came back the leader is %s, not ctl-b" % self.leader())
        self.figures["leader_kill"] = {"leader_takeover_s": round(t_lead, 3), "edges_moved_s": round(t_polls, 3),
                                       "edges_on_ctl_a_before": on_a,
                                       "cycle_via_ctl_b_s": round(t_run, 2)}

    def shape_db(self, on):
        db = self.h["db"]
        if self.use_netem:
            if on:
                db.netem(NETEM)
            else:
                db.netem_clear()
        else:
            with open(self.relay_ctl, "w") as f:
                f.write("50 20 1\n" if on else "")
            time.sleep(0.6)  # the relay reads it twice a second

    def sc_netem(self):
        run, clean_run, clean_edges = self.cycle("netem")
        self.shape_db(True)
        try:
            run2, slow_run, slow_edges = self.cycle("netem")
        finally:
            self.shape_db(False)
        how = "tc netem %s on db's link" % NETEM if self.use_netem else \
            "the relay (no sch_netem in this kernel): 50 +- 20 ms per chunk and direction, 1 % stalled 200 ms"
        log("netem: %s: cycle %.1f s (edges %.1f s) against %.1f s (%.1f s) clean"
            % (how, slow_run, slow_edges, clean_run, clean_edges))
        self.figures["netem"] = {"how": how, "clean_run_s": round(clean_run, 2), "clean_edges_s": round(clean_edges, 2),
                                 "shaped_run_s": round(slow_run, 2), "shaped_edges_s": round(slow_edges, 2)}

    # ---- the run ----

    def run(self):
        self.setup()
        log("set up in %.1f s" % (time.time() - T0))
        load = []
        for s in self.scenarios:
            t = time.time()
            log("---- %s ----" % s)
            getattr(self, "sc_" + s)()
            self.figures.setdefault(s, {})["scenario_s"] = round(time.time() - t, 1)
            if not load:  # the edges serve from the first cycle on: load starts then
                load = [threading.Thread(target=self.painter, daemon=True),
                        threading.Thread(target=self.feeder, daemon=True)]
                for th in load:
                    th.start()
        self.stop_load.set()
        for th in load:
            th.join(60)
        self.check()

    def check(self):
        for e in ("edge-1", "edge-2"):
            try:
                wait_until(lambda: self.edge_info(e)["spool_depth"] == 0, timeout=60, interval=0.2,
                           what=e + "'s spool to drain")
            except AssertionError as x:
                self.fails.append(str(x))
        lost_up, lost_co, dup = lost_and_duplicated(self.q, self.uploads, self.contribs)
        lost = lost_up + lost_co
        if lost or dup:
            self.fails.append("lost %s, duplicated %s" % (lost[:10], dup[:10]))
        v = version_counts(self.q)
        if v[:3] != ["0", "0", "0"]:
            self.fails.append("duplicate model versions (same number, same sha256, same run): %s" % v[:3])
        bad_runs = [r for r in self.runs if r[2] != "succeeded"]
        if bad_runs:
            self.fails.append("runs not succeeded: %s" % bad_runs)
        sty_fail = {}
        for _, _, st in self.stylize:
            if st != 200:
                sty_fail[str(st)] = sty_fail.get(str(st), 0) + 1
        if sty_fail:
            self.fails.append("stylize requests failed: %s of %d" % (sty_fail, len(self.stylize)))
        for name, p in self.procs.items():
            if not name.startswith("killed-") and not p.alive():
                self.fails.append("%s died (rc %s): %s" % (name, p.p.returncode, p.log()[-800:]))
        for name, d in self.ctl.items():
            if not d.proc.alive():
                self.fails.append("%s died: %s" % (name, d.log()[-800:]))
        self.figures["load"] = {"stylize_requests": len(self.stylize), "stylize_failed": sty_fail,
                                "contributions_acked": len(self.contribs), "contributions_refused": {
                                    str(k): c for k, c in self.contrib_fail.items()},
                                "uploads_acked": len(self.uploads),
                                "uploads_refused": {str(k): c for k, c in self.upload_fail.items()},
                                "model_versions": int(v[3]), "runs": len(self.runs), "lost": len(lost),
                                "duplicated": len(dup)}
        self.figures["total_s"] = round(time.time() - T0, 1)
        print("\n==== hosts figures ====")
        print(json.dumps(self.figures, indent=1))
        for f in self.fails:
            print("INVARIANT FAILED: " + f)
        print("result: %s" % ("FAIL" if self.fails else "PASS"))
        if os.environ.get("HOSTS_REPORT"):
            with open(os.environ["HOSTS_REPORT"], "w") as out:
                json.dump(dict(self.figures, failures=self.fails), out, indent=1)

    def teardown(self):
        self.stop_load.set()
        for p in list(self.procs.values()) + [d.proc for d in self.ctl.values()]:
            if p is not None and p.alive():
                p.kill(signal.SIGCONT)
                p.kill()
                p.p.wait()
        if hasattr(self, "pg"):
            self.pg.stop()
        self.net.teardown()


def main():
    why = can_run()
    if why:
        print("hosts: skipped: %s" % why)
        sys.exit(77)
    rig = Rig()
    failed = True
    try:
        rig.run()
        failed = bool(rig.fails)
    except Busy as e:
        print("hosts: %s" % e)
        import shutil
        shutil.rmtree(TMP_ROOT, ignore_errors=True)
        sys.exit(75)  # EX_TEMPFAIL: nothing of ours to tear down
    except NetemUnavailable as e:
        print("hosts: %s" % e)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
    finally:
        rig.teardown()
    if failed:
        print("hosts: FAILED; logs kept in %s" % TMP_ROOT)
        sys.exit(1)
    import shutil
    shutil.rmtree(TMP_ROOT, ignore_errors=True)


if __name__ == "__main__":
    main()
