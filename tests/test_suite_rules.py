"""The rules tests/conftest.py gives the suite, checked on a small suite of
their own in a separate pytest run: a hang fails its test and the run goes
on, --require-extras fails a missing package, --quick leaves out the slow
markers."""

import pathlib
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.thorough

HERE = pathlib.Path(__file__).parent

SUITE = '''
import pytest
import trio


async def test_deadlock(autojump_clock):
    await trio.Event().wait()  # nothing will ever set it


@pytest.mark.timeout(2)
async def test_spins(autojump_clock):
    while True:
        await trio.sleep(0)  # virtual time never moves


async def test_still_runs_after_them(autojump_clock):
    await trio.sleep(10)


def test_needs_a_missing_package():
    pytest.importorskip("no_such_package_anywhere")


@pytest.mark.property
def test_a_property():
    pass


@pytest.mark.thorough
def test_a_thorough_one():
    pass
'''


def run_suite(tmp_path, *options):
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_rules.py").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\ntimeout = 60\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *options],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    return {
        line.split()[1].split("::")[1]: line.split()[0]
        for line in result.stdout.splitlines()
        if line.split()[:1] in (["PASSED"], ["FAILED"]) and "::" in line
    }, result.stdout


def test_a_hang_fails_its_own_test_and_the_run_goes_on(tmp_path):
    outcomes, output = run_suite(tmp_path)
    assert outcomes == {
        "test_deadlock": "FAILED",
        "test_spins": "FAILED",
        "test_still_runs_after_them": "PASSED",
        "test_a_property": "PASSED",
        "test_a_thorough_one": "PASSED",
    }, output
    assert "SKIPPED [1] test_rules.py:21: could not import 'no_such_package_anywhere'" in output
    assert "still waiting after 600 s of virtual time: a deadlock" in output
    assert "ran for more than 1.8 s of real time and was cancelled" in output


def test_require_extras_fails_a_missing_package_and_quick_leaves_out_the_slow_markers(tmp_path):
    outcomes, output = run_suite(tmp_path, "--quick", "--require-extras", "-k", "not deadlock and not spins")
    assert outcomes == {"test_still_runs_after_them": "PASSED", "test_needs_a_missing_package": "FAILED"}, output
    assert "could not import 'no_such_package_anywhere'" in output
