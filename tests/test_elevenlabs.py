"""ElevenLabs stream-input synthesis against a local server that speaks its protocol
(clock: see tts_loopback)."""

import numpy as np
import pytest
import trio

import voxtrio
from voxtrio.providers import deepgram, elevenlabs
from voxtrio.providers.energy_vad import EnergyVAD
from voxtrio.testing import ArrayTransport, LLMResponse, ScriptedLLM

from loopback.deepgram import FakeDeepgram
from loopback.elevenlabs import FakeElevenLabs
from loopback.server import SpeechModel
from tts_loopback import LONG_TEXT, heard_before, same_words, seconds_of, started_marker_at, synthesize, words_of


def make_tts(server, **options):
    return elevenlabs.TTS(voice_id="voice-1", api_key="test-key", base_url=server.url, **options)


async def test_text_streams_in_by_sentence_and_pcm_with_word_timings_comes_out(autojump_clock):
    server = FakeElevenLabs()
    async with server.running():
        tts = make_tts(server, sample_rate=16_000, voice_settings={"stability": 0.5}, chunk_length_schedule=[50])
        items = await synthesize(tts, ["Hello there, ", "my friend. How ", "are you today?"], chunk_delay=0.1)
    [connection] = server.connections
    assert connection.path == "/v1/text-to-speech/voice-1/stream-input"
    assert (connection.param("model_id"), connection.param("output_format"), connection.param("sync_alignment")) == (
        "eleven_flash_v2_5", "pcm_16000", "true",
    )
    assert connection.headers["xi-api-key"] == "test-key"
    # the first message is a space with the settings, words go out as they come,
    # each sentence's end flushed, "" ends the input
    assert connection.texts == [
        {"text": " ", "voice_settings": {"stability": 0.5}, "generation_config": {"chunk_length_schedule": [50]}},
        {"text": "Hello there, "},
        {"text": "my friend. ", "flush": True},
        {"text": "How "},
        {"text": "are you today? ", "flush": True},
        {"text": ""},
    ]
    assert connection.finished and connection.close_code == 1000
    # the audio: 20 ms frames at 16 kHz, all of it
    frames = [item.frame for item in (i for _, i in items) if hasattr(item, "frame")]
    assert {f.sample_rate for f in frames} == {16_000} and max(f.duration for f in frames) == pytest.approx(0.02)
    assert seconds_of(items) == pytest.approx(connection.audio_seconds, abs=1e-3)
    # the words, from the characters' alignment, on the segment's clock
    assert same_words(words_of(items), connection.words)
    # ttfb is measured from the first text sent, not from the connection
    assert started_marker_at(items) == [0.0]


async def test_a_long_sentence_is_heard_before_it_is_written_to_its_end(autojump_clock):
    # No terminator for 200 characters: the words went out as they came, and
    # ElevenLabs' schedule (120 characters) started the audio.
    words = ("and then the fox ran on " * 9).split()
    server = FakeElevenLabs()
    async with server.running():
        items = await synthesize(make_tts(server), [w + " " for w in words], chunk_delay=0.05)
    last_text_at = 0.05 * (len(words) - 1)
    first_audio_at = next(t for t, item in items if getattr(item, "frame", None) is not None)
    assert first_audio_at < last_text_at
    assert server.connections[0].finished


async def test_a_whole_call_deepgram_hears_elevenlabs_speaks_the_user_barges_in(autojump_clock):
    tts_server = FakeElevenLabs(model=SpeechModel(speed=1.25))
    stt_server = FakeDeepgram({1000: "Tell me a story.", 2000: "Stop please."})
    story = "Once upon a time there was a fox. It lived in the woods, far from the town."
    async with tts_server.running(), stt_server.running():
        session = voxtrio.AgentSession(
            vad=EnergyVAD(min_speech_duration=0.1, min_silence_duration=0.3),
            stt=deepgram.STT(api_key="test-key", base_url=f"{stt_server.url}/v1/listen"),
            llm=ScriptedLLM([LLMResponse(input="Tell me a story.", content=story)]),
            tts=make_tts(tts_server),
            min_endpointing_delay=0.3,
        )
        seen = []
        session.on("*", lambda e: seen.append((round(trio.current_time(), 3), e.type, e)))
        speech = [np.full(16_000, 1000, np.int16), np.zeros(48_000, np.int16),
                  np.full(16_000, 2000, np.int16), np.zeros(48_000, np.int16)]
        samples = np.concatenate([np.zeros(8_000, np.int16)] + speech)  # speaks at 0.5-1.5 and 4.5-5.5
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, voxtrio.Agent(), ArrayTransport(samples))
            await trio.sleep(8.0)
            await session.aclose()
    [finished] = [e for _, kind, e in seen if kind == "playback_finished"]
    assert finished.interrupted  # the user's voice cut the reply
    reply = next(item for item in session.history.items if item.type == "message" and item.role == "assistant")
    assert reply.interrupted and reply.content == heard_before(tts_server.connections[0].words, finished.position)
    assert reply.content and story.startswith(reply.content)
    assert not tts_server.connections[0].finished  # the synthesis was cancelled, not run to the end
    users = [item.content for item in session.history.items if item.type == "message" and item.role == "user"]
    assert users == ["Tell me a story.", "Stop please."]
    tts_metrics = [e.metrics for _, kind, e in seen if kind == "metrics_collected" and e.kind == "tts"]
    assert tts_metrics == [] or tts_metrics[0]["characters"] == len(story)


async def test_an_error_frame_is_mapped_by_its_code(autojump_clock):
    # The text never ends: after 20 s ElevenLabs reports input_timeout_exceeded (1008).
    server = FakeElevenLabs()
    async with server.running():
        with pytest.raises(voxtrio.APIStatusError, match="input_timeout_exceeded") as failed:
            await synthesize(make_tts(server), ["Hello there. "], end_input=False)
    assert (failed.value.status_code, failed.value.retryable) == (1008, False)


async def test_cancelling_a_stream_closes_the_connection_at_once(autojump_clock):
    server = FakeElevenLabs(model=SpeechModel(speed=1.25))
    async with server.running():
        with trio.move_on_after(1.0):
            await synthesize(make_tts(server), [LONG_TEXT])
        await trio.sleep(0.1)
    [connection] = server.connections
    assert connection.client_gone_at == 1.0 and not connection.finished
