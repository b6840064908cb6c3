"""FastForwardClock: idle waits are skipped, worker time is not."""

import time

import trio

from voxtrio.clock import FastForwardClock
from voxtrio.providers.threads import run_in_worker


def test_idle_sleeps_take_no_real_time():
    async def main():
        start = trio.current_time()
        await trio.sleep(30.0)
        return trio.current_time() - start

    clock = FastForwardClock()
    wall = time.perf_counter()
    virtual = trio.run(main, clock=clock)
    assert virtual >= 30.0
    assert time.perf_counter() - wall < 30.0  # it did not wait the 30 s
    assert clock.skipped >= 29.0


def test_time_runs_at_the_real_rate_while_a_worker_is_busy():
    """A 0.3 s computation costs 0.3 s of trio time even while a timer is pending:
    the clock does not jump to the timer while the worker runs, so the timer
    fires in real time, before the worker is done. (No upper bound on real
    time: on a loaded machine a thread may start late; what matters is that
    nothing was skipped.)"""
    order = []

    async def main():
        limiter = trio.CapacityLimiter(1)
        start = trio.current_time()

        async def timer():
            await trio.sleep(0.1)
            order.append(("timer", trio.current_time() - start))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(timer)
            await run_in_worker(time.sleep, 0.3, limiter=limiter)
            order.append(("worker", trio.current_time() - start))

    clock = FastForwardClock()
    trio.run(main, clock=clock)
    (first, at_first), (second, at_second) = order
    assert (first, second) == ("timer", "worker")
    assert clock.skipped == 0.0  # no jump while the worker was busy
    assert at_first >= 0.1 and at_second >= 0.3


def test_run_in_worker_counts_busy_workers_and_works_on_any_clock():
    seen = []

    def work():
        seen.append(clock.busy_workers)
        return 7

    async def main():
        return await run_in_worker(work, limiter=trio.CapacityLimiter(1))

    clock = FastForwardClock()
    assert trio.run(main, clock=clock) == 7
    assert seen == [1] and clock.busy_workers == 0
    assert trio.run(main) == 7  # the default clock: just a worker thread
