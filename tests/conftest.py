"""Shared fixtures: every trio test checks that nothing outlives session.main."""

from __future__ import annotations

import inspect

import pytest
import trio

from voxtrio.session import AgentSession


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


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--slow"):
        skip = pytest.mark.skip(reason="a real-model test: run with --slow (scripts/test does)")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
    # Every trio test gets the leak check (sync tests cannot take trio fixtures).
    for item in items:
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            item.fixturenames.append("no_task_outlives_session")


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
