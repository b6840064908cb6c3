"""Running model inference off the trio thread, and a clock that skips idle time.

Providers run blocking inference (ONNX, CTranslate2) through
:func:`run_in_worker`: a worker thread, bounded by the provider's
``CapacityLimiter``, so the event loop keeps pacing audio meanwhile.

:class:`FastForwardClock` is a trio clock for running a real-model
conversation "as fast as possible": while no worker is busy, every wait (a
transport pacing a file, the Speaker pacing playout, an endpointing delay)
jumps straight to its deadline; while a worker runs, time flows at the real
rate. So a conversation keeps exactly the order and the latencies it would
have live (model compute costs what it costs) and loses only the idle time
in between. It only works when every blocking call goes through
:func:`run_in_worker` (the offline providers' do) and nothing waits on the
outside world (a microphone, a network): use the real clock for those.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, TypeVar

import trio

T = TypeVar("T")


class FastForwardClock(trio.abc.Clock):
    def __init__(self) -> None:
        self._offset = 0.0
        self.busy_workers = 0
        self.skipped = 0.0
        """Seconds of idle time jumped over so far."""

    def start_clock(self) -> None:
        self._offset = -time.perf_counter()

    def current_time(self) -> float:
        return time.perf_counter() + self._offset

    def deadline_to_sleep_time(self, deadline: float) -> float:
        # trio asks this only when no task is runnable: the loop is idle.
        timeout = deadline - self.current_time()
        if timeout <= 0:
            return 0.0
        if self.busy_workers == 0 and not math.isinf(deadline):
            self._offset += timeout
            self.skipped += timeout
            return 0.0
        return timeout


async def run_in_worker(fn: Callable[..., T], *args: Any, limiter: trio.CapacityLimiter) -> T:
    """``trio.to_thread.run_sync(fn, *args)``, counted as busy by a FastForwardClock.

    The worker is never abandoned: a cancelled caller waits for it to finish
    (long-running functions poll ``trio.from_thread.check_cancelled()``).
    """
    clock = trio.lowlevel.current_clock()
    counted = clock if isinstance(clock, FastForwardClock) else None
    if counted is not None:
        counted.busy_workers += 1
    try:
        return await trio.to_thread.run_sync(fn, *args, limiter=limiter)
    finally:
        if counted is not None:
            counted.busy_workers -= 1
