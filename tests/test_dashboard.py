"""The operator dashboard atelierd serves under /ui/ (orchestrator/ui.c, ui/).

Without a browser: the files' content types, the strict Content-Security-Policy
(no inline script, nothing from another origin), ETag revalidation, GET
/v1/whoami for each role, and the server refusing a viewer's write.

In headless Debian Chromium (playwright-core, tests/browser/dashboard.mjs) on
the real stack: an operator token named "alice" signs in, starts a tiny
pipeline run from the Runs page and sees it go from queued to succeeded live;
the run page shows the stage timeline and a non-empty loss chart; the
evaluation page shows the gate's rules, scores with their intervals, the paired
changes against the champion and sample images that decode; rolling
production back and promoting it again from the page leaves ledger rows naming
alice with the reasons typed; a viewer token gets no write button and its
forged write is refused (403); no page overflows sideways at 390×844.

Screenshots of every page (1280×800 and 390×844) are kept in
$ATELIER_BUILD/test-artifacts/dashboard/."""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD, ROOT
from test_browser import CHROMIUM, HERE, npm_ci
from test_e2e import apply_tiny, run_and_wait, system  # noqa: F401  (the fixture)


def named_token(d, role, name):
    r = d.api.post("/v1/tokens", {"role": role, "name": name})
    assert r.status == 201, r
    return r.json()["token"]


def test_static_files_headers_and_whoami(system):  # noqa: F811
    d = system
    anon = d.http()
    page = anon.get("/ui/")
    assert anon.get("/ui").body == page.body
    assert page.status == 200, page
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    for part in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                 "frame-ancestors 'none'"):
        assert part in csp, csp
    assert "unsafe-inline" not in csp and "http" not in csp, csp
    html = page.body.decode()
    # every script is a file of this origin: no inline code, no other host
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts), scripts
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html), "a resource from another origin"
    assert " style=" not in html and "<style" not in html
    for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css"), ("chart.js", "text/javascript"),
                        ("icon.svg", "image/svg+xml")):
        r = anon.get("/ui/" + name)
        assert r.status == 200 and r.headers["content-type"].startswith(ctype), (name, r.headers)
        assert r.headers.get("x-content-type-options") == "nosniff"
        etag = r.headers["etag"]
        again = anon.get("/ui/" + name, headers={"If-None-Match": etag})
        assert again.status == 304 and again.body == b"", (name, again)
        assert anon.get("/ui/" + name, headers={"If-None-Match": '"0000"'}).status == 200
    # Chart.js is the real library (Debian's libjs-chart.js), embedded at build time
    assert b"Chart.js v" in anon.get("/ui/chart.js").body[:400]
    assert anon.get("/ui/nope.js").status == 404
    # whoami: the role and the token's name; no token, no answer
    alice = named_token(d, "operator", "alice")
    me = d.http(alice).get("/v1/whoami")
    assert me.status == 200 and me.json()["role"] == "operator" and me.json()["name"] == "alice", me
    viewer = named_token(d, "viewer", "vera")
    assert d.http(viewer).get("/v1/whoami").json()["role"] == "viewer"
    assert anon.get("/v1/whoami").status == 401
    # DELETE /v1/sketches/{id}: operators only; withdraws it (deleted, pixels gone), collect leaves it out
    sid = d.api.get("/v1/sketches?limit=1").json()["items"][0]["id"]
    assert d.http(viewer).request("DELETE", "/v1/sketches/%d" % sid).status == 403
    r = d.http(alice).request("DELETE", "/v1/sketches/%d" % sid)
    assert r.status == 200 and r.json() == {"kind": "sketch", "id": sid, "status": "deleted", "withdrawn": True}, r
    assert d.api.get("/v1/sketches/%d.png" % sid).status == 404
    assert d.http(alice).request("DELETE", "/v1/sketches/%d" % sid).status == 200
    assert [i["id"] for i in d.api.get("/v1/sketches?status=deleted").json()["items"]] == [sid]
    assert d.api.request("DELETE", "/v1/sketches/999999").status == 404
    pid = d.api.get("/v1/paintings?limit=1").json()["items"][0]["id"]
    assert d.api.request("DELETE", "/v1/sketches/%d" % pid).status == 404  # a painting is no sketch
    # the page hides writes from a viewer; the server refuses them anyway
    r = d.http(viewer).post("/v1/models/tiny/channels/production", {"action": "rollback", "reason": "x"})
    assert r.status == 403, r


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="%s is not installed" % CHROMIUM)
def test_dashboard_in_a_browser(system, pg, tmp_path):  # noqa: F811
    npm_ci()
    d = system
    # two versions, so production has something to roll back to: v1 from a
    # run in the background of this test, v2 from the run the browser starts
    apply_tiny(d, "tiny", seed=1)
    first = run_and_wait(d, "tiny", timeout=300)
    assert first["run"]["state"] == "succeeded", json.dumps(first, indent=1)[:3000]
    apply_tiny(d, "tiny", seed=2)
    alice = named_token(d, "operator", "alice")
    vera = named_token(d, "viewer", "vera")
    # two serving nodes as their heartbeats report them (an operator may post one), of
    # another model: a canary node of "tiny" would make its promote wait for canary evidence
    for hb in ({"node": "paint-1", "model": "house", "channel": "production", "version": 3, "requests": 1200,
                "errors": 3, "error_rate": 0.0025, "p50_ms": 41.0, "p95_ms": 87.5, "last_error": None},
               {"node": "paint-2", "model": "house", "channel": "canary", "version": 4, "requests": 80, "errors": 9,
                "error_rate": 0.1125, "p50_ms": 55.0, "p95_ms": 240.0, "last_error": "stylize: out of memory"}):
        assert d.api.post("/v1/nodes/heartbeat", hb).status == 200
    # v1 as if its gate had failed: the page must ask for the override
    pg.psql("UPDATE model_versions SET verdict = verdict || '{\"passed\": false}' WHERE model = 'tiny' AND version = 1",
            d.db_url)
    out = subprocess.run(["node", os.path.join(HERE, "dashboard.mjs"), d.url, alice, vera, str(tmp_path)],
                         cwd=HERE, capture_output=True, text=True, timeout=600)
    keep = os.path.join(BUILD, "test-artifacts", "dashboard")
    os.makedirs(keep, exist_ok=True)
    for f in os.listdir(str(tmp_path)):
        if f.endswith(".png"):
            shutil.copy(os.path.join(str(tmp_path), f), os.path.join(keep, f))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:] + "\n--- atelierd ---\n" + d.log()[-3000:]
    fig = json.loads(out.stdout.strip().splitlines()[-1])
    print("\ndashboard: screenshots in %s; %s" % (keep, json.dumps(fig)))
    assert fig["who"] == "alice" and fig["role"] == "operator", fig
    # seen live, without a reload: the row went through queued to succeeded
    assert fig["states"][0] in ("queued", "running") and fig["states"][-1] == "succeeded", fig["states"]
    assert "running" in fig["states"] or "queued" in fig["states"], fig["states"]
    run = d.api.get("/v1/runs/%d" % fig["run"]).json()
    assert fig["gantt_rows"] == len(run["stages"]) and fig["gantt_segments"] >= len(run["stages"]), fig
    assert fig["loss_points"] > 0 and fig["log_chars"] > 0, fig
    assert fig["rules"] >= 1 and fig["sample_images"] >= 3, fig
    # v2 was scored against v1: the paired changes, and scores shown with their intervals
    assert fig["paired_rows"] >= 4 and fig["interval_cells"] >= 3, fig
    assert fig["prod_before"] == "v2" and fig["prod_after_rollback"] == "v1", fig
    rows = fig["ledger"]
    assert {"actor": "alice", "reason": "ui rollback: bad samples"} in rows, rows
    assert {"actor": "alice", "reason": "ui promote: samples fixed"} in rows, rows
    assert fig["override_offered"] is True, fig
    assert {"actor": "alice", "reason": "override of a failed gate: ui override: compare on canary"} in rows, rows
    # the server's own ledger says the same
    ledger = d.api.get("/v1/models/tiny/ledger").json()["ledger"]
    assert [(e["kind"], e["channel"]) for e in ledger if e["actor"] == "alice"] == [
        ("rollback", "production"), ("promote", "production"), ("promote", "canary")], ledger
    sk = d.api.get("/v1/sketches/%d" % fig["deleted_sketch"]).json()
    assert sk["status"] == "deleted", sk
    # the Models page flags exactly the versions the API flags, with the API's count
    for v in d.api.get("/v1/models/tiny/versions").json()["versions"]:
        badge = fig["withdrawn_badges"][str(v["version"])]
        n = v["withdrawn_sketches"]
        assert badge == ("trained on %d withdrawn" % n if n else ""), (v["version"], n, badge)
    assert fig["fleet_rows"] == 2, fig
    assert fig["viewer_role"] == "viewer"
    assert all(n == 0 for n in fig["viewer_write_buttons"].values()), fig["viewer_write_buttons"]
    assert fig["forged_status"] == 403, fig
    assert all(px <= 0 for px in fig["overflow"].values()), fig["overflow"]
    assert not fig["errors"], fig["errors"]
