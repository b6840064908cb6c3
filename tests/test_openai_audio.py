"""openai.STT (transcriptions, multipart WAV) and openai.TTS (speech, raw PCM)
against the loopback server, alone and as a whole pipeline in AgentSession.
MockClock throughout (see test_openai_llm.py for why that is sound)."""

import math

import numpy as np
import pytest
import trio

pytest.importorskip("httpx2")
pytest.importorskip("h11")

import fake_openai  # noqa: E402
import voxtrio  # noqa: E402
from loopback_http import Reply, Stream  # noqa: E402
from voxtrio.audio_files import wav_bytes  # noqa: E402
from voxtrio.providers import openai  # noqa: E402
from voxtrio.testing import ScriptedTransport, ScriptedVAD, UserSpeech, running  # noqa: E402

STT_PATH = "/audio/transcriptions"
TTS_PATH = "/audio/speech"


@pytest.fixture
async def server():
    async with fake_openai.server() as server:
        yield server


def stt_for(server, **options):
    return openai.STT(api_key=fake_openai.KEY, base_url=server.url, **options)


def tts_for(server, **options):
    return openai.TTS(api_key=fake_openai.KEY, base_url=server.url, **options)


def utterance(seconds=0.5):
    samples = (np.sin(np.arange(int(16_000 * seconds)) / 5) * 2000).astype(np.int16)
    return voxtrio.AudioFrame(samples, 16_000)


async def synthesize(tts, text, timeout=10.0):
    send, receive = trio.open_memory_channel(math.inf)
    async with send:
        await tts.synthesize(text, send, conn_options=voxtrio.APIConnectOptions(timeout=timeout))
    return [item async for item in receive]


async def test_an_utterance_is_uploaded_as_a_wav_form_with_language_and_prompt(autojump_clock, server):
    server.script(STT_PATH, fake_openai.transcription("  What's the weather in Paris? "))
    audio = utterance()
    event = await stt_for(server, prompt="Paris, Rome").recognize(audio, language="en-US")
    assert (event.kind, event.text, event.language) == ("final", "What's the weather in Paris?", "en-US")
    (request,) = server.requests
    form = request.form()
    assert form["model"] == "gpt-4o-mini-transcribe" and form["response_format"] == "json"
    assert (form["language"], form["prompt"]) == ("en", "Paris, Rome")
    filename, content_type, content = form["file"]
    assert (filename, content_type) == ("speech.wav", "audio/wav")
    assert content == wav_bytes(audio.data, 16_000)


@pytest.mark.parametrize(
    "reply, retryable",
    [(Reply.json(fake_openai.error_body("boom", "server_error"), 500), True), (Reply.json({"no": "text"}), True)],
)
async def test_transcription_failures_are_typed(autojump_clock, server, reply, retryable):
    server.script(STT_PATH, reply)
    with pytest.raises(voxtrio.APIError) as caught:
        await stt_for(server).recognize(utterance())
    assert caught.value.retryable is retryable


async def test_a_rejected_key_names_the_variable_for_the_audio_endpoints(autojump_clock, server):
    with pytest.raises(voxtrio.APIStatusError, match="OPENAI_API_KEY") as caught:
        await openai.STT(api_key="bad", base_url=server.url).recognize(utterance())
    assert not caught.value.retryable
    with pytest.raises(voxtrio.APIStatusError, match="OPENAI_API_KEY"):
        await synthesize(openai.TTS(api_key="bad", base_url=server.url), "Hi.")


async def test_speech_is_requested_as_pcm_and_streamed_back_sample_exact(autojump_clock, server):
    server.script(TTS_PATH, fake_openai.speech(0.7, pieces=5, interval=0.1))
    items = await synthesize(tts_for(server, voice="coral", speed=1.25, instructions="Cheerful."), "Hello there.")
    assert len(items) == 5  # passed on as it arrives, not gathered
    assert all(item.frame.sample_rate == 24_000 for item in items)
    audio = b"".join(item.frame.data.astype("<i2").tobytes() for item in items)
    assert audio == fake_openai.pcm(0.7)  # chunks that end inside a sample lose nothing
    body = server.requests[0].json()
    assert body == {
        "model": "gpt-4o-mini-tts",
        "input": "Hello there.",
        "voice": "coral",
        "response_format": "pcm",
        "instructions": "Cheerful.",
        "speed": 1.25,
    }


async def test_speech_cut_or_stalled_is_a_typed_error(autojump_clock, server):
    server.script(TTS_PATH, Stream((fake_openai.pcm(0.1),), then="drop"), Stream((), then="stall"))
    with pytest.raises(voxtrio.APIConnectionError):
        await synthesize(tts_for(server), "Hi.")
    with pytest.raises(voxtrio.APITimeoutError):
        await synthesize(tts_for(server), "Hi.", timeout=2.0)
    with pytest.raises(ValueError, match="speed"):
        tts_for(server, speed=5.0)


# -- through AgentSession -------------------------------------------------------------


def pipeline(server, speeches, **options):
    return voxtrio.AgentSession(
        vad=ScriptedVAD(speeches),
        stt=stt_for(server),
        llm=openai.LLM(api_key=fake_openai.KEY, base_url=server.url),
        tts=tts_for(server),
        **options,
    )


async def test_a_whole_call_on_openai_stt_llm_and_tts(autojump_clock, server):
    server.script(STT_PATH, fake_openai.transcription("Hello, who are you?"))
    server.script("/chat/completions", Stream(fake_openai.completion(["I am an agent. ", "Nice to meet you."])))
    server.script(TTS_PATH, fake_openai.speech(1.0, interval=0.05))
    session = pipeline(server, [UserSpeech(start=0.5, end=1.5)])
    metrics = {}
    session.on("metrics_collected", lambda e: metrics.setdefault(e.kind, e.metrics))
    transport = ScriptedTransport()
    async with running(session, voxtrio.Agent(), transport):
        await trio.sleep(6.0)
    history = [(m.role, m.content) for m in session.history.items if m.type == "message"]
    assert history == [("user", "Hello, who are you?"), ("assistant", "I am an agent. Nice to meet you.")]
    (upload,) = server.requests_to(STT_PATH)
    assert upload.form()["file"][2].startswith(b"RIFF")
    assert [r.json()["input"] for r in server.requests_to(TTS_PATH)] == ["I am an agent.", "Nice to meet you."]
    assert sum(d for _, d in transport.audio_output.writes) == pytest.approx(2.0)
    assert metrics["tts"]["audio_duration"] == pytest.approx(2.0) and metrics["tts"]["characters"] > 0
    assert metrics["tts"]["ttfb"] >= 0 and metrics["stt"]["audio_duration"] > 0


async def test_barge_in_closes_the_speech_request_under_way(autojump_clock, server):
    server.script(STT_PATH, fake_openai.transcription("Tell me everything."))
    server.script("/chat/completions", Stream(fake_openai.completion(["Here is a very long answer."])))
    server.script(TTS_PATH, fake_openai.speech(10.0, pieces=100, interval=0.1))  # rendered at real-time pace
    session = pipeline(server, [UserSpeech(start=0.5, end=1.5), UserSpeech(start=3.0, end=4.0)])
    interrupted = []
    session.on("playback_finished", lambda e: interrupted.append(trio.current_time()) if e.interrupted else None)
    async with running(session, voxtrio.Agent(), ScriptedTransport()):
        await trio.sleep(5.0)
    speech = [d for d in server.disconnects if d.path == TTS_PATH]
    assert interrupted and speech, "the reply was interrupted while its audio was still streaming"
    assert speech[0].chunks_sent < 100
    assert speech[0].at == pytest.approx(interrupted[0], abs=0.02)
