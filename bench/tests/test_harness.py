"""Checks of the pure harness core with made-up times (no event loop).

Run with any Python that has numpy and pytest:  python -m pytest bench/tests -q
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from harness import workload as W  # noqa: E402
from harness.call import FULL, QUICK, Call  # noqa: E402
from harness.playout import Playout  # noqa: E402


def test_workload_constants():
    assert len(W.REPLY_TOKENS) == 40
    assert W.SENTENCES[0] == "".join(W.REPLY_TOKENS[:8])
    assert round(W.CRITICAL_PATH_S, 3) == 0.33 and round(W.TOOL_CRITICAL_PATH_S, 3) == 0.48
    assert [W.tts_chunk_count(s) for s in W.SENTENCES] == [24, 74, 56]
    assert W.is_speech(W.SPEECH_FRAMES[0]) and not W.is_speech(W.SILENCE_FRAME)


def test_playout_backpressure_gap_and_clear():
    p = Playout(0.2)
    w = p.write(10.0, 0.5)
    assert w.starts_at == 10.0 and w.release_at == 10.3
    w = p.write(10.3, 0.02)  # queue not dry: no gap, released 20 ms later
    assert w.gap_s == 0 and abs(w.release_at - 10.32) < 1e-9
    w = p.write(10.7, 0.02)  # arrived 0.18 s after the queue ran dry (10.52)
    assert abs(w.gap_s - 0.18) < 1e-9
    assert p.clear(10.71) > 0 and p.end == 10.71 and p.queued(10.71) == 0


def simulate(spec, *, latency=0.53, react_frames=10):
    """An ideal agent: answers ``latency`` after the user's last speech frame,
    writes 20 ms chunks as fast as the sink lets it, and clears the sink on
    the ``react_frames``-th frame of a barge-in."""
    call = Call(spec)
    t, reply_at, written, next_write = 100.0, None, 0, 0.0
    speaking_frames = 0
    while True:
        out = call.tick(t, t)
        if out is None:
            return call
        pcm, transcript = out
        speaking_frames = speaking_frames + 1 if W.is_speech(pcm) else 0
        if transcript is not None:
            tool = call.turn == spec.tool_turn
            reply_at, written = t + latency + (W.LLM_TTFT_S if tool else 0), 0
            next_write = reply_at
        if speaking_frames == react_frames and reply_at is not None and written:
            call.audio_cleared(t)
            reply_at = None
        while reply_at is not None and written < W.REPLY_CHUNKS and next_write <= t:
            next_write = max(next_write, call.audio_written(next_write, W.OUT_CHUNK_SAMPLES))
            written += 1
        t += W.FRAME_S


def test_ideal_agent_full_script():
    call = simulate(FULL)
    assert not call.aborted and call.done_at is not None
    assert len(call.turn_latencies()) == 6
    assert all(abs(o) < 0.021 for o in call.turn_overheads())  # quantised to 20 ms slots
    # Clearing on the 10th barge-in frame (fed 0.18 s in) scores -20 ms.
    assert abs(call.stop_delay() - (-0.02)) < 1e-6
    assert call.lateness and max(call.lateness) == 0 and call.clears == 1
    assert 36 < call.duration_s < 41


def test_quick_script_and_unanswered_turn_aborts():
    assert len(simulate(QUICK).turn_latencies()) == 3
    call = simulate(QUICK, latency=1e9)  # the agent never answers
    assert call.aborted and call.turn_latencies() == []
