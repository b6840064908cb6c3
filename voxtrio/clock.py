"""A clock that skips idle time.

:class:`FastForwardClock` is a trio clock for running a real-model
conversation "as fast as possible": while no worker is busy, every wait (a
transport pacing a file, the Speaker pacing playout, an endpointing delay)
jumps straight to its deadline; while a worker runs, time flows at the real
rate. So a conversation keeps exactly the order and the latencies it would
have live (model compute costs what it costs) and loses only the idle time
in between. It only works when every blocking call goes through
:func:`voxtrio.providers.threads.run_in_worker` (the offline providers' do) and nothing waits on the
outside world (a microphone, a network): use the real clock for those.
"""

from __future__ import annotations

import math
import time

from .providers.threads import WorkerAwareClock, abandoned_workers

__all__ = ["FastForwardClock", "abandoned_workers"]  # abandoned_workers: documented here too


class FastForwardClock(WorkerAwareClock):
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
