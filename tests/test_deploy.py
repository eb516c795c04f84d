"""The deployment files of deploy/ (docs/deploy.md), checked without a
container engine or a cluster (none runs here):

- deploy/k8s/*.yaml against the Kubernetes API schemas (kubernetes-models)
  and deploy/compose.yaml against the compose-spec JSON schema (the one
  dclint ships), both from tests/deploy/package-lock.json, installed with
  npm ci; a broken copy of each must fail, so the validators do check;
- every setting they give a program (environment variable or flag) is a row
  of that program's settings table (its --help, printed from lib/config.c
  tables), every probe and healthcheck path is a GET route of that program
  (`atelierd routes`, `atelier-serve routes`), and ports, Service selectors,
  ConfigMap/Secret references and the URLs the programs reach each other by
  agree;
- the pipelines ConfigMap is pipelines/*.yaml byte for byte, and the
  apply-pipelines Job's own script applies it to a real atelierd;
- deploy/with-secrets.sh (compose's entrypoint) turns secret files into
  variables; the Docker build context leaves out what git ignores."""
import json
import os
import re
import shutil
import subprocess
import tempfile
from urllib.parse import urlsplit

import pytest

from conftest import BIN, ROOT
from daemon import start_atelierd

HERE = os.path.join(ROOT, "tests", "deploy")
DEPLOY = os.path.join(ROOT, "deploy")
K8S = os.path.join(DEPLOY, "k8s")
COMPOSE = os.path.join(DEPLOY, "compose.yaml")
PROGRAMS = ("atelierd", "atelier-worker", "atelier-serve", "atelier")

# Read by libpq, not by a settings table: atelierd's and the worker's
# --database-url help says "else libpq's PG* variables".
LIBPQ_ENV = {"PGPASSWORD"}
# The S3 artifact store's (lib/artifact_s3.c, its own settings table): the
# usual AWS variables, and path-style addressing for MinIO.
S3_ENV = {"AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "ATELIER_S3_PATH_STYLE"}


def npm_ci():
    lock = json.load(open(os.path.join(HERE, "package-lock.json")))
    want = lock["packages"]["node_modules/kubernetes-models"]["version"]
    have = os.path.join(HERE, "node_modules", "kubernetes-models", "package.json")
    if os.path.exists(have) and json.load(open(have))["version"] == want and \
            os.path.exists(os.path.join(HERE, "node_modules", "dclint", "schemas", "compose.schema.json")):
        return
    for tool in ("node", "npm"):
        assert shutil.which(tool), "%s is not installed (Debian package nodejs)" % tool
    out = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def node(*args):
    out = subprocess.run(["node", os.path.join(HERE, "check.mjs")] + list(args), cwd=HERE, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def npm():
    npm_ci()


def k8s_files():
    return sorted(os.path.join(K8S, f) for f in os.listdir(K8S) if f.endswith(".yaml") and
                  f != "kustomization.yaml")


@pytest.fixture(scope="module")
def docs(npm):
    """{path: [document, ...]} for compose.yaml and every manifest, parsed by
    the same YAML library the schema check uses (anchors and merge keys
    resolved)."""
    return node("json", COMPOSE, os.path.join(K8S, "kustomization.yaml"), *k8s_files())


@pytest.fixture(scope="module")
def objects(docs):
    objs = []
    for f in k8s_files():
        objs += [d for d in docs[f] if d]
    return objs


@pytest.fixture(scope="module")
def compose(docs):
    return docs[COMPOSE][0]


# ---- the programs' own tables ----

def settings_of(program):
    """{"flags": {...}, "env": {...}} from `program --help`, which
    config_usage() prints from the settings table."""
    out = subprocess.run([os.path.join(BIN, program), "--help"], capture_output=True, text=True, timeout=30)
    text = out.stdout + out.stderr
    flags = set(re.findall(r"^\s+--([a-z0-9-]+)", text, re.M))
    env = set(re.findall(r"\[([A-Z][A-Z0-9_]+)\]\s*$", text, re.M))
    assert len(flags) >= 4 and env, "%s --help listed no settings:\n%s" % (program, text)
    return {"flags": flags, "env": env}


def routes_of(program):
    out = subprocess.run([os.path.join(BIN, program), "routes"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return {(m, p, a) for m, p, a in re.findall(r"^(\w+)\s+(\S+)\s+(\w+)", out.stdout, re.M)}


@pytest.fixture(scope="module")
def tables():
    return {p: settings_of(p) for p in PROGRAMS}


@pytest.fixture(scope="module")
def routes():
    return {p: routes_of(p) for p in ("atelierd", "atelier-serve")}


def program_of(command):
    """The Atelier program a container runs: build/bin/NAME in its command
    (a list, or a shell line)."""
    text = " ".join(command) if isinstance(command, list) else (command or "")
    names = set(re.findall(r"build/bin/([a-z-]+)", text))
    assert len(names) <= 1, "one program per container: %s" % text
    return names.pop() if names else None


def s3_sources():
    """The S3 store's source, where the tree has it."""
    p = os.path.join(ROOT, "lib", "artifact_s3.c")
    return open(p).read() if os.path.exists(p) else None


def check_env(program, names, tables, where):
    bad = []
    s3 = s3_sources()
    for n in names:
        if n in tables[program]["env"] or n in LIBPQ_ENV and program in ("atelierd", "atelier-worker"):
            continue
        if n in S3_ENV and program in ("atelierd", "atelier-worker"):
            # Checked against the store's source once the tree has it (it
            # reads each by name); before, the names are the issue's.
            if s3 is None or '"%s"' % n in s3:
                continue
        bad.append(n)
    assert not bad, "%s: %s reads no such setting: %s (see %s --help)" % (where, program, bad, program)


def check_flags(program, argv, tables, where):
    flags = [a[2:].split("=")[0] for a in argv if isinstance(a, str) and a.startswith("--")]
    bad = [f for f in flags if f not in tables[program]["flags"]]
    assert not bad, "%s: %s has no flag %s" % (where, program, bad)


def flag_value(argv, name):
    for i, a in enumerate(argv):
        if a == "--" + name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--%s=" % name):
            return a.split("=", 1)[1]
    return None


# ---- schemas ----

def test_k8s_manifests_pass_the_api_schemas(npm, docs):
    res = node("k8s", *k8s_files())
    assert res["errors"] == [], "\n".join(res["errors"])
    kinds = sorted(set(o.split()[1] for o in res["ok"]))
    for want in ("apps/v1/Deployment", "autoscaling/v2/HorizontalPodAutoscaler", "policy/v1/PodDisruptionBudget",
                 "v1/ConfigMap", "v1/Secret", "v1/Service", "batch/v1/Job"):
        assert want in kinds, "no %s among %s" % (want, kinds)
    # kustomization.yaml lists every manifest, and only those.
    kust = docs[os.path.join(K8S, "kustomization.yaml")][0]
    assert sorted(kust["resources"]) == sorted(os.path.basename(f) for f in k8s_files())


def test_the_schema_checks_can_fail(npm, tmp_path):
    """A wrong type in a manifest and an unknown key in the compose file are
    reported (else a validator that accepts anything would pass the test
    above)."""
    text = open(os.path.join(K8S, "atelierd.yaml")).read()
    assert "containerPort: 8080" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("containerPort: 8080", 'containerPort: "eighty"'))
    res = node("k8s", str(bad))
    assert any("containerPort" in e for e in res["errors"]), res
    text = open(COMPOSE).read()
    assert "stop_grace_period:" in text
    bad = tmp_path / "compose.yaml"
    bad.write_text(text.replace("stop_grace_period:", "stop_grace:"))
    res = node("compose", str(bad))
    assert any("stop_grace" in e for e in res["errors"]), res


def test_compose_passes_the_compose_spec_schema(npm):
    res = node("compose", COMPOSE)
    assert res["errors"] == [], "\n".join(res["errors"])


# ---- compose against the programs ----

def atelier_services(compose):
    """(name, service, program) for every service that runs an Atelier program."""
    out = []
    for name, svc in compose["services"].items():
        prog = program_of(svc.get("command"))
        if prog:
            assert svc.get("image") == "atelier:local", "%s runs %s from another image" % (name, prog)
            out.append((name, svc, prog))
    return out


def compose_env(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    names = set(env)
    # deploy/with-secrets.sh makes /run/secrets/NAME the variable NAME.
    for s in svc.get("secrets") or []:
        t = s.get("target", s["source"]) if isinstance(s, dict) else s
        if re.fullmatch(r"[A-Z][A-Z0-9_]*", t):
            names.add(t)
    return env, names


def test_compose_settings_exist(compose, tables):
    services = atelier_services(compose)
    progs = sorted(set(p for _, _, p in services))
    assert progs == ["atelier", "atelier-serve", "atelier-worker", "atelierd"], progs
    for name, svc, prog in services:
        env, names = compose_env(svc)
        check_env(prog, names, tables, "compose service " + name)
        if isinstance(svc["command"], list):
            check_flags(prog, svc["command"], tables, "compose service " + name)
        # Secrets reach the program only through the entrypoint that reads them.
        if svc.get("secrets"):
            assert svc.get("entrypoint") == ["deploy/with-secrets.sh"], name
    for key in ("pg_password", "s3_access_key", "s3_secret_key", "node_token", "operator_token"):
        assert key in compose["secrets"], key


def test_compose_topology_and_ports(compose, routes):
    svcs = compose["services"]
    atelierds = [n for n, s, p in atelier_services(compose) if p == "atelierd"]
    edges = [n for n, s, p in atelier_services(compose) if p == "atelier-serve"]
    assert len(atelierds) == 2 and len(edges) == 2, (atelierds, edges)
    for n in ("postgres", "s3"):
        assert n in svcs
    ports = {}
    for name, svc, prog in atelier_services(compose):
        env, _ = compose_env(svc)
        if prog == "atelierd":
            port = int(flag_value(svc["command"], "port") or env.get("ATELIER_PORT", 8080))
            # It must listen beyond the container's loopback.
            assert (flag_value(svc["command"], "host") or env.get("ATELIER_HOST")) == "0.0.0.0", name
            assert env["ATELIER_DATABASE_URL"].startswith("postgresql://")
            assert urlsplit(env["ATELIER_DATABASE_URL"]).hostname in svcs
            assert urlsplit(env["AWS_ENDPOINT_URL"]).hostname in svcs
        elif prog == "atelier-serve":
            port = int(env.get("ATELIER_SERVE_PORT", 8090))
            assert env.get("ATELIER_SERVE_HOST") == "0.0.0.0", name
            assert env.get("ATELIER_SERVE_NAME"), name
        else:
            continue
        ports[name] = port
        # Published ports land on the port the program listens on.
        for p in svc.get("ports") or []:
            assert int(str(p).rsplit(":", 1)[1]) == port, (name, p, port)
        # The healthcheck asks the program's own port for a public GET route.
        test = svc["healthcheck"]["test"]
        url = [t for t in test if t.startswith("http")][0]
        u = urlsplit(url)
        assert u.port == port, (name, url)
        table = routes["atelierd" if prog == "atelierd" else "atelier-serve"]
        assert ("GET", u.path, "public") in table, (name, u.path)
        assert u.path in ("/healthz", "/readyz")
    # Each edge follows atelierds of this file (a failover list), at the
    # ports they listen on.
    for name in edges:
        env, _ = compose_env(svcs[name])
        for url in env["ATELIER_SERVE_ATELIERD"].split(","):
            u = urlsplit(url)
            assert u.hostname in atelierds and u.port == ports[u.hostname], (name, u.geturl())
        assert any(str(v).startswith(name.replace("-", "") + ":") for v in svcs[name].get("volumes", [])), \
            "%s: the spool must be on a volume" % name
    # The one-shot pipeline service reaches atelierds of this file.
    for url in svcs["pipelines"]["environment"]["ATELIER_URL"].split(","):
        u = urlsplit(url)
        assert u.hostname in atelierds and u.port == ports[u.hostname], url
    # Workers reserve GPUs.
    w = [s for n, s, p in atelier_services(compose) if p == "atelier-worker"]
    assert w
    for s in w:
        devs = s["deploy"]["resources"]["reservations"]["devices"]
        assert any("gpu" in d["capabilities"] for d in devs), devs
        env, _ = compose_env(s)
        assert int(env["ATELIER_WORKER_GPUS"]) >= 1


# ---- k8s against the programs ----

def by_kind(objects, kind):
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def container_env(c, objects, where):
    """The variable names a container gets, with every ConfigMap/Secret it
    names resolved (and required to exist in the manifests)."""
    cms, secrets = by_kind(objects, "ConfigMap"), by_kind(objects, "Secret")
    names = {}
    for e in c.get("env") or []:
        names[e["name"]] = e.get("value")
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            s = secrets.get(ref["name"])
            assert s and ref["key"] in s.get("stringData", s.get("data", {})), "%s: no secret %s/%s" % (
                where, ref["name"], ref["key"])
    for src in c.get("envFrom") or []:
        if "configMapRef" in src:
            cm = cms.get(src["configMapRef"]["name"])
            assert cm, "%s: no ConfigMap %s" % (where, src["configMapRef"]["name"])
            names.update(cm["data"])
        if "secretRef" in src:
            s = secrets.get(src["secretRef"]["name"])
            assert s, "%s: no Secret %s" % (where, src["secretRef"]["name"])
            names.update(s.get("stringData", s.get("data", {})))
    return names


def pod_containers(objects):
    for kind in ("Deployment", "Job"):
        for name, o in by_kind(objects, kind).items():
            for c in o["spec"]["template"]["spec"]["containers"]:
                yield kind, name, o, c


def test_k8s_settings_exist(objects, tables):
    progs = set()
    for kind, name, o, c in pod_containers(objects):
        prog = program_of((c.get("command") or []) + (c.get("args") or []))
        assert prog, "%s %s runs no Atelier program" % (kind, name)
        progs.add(prog)
        where = "%s %s" % (kind, name)
        check_env(prog, container_env(c, objects, where), tables, where)
        check_flags(prog, c.get("args") or [], tables, where)
        assert c["image"] == "atelier", where  # kustomization.yaml's images: rewrites it
    assert progs == set(PROGRAMS), progs


def test_k8s_probes_ports_and_selectors(objects, routes):
    deps = by_kind(objects, "Deployment")
    assert deps["atelierd"]["spec"]["replicas"] == 2
    services = by_kind(objects, "Service")
    for kind, name, o, c in pod_containers(objects):
        if kind != "Deployment":
            continue
        prog = program_of((c.get("command") or []) + (c.get("args") or []))
        env = container_env(c, objects, name)
        cports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
        if prog == "atelierd":
            port = int(flag_value(c["args"], "port"))
            assert flag_value(c["args"], "host") == "0.0.0.0"
        elif prog == "atelier-serve":
            port = int(env["ATELIER_SERVE_PORT"])
            assert env["ATELIER_SERVE_HOST"] == "0.0.0.0"
        else:
            # The worker has no HTTP server: nothing to probe, no port.
            assert not cports and "livenessProbe" not in c and "readinessProbe" not in c
            gpu = c["resources"]
            assert gpu["limits"]["nvidia.com/gpu"] == gpu["requests"]["nvidia.com/gpu"] >= 1
            assert int(env["ATELIER_WORKER_GPUS"]) == gpu["limits"]["nvidia.com/gpu"]
            continue
        assert list(cports.values()) == [port], (name, cports, port)
        table = routes[prog]
        want = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
        for probe, path in want.items():
            g = c[probe]["httpGet"]
            assert g["path"] == path and ("GET", path, "public") in table, (name, probe)
            assert cports.get(g["port"], g["port"]) == port, (name, probe, g["port"])
        # A Service in front of it, selecting its pods, reaching its port.
        labels = o["spec"]["template"]["metadata"]["labels"]
        assert o["spec"]["selector"]["matchLabels"].items() <= labels.items()
        svc = [s for s in services.values() if s["spec"]["selector"].items() <= labels.items()]
        assert len(svc) == 1, name
        for p in svc[0]["spec"]["ports"]:
            assert cports.get(p["targetPort"], p["targetPort"]) == port
    # Every PodDisruptionBudget selects a Deployment's pods; the
    # autoscaler's target exists and requests CPU (utilization needs it).
    pdbs = by_kind(objects, "PodDisruptionBudget")
    covered = set()
    for pdb in pdbs.values():
        sel = pdb["spec"]["selector"]["matchLabels"]
        hit = [n for n, d in deps.items() if sel.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert hit, pdb["metadata"]["name"]
        covered.update(hit)
    assert {"atelierd", "atelier-serve"} <= covered
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    assert hpas
    for h in hpas.values():
        ref = h["spec"]["scaleTargetRef"]
        target = deps[ref["name"]]
        assert ref["kind"] == "Deployment" and h["spec"]["minReplicas"] >= 2
        for c in target["spec"]["template"]["spec"]["containers"]:
            assert "cpu" in c["resources"]["requests"]
    # The URLs the programs reach each other by name a Service and its port.
    for kind, name, o, c in pod_containers(objects):
        env = container_env(c, objects, name)
        for key in ("ATELIER_SERVE_ATELIERD", "ATELIER_URL"):
            for url in env.get(key, "").split(",") if key in env else []:
                u = urlsplit(url)
                assert u.hostname in services, (name, key, u.hostname)
                assert u.port in [p["port"] for p in services[u.hostname]["spec"]["ports"]], (name, key)
        if "ATELIER_DATABASE_URL" in env:
            assert env["ATELIER_DATABASE_URL"].startswith("postgresql://")


def test_pipelines_configmap_is_pipelines_and_applies(objects, pg, db_url, tmp_path):
    cm = by_kind(objects, "ConfigMap")["atelier-pipelines"]
    files = sorted(f for f in os.listdir(os.path.join(ROOT, "pipelines")) if f.endswith(".yaml"))
    assert sorted(cm["data"]) == files
    for f in files:
        assert cm["data"][f] == open(os.path.join(ROOT, "pipelines", f)).read(), \
            "deploy/k8s/pipelines.yaml's %s differs from pipelines/%s: run scripts/k8s-pipelines.sh" % (f, f)
    # The Job's own script, with its mount and build/bin pointed here.
    job = by_kind(objects, "Job")["atelier-apply-pipelines"]
    spec = job["spec"]["template"]["spec"]
    c = spec["containers"][0]
    mount = [m for m in c["volumeMounts"] if m["name"] == "pipelines"][0]["mountPath"]
    vol = [v for v in spec["volumes"] if v["name"] == "pipelines"][0]
    assert vol["configMap"]["name"] == "atelier-pipelines"
    for f in files:
        (tmp_path / f).write_text(cm["data"][f])
    assert c["command"][:2] == ["sh", "-c"]
    script = c["command"][2].replace(mount + "/", str(tmp_path) + "/").replace("build/bin/", BIN + "/")
    d = start_atelierd(db_url)
    try:
        env = dict(os.environ, ATELIER_URL=d.url, ATELIER_TOKEN=d.token("operator"))
        out = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        listed = d.http(env["ATELIER_TOKEN"]).get("/v1/pipelines").json()["pipelines"]
        assert len(listed) == len(files), listed
    finally:
        assert d.stop() == 0


# ---- compose's entrypoint, the Docker build context ----

def test_with_secrets_exports_secret_files(tmp_path):
    (tmp_path / "PGPASSWORD").write_text("s3cret pass\n")
    (tmp_path / "ATELIER_NODE_TOKEN").write_text("tok\r\n")
    (tmp_path / "pg_password").write_text("not a variable name")
    (tmp_path / "X-Y").write_text("nor this")
    out = subprocess.run([os.path.join(DEPLOY, "with-secrets.sh"), "env"], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "ATELIER_SECRETS_DIR": str(tmp_path)}, timeout=10)
    assert out.returncode == 0, out.stderr
    env = dict(l.split("=", 1) for l in out.stdout.splitlines() if "=" in l)
    assert env["PGPASSWORD"] == "s3cret pass" and env["ATELIER_NODE_TOKEN"] == "tok"
    assert "pg_password" not in env and "X-Y" not in env


def test_docker_context_leaves_out_what_git_ignores():
    """`COPY . .` must not carry a host's build/ into the image (make would
    then skip the build) nor var/ or node_modules: every .gitignore entry is
    in .dockerignore. The Dockerfile installs deps.txt as make deps does."""
    ignore = [l.strip().strip("/") for l in open(os.path.join(ROOT, ".dockerignore")) if l.strip() and
              not l.startswith("#")]
    for l in open(os.path.join(ROOT, ".gitignore")):
        l = l.strip()
        if l and not l.startswith("#"):
            pat = l.strip("/")
            assert pat in ignore or "**/" + pat in ignore, ".dockerignore lacks %s" % l
    df = open(os.path.join(ROOT, "docker", "Dockerfile")).read()
    assert "COPY deps.txt" in df and "deps.txt" in open(os.path.join(ROOT, "scripts", "deps.sh")).read()
    envs = [v for line in re.findall(r"^ENV (.*)$", df, re.M) for v in re.findall(r"([A-Z_]+)=", line)]
    assert "ATELIER_SERVE_HOST" in envs
    for var in envs:
        assert var == "DEBIAN_FRONTEND" or any(var in settings_of(p)["env"] for p in PROGRAMS), var


def test_the_cross_checks_can_fail(tables):
    """A setting no table has, a flag of another program and a route that is
    not there are refused."""
    with pytest.raises(AssertionError):
        check_env("atelierd", {"ATELIER_NO_SUCH_SETTING"}, tables, "t")
    with pytest.raises(AssertionError):
        check_env("atelier-serve", {"ATELIER_DATABASE_URL"}, tables, "t")  # atelierd's, not the node's
    with pytest.raises(AssertionError):
        check_flags("atelier-worker", ["--port", "8080"], tables, "t")
    check_flags("atelierd", ["--port", "8080"], tables, "t")
    assert ("GET", "/readyz", "public") in routes_of("atelier-serve")
    assert ("GET", "/livez", "public") not in routes_of("atelierd")
