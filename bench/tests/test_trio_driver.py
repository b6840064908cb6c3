"""The trio driver end to end on trio's MockClock (virtual time, so it takes
a second): the harness-alone adapter on trio answers every turn with no
overhead, and voxtrio's adapter runs the workload with its real actors.

Run with voxtrio's venv (needs trio and voxtrio):  .venv/bin/python -m pytest bench/tests -q
"""

from __future__ import annotations

import os
import sys

import pytest

trio = pytest.importorskip("trio")
pytestmark = pytest.mark.thorough  # whole benchmark calls
import trio.testing  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from harness import trio_driver  # noqa: E402
from harness.call import QUICK  # noqa: E402


def measure(adapter, sessions: int) -> dict:
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(trio_driver.measure, adapter, QUICK, sessions, clock=clock)


def test_baseline_on_trio_answers_every_turn_at_zero_overhead():
    from adapters import baseline_trio

    r = measure(baseline_trio, 3)
    assert r["turns_answered"] == r["turns_expected"] == 9
    assert r["calls_aborted"] == 0
    # Virtual time: the only overhead is the 20 ms quantisation of the input.
    assert abs(r["turn_overhead_ms"]["max"]) <= 20.1
    assert r["interruption_stop_delay_ms"]["p50"] == pytest.approx(-20, abs=0.1)
    assert r["anomalies"]["leaked_frames"] == 0 and r["anomalies"]["tts_mismatches"] == 0


def test_voxtrio_runs_the_workload_through_its_public_api():
    pytest.importorskip("voxtrio")
    from adapters import voxtrio_rt

    r = measure(voxtrio_rt, 2)
    assert r["framework"] == "voxtrio"
    assert r["turns_answered"] == r["turns_expected"] == 6
    assert r["calls_aborted"] == 0 and r["anomalies"]["leaked_frames"] == 0
    assert r["anomalies"]["tts_mismatches"] == 0 and r["anomalies"]["clears"] == 2
    assert r["output_lateness_ms"]["max"] == 0.0  # never ran dry mid-reply
    # The barge-in stops the reply within one frame of the VAD's 0.2 s.
    assert -20.1 <= r["interruption_stop_delay_ms"]["max"] <= 20.1


def test_sink_clear_releases_a_blocked_write():
    from harness.call import FULL, Call

    released = []

    async def main():
        async with trio.open_nursery() as nursery:
            call = Call(FULL)
            call.answering = 0
            sink = trio_driver.Sink(call, nursery)
            t = trio.current_time()

            async def writer():
                await sink.write(24_000)  # 1 s of audio: held until 0.2 s is left (0.8 s)...
                released.append(trio.current_time() - t)

            nursery.start_soon(writer)
            await trio.sleep(0.1)
            sink.clear()  # ...unless the queue is dropped first
            assert sink.queued() == 0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert released == [pytest.approx(0.1)]
