"""The `atelier` CLI's global flags: lib/config.c's settings table, as in every binary (no server needed:
a refused connection names the URL the CLI used)."""
import os
import subprocess

from conftest import BIN, free_port

CLI = os.path.join(BIN, "atelier")


def cli(*args, env=None):
    e = {k: v for k, v in os.environ.items() if k not in ("ATELIER_URL", "ATELIER_TOKEN")}
    e.update(env or {})
    return subprocess.run([CLI] + list(args), env=e, capture_output=True, text=True, timeout=30)


def test_cli_global_flags_are_a_settings_table():
    h = cli("--help")
    assert h.returncode == 0, h
    for flag, var in (("--url V", "[ATELIER_URL]"), ("--token V", "[ATELIER_TOKEN]"), ("--json", None)):
        line = next((l for l in h.stdout.splitlines() if l.lstrip().startswith(flag)), None)
        assert line and (var is None or var in line), (flag, h.stdout)
    assert "(default http://127.0.0.1:8080)" in h.stdout and "\ncommands:\n" in h.stdout
    assert cli("help").stdout == h.stdout
    for args, want in ((["--bogus", "pipelines"], "unknown option --bogus"),
                       (["-x", "pipelines"], "unknown option -x"),
                       (["--url"], "--url needs a value"),
                       (["--json=perhaps", "pipelines"], '--json: invalid value "perhaps"')):
        r = cli(*args)
        assert r.returncode == 2 and want in r.stderr, (args, r.stderr)
    # the environment sets the URL; --url (also as --url=) wins over it
    a, b = free_port(), free_port()
    r = cli("pipelines", env={"ATELIER_URL": "http://127.0.0.1:%d" % a})
    assert r.returncode != 0 and "127.0.0.1:%d/v1/pipelines" % a in r.stderr, r.stderr
    for args in (["--url", "http://127.0.0.1:%d" % b], ["--url=http://127.0.0.1:%d" % b]):
        r = cli(*args, "pipelines", env={"ATELIER_URL": "http://127.0.0.1:%d" % a})
        assert r.returncode != 0 and "127.0.0.1:%d/v1/pipelines" % b in r.stderr, (args, r.stderr)


# ---- subcommands against a real atelierd (local workers run the test-only stage kinds) ----

import json
import re

import pytest

import images
from conftest import ROOT, wait_until
from daemon import start_atelierd


@pytest.fixture
def d(db_url):
    daemon = start_atelierd(db_url, "--local-workers", "2", "--tick-ms", "200")
    daemon.op = daemon.token("operator")
    daemon.api = daemon.http(daemon.op)
    daemon.env = {"ATELIER_URL": daemon.url, "ATELIER_TOKEN": daemon.op}
    yield daemon
    assert daemon.stop() == 0, daemon.log()[-3000:]


def apply(d, name, stages):
    text = "pipeline: %s\nmodel: none\ntriggers:\n  manual: true\nstages:\n%s" % (name, stages)
    r = d.api.post("/v1/pipelines", text.encode(), headers={"Content-Type": "application/yaml"})
    assert r.status in (200, 201), r


def register(pg, d, model, data):
    """A model version as the train stage registers one (test_registry.py does the same)."""
    import hashlib
    sha = hashlib.sha256(data).hexdigest()
    os.makedirs(os.path.join(d.artifacts, "sha256", sha[:2]), exist_ok=True)
    with open(os.path.join(d.artifacts, "sha256", sha[:2], sha), "wb") as f:
        f.write(data)
    pg.psql("SELECT atelier_register_version('%s', '%s', %d, 'fs://x', NULL, NULL, NULL, '{}', '{}', NULL)"
            % (model, sha, len(data)), d.db_url)


def commands():
    """(name, positional usage) of every command, read from `atelier help` (the command table)."""
    out = cli("help").stdout
    rows = out[out.index("\ncommands:\n") + 11:].split("\n\n")[0].splitlines()
    names = []
    for row in rows:
        words = row.split("  ")[1].strip().split() if row.startswith("  ") else []
        name = [w for w in words if re.fullmatch(r"[a-z]+", w)]
        names.append(" ".join(name))
    assert "run" in names and "run show" in names and "logs" in names and "metrics" in names, names
    return names


def test_every_subcommand_help_runs_nothing(d, pg, tmp_path):
    apply(d, "p", "  a:\n    kind: noop\n")
    register(pg, d, "m", b"one" * 40)
    (tmp_path / "s.png").write_bytes(images.sketch(3))
    tokens = pg.psql("SELECT count(*) FROM api_tokens", d.db_url)
    # with the arguments each would act on: --help anywhere wins, and nothing happens
    real = {"run": ["p"], "import": [str(tmp_path)], "promote": ["m", "1"], "rollback": ["m"], "cancel": ["1"],
            "token create": ["--role", "viewer"], "synth": ["--count", "2"], "apply": ["-f", "/dev/null"],
            "samples": ["m", "1", "--out", str(tmp_path / "x")]}
    names = commands()
    for name in names:
        for args in ([], real.get(name, [])):
            for where in ("end", "start"):
                argv = name.split() + (args + ["--help"] if where == "end" else ["--help"] + args)
                r = cli(*argv, env=d.env)
                assert r.returncode == 0, (argv, r)
                assert r.stdout.startswith("usage: atelier %s" % name) and r.stderr == "", (argv, r)
                assert "--help" in r.stdout, r.stdout
    assert d.api.get("/v1/runs").json()["runs"] == [], "a --help started a run"
    assert pg.psql("SELECT count(*) FROM api_tokens", d.db_url) == tokens
    assert pg.psql("SELECT count(*) FROM sketches", d.db_url) == "0"
    assert pg.psql("SELECT count(*) FROM promotions", d.db_url) == "0"
    assert not (tmp_path / "x").exists()
    # a flag a command does not have is a usage error, not an argument ("run --bogus" is no pipeline)
    r = cli("run", "--bogus", env=d.env)
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr and "usage: atelier run" in r.stderr, r
    r = cli("runs", "--limit", env=d.env)
    assert r.returncode == 2 and "needs a value: --limit" in r.stderr, r
    assert d.api.get("/v1/runs").json()["runs"] == []


def test_version():
    r = cli("--version")
    assert r.returncode == 0 and r.stderr == "", r
    m = re.fullmatch(r"atelier (\d+\.\d+\.\d+) \((\S+)\)\n", r.stdout)
    assert m, r.stdout
    if os.path.exists(os.path.join(ROOT, ".git")):
        # git describe of the tree it was built from: at least the abbreviated commit
        assert re.search(r"[0-9a-f]{7}", m.group(2)), m.group(2)


def test_promote_ledger_reason_and_missing_version(d, pg):
    register(pg, d, "ux", b"first" * 40)
    register(pg, d, "ux", b"second" * 40)
    for args in (["promote", "ux", "9"], ["promote", "nomodel", "3"]):
        r = cli(*args, env=d.env)
        assert r.returncode == 1 and "no version %s" % args[2] in r.stderr, r
        assert "<NULL>" not in r.stderr + r.stdout, r.stderr
    r = cli("promote", "ux", "1", "--reason", "first light", env=d.env)
    assert r.returncode == 0 and "ux/production: (none) -> v1" in r.stdout, r
    assert cli("promote", "ux", "2", env=d.env).returncode == 0
    r = cli("rollback", "ux", "--reason=v2 draws mud", env=d.env)
    assert r.returncode == 0 and "v2 -> v1" in r.stdout, r
    led = cli("ledger", "ux", env=d.env)
    assert led.returncode == 0, led
    lines = led.stdout.splitlines()
    assert lines[0].split()[:5] == ["WHEN", "WHO", "ACTION", "CHANNEL", "FROM"], lines
    assert "first light" in lines[1] and "(none) -> v1" not in lines[1] and "- -> v1" in lines[1], lines
    assert "promote" in lines[1] and "production" in lines[1], lines
    assert "atelier promote" in lines[2] and "v1 -> v2" in lines[2], lines   # no --reason: the command
    assert "rollback" in lines[3] and "v2 draws mud" in lines[3] and "v2 -> v1" in lines[3], lines
    api = d.api.get("/v1/models/ux/ledger").json()["ledger"]
    assert [e["reason"] for e in api] == ["first light", "atelier promote", "v2 draws mud"]
    r = cli("ledger", "nomodel", env=d.env)
    assert r.returncode == 1 and "404" in r.stderr, r
    r = cli("promote", "ux", "2", "--channel", "staging", env=d.env)
    assert r.returncode == 2 and "--channel" in r.stderr, r


def test_runs_since_eta_and_watch(d):
    apply(d, "ok", "  a:\n    kind: sleep\n    params: { duration: 1500ms }\n")
    apply(d, "bad", "  a:\n    kind: fail\n    retries: 0\n    params: { message: broken }\n")
    ok = d.api.post("/v1/pipelines/ok/runs").json()["run"]
    r = cli("run", "show", str(ok), "--watch", env=d.env)
    assert r.returncode == 0 and "succeeded" in r.stdout, r
    assert "ETA" in r.stdout.splitlines()[1] or "ETA" in r.stdout.splitlines()[0], r.stdout
    bad = d.api.post("/v1/pipelines/bad/runs").json()["run"]
    r = cli("run", "show", str(bad), "--watch", env=d.env)
    assert r.returncode == 1 and "failed" in r.stdout, r
    for since in ("1h", "30m", "2d", "1w"):
        r = cli("runs", "--since", since, env=d.env)
        assert r.returncode == 0, (since, r)
        head, *rows = r.stdout.splitlines()
        assert "ETA" in head.split(), head
        assert sorted(int(x.split()[0]) for x in rows) == sorted([ok, bad]), (since, r.stdout)
    r = cli("runs", "--since", "2999-01-01", env=d.env)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1, r.stdout
    for bogus in ("bogus", "1y", "-1h", "2026-13-45"):
        r = cli("runs", "--since", bogus, env=d.env)
        assert r.returncode == 2, (bogus, r)
        assert '--since "%s"' % bogus in r.stderr and "duration" in r.stderr, r.stderr
        assert "syntax" not in r.stderr and "timestamp" not in r.stderr, r.stderr
    r = cli("run", "show", "abc", env=d.env)
    assert r.returncode == 2 and "run number" in r.stderr, r


def test_import_exits_nonzero_on_a_rejected_file(d, tmp_path):
    (tmp_path / "a.png").write_bytes(images.sketch(30))
    (tmp_path / "b.png").write_bytes(images.png(64, 64, lambda x, y: 255))   # blank: rejected
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")       # undecodable: rejected
    r = cli("import", str(tmp_path), env=d.env)
    assert r.returncode == 1, r
    assert "3 files: 1 accepted, 0 duplicate, 2 rejected" in r.stdout, r.stdout
    by_reason = [l for l in r.stdout.splitlines() if l.startswith("  rejected ")]
    assert len(by_reason) == 2 and any("ink" in l for l in by_reason), r.stdout
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.png").write_bytes(images.sketch(31))
    r = cli("import", str(good), env=d.env)
    assert r.returncode == 0 and "1 accepted" in r.stdout, r


def test_logs_against_this_atelierd(d):
    """Job logs need GET /v1/jobs/{id}/log: with it, the lines of the run's stage (paged, and followed with -f);
    without it, one clear sentence."""
    apply(d, "lg", "  a:\n    kind: sleep\n    params: { duration: 1200ms }\n  b:\n    kind: noop\n    needs: [a]\n")
    run = d.api.post("/v1/pipelines/lg/runs").json()["run"]
    f = cli("logs", str(run), "-f", env=d.env)   # with job logs: returns once the run has ended
    ended = d.api.get("/v1/runs/%d" % run).json()["run"]["state"] == "succeeded"
    wait_until(lambda: d.api.get("/v1/runs/%d" % run).json()["run"]["state"] == "succeeded", timeout=30,
               what="run to succeed")
    job = d.api.get("/v1/runs/%d" % run).json()["jobs"][0]["id"]
    r = cli("logs", str(run), env=d.env)
    if d.api.get("/v1/jobs/%d/log" % job).status == 404:
        for x in (r, f):
            assert x.returncode == 1 and "this atelierd has no job logs" in x.stderr, x
    else:
        assert r.returncode == 0 and f.returncode == 0 and ended, (r, f)
        lines = [l for l in r.stdout.splitlines() if "test.sleep" in l]
        assert lines and all(l.split()[0] == "a" for l in lines), r.stdout
        assert f.stdout == r.stdout, (f.stdout, r.stdout)
        one = cli("logs", str(run), "a", env=d.env)
        assert one.returncode == 0 and "test.sleep" in one.stdout and not one.stdout.startswith("a "), one
    r = cli("logs", str(run), "nostage", env=d.env)
    assert r.returncode == 1 and 'no stage "nostage"' in r.stderr, r
