"""Runs every unit test program (tests/unit/test_*.c, built into
$ATELIER_BUILD/tests) as one pytest test each; the program's own output names
the failing assertion."""
import glob
import os
import subprocess

import pytest

from conftest import BUILD

UNITS = sorted(glob.glob(os.path.join(BUILD, "tests", "test_*")))


@pytest.mark.parametrize("prog", UNITS, ids=[os.path.basename(u) for u in UNITS])
def test_unit(prog, pg):
    env = dict(os.environ, ATELIER_TEST_DATABASE_URL=pg.url,
               ATELIER_SQL_DIR=os.path.join(os.path.dirname(BUILD), "sql"),
               ATELIER_ROOT=os.path.dirname(BUILD))
    r = subprocess.run([prog], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, "%s failed:\n%s\n%s" % (os.path.basename(prog), r.stdout, r.stderr)


def test_unit_programs_were_built():
    assert UNITS, "no unit test programs under %s/tests — run make first" % BUILD
