"""Recording a session: the stereo call on the session clock, cut where the agent was
interrupted, silent while its output was paused, streamed so that a killed process leaves
what it had heard."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from voxtrio.audio import AudioFrame
from voxtrio.recording import RecordingOptions, recording_options
from voxtrio.recording.stereo import StereoRecording, open_audio_file
from voxtrio.testing import load_scenario, play
from voxtrio.testing.scenario import PlayObserver
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


SCENARIOS = Path(__file__).parent / "scenarios"
PAUSABLE = sorted(p.stem for p in SCENARIOS.glob("*.json") if '"can_pause": true' in p.read_text())


class WatchOutput(PlayObserver):
    def on_start(self, session, transport, origin):
        self.output, self.origin = transport.audio_output, origin


async def record_scenario(tmp_path, caplog, name):
    """Play a scenario with recording on; the agent's track and when the output played."""
    scenario = load_scenario(json.loads((SCENARIOS / f"{name}.json").read_text()))
    scenario.options["record"] = RecordingOptions(directory=tmp_path, format="wav")
    watch = WatchOutput()
    with caplog.at_level(logging.ERROR):
        await play(scenario, observer=watch)
    assert not caplog.records  # (an event callback that fails is only logged)
    (directory,) = tmp_path.iterdir()
    audio, rate = soundfile.read(directory / "audio.wav", dtype="int16")
    played = [(start - watch.origin, end - watch.origin) for start, end in watch.output.playing_intervals()]
    return audio[:, 1], rate, played


@pytest.mark.parametrize(
    "name, heard, silent, seconds",
    [
        # a 6 s reply from 3.5; a cough pauses it at 5.55 (2.05 s played); no words, so
        # it resumes at 7.3 and ends at 11.25 (the resampler keeps its last few ms)
        ("false_interruption_resume", [(3.5, 5.55), (7.3, 11.2)], [(5.55, 7.3), (11.25, 11.3)], 6.0),
        # the reply plays from 3.5, is paused at 5.55 and dropped at 6.2 by the user's
        # words; the next reply plays 7.0 -> 7.5
        ("pause_then_words_interrupt", [(3.5, 5.55), (7.0, 7.48)], [(5.55, 7.0), (7.5, 11.3)], 2.05 + 0.5),
    ],
)
async def test_a_paused_reply_is_silent_on_the_recording_until_it_resumes_or_is_dropped(
    tmp_path, autojump_clock, monkeypatch, caplog, name, heard, silent, seconds
):
    monkeypatch.setattr(ScriptedTTS, "level", 8000)
    agent, rate, _ = await record_scenario(tmp_path, caplog, name)  # tests/scenarios/<name>.json
    assert [agent_active(agent, rate, start, end) > 0.99 for start, end in heard] == [True] * len(heard)
    assert [agent_active(agent, rate, start, end) for start, end in silent] == [0.0] * len(silent)
    assert np.count_nonzero(agent) / rate == pytest.approx(seconds, abs=0.05)


@pytest.mark.parametrize("name", PAUSABLE)
async def test_the_agent_track_is_what_a_pausable_output_played(tmp_path, autojump_clock, monkeypatch, caplog, name):
    monkeypatch.setattr(ScriptedTTS, "level", 8000)
    agent, rate, played = await record_scenario(tmp_path, caplog, name)
    expected = np.zeros(len(agent), bool)
    for start, end in played:
        expected[int(round(start * rate)) : int(round(end * rate))] = True
        # all of it, but the few ms the resampler (24 to 16 kHz) keeps at the end of a speech
        assert agent_active(agent, rate, start, end - 0.05) > 0.99, (start, end)
    # nothing where the output was not playing (a sample of rounding at each edge)
    widened = np.convolve(expected, np.ones(5), mode="same") > 0
    assert not np.any(agent[~widened]), np.flatnonzero(agent[~widened])[:5] / rate


def test_a_pause_holds_what_the_agent_had_queued_and_plays_it_from_the_resume(tmp_path):
    recording = StereoRecording(open_audio_file(tmp_path / "a.wav", 16_000, "wav"), origin=0.0)

    def agent(seconds, at, level):
        recording.add("agent", AudioFrame(np.full(int(seconds * 16_000), level, np.int16), 16_000), at)

    recording.pause(1.0)
    agent(0.5, 0.8, 1)  # written before the pause, read after it: 0.2 s played, the rest held
    agent(0.1, 1.5, 2)  # written while paused
    recording.resume(2.0)
    recording.resume(2.1)  # (once is enough)
    agent(0.1, 2.1, 3)  # after what was held
    recording.pause(3.0)
    recording.resume(3.5)
    agent(0.1, 3.2, 4)  # written during the pause, read after the resume: it plays from then
    recording.pause(4.0)
    agent(0.1, 4.1, 5)
    recording.cut(4.2)  # a paused speech dropped: what it held never plays
    recording.resume(4.5)
    recording.flush(5.0, final=True)
    recording.close()
    track, _ = soundfile.read(tmp_path / "a.wav", dtype="int16")
    expected = np.zeros(5 * 16_000, np.int16)
    for start, end, level in [(0.8, 1.0, 1), (2.0, 2.3, 1), (2.3, 2.4, 2), (2.4, 2.5, 3), (3.5, 3.6, 4)]:
        expected[int(start * 16_000) : int(end * 16_000)] = level
    assert np.array_equal(track[:, 1], expected)



def test_audio_at_another_rate_keeps_the_end_of_each_speech(tmp_path):
    """A 24 kHz TTS on a 16 kHz recording: the resampler's delay would keep the last
    ~16 ms of a speech back; they are placed where it ended, unless it was cut."""
    recording = StereoRecording(open_audio_file(tmp_path / "a.wav", 16_000, "wav"), origin=0.0)

    def speech(start, seconds):
        for number in range(int(seconds / 0.02)):
            frame = AudioFrame(np.full(480, 8000, np.int16), 24_000)
            recording.add("agent", frame, start + number * 0.02)

    speech(1.0, 0.5)  # played whole
    speech(2.0, 0.5)  # cut at 2.3: nothing of it after that, delayed samples included
    recording.cut(2.3)
    speech(3.0, 0.5)  # played whole, the last speech of the call
    recording.flush(4.0, final=True)
    recording.close()
    track = soundfile.read(tmp_path / "a.wav", dtype="int16")[0][:, 1]
    voiced = np.nonzero(track)[0] / 16_000
    for start, end in [(1.0, 1.5), (2.0, 2.3), (3.0, 3.5)]:
        inside = voiced[(voiced >= start - 0.1) & (voiced < end + 0.1)]
        assert inside.max() == pytest.approx(end, abs=0.002), (start, inside.max())
        assert agent_active(track, 16_000, start, end - 0.002) > 0.99

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
