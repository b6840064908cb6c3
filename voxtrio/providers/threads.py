"""The providers' thread runner: blocking inference off the trio thread.

Providers run blocking inference (ONNX, CTranslate2) through
:func:`run_in_worker`: a worker thread, bounded by the provider's
``CapacityLimiter``, so the event loop keeps pacing audio meanwhile.
Synchronous tools run here too (``abandon_on_cancel``: user code may block
for ever). A clock that must know when a worker is busy (the
:class:`voxtrio.clock.FastForwardClock`) derives from :class:`WorkerAwareClock`.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Any, Callable, Iterator, TypeVar

import trio
import trio.testing

T = TypeVar("T")


class WorkerAwareClock(trio.abc.Clock):
    """A clock told how many :func:`run_in_worker` calls are running."""

    busy_workers: int = 0


# Real seconds a worker may run on an autojumping MockClock before virtual
# time moves on without it (a worker that blocks must not stop every deadline).
MOCK_CLOCK_WORKER_HOLD = 0.25
# Per MockClock: how many workers hold its time, and its autojump threshold.
_mock_clock_holds: dict[trio.abc.Clock, list[Any]] = {}


class _Worker:
    """One call run in a worker thread, and whether its caller left it running.

    The class counts the workers abandoned by a cancelled caller and still
    running, in the whole process (threads are the process's)."""

    _lock = threading.Lock()
    abandoned = 0

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._fn, self._args = fn, args
        self._done = False
        self._left = False

    def __call__(self) -> Any:
        try:
            return self._fn(*self._args)
        finally:
            with _Worker._lock:
                self._done = True
                if self._left:
                    _Worker.abandoned -= 1

    def abandon(self) -> None:
        with _Worker._lock:
            if not self._done and not self._left:
                self._left = True
                _Worker.abandoned += 1


def abandoned_workers() -> int:
    """Worker threads whose caller was cancelled and left them running.

    A thread cannot be cancelled: a cancelled :func:`run_in_worker` with
    ``abandon_on_cancel`` returns at once and the thread runs on until its
    function returns. This counts those still running, in the whole process.
    """
    return _Worker.abandoned


async def run_in_worker(
    fn: Callable[..., T], *args: Any, limiter: trio.CapacityLimiter, abandon_on_cancel: bool = False
) -> T:
    """``trio.to_thread.run_sync(fn, *args)``, counted as busy by a WorkerAwareClock.

    By default the worker is never abandoned: a cancelled caller waits for it
    to finish (long-running functions poll ``trio.from_thread.check_cancelled()``).
    With ``abandon_on_cancel`` (user code, which may block for ever) a
    cancelled caller returns at once and the thread is counted by
    :func:`abandoned_workers` until it ends.

    On an autojumping ``MockClock`` virtual time stands still while the worker
    runs, as if its call were inline, so a test that uses one stays
    deterministic; after ``MOCK_CLOCK_WORKER_HOLD`` real seconds it moves on
    again (a worker that blocks must not hold every deadline back).
    """
    clock = trio.lowlevel.current_clock()
    counted = clock if isinstance(clock, WorkerAwareClock) else None
    if counted is not None:
        counted.busy_workers += 1
    worker = _Worker(fn, args)
    try:
        with _holding_virtual_time(clock):
            return await trio.to_thread.run_sync(worker, limiter=limiter, abandon_on_cancel=abandon_on_cancel)  # type: ignore[no-any-return]
    except trio.Cancelled:
        if abandon_on_cancel:
            worker.abandon()
        raise
    finally:
        if counted is not None:
            counted.busy_workers -= 1


@contextlib.contextmanager
def _holding_virtual_time(clock: trio.abc.Clock) -> Iterator[None]:
    if not isinstance(clock, trio.testing.MockClock) or (
        clock not in _mock_clock_holds and clock.autojump_threshold == math.inf
    ):
        yield  # not an autojumping MockClock
        return
    holds = _mock_clock_holds.get(clock)
    if holds is None:
        holds = _mock_clock_holds[clock] = [0, clock.autojump_threshold]
        clock.autojump_threshold = math.inf
    holds[0] += 1
    released = False

    def release() -> None:
        nonlocal released
        if released:
            return
        released = True
        holds[0] -= 1
        if holds[0] == 0:
            clock.autojump_threshold = holds[1]
            del _mock_clock_holds[clock]

    token = trio.lowlevel.current_trio_token()
    timer = threading.Timer(MOCK_CLOCK_WORKER_HOLD, lambda: _run_soon(token, release))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        release()


def _run_soon(token: trio.lowlevel.TrioToken, fn: Callable[[], None]) -> None:
    try:
        token.run_sync_soon(fn)
    except trio.RunFinishedError:
        pass
