"""The operator's API (issue 13) through the real atelierd and PostgreSQL:
the ledger names the token, run progress counts every stage of the pipeline
version, sketch and painting lists with filters and cursor pages, rejected
uploads recorded and listed."""
import os
import subprocess
import urllib.parse

import pytest

import images
from conftest import BIN, multipart, wait_until
from daemon import start_atelierd


@pytest.fixture
def d(db_url):
    daemon = start_atelierd(db_url, "--tick-ms", "200")
    daemon.api = daemon.http(daemon.token("operator"))
    daemon.viewer = daemon.http(daemon.token("viewer"))
    yield daemon
    assert daemon.stop() == 0, daemon.log()[-3000:]


def named_token(d, role, name):
    out = subprocess.run([os.path.join(BIN, "atelierd"), "token", "create", "--role", role, "--name", name],
                         env=d.env(), check=True, capture_output=True, text=True)
    return out.stdout.strip()


# ---- the ledger's actor ----

def test_ledger_actor_is_the_token_name(d, pg):
    pg.psql("SELECT atelier_register_version('m', repeat('a', 64), 1, 'fs://x', NULL, NULL, NULL, '{}', '{}', NULL)",
            d.db_url)
    pg.psql("SELECT atelier_register_version('m', repeat('b', 64), 1, 'fs://x', NULL, NULL, NULL, '{}', '{}', NULL)",
            d.db_url)
    alice = d.http(named_token(d, "operator", "alice"))
    assert alice.post("/v1/models/m/channels/production", {"version": 1, "reason": "first"}).status == 200
    # a token without a name is known by its role, as before
    assert d.api.post("/v1/models/m/channels/production", {"version": 2}).status == 200
    # the second request from alice is answered from the token cache: the name must survive it
    assert alice.post("/v1/models/m/channels/production", {"action": "rollback", "reason": "bad"}).status == 200
    ledger = d.viewer.get("/v1/models/m/ledger").json()["ledger"]
    assert [(e["actor"], e["kind"], e["reason"]) for e in ledger] == [
        ("alice", "promote", "first"), ("api:operator", "promote", "manual promotion"), ("alice", "rollback", "bad")]


# ---- run progress over every stage ----

CHAIN = """pipeline: chain
model: none
triggers:
  manual: true
stages:
  a: {kind: noop}
  b: {kind: noop, needs: [a]}
  c: {kind: noop, needs: [b]}
"""


def run_row(d, run_id):
    return d.viewer.get("/v1/runs/%d" % run_id).json()["run"]


def test_run_progress_counts_stages_not_yet_enqueued(d, pg):
    # No workers here: the test plays the worker in SQL, so every step is exact.
    r = d.api.post("/v1/pipelines?filename=chain.yaml", CHAIN.encode(), headers={"Content-Type": "application/yaml"})
    assert r.status in (200, 201), r
    run_id = d.api.post("/v1/pipelines/chain/runs").json()["run"]
    seen = []
    for done, stage in enumerate(["a", "b", "c"]):
        job = wait_until(lambda: pg.psql("SELECT id FROM jobs WHERE run_id = %d AND stage = '%s'" % (run_id, stage),
                                         d.db_url), what="stage %s enqueued" % stage)
        # only the stages whose needs are done exist as jobs
        assert int(pg.psql("SELECT count(*) FROM jobs WHERE run_id = %d" % run_id, d.db_url)) == done + 1
        # the claim as lib/queue.c makes it, then heartbeats and the completion through the queue's functions
        token = pg.psql("UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = 't', "
                        "owner_token = nextval('jobs_owner_token_seq'), lease_expires_at = now() + interval '60 s', "
                        "started_at = clock_timestamp(), progress = 0 WHERE id = %s RETURNING owner_token; "
                        "SELECT atelier_notify_run(%d, %s, 'running')" % (job, run_id, job), d.db_url).split()[0]
        for p in (0.0, 0.44, 0.99):
            assert pg.psql("SELECT atelier_heartbeat(%s, %s, %f, NULL, NULL, 60)" % (job, token, p), d.db_url) == "ok"
            row = run_row(d, run_id)
            prog = row["progress"]
            # bounded by what is complete: done stages of 3, plus at most the current one
            assert done / 3 - 1e-6 <= prog <= (done + 1) / 3 + 1e-6, (stage, p, row)
            assert abs(prog - (done + p) / 3) < 1e-3, (stage, p, row)
            assert row["stages_total"] == 3
            assert row["state"] == "running", row
            if p > 0:
                assert row["eta_seconds"] is not None and row["eta_seconds"] >= 0, row
            seen.append(prog)
        assert pg.psql("SELECT atelier_complete(%s, %s, '{}')" % (job, token), d.db_url) == "t"
    assert seen == sorted(seen), "progress went backwards: %s" % seen
    row = wait_until(lambda: (lambda r: r if r["state"] == "succeeded" else None)(run_row(d, run_id)),
                     what="run to succeed")
    assert row["progress"] == 1 and row["eta_seconds"] == 0, row


# ---- sketch and painting lists ----

def upload(api, seed, contributor=None, source=None, path="/v1/sketches", body=None):
    fields = [("image", ("s.png", body or images.sketch(seed), "image/png"))]
    if contributor:
        fields.append(("contributor", contributor))
    if source:
        fields.append(("source", source))
    data, ctype = multipart(fields)
    r = api.post(path, data, headers={"Content-Type": ctype})
    assert r.status == 201, r
    return r.json()["id"]


def test_list_sketches_filters_and_cursor(d, pg):
    ids = [upload(d.api, s, contributor="ann" if s % 2 else "bob", source="web") for s in range(1, 8)]
    first = d.viewer.get("/v1/sketches?limit=3")
    assert first.status == 200, first
    page = first.json()
    assert [i["id"] for i in page["items"]] == ids[::-1][:3]
    assert all("png" not in k or k == "image_url" for k in page["items"][0])
    assert page["next_cursor"]
    seen = [i["id"] for i in page["items"]]
    while page["next_cursor"]:
        page = d.viewer.get("/v1/sketches?limit=3&cursor=" + page["next_cursor"]).json()
        seen += [i["id"] for i in page["items"]]
    assert seen == ids[::-1]
    ann = d.viewer.get("/v1/sketches?contributor=ann").json()["items"]
    assert sorted(i["id"] for i in ann) == [ids[k] for k in (0, 2, 4, 6)]
    assert d.viewer.get("/v1/sketches?source=app").json()["items"] == []
    # since/until: everything is from now; nothing is from tomorrow
    assert len(d.viewer.get("/v1/sketches?since=2000-01-01T00:00:00Z").json()["items"]) == 7
    assert d.viewer.get("/v1/sketches?until=2000-01-01T00:00:00Z").json()["items"] == []
    split = pg.psql("SELECT split FROM images WHERE id = %d" % ids[0], d.db_url)
    by_split = d.viewer.get("/v1/sketches?split=" + split).json()["items"]
    assert ids[0] in [i["id"] for i in by_split] and all(i["split"] == split for i in by_split)
    pg.psql("UPDATE images SET status = 'deleted' WHERE id = %d" % ids[1], d.db_url)
    assert [i["id"] for i in d.viewer.get("/v1/sketches?status=deleted").json()["items"]] == [ids[1]]
    # the thumbnail URL answers the image, with a long cache
    item = d.viewer.get("/v1/sketches?limit=1").json()["items"][0]
    img = d.viewer.get(item["image_url"])
    assert img.status == 200 and img.headers["content-type"] == "image/png"
    assert "max-age" in img.headers.get("cache-control", "")
    # paintings are their own list
    assert d.viewer.get("/v1/paintings").json() == {"items": [], "next_cursor": None}
    # bad input: 400, never a raw SQL error
    for q in ("limit=0", "limit=501", "status=bogus", "split=x", "cursor=zz", "cursor=6a31", "since=notatime"):
        r = d.viewer.get("/v1/sketches?" + q)
        assert r.status == 400, (q, r)
    # roles: any token reads, none writes here, no token gets 401
    assert d.http().get("/v1/sketches").status == 401
    assert d.viewer.post("/v1/sketches", images.sketch(1), headers={"Content-Type": "image/png"}).status == 403


# ---- rejected uploads ----

def test_rejected_uploads_recorded_without_pixels(d, pg):
    garbage = b"\x89PNG\r\n\x1a\n" + b"\0" * 500  # a PNG signature, then nothing valid
    data, ctype = multipart([("image", ("x.png", garbage, "image/png")), ("source", "kiosk"),
                             ("contributor", "eve")])
    assert d.api.post("/v1/sketches", data, headers={"Content-Type": ctype}).status in (400, 415, 422)
    assert d.api.post("/v1/sketches", b"GIF89a....", headers={"Content-Type": "image/png"}).status == 415
    assert d.api.post("/v1/paintings", b"hello", headers={"Content-Type": "text/plain"}).status == 415
    blank = images.png(256, 256, lambda x, y: 255)  # no ink: refused by the ink ratio
    assert d.api.post("/v1/sketches", blank, headers={"Content-Type": "image/png"}).status == 422

    def listed():
        items = d.viewer.get("/v1/uploads/rejected").json()["items"]
        return items if len(items) == 4 else None
    items = wait_until(listed, what="4 rejections recorded")
    # the records are sent asynchronously over several connections: their order is not the requests'
    by_size = {i["size"]: i for i in items}
    garbage_row, gif_row, text_row, blank_row = by_size[len(garbage)], by_size[10], by_size[5], by_size[len(blank)]
    assert garbage_row["source"] == "kiosk" and garbage_row["contributor"] == "eve"
    assert garbage_row["size"] == len(garbage) and garbage_row["content_type"].startswith("multipart/form-data")
    assert gif_row["reason"] == "UNSUPPORTED" and gif_row["size"] == 10 and gif_row["domain"] == "sketch"
    assert text_row["domain"] == "painting" and text_row["content_type"] == "text/plain"
    assert blank_row["reason"] == "UNPROCESSABLE" and "ink" in blank_row["detail"]
    assert blank_row["size"] == len(blank)
    # no pixels anywhere: the table has no bytea column
    assert pg.psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'rejected_uploads' "
                   "AND data_type = 'bytea'", d.db_url) == "0"
    # filters and pages
    assert [i["id"] for i in d.viewer.get("/v1/uploads/rejected?domain=painting").json()["items"]] == [text_row["id"]]
    assert len(d.viewer.get("/v1/uploads/rejected?reason=UNSUPPORTED").json()["items"]) >= 2
    page = d.viewer.get("/v1/uploads/rejected?limit=3").json()
    rest = d.viewer.get("/v1/uploads/rejected?limit=3&cursor=" + urllib.parse.quote(page["next_cursor"])).json()
    assert [i["id"] for i in page["items"] + rest["items"]] == [i["id"] for i in items]
    assert rest["next_cursor"] is None
    assert d.viewer.get("/v1/uploads/rejected?domain=x").status == 400


def test_rejected_uploads_pruned(d, pg):
    # old rows go when the 500th insert prunes
    pg.psql("INSERT INTO rejected_uploads (domain, reason, size, created_at) "
            "SELECT 'sketch', 'OLD', 1, now() - interval '40 days' FROM generate_series(1, 10)", d.db_url)
    pg.psql("SELECT atelier_record_rejection('sketch', 'NEW', NULL, 1, NULL, NULL, NULL) "
            "FROM generate_series(1, 500)", d.db_url)
    assert pg.psql("SELECT count(*) FROM rejected_uploads WHERE reason = 'OLD'", d.db_url) == "0"
    assert int(pg.psql("SELECT count(*) FROM rejected_uploads", d.db_url)) >= 490


# ---- job logs ----

@pytest.fixture
def dw(db_url):
    daemon = start_atelierd(db_url, "--local-workers", "1", "--tick-ms", "200")
    daemon.api = daemon.http(daemon.token("operator"))
    daemon.viewer = daemon.http(daemon.token("viewer"))
    yield daemon
    assert daemon.stop() == 0, daemon.log()[-3000:]


def start_run(d, name, stages):
    text = "pipeline: %s\nmodel: none\ntriggers:\n  manual: true\nstages:\n%s" % (name, stages)
    r = d.api.post("/v1/pipelines?filename=p.yaml", text.encode(), headers={"Content-Type": "application/yaml"})
    assert r.status in (200, 201), r
    return d.api.post("/v1/pipelines/%s/runs" % name).json()["run"]


def first_job(d, run_id):
    return wait_until(lambda: (d.viewer.get("/v1/runs/%d" % run_id).json()["jobs"] or [None])[0],
                      what="the run's first job")["id"]


def test_job_log_follow_streams_lines_while_the_job_runs(dw):
    import http.client
    import json
    import time
    run_id = start_run(dw, "slow", "  a:\n    kind: sleep\n    params: {duration: 3500ms}\n")
    job = first_job(dw, run_id)
    host, port = dw.url.replace("http://", "").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    conn.request("GET", "/v1/jobs/%d/log?follow=1" % job, headers={"Authorization": "Bearer " + dw.viewer.token})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type") == "text/event-stream"
    lines, end, event, first_at = [], None, None, None
    deadline = time.time() + 30
    while time.time() < deadline and end is None:
        raw = resp.readline().decode().rstrip("\n")
        if raw.startswith("event: "):
            event = raw[7:]
        elif raw.startswith("data: ") and event == "line":
            lines.append(json.loads(raw[6:]))
            if first_at is None:
                first_at = time.time()
                state_then = dw.viewer.get("/v1/runs/%d" % run_id).json()["jobs"][0]["state"]
        elif raw.startswith("data: ") and event == "end":
            end = json.loads(raw[6:])
    conn.close()
    assert end == {"state": "succeeded"}, (end, lines)
    texts = [l["text"] for l in lines]
    assert texts[0] == "test.sleep: sleeping 3500 ms", texts
    assert "test.sleep: 3000 of 3500 ms" in texts, texts
    # streamed live: the first line came while the job still ran (batches go out about once a second)
    assert state_then == "running", state_then
    assert [l["seq"] for l in lines] == list(range(1, len(lines) + 1))
    assert all(l["level"] == "info" and l["ts"] for l in lines)
    # the same lines as one page, and paging after a seq
    page = dw.viewer.get("/v1/jobs/%d/log" % job).json()
    assert [l["text"] for l in page["lines"]] == texts and page["state"] == "succeeded" and page["dropped"] == 0
    rest = dw.viewer.get("/v1/jobs/%d/log?after=2&limit=1" % job).json()
    assert [l["seq"] for l in rest["lines"]] == [3] and rest["next_after"] == 3
    assert dw.viewer.get("/v1/jobs/999999/log").status == 404
    assert dw.viewer.get("/v1/jobs/%d/log?after=-1" % job).status == 400
    assert dw.viewer.get("/v1/jobs/%d/log?limit=0" % job).status == 400
    assert dw.http().get("/v1/jobs/%d/log" % job).status == 401


def test_job_log_of_a_failed_job_and_follow_of_a_finished_one(dw):
    import json
    run_id = start_run(dw, "bad", "  a:\n    kind: fail\n    retries: 0\n    params: {message: boom}\n")
    job = first_job(dw, run_id)
    page = wait_until(lambda: (lambda p: p if p["state"] == "failed" else None)(
        dw.viewer.get("/v1/jobs/%d/log" % job).json()), what="the job to fail")
    assert [(l["level"], l["text"]) for l in page["lines"]] == [("warn", "test.fail: boom")], page
    # following a finished job replays its lines and ends at once
    r = dw.viewer.get("/v1/jobs/%d/log?follow=1" % job, timeout=10)
    body = r.body.decode()
    assert "test.fail: boom" in body and 'event: end\ndata: {"state":"failed"}' in body, body


def test_job_log_bounded_with_a_marker(d, pg):
    r = d.api.post("/v1/pipelines?filename=p.yaml", CHAIN.encode(), headers={"Content-Type": "application/yaml"})
    assert r.status in (200, 201)
    run_id = d.api.post("/v1/pipelines/chain/runs").json()["run"]
    job = first_job(d, run_id)
    # 2,100 short lines in 21 batches: the oldest 100 go
    for b in range(21):
        batch = ",".join('[%d, "info", "line %d"]' % (1700000000000 + n, n) for n in range(b * 100, b * 100 + 100))
        pg.psql("SELECT atelier_job_log_append(%d, '[%s]', 0)" % (job, batch), d.db_url)
    page = d.viewer.get("/v1/jobs/%d/log?limit=2" % job).json()
    assert page["dropped"] == 100
    assert page["lines"][0]["seq"] == 100 and page["lines"][0]["level"] == "warn"
    assert page["lines"][0]["text"].startswith("100 earlier lines dropped")
    assert [l["text"] for l in page["lines"][1:]] == ["line 100", "line 101"]
    assert int(pg.psql("SELECT count(*) FROM job_logs WHERE job_id = %d" % job, d.db_url)) == 2000
    # and by bytes: 2 KiB lines, at most 256 KiB kept
    big = "x" * 2048
    for _ in range(3):
        batch = ",".join('[1700000000000, "info", "%s"]' % big for _ in range(60))
        pg.psql("SELECT atelier_job_log_append(%d, '[%s]', 0)" % (job, batch), d.db_url)
    kept = int(pg.psql("SELECT sum(octet_length(text)) FROM job_logs WHERE job_id = %d" % job, d.db_url))
    assert 200 * 1024 < kept <= 256 * 1024, kept
    # a page after the cut carries no marker
    after = d.viewer.get("/v1/jobs/%d/log?after=%d&limit=1" % (job, page["next_after"] + 5000)).json()
    assert all(l["level"] != "warn" for l in after["lines"])
