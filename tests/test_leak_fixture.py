"""The leak check itself must be able to fail."""

import trio

from conftest import SessionTaskTracker


async def test_tracker_reports_a_task_that_outlives_main(autojump_clock):
    tracker = SessionTaskTracker()
    trio.lowlevel.add_instrument(tracker)
    try:
        async with trio.open_nursery() as outer:

            async def main(task_status=trio.TASK_STATUS_IGNORED):
                # A leak: a task put in a nursery the session does not own.
                outer.start_soon(trio.sleep, 1, name="leaked")

            # Pretend this coroutine is AgentSession.main by tracking it as a root.
            async def runner():
                tracker.children[trio.lowlevel.current_task()] = set()
                await main()

            outer.start_soon(runner)
        assert tracker.leaks == ["leaked"]
    finally:
        trio.lowlevel.remove_instrument(tracker)
