"""FileTransport: a sound file in, the agent's audio, the call and a JSON transcript out (virtual time)."""

import json

import numpy as np
import pytest
import soundfile
import trio

import voxtrio
from voxtrio.audio_files import read_audio_file, write_audio_file
from voxtrio.messages import STTEvent
from voxtrio.providers.base import STT, TTS, STTCapabilities, SynthesizedAudio, TTSCapabilities
from voxtrio.providers.energy_vad import EnergyVAD
from voxtrio.testing import LLMResponse, ScriptedLLM, silence, tone
from voxtrio.transports.file import FileTransport, TimelineAudioOutput


class HeardOnce(STT):
    """Finalizes 'hello there' 0.2 s after the loud audio stops."""

    capabilities = STTCapabilities(streaming=True)

    async def stream(self, frames, events, *, language=None, conn_options=None):
        voiced_until = None
        async for frame in frames:
            if not len(frame.data):
                continue
            end = frame.timestamp + frame.duration
            if np.abs(frame.data).max() > 500:
                voiced_until = end
            elif voiced_until is not None and end - voiced_until >= 0.2:
                await events.send(STTEvent(kind="final", text="hello there", start_time=0.0, end_time=voiced_until))
                voiced_until = None


class ToneTTS(TTS):
    """One second of a 440 Hz tone per sentence, at 24 kHz."""

    capabilities = TTSCapabilities(streaming=False)
    sample_rate = 24_000

    async def synthesize(self, text, audio, *, conn_options=None):
        samples = tone(1.0, sample_rate=24_000, frequency=440.0, amplitude=8000)
        for start in range(0, len(samples), 2400):
            await audio.send(SynthesizedAudio(frame=voxtrio.AudioFrame(samples[start : start + 2400], 24_000)))


def write_stereo_call(path):
    """1 s of silence, 1 s of speech-like tone in both channels, 3 s of silence; 44.1 kHz stereo."""
    mono = np.concatenate([silence(1.0, sample_rate=44_100), tone(1.0, sample_rate=44_100), silence(3.0, sample_rate=44_100)])
    write_audio_file(path, np.repeat(mono, 2), 44_100, 2)
    return path


@pytest.fixture
def stereo_call(tmp_path):
    return write_stereo_call(tmp_path / "call.wav")


def answering_session():
    return voxtrio.AgentSession(
        vad=EnergyVAD(min_speech_duration=0.1, min_silence_duration=0.3),
        stt=HeardOnce(),
        llm=ScriptedLLM([LLMResponse(input="hello there", content="Hi, how can I help?", ttft=0.1, duration=0.2)]),
        tts=ToneTTS(),
        min_endpointing_delay=0.5,
    )


async def test_a_wav_call_produces_the_agent_audio_the_call_and_a_transcript(autojump_clock, stereo_call, tmp_path):
    transport = FileTransport(
        stereo_call,
        output_path=tmp_path / "agent.wav",
        conversation_path=tmp_path / "call_out.wav",
        transcript_path=tmp_path / "transcript.json",
        settle=1.0,
    )
    session = answering_session()
    # The session ends by itself: the file is the whole call.
    await session.main(voxtrio.Agent(), transport)
    assert session.last_close.reason == "user_initiated"

    document = json.loads((tmp_path / "transcript.json").read_text())
    said = [(e["role"], e["text"]) for e in document["entries"] if "role" in e]
    assert said == [("user", "hello there"), ("assistant", "Hi, how can I help?")]
    user, agent = [e for e in document["entries"] if "role" in e]
    assert user["speech_end"] == pytest.approx(2.0, abs=0.05)  # the tone ends 2 s into the file
    [timing] = document["turn_timings"]
    # speech ends at 2.0, the commit waits 0.5, the LLM has written its one sentence at its
    # TTFT (0.1; it ends with "?", so it goes to the TTS then), the tone TTS is instant
    assert timing["first_audio"] == pytest.approx(0.6, abs=0.06)
    assert timing["end_of_utterance"] == pytest.approx(0.5, abs=0.05)

    out = read_audio_file(tmp_path / "agent.wav")
    assert (out.sample_rate, out.num_channels) == (24_000, 1)
    loud = np.flatnonzero(np.abs(out.data) > 1000) / 24_000
    # the agent's second of tone sits where it was played on the call's timeline
    assert loud[0] == pytest.approx(agent["t"], abs=0.03)
    assert loud[-1] - loud[0] == pytest.approx(1.0, abs=0.03)

    call = read_audio_file(tmp_path / "call_out.wav")
    assert call.num_channels == 2
    left, right = call.data[0::2], call.data[1::2]
    user_loud = np.flatnonzero(np.abs(left) > 1000) / call.sample_rate
    assert user_loud[0] == pytest.approx(1.0, abs=0.05) and user_loud[-1] == pytest.approx(2.0, abs=0.05)
    assert np.array_equal(right[: len(out.data)], out.data)


async def test_a_flac_call_can_be_written_as_ogg_and_flac(autojump_clock, tmp_path):
    transport = FileTransport(
        write_stereo_call(tmp_path / "call.flac"),
        output_path=tmp_path / "agent.ogg",
        conversation_path=tmp_path / "conversation.flac",
        settle=1.0,
    )
    await answering_session().main(voxtrio.Agent(), transport)
    assert soundfile.info(tmp_path / "agent.ogg").subtype == "OPUS"
    out = read_audio_file(tmp_path / "agent.ogg")
    assert (out.sample_rate, out.num_channels) == (24_000, 1)
    loud = np.flatnonzero(np.abs(out.data) > 1000) / 24_000
    assert loud[-1] - loud[0] == pytest.approx(1.0, abs=0.03)  # the agent's second of tone
    call = read_audio_file(tmp_path / "conversation.flac")
    assert (soundfile.info(tmp_path / "conversation.flac").format, call.num_channels) == ("FLAC", 2)
    user_loud = np.flatnonzero(np.abs(call.data[0::2]) > 1000) / call.sample_rate
    assert user_loud[0] == pytest.approx(1.0, abs=0.05) and user_loud[-1] == pytest.approx(2.0, abs=0.05)


def test_a_malformed_wav_fails_before_the_session(tmp_path):
    path = tmp_path / "bad.wav"
    path.write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(voxtrio.AudioFormatError, match="no 'data' chunk"):
        FileTransport(path)


@pytest.mark.parametrize("option", ["output_path", "conversation_path"])
def test_an_output_format_that_cannot_be_written_fails_before_the_session(stereo_call, tmp_path, option):
    with pytest.raises(voxtrio.AudioFormatError, match="cannot write .mp3"):
        FileTransport(stereo_call, **{option: tmp_path / "out.mp3"})


async def test_clear_drops_what_was_not_played_yet(autojump_clock):
    output = TimelineAudioOutput()
    start = trio.current_time()
    for _ in range(10):  # one second of audio written at once
        await output.write(voxtrio.AudioFrame(np.full(1600, 1000, np.int16), 16_000))
    await trio.sleep(0.25)
    output.clear()
    assert output.duration_played == pytest.approx(0.25, abs=0.001)
    await output.write(voxtrio.AudioFrame(np.full(1600, 2000, np.int16), 16_000))
    track = output.render(start)
    assert np.all(track[:4000] == 1000) and np.all(track[4000:5600] == 2000) and len(track) == 5600
