"""`make run`'s secrets: the embedded PostgreSQL cluster (scripts/pgctl.sh) trusts no one, not even on
127.0.0.1, and scripts/run.sh puts no token or password on a command line (any local user reads every
process's argv in ps). Issue 14: with `trust`, any user on the machine could connect as the superuser and
mint an operator token."""
import os
import signal
import stat
import subprocess
import tempfile
import urllib.request

from conftest import BIN, ROOT, free_port, wait_until

PGCTL = os.path.join(ROOT, "scripts/pgctl.sh")


def pgctl(*args, env=None):
    return subprocess.run([PGCTL] + list(args), check=True, capture_output=True, text=True,
                          env=env or dict(os.environ, PG_FSYNC="off")).stdout.strip()


def psql(url, passfile, sql="SELECT current_user"):
    """psql as any client would: no password of its own, only what passfile (or nothing) gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSFILE"] = passfile or "/nonexistent"
    return subprocess.run(["psql", url, "-qAtX", "-w", "-c", sql], env=env, capture_output=True, text=True,
                          timeout=30)


def hba_lines(cluster):
    with open(os.path.join(os.path.realpath(cluster), "data", "pg_hba.conf")) as f:
        return [l.split() for l in f if l.strip() and not l.lstrip().startswith("#")]


def assert_locked(cluster):
    """No trust line; without the password TCP and the socket are refused; with the file they work."""
    lines = hba_lines(cluster)
    assert lines and all(l[-1] == "scram-sha-256" for l in lines), lines
    tcp, sock, passfile = pgctl("url", cluster), pgctl("socket-url", cluster), pgctl("passfile", cluster)
    assert ":" not in tcp.split("@")[0].split("//")[1], "password in the URL: " + tcp
    for url in (tcp, sock):
        r = psql(url, None)
        assert r.returncode != 0 and "password" in r.stderr, (url, r)
        r = psql(url, passfile)
        assert r.returncode == 0 and r.stdout.strip() == "atelier", (url, r)
    st = os.stat(passfile)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert stat.S_IMODE(os.stat(os.path.dirname(passfile)).st_mode) == 0o700
    # a wrong password is refused too (scram-sha-256 checks it, trust would not)
    wrong = passfile + ".wrong"
    with open(wrong, "w") as f:
        f.write("*:*:*:atelier:not-the-password\n")
    os.chmod(wrong, 0o600)
    r = psql(tcp, wrong)
    assert r.returncode != 0 and "password authentication failed" in r.stderr, r


def test_embedded_cluster_needs_its_password():
    base = tempfile.mkdtemp(prefix="atelier-pgauth-")
    os.chmod(base, 0o755)  # the postgres user must reach the cluster inside
    cluster = os.path.join(base, "pg")
    try:
        pgctl("start", cluster)
        assert_locked(cluster)
        # A cluster made by the old pgctl.sh (initdb --auth=trust, no pgpass) is locked at its next start.
        pgctl("stop", cluster)
        real = os.path.realpath(cluster)
        hba = os.path.join(real, "data", "pg_hba.conf")
        with open(hba) as f:
            text = f.read()
        with open(hba, "w") as f:
            f.write(text.replace("scram-sha-256", "trust"))
        os.unlink(os.path.join(real, "pgpass"))
        assert psql(pgctl("url", cluster), None).returncode != 0  # stopped
        pgctl("start", cluster)
        assert_locked(cluster)
    finally:
        pgctl("stop", cluster)


def assert_no_argv_has(secrets):
    """No process on the machine has a secret in its argv (/proc/PID/cmdline: what ps shows anyone)."""
    seen = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if "atelier-serve" in argv or "atelierd" in argv or "postgres" in argv:
            seen += 1
        for what, s in secrets.items():
            assert s not in argv, "%s in the command line of pid %s: %r" % (what, pid, argv)
    assert seen >= 3, seen


def test_run_sh_keeps_secrets_off_command_lines():
    """scripts/run.sh (`make run` without the build) with its embedded cluster in a temp var/, no local
    workers (no training): every process's argv is free of the tokens and the database password."""
    var = tempfile.mkdtemp(prefix="atelier-var-")
    os.chmod(var, 0o755)
    port, serve_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PG") and k not in ("ATELIER_DATABASE_URL", "ATELIER_TOKEN", "ATELIER_NODE_TOKEN")}
    env.update(ATELIER_VAR=var, ATELIER_PORT=str(port), ATELIER_SERVE_PORT=str(serve_port),
               ATELIER_LOCAL_WORKERS="0", ATELIER_SYNTH_COUNT="4", PG_FSYNC="off")
    log = os.path.join(var, "run.out")
    with open(log, "wb") as out:
        p = subprocess.Popen([os.path.join(ROOT, "scripts/run.sh")], env=env, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        def up():
            assert p.poll() is None, open(log).read()
            return "Atelier is up." in open(log).read()
        wait_until(up, timeout=180, interval=0.5, what="scripts/run.sh to print its URLs")
        secrets = {}
        for name in ("operator.token", "node.token"):
            with open(os.path.join(var, name)) as f:
                secrets[name] = f.read().strip()
            assert stat.S_IMODE(os.stat(os.path.join(var, name)).st_mode) == 0o600
        # atelierd and the serving node run: the node refuses to start without its token (environment now)
        if os.access(os.path.join(BIN, "atelier-serve"), os.X_OK):  # run.sh starts it where it is built
            wait_until(lambda: urllib.request.urlopen("http://127.0.0.1:%d/healthz" % serve_port, timeout=5).read(),
                       timeout=60, interval=0.5, what="the serving node to listen")
        urllib.request.urlopen("http://127.0.0.1:%d/readyz" % port, timeout=10).read()
        assert_no_argv_has(secrets)
        cluster = os.path.join(var, "pg")
        with open(pgctl("passfile", cluster)) as f:
            secrets["database password"] = f.read().strip().rsplit(":", 1)[1]
        assert all(len(s) >= 16 for s in secrets.values()), secrets
        assert_no_argv_has(secrets)
        assert_locked(cluster)
        # what it prints names the password file, not the password
        assert secrets["database password"] not in open(log).read()
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)  # its trap stops the node, atelierd and the cluster
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        pgctl("stop", os.path.join(var, "pg"))
