"""FallbackLLM / FallbackSTT / FallbackTTS: failover to the next provider, the
failed one probed in the session's background task and restored, events.
Real providers against loopback servers, on MockClock."""

import contextlib
import math

import pytest
import trio

pytest.importorskip("httpx2")
pytest.importorskip("h11")

import fake_anthropic  # noqa: E402
import fake_openai  # noqa: E402
import voxtrio  # noqa: E402
from loopback_http import Reply, Stream, sse  # noqa: E402
from voxtrio.messages import STTEvent  # noqa: E402
from voxtrio.providers import anthropic, openai  # noqa: E402
from voxtrio.providers.base import STT, STTCapabilities  # noqa: E402
from provider_calls import text_session, text_turn  # noqa: E402
from voxtrio.testing import ScriptedTTS, ScriptedTransport, ScriptedVAD, UserSpeech, running  # noqa: E402

CHAT = "/chat/completions"
UNAVAILABLE = Reply.json(fake_openai.error_body("upstream unavailable", "server_error"), 503)


@contextlib.asynccontextmanager
async def two_openai_servers():
    async with fake_openai.server() as primary, fake_openai.server() as secondary:
        yield primary, secondary


def openai_llm(server):
    return openai.LLM(api_key=fake_openai.KEY, base_url=server.url)


def changes(session):
    seen = []
    session.on("active_provider_changed", lambda e: seen.append((trio.current_time(), e.source, e.active[:1], e.reason)))
    return seen


async def test_the_next_llm_takes_over_and_the_failed_one_is_probed_back(autojump_clock):
    async with fake_openai.server() as primary, fake_anthropic.server() as secondary:
        primary.script(CHAT, UNAVAILABLE, UNAVAILABLE, UNAVAILABLE, Stream(fake_openai.completion(["From the primary."])))
        secondary.script("/v1/messages", Stream(fake_anthropic.message(["From the secondary."])))
        llm = voxtrio.FallbackLLM(
            [openai_llm(primary), anthropic.LLM(api_key=fake_anthropic.KEY, base_url=secondary.url)],
            probe_interval=2.0,
        )
        session = text_session(llm)
        seen = changes(session)
        errors = []
        session.on("error", errors.append)
        async with running(session, voxtrio.Agent(), ScriptedTransport(input_audio=False)):
            first = await session.run(user_input="hi")
            failed_at = primary.requests_to(CHAT)[0].received_at
            await trio.sleep(10.0)  # probes at +2 (503), +4 (503), +6 (answers)
            second = await session.run(user_input="again")
        first.expect.next_event().is_message(role="assistant").contains("From the secondary.")
        second.expect.next_event().is_message(role="assistant").contains("From the primary.")
        probes = [r.received_at - failed_at for r in primary.requests_to(CHAT)[1:4]]
        assert probes == pytest.approx([2.0, 4.0, 6.0])
        assert [r.json()["messages"][-1]["content"] for r in primary.requests_to(CHAT)] == ["hi"] * 4 + ["again"]
        assert [(source, active) for _, source, active, _ in seen] == [("llm", "1"), ("llm", "0")]
        assert "503" in seen[0][3] and "healthy again" in seen[1][3]
        assert seen[1][0] - failed_at == pytest.approx(6.0)
        assert errors == []  # the adapter recovered: the session saw no error


async def test_a_stalled_llm_is_left_after_attempt_timeout(autojump_clock):
    async with two_openai_servers() as (primary, secondary):
        primary.script(CHAT, Stream((), then="stall"))
        secondary.script(CHAT, Stream(fake_openai.completion(["Quick answer."])))
        llm = voxtrio.FallbackLLM([openai_llm(primary), openai_llm(secondary)], attempt_timeout=1.5, probe_interval=60)
        session = text_session(llm)
        seen = changes(session)
        started = trio.current_time()
        result = await text_turn(session)
        result.expect.next_event().is_message(role="assistant").contains("Quick answer.")
        assert secondary.requests[0].received_at - started == pytest.approx(1.5)
        assert "APITimeoutError" in seen[0][3]
        assert len(primary.disconnects) == 1  # the stalled request was closed, not left open


async def test_text_already_spoken_is_not_repeated_by_the_next_llm(autojump_clock):
    async with two_openai_servers() as (primary, secondary):
        primary.script(CHAT, Stream((sse(fake_openai.chunk({"content": "Hello, I "})),), then="drop"))
        secondary.script(CHAT, Stream(fake_openai.completion(["Hello from two."])))
        llm = voxtrio.FallbackLLM([openai_llm(primary), openai_llm(secondary)], probe_interval=60)
        session = text_session(llm)
        errors = []
        session.on("error", errors.append)
        async with running(session, voxtrio.Agent(), ScriptedTransport(input_audio=False)):
            with pytest.raises(voxtrio.APIConnectionError):
                await session.run(user_input="hi")  # "Hello, I " was said: no one may say it again
            result = await session.run(user_input="again")
        assert secondary.requests_to(CHAT)[0].json()["messages"][-1]["content"] == "again"
        result.expect.next_event().is_message(role="assistant").contains("Hello from two.")
        assert [(e.source, type(e.error)) for e in errors] == [("llm", voxtrio.APIConnectionError)]


async def test_when_every_llm_is_down_each_is_tried_again_in_order(autojump_clock):
    async with two_openai_servers() as (primary, secondary):
        primary.script(CHAT, UNAVAILABLE)
        secondary.script(CHAT, UNAVAILABLE, UNAVAILABLE, Stream(fake_openai.completion(["Finally."])))
        llm = voxtrio.FallbackLLM([openai_llm(primary), openai_llm(secondary)], probe_interval=60)
        options = voxtrio.APIConnectOptions(max_retry=2, retry_interval=0.5)
        session = text_session(llm, conn_options=voxtrio.SessionConnectOptions(llm_conn_options=options))
        result = await text_turn(session)
        # Each of the session's attempts tries both (0.1 s, then 0.5 s apart).
        assert (len(primary.requests), len(secondary.requests)) == (3, 3)
        result.expect.next_event().is_message(role="assistant").contains("Finally.")


async def test_the_next_tts_takes_over_and_the_first_comes_back(autojump_clock):
    async with two_openai_servers() as (primary, secondary):
        primary.script("/audio/speech", Reply(status=500, body=b"{}"), Reply(status=500, body=b"{}"), fake_openai.speech(1.0))
        secondary.script("/audio/speech", fake_openai.speech(1.0))
        tts = voxtrio.FallbackTTS(
            [openai.TTS(api_key=fake_openai.KEY, base_url=primary.url), openai.TTS(api_key=fake_openai.KEY, base_url=secondary.url)],
            probe_interval=1.0,
        )
        assert not tts.capabilities.streaming
        session = voxtrio.AgentSession(tts=tts)
        seen = changes(session)
        transport = ScriptedTransport(input_audio=False)
        async with running(session, voxtrio.Agent(), transport):
            await session.say("First sentence.")
            await trio.sleep(5.0)
            await session.say("Second sentence.")
        assert [r.json()["input"] for r in secondary.requests] == ["First sentence."]
        assert [r.json()["input"] for r in primary.requests] == ["First sentence."] * 3 + ["Second sentence."]
        assert [(source, active) for _, source, active, _ in seen] == [("tts", "1"), ("tts", "0")]
        assert sum(d for _, d in transport.audio_output.writes) == pytest.approx(2.0)


async def test_a_streaming_and_a_sentence_tts_mix_as_a_sentence_tts(autojump_clock):
    async with fake_openai.server() as server:
        server.script("/audio/speech", Reply(status=503, body=b"{}"))
        scripted = ScriptedTTS([], default_chars_per_second=10.0)
        tts = voxtrio.FallbackTTS([openai.TTS(api_key=fake_openai.KEY, base_url=server.url), scripted], probe_interval=60)
        session = voxtrio.AgentSession(tts=tts)
        transport = ScriptedTransport(input_audio=False)
        async with running(session, voxtrio.Agent(), transport):
            await session.say("Hello you.")
        assert scripted.requests == ["Hello you."]
        assert sum(d for _, d in transport.audio_output.writes) == pytest.approx(1.0)


async def test_the_next_stt_transcribes_the_utterance(autojump_clock):
    async with two_openai_servers() as (primary, secondary):
        primary.script("/audio/transcriptions", Reply(status=500, body=b"{}"))
        secondary.script("/audio/transcriptions", fake_openai.transcription("Hello there."))
        stt = voxtrio.FallbackSTT(
            [openai.STT(api_key=fake_openai.KEY, base_url=primary.url), openai.STT(api_key=fake_openai.KEY, base_url=secondary.url)],
            probe_interval=60,
        )
        session = voxtrio.AgentSession(vad=ScriptedVAD([UserSpeech(start=0.5, end=1.5)]), stt=stt)
        seen = changes(session)
        transcripts = []
        session.on("user_input_transcribed", lambda e: transcripts.append((e.transcript, e.is_final)))
        async with running(session, voxtrio.Agent(), ScriptedTransport()):
            await trio.sleep(3.0)
        assert transcripts == [("Hello there.", True)]
        assert primary.requests[0].form()["file"][2] == secondary.requests[0].form()["file"][2]
        assert [(source, active) for _, source, active, _ in seen] == [("stt", "1")]


class _StreamingSTT(STT):
    """A streaming STT that answers every frame's arrival with a final, or fails."""

    capabilities = STTCapabilities(streaming=True, interim_results=False)

    def __init__(self, name, fail_after=None):
        self.name, self.fail_after = name, fail_after

    def __repr__(self):
        return self.name

    async def stream(self, frames, events, *, language=None, conn_options=None):
        count = 0
        async for _ in frames:
            count += 1
            if self.fail_after is not None and count > self.fail_after:
                raise voxtrio.APIConnectionError(f"{self.name} dropped")
            await events.send(STTEvent(kind="final", text=f"{self.name}{count}"))


async def test_a_streaming_stt_fails_over_mid_stream_on_the_same_audio(autojump_clock):
    stt = voxtrio.FallbackSTT([_StreamingSTT("a", fail_after=2), _StreamingSTT("b")], probe_interval=60)
    frames_send, frames_receive = trio.open_memory_channel(math.inf)
    events_send, events_receive = trio.open_memory_channel(math.inf)
    for _ in range(5):
        frames_send.send_nowait(voxtrio.AudioFrame.silence(0.02))
    frames_send.close()
    async with events_send:
        await stt.stream(frames_receive, events_send)
    assert [e.text async for e in events_receive] == ["a1", "a2", "b1", "b2"]
    assert repr(stt.active) == "b"
    with pytest.raises(ValueError, match="all stream"):
        voxtrio.FallbackSTT([_StreamingSTT("a"), openai.STT(api_key="k")])


class _FlakyStreamingTTS(ScriptedTTS):
    """Fails its first ``failures`` requests from inside a nursery (the error
    arrives wrapped in an exception group), then speaks."""

    def __init__(self, failures):
        super().__init__([], default_chars_per_second=10.0)
        self.failures = failures

    async def stream(self, text, audio, *, conn_options=None):
        if self.failures:
            self.failures -= 1
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep, 0)
                raise voxtrio.APIConnectionError("flaky")
        await super().stream(text, audio)


async def test_streaming_tts_fails_over_and_a_wrapped_probe_failure_keeps_it_down(autojump_clock):
    primary, secondary = _FlakyStreamingTTS(failures=2), ScriptedTTS([], default_chars_per_second=10.0)
    tts = voxtrio.FallbackTTS([primary, secondary], probe_interval=1.0)
    assert tts.capabilities.streaming
    session = voxtrio.AgentSession(tts=tts)
    seen = changes(session)
    transport = ScriptedTransport(input_audio=False)
    async with running(session, voxtrio.Agent(), transport):
        await session.say("Hello you.")  # primary fails; secondary speaks; probe 1 fails (wrapped)
        await trio.sleep(3.0)  # probe 2 succeeds
        await session.say("Again now.")
    assert secondary.requests == ["Hello you."]
    assert primary.requests[-1] == "Again now."
    assert [(source, active) for _, source, active, _ in seen] == [("tts", "1"), ("tts", "0")]
    assert session.last_close.reason == "user_initiated"
