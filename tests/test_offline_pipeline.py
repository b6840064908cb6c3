"""The whole offline pipeline on a spoken call: WAV -> VAD -> STT -> LLM (tools) -> TTS -> WAV.

The fixture WAV is made here with Piper (without its random variation, so
every run hears the same audio), 22.05 kHz stereo, with pauses long enough for
the agent to answer each line. It runs on FastForwardClock: the same call as
in real time, minus the idle waits.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import trio

import voxtrio
from voxtrio.audio_files import read_audio_file, write_audio_file
from voxtrio.clock import FastForwardClock
from voxtrio.testing import word_error_rate

LINES = [
    "What is the weather like in Lisbon today?",
    "Can you help me pack my suitcase?",
    "What should I bring for a rainy week?",
]
# Seconds between lines: room for the longest answer (two sentences, ~12 s) after
# its latency, which on a loaded machine reaches 5-8 s (the idle waits cost nothing
# on FastForwardClock).
GAP = 22.0


@pytest.fixture(scope="module")
def example():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    try:
        import weather_agent

        yield weather_agent
    finally:
        sys.path.pop(0)


@pytest.mark.slow
def test_a_spoken_call_is_heard_answered_with_tools_and_handed_off(tmp_path, example):
    from voxtrio.providers.piper_tts import PiperTTS
    from voxtrio.providers.silero_vad import SileroVAD
    from voxtrio.providers.smollm_llm import SmolLM
    from voxtrio.providers.whisper_stt import WhisperSTT
    from voxtrio.transports.file import FileTransport

    caller = PiperTTS(noise_scale=0.0, noise_w_scale=0.0)
    rate = caller.sample_rate
    # Room for the greeting: generous, because the model work is real time and a
    # loaded machine can take seconds longer to start speaking than a quiet one.
    pieces, starts = [np.zeros(int(14.0 * rate), np.int16)], []
    for line in LINES:
        starts.append(sum(len(p) for p in pieces) / rate)
        pieces += [caller.render(line), np.zeros(int(GAP * rate), np.int16)]
    mono = np.concatenate(pieces)
    write_audio_file(tmp_path / "call.wav", np.repeat(mono, 2), rate, 2)

    transport = FileTransport(
        tmp_path / "call.wav",
        output_path=tmp_path / "agent.wav",
        conversation_path=tmp_path / "conversation.wav",
        transcript_path=tmp_path / "transcript.json",
    )
    llm = SmolLM(routes=example.ROUTES)
    session = voxtrio.AgentSession(
        vad=SileroVAD(min_silence_duration=0.4), stt=WhisperSTT(window=10.0), llm=llm, tts=PiperTTS(),
        min_endpointing_delay=0.5,
    )
    try:
        trio.run(session.main, example.WeatherDesk(), transport, clock=FastForwardClock())
    finally:
        llm.close()
    assert session.last_close.reason == "user_initiated"

    document = json.loads((tmp_path / "transcript.json").read_text())
    entries = document["entries"]
    heard = [e["text"] for e in entries if e.get("role") == "user"]
    assert len(heard) == 3
    # 22 words: at most 2 errors
    assert word_error_rate(" ".join(LINES), " ".join(heard)) <= 0.1, heard
    [weather] = [e for e in entries if e.get("type") == "tool_call" and e["name"] == "get_weather"]
    assert weather["arguments"] == {"city": "Lisbon"} and "21 degrees" in weather["output"]
    assert [e for e in entries if e.get("type") == "handoff" and e["to"] == "packing_adviser"]

    # the greeting, then an answer after each line, each starting after that line ended
    said = [e for e in entries if e.get("role") == "assistant"]
    assert "21 degrees" in said[1]["text"]
    user_ends = [e["speech_end"] for e in entries if e.get("role") == "user"]
    for end, following in zip(user_ends, user_ends[1:] + [float("inf")]):
        answers = [a for a in said if end < a["t"] < following]
        assert answers, f"no answer between {end} and {following}"
    assert [t["first_audio"] is not None for t in document["turn_timings"]] == [True, True, True]

    agent = read_audio_file(tmp_path / "agent.wav")
    samples = agent.data.astype(np.float64)
    window = agent.sample_rate // 10
    energy = np.sqrt(np.mean(samples[: len(samples) // window * window].reshape(-1, window) ** 2, axis=1))
    voiced = energy > 500
    assert voiced.sum() / 10 > 8.0  # seconds of agent speech: greeting and three answers
    for line_start in starts:
        # the agent is quiet while the caller speaks (no barge-in in this call)
        assert not voiced[int(line_start * 10) + 2 : int(line_start * 10) + 12].any()
    call = read_audio_file(tmp_path / "conversation.wav")
    assert call.num_channels == 2 and call.duration >= len(mono) / rate
