"""The drawing page in a real browser (headless Debian Chromium driven by
playwright-core, tests/browser/): the real stack (atelierd, its workers and an
atelier-serve node following the production channel) trains a model with
pipelines/tiny.yaml, the page draws a house with the mouse and the default
pen, presses Paint, and the painting's edges must follow the drawing better
than the same drawing flipped or shifted: the structure survives serving's
sketch normalisation (lib/sketchnorm) and the model.

The screenshot, the sketch and the painting are kept in
$ATELIER_BUILD/test-artifacts/browser/ (the session's temporary folder is
removed when the tests pass); the path is printed."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import BUILD, ROOT
from test_e2e import run_and_wait, system  # noqa: F401  (the fixture)

SERVE = os.path.join(BUILD, "bin", "atelier-serve")
CHROMIUM = os.environ.get("ATELIER_CHROMIUM", "/usr/bin/chromium")
HERE = os.path.join(ROOT, "tests", "browser")

pytestmark = [
    pytest.mark.skipif(not os.path.exists(SERVE), reason="atelier-serve not built"),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason="%s is not installed (Debian package chromium, in deps.txt)" % CHROMIUM),
]


def npm_ci():
    """playwright-core from package-lock.json, once (npm ci when missing or
    not the locked version)."""
    lock = json.load(open(os.path.join(HERE, "package-lock.json")))
    want = lock["packages"]["node_modules/playwright-core"]["version"]
    have = os.path.join(HERE, "node_modules", "playwright-core", "package.json")
    if os.path.exists(have) and json.load(open(have))["version"] == want:
        return
    for tool in ("node", "npm"):
        assert shutil.which(tool), "%s is not installed (Debian package nodejs)" % tool
    out = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


# pipelines/tiny.yaml's 4 steps at 16 px paint noise with no drawing in it;
# the same pipeline with these train params learns enough to keep a drawing's
# structure (measured: see docs/serving.md, "Tests and bench").
SIZE = int(os.environ.get("ATELIER_BROWSER_SIZE", "32"))
STEPS = int(os.environ.get("ATELIER_BROWSER_STEPS", "150"))
LR = os.environ.get("ATELIER_BROWSER_LR", "0.001")


def apply_tiny_longer(d, name):
    text = open(os.path.join(ROOT, "pipelines/tiny.yaml")).read()
    for old, new in (("pipeline: tiny", "pipeline: " + name), ("size: 16", "size: %d" % SIZE),
                     ("steps: 4", "steps: %d" % STEPS), ("batch: 1", "batch: 2\n      lr: %s" % LR),
                     ("checkpoint_every: 2", "checkpoint_every: %d" % STEPS),
                     ("metrics_every: 1", "metrics_every: 10"), ("timeout: 5m", "timeout: 10m"),
                     ("gen_dim: 4", "gen_dim: 8")):
        assert old in text, old
        text = text.replace(old, new, 1)
    r = d.api.post("/v1/pipelines?filename=%s.yaml" % name, text.encode(), headers={"Content-Type": "application/yaml"})
    assert r.status in (200, 201), r


def test_draw_a_house_and_paint_it(system, tmp_path):  # noqa: F811
    from test_serve import start_node
    npm_ci()
    d = system
    node = start_node("--atelierd", d.url, "--token", d.token("node"), "--model", "tiny", "--channel",
                      "production", "--name", "browser-node")
    try:
        apply_tiny_longer(d, "tiny")
        r = run_and_wait(d, "tiny", timeout=600)
        assert r["run"]["state"] == "succeeded", json.dumps(r, indent=1)[:3000]
        node.wait_ready(timeout=60)
        out = subprocess.run(["node", os.path.join(HERE, "draw_house.mjs"), node.url, str(tmp_path)],
                             cwd=HERE, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr + "\n--- node log ---\n" + node.log()[-3000:]
        fig = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        node.stop()
    keep = os.path.join(BUILD, "test-artifacts", "browser")
    os.makedirs(keep, exist_ok=True)
    for name in ("house_page.png", "house_sketch.png", "house_painting.png"):
        shutil.copy(os.path.join(str(tmp_path), name), os.path.join(keep, name))
    print("\nbrowser test: screenshot %s (kept as %s); figures %s"
          % (fig["screenshot"], os.path.join(keep, "house_page.png"), json.dumps(fig)))
    assert fig["pen"] == 4, fig  # the page's default pen
    assert fig["drawn_pixels"] > 2000, fig
    # the crop is the house's square, not the whole canvas
    assert 200 < fig["crop"][2] < 400, fig
    # the painting's edges follow the drawing: nearer to it than to the same
    # drawing shifted or turned upside down. (Whether the model paints the
    # lines darker or lighter than their surroundings depends on what it
    # learnt: line_contrast is printed, not asserted; with the synthetic world
    # of atelier synth it came out -1.9 to +20 across data changes.)
    assert fig["chamfer"] < 0.8 * fig["chamfer_shifted"], fig
    assert fig["chamfer"] < 0.8 * fig["chamfer_flipped"], fig
