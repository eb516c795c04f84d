"""The job queue end to end: real atelier-worker processes against a real
PostgreSQL (a fresh database per test, migrated with psql), driven through the
SQL contract in sql/002_queue.sql."""
import glob
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import BIN, ROOT, Proc, wait_until

WORKER = os.path.join(BIN, "atelier-worker")

pytestmark = pytest.mark.skipif(not os.path.exists(WORKER), reason="atelier-worker not built")


def migrate(url):
    for f in sorted(glob.glob(os.path.join(ROOT, "sql", "[0-9]*.sql"))):
        subprocess.run(["psql", url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-1", "-f", f],
                       check=True, capture_output=True, text=True)


class Queue:
    def __init__(self, pg, url):
        self.pg = pg
        self.url = url
        self.procs = []

    def sql(self, q):
        return self.pg.psql(q, self.url)

    def row(self, q):
        return self.sql(q).split("|")

    def enqueue(self, kind, payload="{}", **kw):
        args = ["kind => '%s'" % kind, "payload => '%s'" % payload]
        args += ["%s => %s" % (k, v) for k, v in kw.items()]
        return int(self.sql("SELECT atelier_enqueue(%s)" % ", ".join(args)))

    def job(self, job_id, cols="state"):
        return self.row("SELECT %s FROM jobs WHERE id = %d" % (cols, job_id))

    def count(self, state):
        """How many jobs are in `state`."""
        return int(self.sql("SELECT count(*) FROM jobs WHERE state = '%s'" % state))

    # The workers' sessions: psql (this harness) names itself, workers do not.
    WORKER_SESSIONS = (" FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                       " AND backend_type = 'client backend' AND application_name = ''")

    def sessions(self):
        return int(self.sql("SELECT count(*)" + self.WORKER_SESSIONS))

    def terminate_sessions(self, where=""):
        """End the workers' sessions (pg_terminate_backend); how many."""
        return int(self.sql("SELECT count(pg_terminate_backend(pid))" + self.WORKER_SESSIONS + where))

    def worker(self, name, *args):
        env = dict(os.environ, ATELIER_LOG_LEVEL="info")
        p = Proc([WORKER, "--database-url", self.url, "--name", name] + list(args), env=env)
        self.procs.append(p)
        return p

    def cleanup(self):
        for p in self.procs:
            p.kill()
            p.p.wait()
            if not p.logf.closed:
                p.logf.close()


@pytest.fixture
def q(pg, db_url):
    migrate(db_url)
    qq = Queue(pg, db_url)
    yield qq
    qq.cleanup()


def stopped_line(proc):
    m = re.search(r"stopped: (\d+) job\(s\) run, (\d+) succeeded, (\d+) failed, (\d+) released, (\d+) lost", proc.log())
    assert m, proc.log()
    return [int(x) for x in m.groups()]


def stage_kind_job_kinds():
    """The job kinds of lib/stage_kind.h's list, read from the header."""
    with open(os.path.join(ROOT, "lib", "stage_kind.h")) as f:
        body = f.read().split("#define STAGE_KIND_MAP", 1)[1]
    return re.findall(r'X\(\w+, \w+, "[^"]+", "([^"]+)"', body)


def test_worker_flags_are_a_settings_table(q):
    """atelier-worker reads lib/config.c's table: --help lists every flag and every job kind, mistakes
    exit 2 naming the flag or variable, the environment sets defaults and flags win."""
    def run(*args, env=None):
        return subprocess.run([WORKER] + list(args), env=dict(os.environ, **(env or {})), capture_output=True,
                              text=True, timeout=30)
    h = run("--help")
    assert h.returncode == 0, h
    for flag, var in (("database-url", "ATELIER_DATABASE_URL"), ("name", "ATELIER_WORKER_NAME"),
                      ("kinds", "ATELIER_WORKER_KINDS"), ("gpus", "ATELIER_WORKER_GPUS"),
                      ("concurrency", "ATELIER_WORKER_CONCURRENCY"), ("lease", None), ("poll", None),
                      ("grace", None), ("no-reap", None), ("artifacts", "ATELIER_ARTIFACTS"),
                      ("device", "ATELIER_DEVICE"), ("train-threads", "ATELIER_TRAIN_THREADS"),
                      ("train-preset", "ATELIER_TRAIN_PRESET")):
        line = next((l for l in h.stdout.splitlines() if l.lstrip().startswith("--%s " % flag)), None)
        assert line, (flag, h.stdout)
        assert var is None or "[%s]" % var in line, line
    kinds = stage_kind_job_kinds()
    assert len(kinds) >= 9 and "test.sleep" in kinds
    for k in kinds:
        assert re.search(r"^  %s " % re.escape(k), h.stdout, re.M), (k, h.stdout)
    for args, env, want in ((["--bogus"], None, "unknown option --bogus"),
                            (["--gpus", "2000"], None, "--gpus: 2000 is out of range"),
                            (["--poll=x"], None, "--poll: invalid value"),
                            (["--lease"], None, "--lease needs a value"),
                            (["stray"], None, 'unexpected argument "stray"'),
                            ([], {"ATELIER_WORKER_CONCURRENCY": "many"}, "ATELIER_WORKER_CONCURRENCY"),
                            ([], {"ATELIER_TRAIN_THREADS": "-1"}, "ATELIER_TRAIN_THREADS"),
                            (["--kinds", "test.noop,nope"], None, "unknown kind 'nope'")):
        r = run(*args, env=env)
        assert r.returncode == 2 and want in r.stderr, (args, env, r.stderr)
    # the environment gives name, kinds and gpus; --gpus on the command line wins over its variable
    w = Proc([WORKER, "--database-url", q.url, "--gpus", "3", "--poll", "0.2"],
             env=dict(os.environ, ATELIER_WORKER_NAME="from-env", ATELIER_WORKER_KINDS="test.noop,test.fail",
                      ATELIER_WORKER_GPUS="2"))
    q.procs.append(w)
    wait_until(lambda: q.sql("SELECT count(*) FROM workers WHERE name = 'from-env'") == "1", timeout=15,
               what="the worker to register")
    assert q.row("SELECT array_to_string(kinds, ','), gpus FROM workers WHERE name = 'from-env'") == \
        ["test.noop,test.fail", "3"]
    assert w.stop() == 0


def test_kill9_job_is_reclaimed_after_lease_and_stale_worker_is_rejected(q):
    job = q.enqueue("test.sleep", '{"ms": 1500}', backoff_s=0.1)
    a = q.worker("a", "--lease", "2", "--poll", "0.2")
    wait_until(lambda: q.job(job, "state, worker") == ["running", "a"], what="a runs the job")
    old_token = q.job(job, "owner_token")[0]
    a.kill(signal.SIGKILL)
    a.p.wait()
    q.worker("b", "--lease", "2", "--poll", "0.2")
    wait_until(lambda: q.job(job)[0] == "succeeded", timeout=20, what="b finishes the job")
    state, attempts, worker, by, token = q.job(job, "state, attempts, worker, result->>'worker', owner_token")
    assert (state, attempts, worker, by) == ("succeeded", "2", "b", "b")
    assert token != old_token
    assert "lease expired" not in q.job(job, "coalesce(error, '')")[0]
    # The killed worker's late report, with its old token, changes nothing.
    assert q.sql("SELECT atelier_complete(%d, %s, '{\"worker\": \"a\"}')" % (job, old_token)) == "f"
    assert q.sql("SELECT atelier_fail(%d, %s, 'late', true)" % (job, old_token)) == ""
    assert q.sql("SELECT atelier_heartbeat(%d, %s, 0.5, NULL, NULL, 30)" % (job, old_token)) == "stale"
    assert q.job(job, "state, result->>'worker'") == ["succeeded", "b"]


def test_8_workers_10000_jobs_each_runs_exactly_once(q):
    n = 10000
    q.sql("INSERT INTO jobs (kind) SELECT 'test.noop' FROM generate_series(1, %d)" % n)
    ws = [q.worker("w%d" % i, "--poll", "0.5") for i in range(8)]
    # The invariants no CHECK constraint enforces any more (006): sampled
    # while the workers run, and at the end.
    invariants = ("SELECT count(*) FROM jobs WHERE (state = 'running') <> (owner_token IS NOT NULL)"
                  " OR (state = 'running') <> (lease_expires_at IS NOT NULL)"
                  " OR state NOT IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"
                  " OR (state = 'queued' AND (priority, id) < (SELECT priority, id FROM queue_floor))")
    samples = []

    def done():
        samples.append(q.sql(invariants))
        return q.count("succeeded") == n
    wait_until(done, timeout=120, interval=0.2, what="all jobs done")
    assert len(samples) >= 2 and set(samples) == {"0"}, samples
    assert q.sql(invariants) == "0"
    for w in ws:
        assert w.stop() == 0, w.log()
    runs = [stopped_line(w) for w in ws]
    # Every handler call is counted by the worker that made it: exactly n calls.
    assert sum(r[0] for r in runs) == n
    assert sum(r[1] for r in runs) == n
    assert sum(r[4] for r in runs) == 0  # no completion was refused as stale
    total, max_attempts, by_self, workers = q.row(
        "SELECT count(*), max(attempts), count(*) FILTER (WHERE result->>'worker' = worker),"
        " count(DISTINCT worker) FROM jobs")
    assert (total, max_attempts, by_self) == (str(n), "1", str(n))
    assert int(workers) >= 2


def test_sigterm_lets_the_running_job_finish_within_grace(q):
    job = q.enqueue("test.sleep", '{"ms": 1500}')
    w = q.worker("w", "--grace", "10")
    wait_until(lambda: q.job(job)[0] == "running")
    t = time.time()
    assert w.stop(timeout=15) == 0
    assert time.time() - t < 5
    assert q.job(job, "state, attempts") == ["succeeded", "1"]
    assert stopped_line(w)[:2] == [1, 1]


def test_sigterm_releases_a_job_that_outlives_grace(q):
    job = q.enqueue("test.sleep", '{"ms": 60000}')
    w = q.worker("w", "--grace", "1")
    wait_until(lambda: q.job(job)[0] == "running")
    t = time.time()
    assert w.stop(timeout=10) == 0
    assert time.time() - t < 4
    # Back in the queue at once, the attempt not counted.
    assert q.job(job, "state, attempts, run_after <= now()") == ["queued", "0", "t"]
    assert "released" in w.log()


def test_sigterm_checkpointing_handler_is_released_at_once(q):
    job = q.enqueue("test.sleep", '{"ms": 60000, "checkpoint": true}')
    w = q.worker("w", "--grace", "30")
    wait_until(lambda: q.job(job)[0] == "running")
    t = time.time()
    assert w.stop(timeout=10) == 0
    assert time.time() - t < 3
    assert q.job(job, "state, attempts") == ["queued", "0"]
    assert stopped_line(w)[3] == 1


def test_cancel_reaches_a_running_job_through_the_heartbeat(q):
    job = q.enqueue("test.sleep", '{"ms": 60000}')
    w = q.worker("w", "--lease", "3")
    wait_until(lambda: q.job(job)[0] == "running")
    # Progress travels with heartbeats too.
    wait_until(lambda: float(q.job(job, "coalesce(progress, 0)")[0]) > 0, timeout=5, what="progress")
    assert q.sql("SELECT atelier_cancel_job(%d)" % job) == "running"
    t = time.time()
    wait_until(lambda: q.job(job)[0] == "cancelled", timeout=5, what="cancelled")
    assert time.time() - t < 3
    assert w.alive()
    # The worker carries on with the next job.
    nxt = q.enqueue("test.noop")
    wait_until(lambda: q.job(nxt)[0] == "succeeded", timeout=5)


def test_per_stage_timeout_fails_the_job(q):
    job = q.enqueue("test.sleep", '{"ms": 60000}', timeout_s=1, max_attempts=3)
    q.worker("w", "--lease", "3")
    wait_until(lambda: q.job(job)[0] == "failed", timeout=8, what="timed out")
    state, attempts, error = q.job(job, "state, attempts, error")
    assert attempts == "1"
    assert "timed out" in error


def test_failing_job_is_retried_with_backoff_then_fails(q):
    job = q.enqueue("test.fail", '{"message": "no luck"}', max_attempts=3, backoff_s=0.1)
    w = q.worker("w", "--poll", "0.2")
    wait_until(lambda: q.job(job)[0] == "failed", timeout=10, what="failed for good")
    assert q.job(job, "attempts, error") == ["3", "no luck"]
    assert w.alive()


def test_crashed_worker_job_fails_after_max_attempts(q):
    job = q.enqueue("test.crash", '{"after": 0}', max_attempts=1)
    a = q.worker("a", "--lease", "1")
    a.p.wait(timeout=10)
    assert a.p.returncode == -signal.SIGKILL
    q.worker("b", "--kinds", "test.noop", "--poll", "0.2")
    wait_until(lambda: q.job(job)[0] == "failed", timeout=10, what="reaped")
    assert "lease expired" in q.job(job, "error")[0]


def test_gpu_job_waits_for_a_gpu_worker(q):
    job = q.enqueue("test.noop", needs_gpu=1)
    cpu = q.worker("cpu", "--poll", "0.2")
    time.sleep(1)
    assert q.job(job)[0] == "queued"
    q.worker("gpu", "--gpus", "1", "--poll", "0.2")
    wait_until(lambda: q.job(job, "state, worker") == ["succeeded", "gpu"], timeout=5)
    assert cpu.alive()
    assert q.sql("SELECT gpus FROM workers WHERE name = 'gpu'") == "1"


def test_idle_worker_starts_a_new_job_within_milliseconds(q):
    q.worker("w", "--poll", "30")
    wait_until(lambda: q.sql("SELECT count(*) FROM workers") == "1")
    time.sleep(0.3)
    job = q.enqueue("test.noop")
    wait_until(lambda: q.job(job)[0] == "succeeded", timeout=5)
    # NOTIFY, not the 30 s poll, woke the worker.
    delay = float(q.job(job, "extract(epoch FROM started_at - created_at)")[0])
    assert delay < 0.5


def test_bad_flags_exit_2():
    r = subprocess.run([WORKER, "--kinds", "no.such"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown kind" in r.stderr
    r = subprocess.run([WORKER, "--lease", "0"], capture_output=True, text=True)
    assert r.returncode == 2
    r = subprocess.run([WORKER, "--concurrency", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "--concurrency" in r.stderr
    r = subprocess.run([WORKER, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "test.sleep" in r.stdout


def test_worker_rides_out_a_postgres_restart(q, pg):
    # A restart lands in the middle of complete+claim pipelines (the server
    # answers FATAL, then closes): the worker reconnects and reports the job
    # it had run, instead of leaving it to the lease.
    n = 6000
    q.sql("INSERT INTO jobs (kind) SELECT 'test.noop' FROM generate_series(1, %d)" % n)
    w = q.worker("w", "--poll", "0.5", "--lease", "3")
    wait_until(lambda: q.count("succeeded") > 500,
               what="the worker to get going")
    pg.restart()
    wait_until(lambda: q.count("succeeded") == n, timeout=60,
               interval=0.2, what="every job done after the restart")
    assert w.stop() == 0, w.log()
    log = w.log()
    assert "connected" in log.split("database not ready", 1)[-1], log[-2000:]
    assert "could not report outcome" not in log, log[-2000:]
    run, ok = stopped_line(w)[:2]
    assert run >= n and ok >= n - 1, (run, ok)


def test_worker_survives_its_backend_being_terminated_mid_pipeline(q):
    # pg_terminate_backend() answers whatever the worker has in flight with
    # FATAL and closes: often in the middle of a complete+claim pipeline. The
    # worker must drop that connection, reconnect and report the job it ran
    # (it once stayed stuck in pipeline mode, failing every later call).
    n = 20000
    q.sql("INSERT INTO jobs (kind) SELECT 'test.noop' FROM generate_series(1, %d)" % n)
    w = q.worker("w", "--poll", "0.5", "--lease", "3", "--concurrency", "2")
    done = lambda: q.count("succeeded")
    wait_until(lambda: done() > 200, what="the worker to get going")
    kills = 0
    # A kill counts only when it lands on an active backend (mid-statement,
    # often mid-pipeline). On a loaded host the worker's backends are mostly
    # idle, waiting for a starved worker, and the jobs could run out before
    # five kills landed: top the queue up (at most three times) instead.
    refills = 0
    while kills < 40:
        if done() >= n - 2000:
            if kills >= 5 or refills == 3:
                break
            q.sql("INSERT INTO jobs (kind) SELECT 'test.noop' FROM generate_series(1, %d)" % 20000)
            n += 20000
            refills += 1
        kills += q.terminate_sessions(" AND state = 'active'")
        time.sleep(0.05)
    assert kills >= 5, (kills, refills)
    try:
        wait_until(lambda: done() == n, timeout=120, interval=0.2, what="every job done after %d kills" % kills)
    except AssertionError as e:
        raise AssertionError("%s: %s" % (e, q.sql(
            "SELECT string_agg(format('%s %s attempts<=%s run_after-now=%s', state, n, a, ra), '; ')"
            " FROM (SELECT state, count(*) n, max(attempts) a, max(run_after - now()) ra FROM jobs GROUP BY 1) s")))
    assert w.stop() == 0, w.log()
    log = w.log()
    assert "could not report outcome" not in log, log[-3000:]
    assert "pipeline mode" not in log, log[-3000:]
    run, ok = stopped_line(w)[:2]
    assert run >= n and ok >= n - kills, (run, ok, kills)


def intervals(q, ids):
    rows = q.sql("SELECT extract(epoch FROM started_at), extract(epoch FROM finished_at) FROM jobs"
                 " WHERE id IN (%s) ORDER BY id" % ",".join(map(str, ids)))
    return [tuple(float(x) for x in r.split("|")) for r in rows.splitlines()]


def overlap(a, b):
    return a[0] < b[1] and b[0] < a[1]


def test_concurrency_runs_jobs_at_once_and_keeps_every_lease(q):
    # Four 4-second jobs, a 3-second lease: one worker with four slots runs
    # them side by side, and its supervisor renews all four leases.
    jobs = [q.enqueue("test.sleep", '{"ms": 4000}') for _ in range(4)]
    w = q.worker("w", "--concurrency", "4", "--lease", "3")
    wait_until(lambda: q.count("succeeded") == 4, timeout=20)
    iv = intervals(q, jobs)
    assert max(s for s, _ in iv) < min(f for _, f in iv), iv
    assert q.sql("SELECT string_agg(DISTINCT attempts::text || worker, ',') FROM jobs") == "1w"
    assert w.stop() == 0
    assert stopped_line(w) == [4, 4, 0, 0, 0]
    assert "concurrency=4" in w.log() and "lease lost" not in w.log()


def test_concurrency_shares_the_gpus(q):
    # One GPU, three slots: the GPU jobs run one at a time, CPU jobs beside them.
    gpu = [q.enqueue("test.sleep", '{"ms": 700}', needs_gpu=1) for _ in range(3)]
    cpu = [q.enqueue("test.sleep", '{"ms": 700}') for _ in range(3)]
    q.worker("w", "--concurrency", "3", "--gpus", "1", "--poll", "0.2")
    wait_until(lambda: q.count("succeeded") == 6, timeout=20)
    g = intervals(q, gpu)
    c = intervals(q, cpu)
    for i in range(3):
        for j in range(i + 1, 3):
            assert not overlap(g[i], g[j]), g
    assert any(overlap(x, y) for x in g for y in c), (g, c)


def test_concurrency_cancel_reaches_one_slot_and_shutdown_releases_the_rest(q):
    a = q.enqueue("test.sleep", '{"ms": 60000}')
    b = q.enqueue("test.sleep", '{"ms": 60000}')
    w = q.worker("w", "--concurrency", "2", "--lease", "3", "--grace", "1")
    wait_until(lambda: q.count("running") == 2)
    assert q.sql("SELECT atelier_cancel_job(%d)" % a) == "running"
    wait_until(lambda: q.job(a)[0] == "cancelled", timeout=5, what="cancelled")
    assert q.job(b)[0] == "running"
    t = time.time()
    assert w.stop(timeout=10) == 0
    assert time.time() - t < 4
    assert q.job(b, "state, attempts") == ["queued", "0"]


def test_running_job_keeps_its_lease_when_the_workers_sessions_are_terminated(q):
    # The worker's sessions (the slot's and the supervisor's, then the
    # supervisor's new one) are ended while a job runs under a 2-second lease:
    # the heartbeats reconnect in time, the job completes on its first attempt
    # and its slot reports it on a new session.
    job = q.enqueue("test.sleep", '{"ms": 5000}')
    w = q.worker("w", "--lease", "2")
    wait_until(lambda: q.job(job)[0] == "running")
    # The supervisor connects at its first heartbeat (lease/3): wait for both sessions.
    wait_until(lambda: q.sessions() == 2, timeout=5, what="two sessions")
    assert q.terminate_sessions() == 2
    # The supervisor's next heartbeat fails and the one after reconnects: end that session too.
    wait_until(lambda: q.sessions() == 1, timeout=5, what="a new session")
    assert q.job(job)[0] == "running"
    assert q.terminate_sessions() == 1
    wait_until(lambda: q.job(job)[0] == "succeeded", timeout=15)
    assert q.job(job, "attempts")[0] == "1"
    assert w.stop() == 0
    assert "lease lost" not in w.log() and "no longer ours" not in w.log(), w.log()[-3000:]
    assert stopped_line(w)[:2] == [1, 1]
