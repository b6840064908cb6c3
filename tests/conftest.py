"""Shared fixtures and the suite's rules.

- Every trio test checks that nothing outlives session.main.
- Every trio test runs under two deadlines, so a hang fails that test instead
  of the whole run: ``VIRTUAL_DEADLINE`` on trio's MockClock (a deadlock there
  has no deadline pending, so nothing else would ever wake it; with this one,
  autojump reaches it at once), and a real-time limit a little shorter than
  the test's pytest-timeout (a loop that never lets virtual time move), which
  cancels the test cleanly. A test that waits for another process on the
  autojumping clock (which would jump straight to the virtual deadline) is
  marked ``real_io`` and keeps only the real-time limit. pytest-timeout itself (``timeout`` in
  pyproject.toml, ``@pytest.mark.timeout(s)`` per test) is the last resort
  for everything else.
- Markers: ``slow`` (the real models: run with ``--slow``), ``property`` (the
  generated conversations of the property harness) and ``thorough`` (other
  model-free tests that take seconds). ``--quick`` leaves out all three.
- ``--require-extras`` (scripts/test passes it) makes a test that would be
  skipped for a missing optional package (``pytest.importorskip``) fail.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import threading

import pytest
import trio
import trio.testing

from voxtrio.faults import FAULTS, Faults
from voxtrio.session import AgentSession

# No unit-test conversation lasts anywhere near this long in virtual time.
VIRTUAL_DEADLINE = 600.0
# The clean real-time stop of a trio test comes this much before pytest-timeout's.
REAL_TIME_SHARE = 0.9


class SessionTaskTracker(trio.abc.Instrument):
    """Watches every task started under a running ``AgentSession.main``.

    When a ``main`` task exits, every task spawned beneath it must already have
    exited; anything still alive is a leak and fails the test.
    """

    def __init__(self) -> None:
        self.children: dict[trio.lowlevel.Task, set[trio.lowlevel.Task]] = {}
        self.leaks: list[str] = []

    def _root_of(self, task: trio.lowlevel.Task) -> trio.lowlevel.Task | None:
        if task in self.children:
            return task
        for root, children in self.children.items():
            if task in children:
                return root
        nursery = task.parent_nursery
        while nursery is not None:
            parent = nursery.parent_task
            if parent in self.children:
                return parent
            nursery = parent.parent_nursery
        return None

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        code = getattr(task.coro, "cr_code", None)
        if code is AgentSession.main.__code__:
            self.children[task] = set()
            return
        # Whoever spawned it (even into a nursery the session does not own) or
        # whatever nursery it lives in ties it to a session.
        try:
            spawner: trio.lowlevel.Task | None = trio.lowlevel.current_task()
        except RuntimeError:
            spawner = None
        root = self._root_of(spawner) if spawner is not None else None
        root = root or self._root_of(task)
        if root is not None:
            self.children[root].add(task)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        for children in self.children.values():
            children.discard(task)
        leftover = self.children.pop(task, None)
        if leftover:
            self.leaks.extend(sorted(t.name for t in leftover))


def pytest_addoption(parser):
    parser.addoption(
        "--slow",
        action="store_true",
        help="also run the tests marked slow (real models: needs voxtrio[local] and the model packages)",
    )
    parser.addoption(
        "--quick",
        action="store_true",
        help="the quick loop: leave out the tests marked slow, property and thorough",
    )
    parser.addoption(
        "--require-extras",
        action="store_true",
        help="a test skipped because an optional package is missing (importorskip) fails instead",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs the real offline models (needs voxtrio[local]); skipped unless --slow")
    config.addinivalue_line("markers", "property: plays generated conversations (hypothesis); left out by --quick")
    config.addinivalue_line("markers", "thorough: model-free but takes seconds; left out by --quick")
    config.addinivalue_line(
        "markers", "real_io: waits for another process on the autojumping clock: no virtual deadline"
    )


_MODULE_MARKS = re.compile(r"^pytestmark = (\[[^\]]*\]|.*)", re.M)


def pytest_ignore_collect(collection_path, config):
    """--quick does not even import a module whose tests are all thorough (some
    import a heavy package: mcp, a browser driver)."""
    if config.getoption("--quick") and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        marks = _MODULE_MARKS.search(collection_path.read_text())
        if marks is not None and "mark.thorough" in marks.group(1):
            return True
    return None


@pytest.hookimpl(trylast=True)  # after pytest-trio has marked the trio tests
def pytest_collection_modifyitems(config, items):
    if config.getoption("--quick"):
        kept = [item for item in items if not {"slow", "property", "thorough"} & set(item.keywords)]
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
    elif not config.getoption("--slow"):
        skip = pytest.mark.skip(reason="a real-model test: run with --slow (scripts/test does)")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
    for item in items:
        if "property" in item.keywords and item.get_closest_marker("timeout") is None:
            # Two seconds an example, so the deep profile is not cut off.
            item.add_marker(pytest.mark.timeout(max(300, 2 * settings.default.max_examples)))
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            # Every trio test gets the leak check (sync tests cannot take trio fixtures)
            # and the deadlines.
            item.fixturenames.append("no_task_outlives_session")
            run = functools.partial(
                run_with_deadlines,
                virtual_deadline=None if "real_io" in item.keywords else VIRTUAL_DEADLINE,
                real_time_limit=_real_time_limit(item),
            )
            item.add_marker(pytest.mark.trio(run=run), append=False)


def _real_time_limit(item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        limit = marker.args[0]
    else:
        limit = item.config.getoption("timeout", None) or item.config.getini("timeout")
    limit = float(limit or 0)
    return limit * REAL_TIME_SHARE if limit > 0 else math.inf


class TestRanTooLong(Exception):
    """A trio test went past its real-time limit (virtual time stood still?)."""


def run_with_deadlines(fn, *, clock=None, instruments=(), virtual_deadline=None, real_time_limit=math.inf):
    """``trio.run(fn)`` with the two deadlines of a trio test (see the module docstring)."""

    async def guarded():
        real_time = trio.CancelScope()
        token = trio.lowlevel.current_trio_token()

        def expire():
            try:
                token.run_sync_soon(real_time.cancel)
            except trio.RunFinishedError:
                pass

        timer = threading.Timer(real_time_limit, expire) if math.isfinite(real_time_limit) else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            with real_time:
                if virtual_deadline is not None and isinstance(clock, trio.testing.MockClock):
                    with trio.fail_after(virtual_deadline):
                        return await fn()
                return await fn()
        except trio.TooSlowError:
            # (The Cancelled it replaces shows where the test was waiting.)
            raise trio.TooSlowError(
                f"the test was still waiting after {virtual_deadline:g} s of virtual time: "
                "a deadlock (every task waits and no deadline is pending)"
            )
        finally:
            if timer is not None:
                timer.cancel()
        raise TestRanTooLong(
            f"the test ran for more than {real_time_limit:g} s of real time and was cancelled "
            "(a loop that never sleeps keeps virtual time from moving)"
        )

    return trio.run(guarded, clock=clock, instruments=instruments)


def _missing_package(report) -> str | None:
    """The reason of a skip made by pytest.importorskip, or None."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason if "could not import" in reason else None


def _fail_if_a_package_is_missing(config, report) -> None:
    if report.skipped and config.getoption("--require-extras"):
        reason = _missing_package(report)
        if reason is not None:
            report.outcome = "failed"
            report.longrepr = f"{reason}\n(--require-extras: every optional package should be installed here)"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_if_a_package_is_missing(collector.config, outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_if_a_package_is_missing(item.config, outcome.get_result())


@pytest.fixture(autouse=True)
def no_fault_left_switched_on():
    """A deliberate bug of voxtrio.faults is on only in the test that asks for it."""
    assert FAULTS == Faults(), f"a fault is still switched on: {FAULTS}"
    yield
    assert FAULTS == Faults(), f"the test left a fault switched on (use monkeypatch): {FAULTS}"


@pytest.fixture
async def no_task_outlives_session():
    tracker = SessionTaskTracker()
    trio.lowlevel.add_instrument(tracker)
    try:
        yield tracker
    finally:
        trio.lowlevel.remove_instrument(tracker)
    assert not tracker.leaks, f"tasks outlived session.main: {tracker.leaks}"


# -- hypothesis profiles for the conversation harness (tests/test_conversations.py) --
# "ci" (the default) runs a few hundred generated conversations, the same ones
# every time; "--hypothesis-profile=deep" runs thousands of fresh ones. Both leave
# out hypothesis's own shrink phase: check_conversation shrinks the failing
# scenario itself (voxtrio.testing.shrinking), which reads far better.
from hypothesis import HealthCheck, Phase, settings  # noqa: E402

_CONVERSATION_SETTINGS = dict(
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large),
)
settings.register_profile("ci", max_examples=200, derandomize=True, database=None, **_CONVERSATION_SETTINGS)
settings.register_profile("deep", max_examples=2500, **_CONVERSATION_SETTINGS)
settings.load_profile("ci")
