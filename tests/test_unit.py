"""Runs every unit test program (tests/unit/test_*.c, built into
$ATELIER_BUILD/tests) as one pytest test each; the program's own output names
the failing assertion. A program prints "ok NAME" / "FAIL NAME" / "skip NAME"
per test case: one whose every case skipped is reported as skipped, and
skipped cases beside passing ones are named in a warning."""
import glob
import os
import subprocess
import warnings

import pytest

from conftest import BUILD

UNITS = sorted(glob.glob(os.path.join(BUILD, "tests", "test_*")))


def cases(stdout, verdict):
    return [line.split(" ", 1)[1] for line in stdout.splitlines() if line.startswith(verdict + " ")]


@pytest.mark.parametrize("prog", UNITS, ids=[os.path.basename(u) for u in UNITS])
def test_unit(prog, pg):
    env = dict(os.environ, ATELIER_TEST_DATABASE_URL=pg.url,
               ATELIER_SQL_DIR=os.path.join(os.path.dirname(BUILD), "sql"),
               ATELIER_ROOT=os.path.dirname(BUILD))
    r = subprocess.run([prog], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, "%s failed:\n%s\n%s" % (os.path.basename(prog), r.stdout, r.stderr)
    passed, skipped = cases(r.stdout, "ok"), cases(r.stdout, "skip")
    assert passed or skipped, "%s ran no test case:\n%s" % (os.path.basename(prog), r.stdout)
    reasons = [line for line in r.stderr.splitlines() if line.startswith("skip ")]
    if skipped and not passed:
        pytest.skip("; ".join(reasons) or "all %d cases skipped" % len(skipped))
    if skipped:
        warnings.warn("%s: %d case(s) skipped: %s" % (os.path.basename(prog), len(skipped),
                                                       "; ".join(reasons) or ", ".join(skipped)))


def test_unit_programs_were_built():
    assert UNITS, "no unit test programs under %s/tests — run make first" % BUILD
