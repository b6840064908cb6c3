"""Checks of the pure harness core with made-up times (no event loop).

Run with any Python that has numpy and pytest:  python -m pytest bench/tests -q
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from harness import workload as W  # noqa: E402
from harness.call import FULL, QUICK, Call  # noqa: E402
from harness.playout import Playout  # noqa: E402


def test_tts_audio_lasts_3_s_per_172_characters_rounded_up_to_20_ms():
    # spec: duration = chars x (3.0 s / 172), rounded up to 20 ms
    assert [W.tts_chunk_count("x" * n) for n in (0, 1, 172, 173, 344)] == [0, 1, 150, 151, 300]
    assert W.tts_chunk_count("  Sure.  ") == W.tts_chunk_count("Sure.")  # spaces kept or not
    for sentence in W.SENTENCES:
        rounding = W.tts_chunk_count(sentence) * W.FRAME_S - len(sentence) * W.TTS_S_PER_CHAR
        assert 0 <= rounding < W.FRAME_S
    whole = sum(W.tts_chunk_count(s) for s in W.SENTENCES) * W.FRAME_S
    assert abs(whole - 3.0) < 0.1  # "the full reply is about 3.0 s"
    chunks = W.tts_audio(W.SENTENCES[0])
    assert len(chunks) == W.tts_chunk_count(W.SENTENCES[0])
    assert {len(c) for c in chunks} == {2 * W.OUT_CHUNK_SAMPLES}


def test_the_reply_streams_as_40_tokens_the_first_sentence_in_8():
    assert "".join(W.REPLY_TOKENS) == W.REPLY and len(W.REPLY_TOKENS) == 40
    assert "".join(W.REPLY_TOKENS[: W.FIRST_SENTENCE_TOKENS]) == W.SENTENCES[0] == "Sure, I can help with that."
    assert all(token.strip() for token in W.REPLY_TOKENS)  # no token is only a space


def test_speech_is_a_window_louder_than_rms_500():
    def frame(amplitude):
        return np.full(W.IN_FRAME_SAMPLES, amplitude, dtype="<i2").tobytes()

    assert not W.is_speech(frame(500)) and W.is_speech(frame(501)) and W.is_speech(frame(-501))
    assert not W.is_speech(b"") and not W.is_speech(W.SILENCE_FRAME)
    assert all(W.is_speech(f) for f in W.SPEECH_FRAMES)
    assert len(W.SPEECH_FRAMES) * W.FRAME_S == 2.0  # a user turn: 2 s of speech


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


def test_gc_pauses_records_each_collection_by_generation():
    import gc

    from harness.gcpauses import GCPauses

    with GCPauses() as pauses:
        gc.collect(2)
        gc.collect(0)
    gc.collect()  # after the probe: not recorded
    summary = pauses.summary()
    assert summary["by_generation"]["2"]["n"] >= 1
    assert summary["by_generation"]["0"]["n"] >= 1
    assert summary["max_ms"] >= summary["by_generation"]["2"]["max_ms"] > 0
