"""Recording a session: the stereo call on the session clock, cut where the agent was
interrupted, streamed so that a killed process leaves what it had heard."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from voxtrio.recording import RecordingOptions, recording_options
from voxtrio.testing import load_scenario, play
from voxtrio.testing.scripted import ScriptedTTS

CALL = Path(__file__).parent / "fixtures" / "traced_call.json"


def recorded_call(options: RecordingOptions):
    scenario = load_scenario(json.loads(CALL.read_text()))
    scenario.options["record"] = options
    return scenario


def agent_active(track: np.ndarray, rate: int, start: float, end: float) -> float:
    """The share of samples in [start, end) that are not silent."""
    piece = track[int(round(start * rate)) : int(round(end * rate))]
    return float(np.count_nonzero(piece)) / max(1, len(piece))


@pytest.mark.parametrize("fmt", ["wav", "ogg"])
async def test_the_recording_is_the_call_in_stereo_cut_where_the_agent_was_interrupted(
    tmp_path, autojump_clock, monkeypatch, fmt
):
    monkeypatch.setattr(ScriptedTTS, "level", 8000)
    uploaded = []

    async def upload(directory):
        uploaded.append(sorted(p.name for p in directory.iterdir()))

    await play(recorded_call(RecordingOptions(directory=tmp_path, format=fmt, upload=upload)))
    (directory,) = tmp_path.iterdir()
    assert directory.name.startswith("session_")
    audio, rate = soundfile.read(directory / f"audio.{fmt}", dtype="int16")
    assert (audio.ndim, audio.shape[1], rate) == (2, 2, 16_000)
    # the session, 0 to its close (and the last 20 ms frame of the caller's audio)
    assert len(audio) / rate == pytest.approx(20.2, abs=0.021)
    agent = audio[:, 1]
    if fmt == "wav":  # the agent spoke 11.8 -> 14.5, then was cut (5.733 s were queued); the
        # resampler (24 to 16 kHz) holds back a few ms of each speech
        assert agent_active(agent, rate, 11.8, 14.5) > 0.95
        assert agent_active(agent, rate, 14.5, 16.0) == 0.0
        assert agent_active(agent, rate, 16.0, 16.533) > 0.95
        assert agent_active(agent, rate, 16.54, 20.2) == 0.0
        assert not audio[:, 0].any()  # the scripted caller sends silence
    transcript = json.loads((directory / "transcript.json").read_text())
    assert transcript["session_id"] == directory.name
    cut = [e for e in transcript["entries"] if e.get("interrupted")]
    assert [(e["text"], e["t"], e["end"]) for e in cut] == [("Your balance is 42 euros, and here is a", 11.8, 14.5)]
    assert [e["to"] for e in transcript["entries"] if e.get("type") == "handoff"] == ["front", "billing"]
    assert transcript["usage"]["tts"][0]["characters"] == 28 + 29 + 12 + 86 + 8
    events = [json.loads(line) for line in (directory / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "close" and [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert uploaded == [["audio." + fmt, "events.jsonl", "log.jsonl", "transcript.json"]]


KILLED = """
import json, os, sys, trio, trio.testing
from voxtrio.recording import RecordingOptions
from voxtrio.testing import load_scenario, play
from voxtrio.testing.scripted import ScriptedTTS
ScriptedTTS.level = 8000
scenario = load_scenario(json.loads(open(sys.argv[1]).read()))
scenario.options["record"] = RecordingOptions(directory=sys.argv[2], format=sys.argv[3])
async def main():
    async with trio.open_nursery() as nursery:
        nursery.start_soon(play, scenario)
        await trio.sleep(float(sys.argv[4]))
        os._exit(9)  # no finally, no close: what a crash or a kill -9 leaves
trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
"""


@pytest.mark.parametrize("fmt", ["wav", "ogg"])
def test_a_session_killed_mid_call_leaves_a_readable_recording_up_to_the_last_second(tmp_path, fmt):
    killed_at = 13.0
    done = subprocess.run(
        [sys.executable, "-c", KILLED, str(CALL), str(tmp_path), fmt, str(killed_at)], capture_output=True, timeout=120
    )
    assert done.returncode == 9, done.stderr.decode()
    (directory,) = tmp_path.iterdir()
    audio, rate = soundfile.read(directory / f"audio.{fmt}", dtype="int16")
    assert killed_at - 1.0 <= len(audio) / rate <= killed_at
    if fmt == "wav":
        assert agent_active(audio[:, 1], rate, 11.8, 12.0) > 0.95
    assert not (directory / "transcript.json").exists()
    lines = (directory / "events.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["t"] <= killed_at


def test_record_takes_a_bool_or_options():
    assert recording_options(False) is None
    assert recording_options(True) == RecordingOptions()
    with pytest.raises(TypeError, match="record must be"):
        recording_options("yes")
    with pytest.raises(ValueError, match="sample_rate"):
        RecordingOptions(sample_rate=44_100)
    assert RecordingOptions(format="wav", sample_rate=44_100).sample_rate == 44_100
    with pytest.raises(ValueError, match="format"):
        RecordingOptions(format="mp3")
