"""Pipelines through the real atelierd and real workers: apply and versions,
YAML errors over HTTP, DAG order, failures and retries, cancel, timeouts,
triggers (manual, new_sketches, coalescing), SSE, and leader failover."""
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

import images
from conftest import BIN, ROOT, wait_until
from daemon import start_atelierd


def yaml_text(name, stages, triggers="manual: true", concurrency=1):
    return "pipeline: %s\nmodel: none\nconcurrency: %d\ntriggers:\n  %s\nstages:\n%s" % (
        name, concurrency, triggers, stages)


@pytest.fixture
def d(db_url):
    daemon = start_atelierd(db_url, "--local-workers", "2", "--tick-ms", "200")
    daemon.api = daemon.http(daemon.token("operator"))
    yield daemon
    assert daemon.stop() == 0, daemon.log()[-3000:]


def apply(d, text, filename="p.yaml"):
    return d.api.post("/v1/pipelines?filename=" + filename, text.encode(),
                      headers={"Content-Type": "application/yaml"})


def run(d, name):
    r = d.api.post("/v1/pipelines/%s/runs" % name)
    assert r.status in (200, 201), r
    return r.json()["run"]


def wait_run(d, run_id, states=("succeeded", "failed", "cancelled"), timeout=60):
    def done():
        r = d.api.get("/v1/runs/%d" % run_id).json()
        return r if r["run"]["state"] in states else None
    return wait_until(done, timeout=timeout, interval=0.1, what="run %d to reach %s" % (run_id, states))


def test_apply_versions_and_history(d):
    text = open(os.path.join(ROOT, "tests/pipelines/dag.yaml")).read()
    r = apply(d, text)
    assert r.status == 201 and r.json()["version"] == 1 and r.json()["created"]
    # comments and layout do not make a new version
    r2 = apply(d, "# a comment\n" + text.replace("kind: noop", "kind:   noop"))
    assert r2.status == 200 and not r2.json()["created"] and r2.json()["sha256"] == r.json()["sha256"]
    r3 = apply(d, text.replace("200ms", "300ms"))
    assert r3.status == 201 and r3.json()["version"] == 2
    show = d.api.get("/v1/pipelines/dag").json()
    assert show["current"]["version"] == 2
    assert [h["version"] for h in show["history"]] == [2, 1]
    lst = d.api.get("/v1/pipelines").json()["pipelines"]
    assert [p["name"] for p in lst] == ["dag"]
    assert d.api.get("/v1/pipelines/nope").status == 404


def test_yaml_errors_name_file_line_column(d):
    r = apply(d, "pipeline: bad\nmodel: m\nstages:\n  collect:\n    retires: 2\n", filename="pipelines/bad.yaml")
    assert r.status == 422, r
    j = r.json()
    assert j["error"].startswith("pipelines/bad.yaml:5:5: unknown key \"retires\""), j
    assert "did you mean" in j["error"]
    assert j["detail"]["line"] == 5 and j["detail"]["column"] == 5
    r = apply(d, "pipeline: bad\nmodel: m\nstages:\n  a: {kind: noop, needs: [b]}\n  b: {kind: noop, needs: [a]}\n")
    assert r.status == 422 and "cycle" in r.json()["error"], r
    assert d.api.get("/v1/pipelines").json()["pipelines"] == []


def test_cli_apply_and_run(d):
    env = dict(os.environ, ATELIER_URL=d.url, ATELIER_TOKEN=d.api.token)
    cli = os.path.join(BIN, "atelier")
    out = subprocess.run([cli, "apply", "-f", "tests/pipelines/dag.yaml"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "version 1 created" in out.stdout, out
    out = subprocess.run([cli, "--json", "run", "dag"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out
    run_id = json.loads(out.stdout)["run"]
    wait_run(d, run_id)
    out = subprocess.run([cli, "run", "show", str(run_id)], env=env, capture_output=True, text=True)
    assert "succeeded" in out.stdout and "test.sleep" in out.stdout, out.stdout
    bad = os.path.join(ROOT, "tests/unit/yaml_cases")
    case = sorted(f for f in os.listdir(bad) if f.endswith(".yaml"))[0]
    out = subprocess.run([cli, "apply", "-f", os.path.join("tests/unit/yaml_cases", case)], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr.startswith("tests/unit/yaml_cases/" + case + ":"), out.stderr


def test_dag_order(d):
    apply(d, open(os.path.join(ROOT, "tests/pipelines/dag.yaml")).read())
    run_id = run(d, "dag")
    r = wait_run(d, run_id)
    assert r["run"]["state"] == "succeeded", r
    jobs = {j["stage"]: j for j in r["jobs"]}
    assert set(jobs) == {"a", "b", "c", "d"}
    # every stage starts only after all it needs have finished
    for stage, needs in {"b": ["a"], "c": ["a"], "d": ["b", "c"]}.items():
        for n in needs:
            assert jobs[stage]["started_at"] >= jobs[n]["finished_at"], (stage, n, jobs)
    assert jobs["b"]["result"]["slept_ms"] == 200


def test_failed_stage_retries_then_fails_run(d):
    apply(d, yaml_text("failing", "  a:\n    kind: fail\n    retries: 2\n    params: {message: boom}\n"
                                  "  b:\n    kind: noop\n    needs: [a]\n"))
    run_id = run(d, "failing")
    r = wait_run(d, run_id, timeout=60)
    assert r["run"]["state"] == "failed", r
    assert "boom" in r["run"]["error"]
    a = [j for j in r["jobs"] if j["stage"] == "a"][0]
    assert a["attempts"] == 3 and a["state"] == "failed", a
    assert not [j for j in r["jobs"] if j["stage"] == "b"], "b must never start"


def test_cancel_running_job(d):
    apply(d, yaml_text("long", "  a:\n    kind: sleep\n    params: {duration: 60s}\n"))
    run_id = run(d, "long")
    wait_until(lambda: any(j["state"] == "running" for j in d.api.get("/v1/runs/%d" % run_id).json()["jobs"]),
               timeout=20, what="the sleep job to run")
    r = d.api.post("/v1/runs/%d/cancel" % run_id)
    assert r.status == 200 and r.json()["state"] == "cancelled"
    # the worker hears it on its next heartbeat and stops the job
    wait_until(lambda: d.api.get("/v1/runs/%d" % run_id).json()["jobs"][0]["state"] == "cancelled",
               timeout=30, what="the running job to stop")
    assert d.api.post("/v1/runs/999999/cancel").status == 404


def test_stage_timeout(d):
    apply(d, yaml_text("slow", "  a:\n    kind: sleep\n    timeout: 1s\n    retries: 0\n    params: {duration: 30s}\n"))
    run_id = run(d, "slow")
    r = wait_run(d, run_id, timeout=30)
    assert r["run"]["state"] == "failed", r
    assert "time" in (r["jobs"][0]["error"] or "").lower(), r["jobs"][0]


def test_manual_runs_coalesce(d):
    apply(d, yaml_text("busy", "  a:\n    kind: sleep\n    params: {duration: 3s}\n"))
    first = run(d, "busy")
    wait_until(lambda: d.api.get("/v1/runs/%d" % first).json()["run"]["state"] == "running", timeout=10)
    second = d.api.post("/v1/pipelines/busy/runs")
    third = d.api.post("/v1/pipelines/busy/runs")
    assert second.status == 201 and third.status == 200 and third.json()["coalesced"]
    assert third.json()["run"] == second.json()["run"]
    r = wait_run(d, second.json()["run"], timeout=30)
    assert r["run"]["state"] == "succeeded"
    assert r["run"]["started_at"] >= d.api.get("/v1/runs/%d" % first).json()["run"]["finished_at"]


def test_manual_disabled(d):
    apply(d, yaml_text("auto", "  a: {kind: noop}\n", triggers="manual: false\n  new_sketches: 5"))
    r = d.api.post("/v1/pipelines/auto/runs")
    assert r.status == 409
    assert d.api.post("/v1/pipelines/nope/runs").status == 404


def test_new_sketches_trigger_fires_once(d):
    apply(d, yaml_text("fresh", "  a: {kind: noop}\n", triggers="manual: false\n  new_sketches: 3"))
    h = {"Content-Type": "image/png"}
    # only training sketches count; keep uploading until 2 train sketches are in
    n_train = 0
    seed = 100
    while n_train < 2:
        r = d.api.post("/v1/sketches", images.sketch(seed), headers=h)
        seed += 1
        assert r.status == 201
        n_train += r.json()["split"] == "train"
    time.sleep(1.0)
    assert d.api.get("/v1/runs?pipeline=fresh").json()["runs"] == []
    while n_train < 3:
        r = d.api.post("/v1/sketches", images.sketch(seed), headers=h)
        seed += 1
        n_train += r.json()["split"] == "train"
    runs = wait_until(lambda: d.api.get("/v1/runs?pipeline=fresh").json()["runs"], timeout=10,
                      what="the new_sketches trigger")
    assert len(runs) == 1 and runs[0]["trigger"] == "new_sketches"
    time.sleep(1.0)
    assert len(d.api.get("/v1/runs?pipeline=fresh").json()["runs"]) == 1, "fired more than once"


def test_runs_filters_and_pagination(d):
    apply(d, yaml_text("quick", "  a: {kind: noop}\n"))
    ids = []
    for _ in range(3):
        rid = run(d, "quick")
        wait_run(d, rid)
        ids.append(rid)
    page = d.api.get("/v1/runs?pipeline=quick&limit=2").json()
    assert [r["run_id"] for r in page["runs"]] == [ids[2], ids[1]]
    rest = d.api.get("/v1/runs?pipeline=quick&limit=2&before=%d" % page["next_before"]).json()
    assert [r["run_id"] for r in rest["runs"]] == [ids[0]]
    assert d.api.get("/v1/runs?state=succeeded").json()["runs"]
    assert d.api.get("/v1/runs?state=bogus").status == 400
    assert d.api.get("/v1/runs?since=notatime").status == 400
    assert d.api.get("/v1/runs?limit=0").status == 400


def test_events_stream(d):
    import http.client
    apply(d, yaml_text("ev", "  a: {kind: noop}\n"))
    host, port = d.url.replace("http://", "").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/v1/events", headers={"Authorization": "Bearer " + d.api.token})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type") == "text/event-stream"
    events, event = [], None
    run_id = None
    deadline = time.time() + 15
    while time.time() < deadline:
        line = resp.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
            if event == "hello" and run_id is None:
                run_id = run(d, "ev")
        elif line.startswith("data: ") and event == "run":
            events.append(json.loads(line[6:]))
            if any(e.get("run") == run_id and e.get("state") == "succeeded" for e in events):
                break
    conn.close()
    states = [e["state"] for e in events if e.get("run") == run_id]
    assert "running" in states and "succeeded" in states, events


def test_leader_failover(db_url, pg):
    a = start_atelierd(db_url, "--tick-ms", "200")
    b = start_atelierd(db_url, "--tick-ms", "200")
    try:
        def leaders():
            out = []
            for x in (a, b):
                if x.proc.alive():
                    m = x.http().get("/metrics").body.decode()
                    out.append("\natelier_scheduler_leader 1\n" in m)
            return out
        wait_until(lambda: sum(leaders()) == 1, timeout=10, what="exactly one leader")
        leader, standby = (a, b) if leaders()[0] else (b, a)
        op = leader.http(leader.token("operator"))
        r = op.post("/v1/pipelines", yaml_text("fo", "  a: {kind: noop}\n",
                                               triggers="manual: false\n  new_sketches: 1").encode(),
                    headers={"Content-Type": "application/yaml"})
        assert r.status == 201
        leader.kill9()
        wait_until(lambda: "\natelier_scheduler_leader 1\n" in standby.http().get("/metrics").body.decode(),
                   timeout=10, what="the standby to take over")
        # the new leader runs triggers: one training sketch fires a run
        api = standby.http(op.token)
        seed = 500
        while True:
            r = api.post("/v1/sketches", images.sketch(seed), headers={"Content-Type": "image/png"})
            seed += 1
            if r.json()["split"] == "train":
                break
        wait_until(lambda: api.get("/v1/runs?pipeline=fo").json()["runs"], timeout=10,
                   what="the standby leader to fire the trigger")
    finally:
        for x in (a, b):
            if x.proc.alive():
                x.stop()


def test_every_trigger_counts_from_apply(d):
    apply(d, yaml_text("periodic", "  a: {kind: noop}\n", triggers="manual: true\n  every: 2s"))
    t0 = time.time()
    time.sleep(0.8)
    assert d.api.get("/v1/runs?pipeline=periodic").json()["runs"] == [], "fired before the interval"
    runs = wait_until(lambda: d.api.get("/v1/runs?pipeline=periodic").json()["runs"], timeout=10,
                      what="the schedule to fire")
    assert runs[0]["trigger"] == "schedule" and time.time() - t0 >= 1.5


def test_local_worker_restarted_and_exits_with_daemon(db_url):
    d = start_atelierd(db_url, "--local-workers", "1", "--tick-ms", "200")
    api = d.http(d.token("operator"))

    def children():
        out = subprocess.run(["pgrep", "-P", str(d.proc.p.pid), "-f", "atelier-worker"], capture_output=True,
                             text=True)
        return [int(p) for p in out.stdout.split()]
    first = wait_until(children, timeout=10, what="the local worker")
    os.kill(first[0], 9)
    again = wait_until(lambda: [p for p in children() if p != first[0]], timeout=15,
                       what="the supervisor to restart the worker")
    assert "restarting" in d.log()
    apply(type("D", (), {"api": api})(), yaml_text("after", "  a: {kind: noop}\n"))
    r = api.post("/v1/pipelines/after/runs").json()["run"]
    wait_until(lambda: api.get("/v1/runs/%d" % r).json()["run"]["state"] == "succeeded", timeout=20,
               what="the restarted worker to run a job")
    # a daemon that dies without cleaning up takes its workers with it (only the
    # daemon is killed here, not its process group)
    os.kill(d.proc.p.pid, 9)
    d.proc.p.wait()
    wait_until(lambda: not os.path.exists("/proc/%d" % again[0]), timeout=10, what="the orphaned worker to exit")


def test_atelierd_and_workers_survive_their_sessions_being_terminated(d, pg, db_url):
    # Every session of atelierd and its local workers is ended at once
    # (pg_terminate_backend: what a failover or an operator does): the leader
    # lock goes with its session, the pools and workers reconnect, the leader
    # takes the lock again, and runs go on.
    assert apply(d, yaml_text("st", "  a: {kind: noop}\n  b: {kind: noop, needs: [a]}\n")).status == 201
    assert wait_run(d, run(d, "st"))["run"]["state"] == "succeeded"
    killed = int(pg.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                         " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                         " AND backend_type = 'client backend'", db_url))
    assert killed >= 4, killed  # atelierd's pools + 2 workers (queue + supervisor)

    def leader_again():
        r = d.http().get("/metrics")
        return r.status == 200 and "\natelier_scheduler_leader 1\n" in r.body.decode()
    wait_until(leader_again, timeout=20, what="atelierd to be the leader again")
    rid = wait_until(lambda: d.api.post("/v1/pipelines/st/runs").json().get("run"), timeout=20,
                     what="the API to take a run again")
    assert wait_run(d, rid, timeout=30)["run"]["state"] == "succeeded"
    log = d.log()
    assert "pipeline mode" not in log, log[-3000:]


def test_hostile_yaml_does_not_hold_ingest(db_url):
    """YAML parsing and image decoding share atelierd's threadpool (two
    threads here, as on a 2-core machine). Deep `[[[…]]]` was quadratic in
    libyaml's scanner: two 200 KB bodies held a sketch upload for minutes.
    Nesting and node caps are now checked on libyaml's events, so hostile
    bodies are refused in milliseconds and the upload is answered at once."""
    d = start_atelierd(db_url, env={"UV_THREADPOOL_SIZE": "2"})
    try:
        api = d.http(d.token("operator"))
        hostile = ("[" * 100000 + "]" * 100000).encode()  # 200 KB, under the 256 KiB cap
        answers = []

        def post_hostile(i):
            t0 = time.time()
            r = api.post("/v1/pipelines?filename=deep%d.yaml" % i, hostile,
                         headers={"Content-Type": "application/yaml"}, timeout=120)
            answers.append((r, time.time() - t0))
        threads = [threading.Thread(target=post_hostile, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.2)  # both bodies sent and queued before the upload
        t0 = time.time()
        r = api.post("/v1/sketches", images.sketch(3), headers={"Content-Type": "image/png"}, timeout=120)
        took = time.time() - t0
        for t in threads:
            t.join(130)
        assert r.status == 201, r
        assert took < 2.0, "a sketch upload waited %.1f s behind hostile YAML" % took
        assert len(answers) == 2
        for r, dt in answers:
            assert r.status == 422, r
            j = r.json()
            assert re.match(r"deep\d\.yaml:1:65: value nested more than 64 levels deep$", j["error"]), j
            assert j["detail"]["line"] == 1 and j["detail"]["column"] == 65, j
            assert dt < 2.0, "a hostile body took %.1f s" % dt
    finally:
        assert d.stop() == 0, d.log()[-3000:]
