"""Layer (b), processes: ``voxtrio start`` with two worker processes against the fake
dispatcher. They share 20 jobs by the load each reports; a crashed child is
restarted; SIGTERM drains the pool (bounded) and it exits cleanly. Real
processes and sockets, bounded by a deadline; the most expensive test here."""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest
import trio

pytest.importorskip("livekit.protocol")
pytestmark = pytest.mark.thorough  # worker processes: seconds a test

from livekit.protocol import agent  # noqa: E402

from fake_dispatcher import FakeDispatcher  # noqa: E402
from test_worker import CREDENTIALS  # noqa: E402

AGENT = Path(__file__).parent / "livekit_agents" / "pool_agent.py"


async def test_two_processes_share_twenty_calls_by_load_restart_a_crash_and_drain_on_sigterm():
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            dispatcher = await nursery.start(FakeDispatcher(CREDENTIALS).serve)
            env = {
                **os.environ,
                "LIVEKIT_URL": dispatcher.url,
                "LIVEKIT_API_KEY": CREDENTIALS.api_key,
                "LIVEKIT_API_SECRET": CREDENTIALS.api_secret,
            }
            command = [sys.executable, "-m", "voxtrio", "start", str(AGENT), "--processes", "2", "--drain-timeout", "1"]
            parent = await trio.lowlevel.open_process(command, env=env)
            try:
                await dispatcher.wait_for_workers(2)
                placed = [await dispatcher.dispatch(f"room-{n}") for n in range(20)]
                assert None not in placed
                per_worker = Counter(worker for _, worker in placed)  # type: ignore[misc]
                assert sorted(per_worker.values()) == [10, 10]
                for job_id, _ in placed:  # type: ignore[misc]
                    await dispatcher.wait_for_status(job_id, agent.JS_RUNNING)

                survivor, victim = sorted(per_worker)
                crash = dispatcher.new_job("room-crash", metadata="crash")
                link = dispatcher.workers[victim]
                assert (await dispatcher.ask(link, crash)).available
                await dispatcher.assign(link, crash)
                while len(dispatcher.registrations) < 3:  # the parent started a new child
                    await dispatcher.worker_joined.wait()
                assert victim not in dispatcher.workers

                parent.send_signal(signal.SIGTERM)
                survivor_link = dispatcher.workers[survivor]
                while not survivor_link.draining and not survivor_link.closed:
                    await survivor_link.status_changed.wait()
                assert await parent.wait() == 0
            finally:
                if parent.poll() is None:
                    parent.kill()
            nursery.cancel_scope.cancel()
    # The survivor's calls were ended by the drain bound and reported.
    for job_id, worker in placed:  # type: ignore[misc]
        if worker == survivor:
            assert dispatcher.job_status[job_id][-1] == agent.JS_SUCCESS
