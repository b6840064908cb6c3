"""The Planner's tasks: counted (a run waits for them) and the user code they run."""

from __future__ import annotations

import contextlib
import itertools
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator

import trio

from ..._sync import Flag
from ...errors import StopResponse
from ...events import ErrorEvent, EventBus
from ...state import SessionState
from ...context import current_caller, current_worker

if TYPE_CHECKING:
    from ...agent import Agent

logger = logging.getLogger("voxtrio.planner")


class Workers:
    """Starts the Planner's tasks in its nursery and publishes how busy it is.

    ``SessionState.planner_busy`` is the number of tasks running minus those
    parked: waiting for an AgentTask that waits for the user (a run does not
    wait for the user's next turn). Invariant: ``idle`` is set exactly when
    no task runs.
    """

    def __init__(self, *, state: SessionState, bus: EventBus) -> None:
        self._state = state
        self._bus = bus
        # The Planner's nursery (set by open(), before any task starts).
        self._nursery: trio.Nursery | None = None
        # Tasks started by start() and still running.
        self._running = 0
        # Set while none runs (what a drain waits for).
        self.idle = Flag(True)
        # The number of each task, for park() (current_worker inside it).
        self._worker_ids = itertools.count(1)
        # Per task: how many AgentTasks it waits for right now.
        self._parked: dict[int, int] = {}
        # Keys of SessionState.running_user_code.
        self._user_code_ids = itertools.count(1)

    def open(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def start(self, coroutine: Awaitable[None], name: str) -> None:
        """Run ``coroutine`` as a counted task."""
        assert self._nursery is not None
        self._running += 1
        self.idle.clear()
        self._update_busy()
        worker = next(self._worker_ids)

        async def wrapper() -> None:
            current_worker.set(worker)
            try:
                await coroutine
            finally:
                self._running -= 1
                self._parked.pop(worker, None)
                if self._running == 0:
                    self.idle.set()
                self._update_busy()

        self._nursery.start_soon(wrapper, name=name)

    def start_uncounted(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None) -> None:
        """Run a task a run does not wait for (the session bounds it at close)."""
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args, name=name)

    def park(self, worker: int | None, delta: int) -> None:
        """A task waits for (or stops waiting for) an AgentTask that waits for the user."""
        if worker is None:
            return
        self._parked[worker] = self._parked.get(worker, 0) + delta
        self._update_busy()

    def _update_busy(self) -> None:
        parked = sum(1 for count in self._parked.values() if count > 0)
        self._state.planner_busy = self._running - parked
        self._state.update_idle()

    @contextlib.contextmanager
    def user_code(self, name: str) -> Iterator[None]:
        """Publish that user code runs (the close deadline names it)."""
        key = next(self._user_code_ids)
        self._state.running_user_code[key] = name
        try:
            yield
        finally:
            del self._state.running_user_code[key]

    async def run_user_code(self, name: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run user code: its failure is an error event, not the Planner's."""
        with self.user_code(name):
            try:
                return await fn()
            except StopResponse:
                raise
            except Exception as error:
                logger.exception("%s raised", name)
                self._bus.emit(
                    ErrorEvent(source="agent", message=f"{name} raised {error!r}", recoverable=True, error=error)
                )
                return None

    async def run_hook(self, name: str, hook: Callable[[], Awaitable[None]], agent: Agent | None = None) -> None:
        """Run on_enter or on_exit: user code that may await an AgentTask."""
        token = current_caller.set(agent)
        try:
            await self.run_user_code(name, hook)
        finally:
            current_caller.reset(token)
