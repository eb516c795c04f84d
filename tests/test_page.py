"""The drawing page's layout and behaviour in a real browser (headless Debian
Chromium driven by tests/browser/page.mjs), against a real atelier-serve with
an untrained model and contributions on (its atelierd unreachable: nothing
leaves the spool). At 1280x800 and at a phone's 390x844: nothing overflows
the viewport, and on the phone the painting and Paint share the first screen
with the canvas; the viewport does not block zoom; Ctrl+Z typed in the Name
field leaves the strokes (on the canvas it undoes one); Clear empties the
painting; a new style sends one new /api/stylize request; a sketch with too
little ink is refused by the node (422, the reason) and the page says why;
the download links yield a JPEG and a PNG.

Screenshots of both sizes before and after painting are kept in
$ATELIER_BUILD/test-artifacts/page/."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import BUILD, free_port
from test_browser import CHROMIUM, HERE, SERVE, npm_ci
from test_serve import models, start_node  # noqa: F401  (the fixture)

pytestmark = [
    pytest.mark.skipif(not os.path.exists(SERVE), reason="atelier-serve not built"),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason="%s is not installed (Debian package chromium, in deps.txt)" % CHROMIUM),
]

SHOTS = ["desktop_before.png", "desktop_after.png", "phone_before.png", "phone_after.png", "phone_large.png",
         "desktop_refused.png"]


def within(inner, box, height):
    return box["left"] >= 0 and box["right"] <= inner and box["top"] >= 0 and box["bottom"] <= height


def test_page_layout_and_behaviour(models, tmp_path):  # noqa: F811
    npm_ci()
    port = free_port()  # atelierd configured but unreachable: contributions are on, nothing leaves
    node = start_node("--model-file", models[0], "--atelierd", "http://127.0.0.1:%d" % port, "--token", "x",
                      "--retry-max", "30").wait_ready()
    try:
        out = subprocess.run(["node", os.path.join(HERE, "page.mjs"), node.url, str(tmp_path)],
                             cwd=HERE, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr + "\n--- node log ---\n" + node.log()[-3000:]
        facts = json.loads(out.stdout.strip().splitlines()[-1])
        spool_depth = node.info()["spool_depth"]
    finally:
        assert node.stop() == 0
    keep = os.path.join(BUILD, "test-artifacts", "page")
    os.makedirs(keep, exist_ok=True)
    for name in SHOTS:
        shutil.copy(os.path.join(str(tmp_path), name), os.path.join(keep, name))
    print("\npage test: screenshots in %s" % keep)

    for size in ("desktop", "phone"):
        f = facts[size]
        assert f["first_paint"] == "done" and f["result_shown"], (size, f)
        for when in ("before", "after"):
            lay = f[when]
            # no horizontal scroll, no element past either edge
            assert lay["scrollWidth"] <= lay["innerWidth"], (size, when, lay)
            assert lay["over"] == [], (size, when, lay["over"])
            # zoom is the reader's: no maximum-scale, no user-scalable=no
            assert "maximum-scale" not in lay["viewport"] and "user-scalable" not in lay["viewport"], lay
            assert lay["icon"].endswith("/favicon.svg"), lay
        assert f["stylize"] >= 1, f
        assert f["large_shown"] and f["large_closed"], f
    phone = facts["phone"]["after"]
    # sketch, Paint and painting on the phone's first screen, side by side with nothing hidden
    for part in ("pad", "paint", "out"):
        assert within(phone["innerWidth"], phone[part], phone["innerHeight"]), (part, phone)
    assert phone["out"]["width"] >= 120, phone  # a painting one can see, not an icon
    assert phone["pad"]["width"] >= 0.85 * phone["innerWidth"], phone  # the canvas takes the width

    d = facts["desktop"]
    assert d["ink_before_ctrlz"] > 1000, d
    assert d["ink_after_ctrlz_in_name"] == d["ink_before_ctrlz"], d
    assert 0 < d["ink_after_ctrlz_on_canvas"] < d["ink_before_ctrlz"], d
    assert d["stale_after_undo"] is True, d
    # two keys typed into the style: one repaint, after the pause
    assert d["stylize_after_style_change"] == 1, d
    assert d["repaint_state"] == "done" and d["stale_after_repaint"] is False, d
    assert d["download-jpeg"]["image"] and d["download-jpeg"]["name"].endswith(".jpg"), d
    assert d["download-png"]["image"] and d["download-png"]["name"].endswith(".png"), d
    assert d["after_clear"] == {"src": None, "downloads_hidden": True}, d
    assert d["ink_after_clear"] == 0, d
    # a 1-px dot: refused by the node with atelierd's own reason, and the page says so
    c = d["contribute"]
    assert c["status"] == 422, c
    assert c["body"]["error"] == "sketch rejected: ink ratio out of range", c
    assert c["body"]["detail"]["ink_ratio"] < c["body"]["detail"]["min_ink"] == 0.002, c
    assert "blank" in c["body"]["detail"]["reason"], c
    assert "too little ink" in d["contribute_message"] and "ink ratio" in d["contribute_message"], d
    assert "error" in d["contribute_message_class"], d
    assert spool_depth == 0  # nothing refused was spooled
