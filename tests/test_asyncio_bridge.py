"""The asyncio bridge: results and errors come back, trio cancellation cancels
the asyncio task, the port to trio is bounded and counts drops, and closing
joins the thread, or counts it and stays bounded when it cannot."""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio

from voxtrio.transports import asyncio_bridge
from voxtrio.transports.asyncio_bridge import AsyncioBridge, BridgeClosed

DEADLINE = 10


async def test_results_and_errors_come_back_and_the_work_runs_on_the_loop_thread():
    with trio.fail_after(DEADLINE):
        async with AsyncioBridge(name="bridge-test") as bridge:

            async def where() -> str:
                await asyncio.sleep(0)
                assert asyncio.get_running_loop() is bridge.loop
                return threading.current_thread().name

            assert await bridge.run(where) == "bridge-test"
            assert await bridge.call(lambda a, b: a + b, 2, 3) == 5

            async def fail() -> None:
                raise KeyError("nope")

            with pytest.raises(KeyError):
                await bridge.run(fail)
            thread = bridge.thread
        assert thread is not None and not thread.is_alive()
        with pytest.raises(BridgeClosed):
            await bridge.run(where)


async def test_cancelling_the_trio_caller_cancels_the_asyncio_task():
    cancelled = threading.Event()
    started = trio.Event()
    with trio.fail_after(DEADLINE):
        async with AsyncioBridge() as bridge:
            token = trio.lowlevel.current_trio_token()

            async def forever() -> None:
                token.run_sync_soon(started.set)
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    cancelled.set()
                    raise

            async with trio.open_nursery() as nursery:
                nursery.start_soon(bridge.run, forever)
                await started.wait()
                nursery.cancel_scope.cancel()
            # bridge.run returned only after the asyncio task had finished
            assert cancelled.is_set()
            assert bridge.stats.abandoned_tasks == 0


async def test_a_task_that_ignores_cancellation_is_counted_and_the_caller_is_not_held():
    release = asyncio.Event()
    with trio.fail_after(DEADLINE):
        async with AsyncioBridge(cancel_timeout=0.2) as bridge:

            async def stubborn() -> None:
                while not release.is_set():
                    try:
                        await release.wait()
                    except asyncio.CancelledError:
                        pass

            with trio.move_on_after(0.1):
                await bridge.run(stubborn)
            assert bridge.stats.abandoned_tasks == 1
            bridge.submit(release.set)


async def test_the_port_is_bounded_and_counts_what_it_drops():
    with trio.fail_after(DEADLINE):
        async with AsyncioBridge() as bridge:
            port = bridge.port(4)

            def flood() -> None:
                for item in range(100):
                    port.send_nowait(item)
                port.close()

            await bridge.call(flood)
            received = [item async for item in port.receive]
    assert received == [0, 1, 2, 3]
    assert port.dropped == 96


async def test_a_thread_that_will_not_stop_is_counted_and_the_close_stays_bounded():
    unblock = threading.Event()
    before = asyncio_bridge.ABANDONED_THREADS
    bridge = AsyncioBridge(close_timeout=0.3)
    with trio.fail_after(DEADLINE):
        await bridge.start()
        bridge.submit(unblock.wait)  # a blocking callback: the loop cannot run its shutdown
        await bridge.aclose()
    assert bridge.stats.abandoned_threads == 1
    assert asyncio_bridge.ABANDONED_THREADS == before + 1
    unblock.set()
    thread = bridge.thread
    assert thread is not None
    thread.join(DEADLINE)
    assert not thread.is_alive()
