"""Data-parallel training (docs/training.md, "Data-parallel training"):

- the shim's process group (bench/gang/gang_rank, one process per rank) over
  loopback and over two network namespaces joined by a veth pair: ranks end
  bit-identical, and the loss trajectory matches one process on the combined
  batch; a killed rank fails the survivor's next collective, and a retry from
  rank 0's checkpoint ends where an uninterrupted run ends;
- gang claims in PostgreSQL (sql/016_gang.sql), driven through psql: a gang
  forms when its last rank joins, one that cannot fill in time gives its job
  back (two gangs holding half the workers each do not deadlock), a rank
  whose lease expires fails the gang;
- atelier-worker processes training a gang of two end to end (also with
  each worker in its own namespace), and a gang whose rank is killed being
  retried from its checkpoint.

Tolerance of the loss comparison: 2 ranks x batch b against 1 process x
batch 2b compute the same sums in a different order (each rank averages its
half, then Gloo adds the two halves' float32 buffers), so after the first
update the weights differ by float32 rounding (~1e-7 relative). Training
then amplifies that difference: Adam divides each gradient by its own
running magnitude, so rounding noise on near-zero gradients becomes a full
step, and the adversarial pair feeds it back. Measured on the tiny model
(lr 2e-3, 12 steps): 0, 7e-8, 1e-7, 8e-8, 4e-6, 2e-5, 1e-6, 1e-3, 3e-4,
5e-3, 5e-5, 2e-3. So steps 1..4 must agree within 1e-5 relative (rounding
only), later steps within 5e-2. A wrong shard shows at step 1 (the losses
are the mean over the combined batch), a missing average (a sum: twice the
step) or different style codes at step 2, each by 1e-2 or more.
"""
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import BUILD, ROOT, wait_until

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "hosts"))
from netns import Net  # noqa: E402

RANK = os.path.join(BUILD, "bench", "gang_rank")
need_rank = pytest.mark.skipif(not os.path.exists(RANK), reason="bench/gang_rank not built")
REL_TOL = 1e-5    # steps 1..TIGHT_STEPS: float32 rounding only
TIGHT_STEPS = 4
LOOSE_TOL = 5e-2  # later steps: the rounding, amplified by training (the module docstring)


def parse(out):
    steps, sha, stats = [], None, {}
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "step":
            steps.append((int(f[1]), float(f[3]), float(f[5])))
        elif f and f[0] == "sha256":
            sha = f[1]
        elif f and f[0] == "samples_per_s":
            stats = {f[i]: float(f[i + 1]) for i in range(0, len(f), 2)}
    return steps, sha, stats


def start_rank(rank, world, host, my_host, steps, batch, out, resume=None, prefix=(), env=None):
    args = list(prefix) + [RANK, str(rank), str(world), host, "0", my_host, str(steps), str(batch), out]
    if resume:
        args.append(resume)
    e = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    e.update(env or {})
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)


def finish(p, timeout=120):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return parse(out)


def assert_close(a, b, what):
    assert len(a) == len(b), (a, b)
    for (sa, ga, da), (sb, gb, db) in zip(a, b):
        assert sa == sb
        for x, y, name in ((ga, gb, "gen"), (da, db, "dis")):
            tol = REL_TOL if sa <= TIGHT_STEPS else LOOSE_TOL
        assert abs(x - y) <= tol * max(abs(x), abs(y)), "%s step %d %s: %r vs %r" % (what, sa, name, x, y)


def two_ranks(tmp, host0, host1, steps=6, batch=2, prefix0=(), prefix1=()):
    out = tempfile.mkdtemp(dir=tmp)
    r0 = start_rank(0, 2, host0, host0, steps, batch, out, prefix=prefix0)
    r1 = start_rank(1, 2, host0, host1, steps, batch, out, prefix=prefix1)
    a, b = finish(r0), finish(r1)
    return a, b


@need_rank
def test_two_ranks_on_loopback_are_replicas_and_match_one_process(tmp_path):
    K = 6
    single = tempfile.mkdtemp(dir=tmp_path)
    one, _, _ = finish(start_rank(0, 1, "127.0.0.1", "127.0.0.1", K, 4, single))
    (s0, sha0, st0), (s1, sha1, st1) = two_ranks(str(tmp_path), "127.0.0.1", "127.0.0.1", steps=K)
    assert sha0 and sha0 == sha1, "ranks' checkpoints differ"
    assert s0 == s1, "ranks report different (group-mean) losses"
    assert_close(one, s0, "1 process x 4 vs 2 ranks x 2")
    # three all-reduces a step (discriminator grads, generator grads, losses), every one counted
    assert st0["allreduces"] == 3 * K and st0["bytes"] > 0 and st0["comm_s"] > 0, st0
    # the group is really in play: one process on half the batch is not what the ranks computed
    half, _, _ = finish(start_rank(0, 1, "127.0.0.1", "127.0.0.1", K, 2, tempfile.mkdtemp(dir=str(tmp_path))))
    assert any(abs(a[1] - b[1]) > 1e-3 * abs(a[1]) for a, b in zip(half, s0)), (half, s0)


class Netns:
    """Two hosts of tests/hosts/netns.py (the hosts rig's namespaces on a bridge, loopback up for each rank's own
    use): namespaces a and b, addresses ip_a and ip_b, each with eth0 and lo only."""

    def __init__(self):
        self.net = Net("atgang", "10.231.0")

    def up(self):
        self.net.start()
        ha, hb = self.net.add("a", lo=True), self.net.add("b", lo=True)
        self.a, self.b, self.ip_a, self.ip_b, self.vb = ha.ns, hb.ns, ha.ip, hb.ip, "eth0"

    def down(self):
        self.net.teardown()

    def run_in(self, ns):
        return ("ip", "netns", "exec", ns)


def need_root():
    if os.geteuid() != 0:
        pytest.skip("two network namespaces need root (ip netns); the loopback test covers the same code")
    if not shutil.which("ip"):
        pytest.skip("iproute2's ip is not installed")


@need_rank
def test_two_ranks_on_two_namespace_hosts(tmp_path):
    need_root()
    n = Netns()
    try:
        n.up()
        # no loopback shortcut: B has its own lo and the veth end, nothing else
        links = subprocess.run(["ip", "-n", n.b, "-o", "link"], capture_output=True, text=True).stdout
        assert sorted(l.split(":")[1].strip().split("@")[0] for l in links.splitlines()) == sorted(["lo", n.vb])
        (s0, sha0, _), (s1, sha1, _) = two_ranks(str(tmp_path), n.ip_a, n.ip_b, steps=4,
                                                 prefix0=n.run_in(n.a), prefix1=n.run_in(n.b))
        assert sha0 and sha0 == sha1 and s0 == s1
        single = tempfile.mkdtemp(dir=str(tmp_path))
        one, _, _ = finish(start_rank(0, 1, "127.0.0.1", "127.0.0.1", 4, 4, single))
        assert_close(one, s0, "namespaces")
    finally:
        n.down()
    assert n.a not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


@need_rank
def test_killed_rank_fails_the_survivor_and_a_retry_resumes_from_the_checkpoint(tmp_path):
    K, KILL_AFTER = 8, 3
    # reference: the same 2-rank run without interruption
    (ref, ref_sha, _), _ = two_ranks(str(tmp_path), "127.0.0.1", "127.0.0.1", steps=K)
    out = tempfile.mkdtemp(dir=str(tmp_path))
    slow = {"GANG_SLOW_MS": "300", "GANG_CKPT_EVERY": "1"}
    r0 = start_rank(0, 2, "127.0.0.1", "127.0.0.1", K, 2, out, env=slow)
    r1 = start_rank(1, 2, "127.0.0.1", "127.0.0.1", K, 2, out, env=slow)
    ck = os.path.join(out, "rank0.step.ckpt")
    # kill rank 1 once rank 0 has checkpointed KILL_AFTER steps
    wait_until(lambda: os.path.exists(os.path.join(out, "rank0.step")) and
               int(open(os.path.join(out, "rank0.step")).read() or 0) >= KILL_AFTER,
               timeout=60, interval=0.02, what="rank 0's checkpoint at step %d" % KILL_AFTER)
    t_kill = time.time()
    r1.send_signal(signal.SIGKILL)
    r1.wait()
    o0, e0 = r0.communicate(timeout=60)
    noticed = time.time() - t_kill
    assert r0.returncode != 0, o0
    assert "step" in e0 and ("unavailable" in e0.lower() or "connection" in e0.lower() or "timed out" in e0.lower()), e0
    print("rank 0 noticed the dead rank after %.2f s: %s" % (noticed, e0.strip().splitlines()[-1][:160]))
    done = int(open(os.path.join(out, "rank0.step")).read())
    # the retry: a new group, rank 0 resumes from its checkpoint and brings it to rank 1
    out2 = tempfile.mkdtemp(dir=str(tmp_path))
    shutil.copy(ck, os.path.join(out2, "resume.ckpt"))
    a = start_rank(0, 2, "127.0.0.1", "127.0.0.1", K - done, 2, out2, resume=os.path.join(out2, "resume.ckpt"))
    b = start_rank(1, 2, "127.0.0.1", "127.0.0.1", K - done, 2, out2)
    (sa, sha_a, _), (sb, sha_b, _) = finish(a), finish(b)
    assert sha_a == sha_b, "after the retry the ranks differ"
    assert [s[0] for s in sa] == list(range(done + 1, K + 1))
    # resumed training is the uninterrupted training, bit for bit
    assert sha_a == ref_sha, "the resumed gang did not end where the uninterrupted one did"
    assert sa == ref[done:], (sa, ref[done:])


# ---- gang claims in PostgreSQL ----

def migrate(url):
    for f in sorted(glob.glob(os.path.join(ROOT, "sql", "[0-9]*.sql"))):
        subprocess.run(["psql", url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-1", "-f", f],
                       check=True, capture_output=True, text=True)


class Sql:
    def __init__(self, pg, url):
        self.pg, self.url = pg, url

    def __call__(self, q):
        return self.pg.psql(q, self.url)

    def train_job(self, workers):
        return int(self("SELECT atelier_enqueue(kind => 'train', payload => '{\"workers\": %d}')" % workers))

    def claim(self, job, worker):
        """What q_claim does to the row (lib/queue.c), for one given job: the owner token."""
        return int(self("UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = '%s',"
                        " owner_token = nextval('jobs_owner_token_seq'), lease_expires_at = now() + interval '30 s'"
                        " WHERE id = %d AND state = 'queued' RETURNING owner_token" % (worker, job)))

    def join(self, worker, lease=30):
        r = self("SELECT id, owner_token, gang_token, rank, size, rendezvous FROM"
                 " atelier_gang_join('%s', '{train}', 0, %d)" % (worker, lease))
        return r.split("|") if r else None

    def poll(self, job, gang_token, rank, member_token, lease=30):
        return self("SELECT atelier_gang_poll(%d, %s, %d, %s, %d)" % (job, gang_token, rank, member_token, lease))


@pytest.fixture
def sql(pg, db_url):
    migrate(db_url)
    return Sql(pg, db_url)


def test_gang_forms_when_its_last_rank_joins(sql):
    job = sql.train_job(3)
    assert sql("SELECT gang_size FROM jobs WHERE id = %d" % job) == "3"
    assert sql("SELECT gang_size FROM jobs WHERE id = %d" % sql.train_job(1)) == "1"
    tok = sql.claim(job, "w0")
    assert sql("SELECT atelier_gang_open(%d, %d, '10.0.0.1:29500', 30, 30)" % (job, tok)) == "t"
    # a stale token opens nothing
    assert sql("SELECT atelier_gang_open(%d, %d, '10.0.0.1:1', 30, 30)" % (job, tok + 1)) == "f"
    # rank 0's own worker cannot take a second rank
    assert sql.join("w0") is None
    a = sql.join("w1")
    assert a[0] == str(job) and a[2] == str(tok) and a[3:] == ["1", "3", "10.0.0.1:29500"], a
    assert sql.poll(job, tok, 0, tok) == "filling"
    assert sql.join("w1") is None, "one rank per worker"
    b = sql.join("w2")
    assert b[3] == "2" and sql.poll(job, tok, 0, tok) == "formed" and sql.poll(job, tok, 2, b[1]) == "formed"
    assert sql.join("w3") is None, "a formed gang takes no one"
    # a member token that is not this rank's is not a member
    assert sql.poll(job, tok, 1, b[1]) == "gone"
    sql("SELECT atelier_complete(%d, %d, '{}')" % (job, tok))
    assert sql.poll(job, tok, 1, a[1]) == "done"


def test_two_half_filled_gangs_release_their_claims_instead_of_deadlocking(sql):
    """Two workers, two gangs of 2: each worker claims one job as its rank 0, nobody is left to join. Both gangs give
    their job back after fill_s (attempt not counted, a random delay up to fill_s), and then one forms."""
    j1, j2 = sql.train_job(2), sql.train_job(2)
    t1, t2 = sql.claim(j1, "wA"), sql.claim(j2, "wB")
    for j, t in ((j1, t1), (j2, t2)):
        sql("SELECT atelier_gang_open(%d, %d, 'h:1', 1, 30)" % (j, t))
    # wA and wB are busy being rank 0: no worker is free to join either gang
    time.sleep(1.2)
    assert sql.poll(j1, t1, 0, t1) == "released" and sql.poll(j2, t2, 0, t2) == "released"
    rows = sql("SELECT id, state, attempts, owner_token IS NULL, run_after <= now() + interval '1 s', error"
               " FROM jobs WHERE id IN (%d, %d) ORDER BY id" % (j1, j2)).splitlines()
    for r in rows:
        f = r.split("|")
        assert f[1:5] == ["queued", "0", "t", "t"] and "not filled within 1 s" in f[5], r
    assert sql("SELECT string_agg(state, ',') FROM gangs") == "released,released"
    # the next round: one worker claims, the other joins before it claims
    sql("UPDATE jobs SET run_after = now() WHERE id IN (%d, %d)" % (j1, j2))
    t = sql.claim(j1, "wA")
    sql("SELECT atelier_gang_open(%d, %d, 'h:2', 1, 30)" % (j1, t))
    m = sql.join("wB")
    assert m[0] == str(j1) and sql.poll(j1, t, 0, t) == "formed"


def test_a_rank_whose_lease_expires_fails_the_gang_and_a_retry_opens_a_new_one(sql):
    job = sql.train_job(2)
    tok = sql.claim(job, "w0")
    sql("SELECT atelier_gang_open(%d, %d, 'h:1', 30, 30)" % (job, tok))
    m = sql.join("w1", lease=1)
    assert sql.poll(job, tok, 0, tok) == "formed"
    time.sleep(1.2)  # rank 1 stopped polling
    assert sql.poll(job, tok, 0, tok) == "failed"
    assert "rank 1 stopped polling" in sql("SELECT error FROM gangs WHERE job_id = %d" % job)
    # rank 0 fails its attempt; the retry is a new gang, the old ranks are out of it
    assert sql("SELECT atelier_fail(%d, %d, 'rank 1 died', true)" % (job, tok)) == "queued"
    sql("UPDATE jobs SET run_after = now() WHERE id = %d" % job)
    tok2 = sql.claim(job, "w0")
    sql("SELECT atelier_gang_open(%d, %d, 'h:2', 30, 30)" % (job, tok2))
    assert sql.poll(job, tok, 1, m[1]) == "gone"
    assert sql.join("w2")[2] == str(tok2)
    # a job that fails while its gang runs fails the gang (the trigger), which every rank then reads
    assert sql("SELECT atelier_cancel_job(%d)" % job) in ("cancelled", "running")
    sql("SELECT atelier_fail(%d, %d, 'cancelled', false)" % (job, tok2))
    assert sql("SELECT state FROM gangs WHERE job_id = %d" % job) == "failed"


# ---- atelier-worker processes training a gang ----

@pytest.fixture(scope="module")
def genv(pg):
    import test_training as tt
    from conftest import BIN
    from daemon import start_atelierd
    if not os.path.exists(os.path.join(BIN, "atelier-worker")):
        pytest.skip("atelier-worker not built")
    url = pg.new_database("gang")
    d = start_atelierd(url, "--tick-ms", "200", env={"ATELIER_HOLDOUT_FRACTION": "0.3"})
    token = d.token("operator")
    d.api = d.http(token)
    out = subprocess.run([os.path.join(BIN, "atelier"), "--json", "synth", "--count", "16", "--size", "32"],
                         env=dict(os.environ, ATELIER_URL=d.url, ATELIER_TOKEN=token),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out
    e = tt.Env(pg, url, d)
    prep = e.worker("prep")
    e.prepared16 = e.prepared(16)
    prep.stop()
    e.tt = tt
    yield e
    for p in e.procs:
        p.kill()
        p.p.wait()
    d.stop()


def gang_worker(e, name, *args):
    return e.worker(name, "--kinds", "train", "--gang-fill", "20", "--gang-timeout", "10", *args)


def rank_of(p, job):
    log = p.log()
    return 1 if "job %d (train): rank 1 of 2 joined" % job in log else 0


def test_gang_of_two_workers_trains_like_one_process(genv):
    e, tt = genv, genv.tt
    STEPS = 12
    payload = tt.train_payload(e.prepared16, STEPS, batch=4, seed=7, checkpoint_every=100)
    a, b = gang_worker(e, "g-a"), gang_worker(e, "g-b")
    job = e.enqueue("train", dict(payload, workers=2))
    assert e.sql("SELECT gang_size FROM jobs WHERE id = %d" % job) == "2"
    j = e.wait_job(job, timeout=120)
    assert j["state"] == "succeeded", j
    g = j["result"]["gang"]
    assert g["workers"] == 2 and g["batch_per_rank"] == 2 and g["allreduces"] == 3 * STEPS and g["allreduce_bytes"] > 0
    assert e.sql("SELECT state FROM gangs WHERE job_id = %d" % job) == "done"
    logs = a.log() + b.log()
    assert "job %d (train): rank 1 of 2 joined" % job in logs and "rank 1 done" in logs, logs[-3000:]
    # only rank 0 recorded: one metric row per step, one version
    assert e.sql("SELECT count(*) FROM metrics WHERE job_id = %d AND name = 'loss_gen'" % job) == str(STEPS)
    b.stop()
    # one process on the combined batch of 4, same seed: the same losses within the stated tolerance
    sid = e.enqueue("train", payload)
    single = e.wait_job(sid, timeout=120)
    assert single["state"] == "succeeded" and "gang" not in single["result"], single

    def series(jid):
        return [float(x) for x in e.sql("SELECT string_agg(value::text, ',' ORDER BY step) FROM metrics"
                                        " WHERE job_id = %d AND name = 'loss_gen'" % jid).split(",")]
    ours, ref = series(job), series(sid)
    assert len(ours) == len(ref) == STEPS
    rel = [abs(x - y) / max(abs(x), abs(y)) for x, y in zip(ours, ref)]
    print("gang vs one process, loss_gen relative difference by step: " + " ".join("%.1e" % r for r in rel))
    assert all(r <= REL_TOL for r in rel[:TIGHT_STEPS]), rel
    assert all(r <= LOOSE_TOL for r in rel), rel
    a.stop()


def test_a_killed_rank_fails_the_attempt_and_the_gang_resumes_from_the_checkpoint(genv):
    e, tt = genv, genv.tt
    STEPS = 400
    payload = tt.train_payload(e.prepared16, STEPS, batch=2, seed=9, checkpoint_every=5, metrics_every=10)
    ws = [gang_worker(e, "k-a", "--lease", "3"), gang_worker(e, "k-b", "--lease", "3")]
    job = e.enqueue("train", dict(payload, workers=2), backoff_s=0.2)
    wait_until(lambda: e.sql("SELECT coalesce(max(step), 0) FROM train_checkpoints WHERE job_id = %d" % job)
               not in ("0", ""), timeout=90, interval=0.02, what="a first checkpoint")
    victim = next(w for w in ws if rank_of(w, job) == 1)
    victim.kill(signal.SIGKILL)
    victim.p.wait()
    t_kill = time.time()
    # rank 0's next all-reduce fails at once (the peer's connection closed): the attempt fails, retryable
    wait_until(lambda: e.sql("SELECT attempts > 1 OR state <> 'running' FROM jobs WHERE id = %d" % job) == "t"
               or None, timeout=30, interval=0.05, what="the attempt to fail")
    noticed = time.time() - t_kill
    k = int(e.sql("SELECT max(step) FROM train_checkpoints WHERE job_id = %d" % job))
    ws.append(gang_worker(e, "k-c", "--lease", "3"))
    j = e.wait_job(job, timeout=180)
    print("gang: rank 1 killed; rank 0 failed the attempt %.2f s later; resumed from step %d" % (noticed, k))
    assert j["state"] == "succeeded" and j["attempts"] == 2, j
    assert j["result"]["resumed_from_step"] == k and j["result"]["steps"] == STEPS, j["result"]
    assert j["result"]["gang"]["workers"] == 2
    rank0 = next(w for w in ws[:2] if w is not victim)
    # the first attempt's failure names the broken group
    assert "job %d (train) attempt 1/" % job in rank0.log() and "rank 0 of 2" in rank0.log(), rank0.log()[-2000:]
    for w in ws:
        if w is not victim:
            w.stop()


def test_gang_of_two_workers_on_two_namespace_hosts(genv):
    """The whole path between two hosts: each worker in its own network namespace, reaching PostgreSQL through its
    Unix socket (the file system is shared, the network is not) and the other rank only through the veth pair."""
    need_root()
    from conftest import BIN, Proc
    e, tt = genv, genv.tt
    port = e.url.rsplit(":", 1)[1].split("/")[0]
    db = e.url.rsplit("/", 1)[1]
    sock_url = "postgresql:///%s?host=%s&port=%s&user=atelier" % (db, os.path.realpath(e.pg.dir), port)
    n = Netns()
    procs = []
    try:
        n.up()
        env = dict(os.environ, ATELIER_LOG_LEVEL="info", ATELIER_ARTIFACTS="fs://" + e.artifacts,
                   ATELIER_TRAIN_THREADS="1", OMP_WAIT_POLICY="PASSIVE", ATELIER_DEVICE="cpu")
        for ns, ip, name in ((n.a, n.ip_a, "ns-a"), (n.b, n.ip_b, "ns-b")):
            procs.append(Proc(list(n.run_in(ns)) + [os.path.join(BIN, "atelier-worker"), "--database-url", sock_url,
                                                   "--name", name, "--kinds", "train", "--poll", "0.2",
                                                   "--gang-host", ip, "--gang-fill", "20", "--gang-timeout", "10"],
                              env=env))
        payload = tt.train_payload(e.prepared16, 8, batch=4, seed=11, checkpoint_every=100)
        job = e.enqueue("train", dict(payload, workers=2))
        j = e.wait_job(job, timeout=120)
        assert j["state"] == "succeeded" and j["result"]["gang"]["workers"] == 2, (j, procs[0].log()[-2000:])
        logs = procs[0].log() + procs[1].log()
        # the store rank 0 published is its namespace address, and rank 1 reached it from the other namespace
        joined = [l for l in logs.splitlines() if "rank 1 of 2 joined" in l]
        assert joined and ("store %s:" % n.ip_a in joined[0] or "store %s:" % n.ip_b in joined[0]), joined
    finally:
        for p in procs:
            p.kill()
            p.p.wait()
        n.down()


def test_two_gangs_on_two_workers_do_not_deadlock(genv):
    """Two workers, two gangs of 2 enqueued together: when each worker claims one job, both gangs wait for a rank
    nobody can give, give their claims back after --gang-fill and come back at random times; both jobs finish."""
    e, tt = genv, genv.tt
    ws = [e.worker(name, "--kinds", "train", "--gang-fill", "2", "--gang-timeout", "10") for name in ("d-a", "d-b")]
    payload = tt.train_payload(e.prepared16, 6, batch=2, checkpoint_every=100)
    jobs = [e.enqueue("train", dict(payload, workers=2)) for _ in range(2)]
    t0 = time.time()
    for j in jobs:
        r = e.wait_job(j, timeout=120)
        assert r["state"] == "succeeded" and r["result"]["gang"]["workers"] == 2, r
    released = sum(w.log().count("given back by the queue") for w in ws)
    print("two gangs on two workers: both done in %.1f s, %d gang(s) given back on the way" % (time.time() - t0,
                                                                                              released))
    assert e.sql("SELECT count(*) FROM jobs WHERE id IN (%d, %d) AND attempts = 1" % tuple(jobs)) == "2", \
        "a released gang must not count an attempt"
    for w in ws:
        w.stop()
