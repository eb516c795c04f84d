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
