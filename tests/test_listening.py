"""Listening: real audio through AudioIn, the energy VAD, the recognizer and Turn."""

import numpy as np
import pytest
import trio

import voxtrio
from voxtrio.actors.audio_in import PipelineConverter
from voxtrio.chat import ChatContext
from voxtrio.messages import STTEvent
from voxtrio.providers.base import STT, EndOfTurnDetector, STTCapabilities
from voxtrio.providers.energy_vad import EnergyVAD
from voxtrio.testing import ArrayTransport, LLMResponse, ScriptedLLM, ScriptedTTS, silence, tone


def test_converter_resamples_mixes_and_reframes_any_input():
    converter = PipelineConverter()
    stereo_48k = np.zeros(2 * 48_000, np.int16)  # 1 s of stereo 48 kHz
    stereo_48k[0::2] = tone(1.0, sample_rate=48_000)
    frames = []
    for start in range(0, len(stereo_48k), 2 * 700):  # odd chunk size: 700 samples/channel
        chunk = stereo_48k[start : start + 2 * 700]
        frames += converter.push(voxtrio.AudioFrame(chunk, 48_000, 2))
    frames += converter.flush()
    assert all(f.sample_rate == 16_000 and f.num_channels == 1 for f in frames)
    assert all(f.samples_per_channel == 320 for f in frames)
    assert [round(f.timestamp, 6) for f in frames[:3]] == [0.0, 0.02, 0.04]
    assert sum(f.duration for f in frames) == pytest.approx(1.0, abs=0.021)
    middle = np.concatenate([f.data for f in frames])[4000:12000].astype(np.float64)
    # the tone was in one channel only: the mix halves it
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(6000 / 2 / np.sqrt(2), rel=0.05)


def test_converter_rejects_what_is_not_audio():
    with pytest.raises(voxtrio.AudioFormatError, match="not an AudioFrame"):
        PipelineConverter().push(b"\x00\x00")


def speech_session(stt, **options):
    return voxtrio.AgentSession(
        vad=EnergyVAD(min_speech_duration=0.1, min_silence_duration=0.3),
        stt=stt,
        llm=ScriptedLLM([LLMResponse(input="hello there", content="hi")]),
        tts=ScriptedTTS([], default_chars_per_second=10.0),
        **options,
    )


class EndpointSTT(STT):
    """A streaming STT that hears 'hello there' and finalizes ``delay`` after the
    audio goes quiet (a real recognizer's own endpointing)."""

    capabilities = STTCapabilities(streaming=True)

    def __init__(self, delay=0.2, texts=("hello there",), language=None):
        self.delay = delay
        self.texts = list(texts)
        self.language = language
        self.heard_silence_only = []

    async def stream(self, frames, events, *, language=None, conn_options=None):
        voiced_until = None
        async for frame in frames:
            if not len(frame.data):
                continue
            loud = np.abs(frame.data).max() > 500
            self.heard_silence_only.append(not loud)
            end = frame.timestamp + frame.duration
            if loud:
                voiced_until = end
            elif voiced_until is not None and end - voiced_until >= self.delay and self.texts:
                await events.send(
                    STTEvent(
                        kind="final", text=self.texts.pop(0), start_time=0.0, end_time=voiced_until, language=self.language
                    )
                )
                voiced_until = None


async def run_until(session, transport, seconds, body=None):
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(), transport)
        if body is not None:
            await body()
        await trio.sleep_until(seconds)
        await session.aclose()


class InlineArrayTransport(ArrayTransport):
    """ArrayTransport with AudioIn's work done in its reading task (transports/base.py)."""

    inline_input = True


@pytest.mark.parametrize("transport", [ArrayTransport, InlineArrayTransport])
async def test_energy_vad_and_turn_commit_on_the_audio_clock(autojump_clock, transport):
    session = speech_session(EndpointSTT(delay=0.2), min_endpointing_delay=0.5)
    seen = []
    session.on("*", lambda e: seen.append((round(trio.current_time(), 3), e.type, e.payload())))
    audio = np.concatenate([silence(0.5), tone(1.0), silence(3.0)])
    await run_until(session, transport(audio), 5.0)
    user_states = [(t, p["new"]) for t, kind, p in seen if kind == "user_state_changed"]
    # speech 0.5-1.5: the VAD confirms 0.1 s in, and ends 0.3 s after
    assert user_states == [(0.6, "speaking"), (1.8, "listening")]
    [eou] = [p for t, kind, p in seen if kind == "metrics_collected" and p["kind"] == "eou"]
    # the final came at 1.7; the commit is last voiced (1.5) + 0.5 = 2.0
    assert (eou["end_of_utterance_delay"], eou["transcription_delay"]) == (0.5, 0.2)
    [commit] = [t for t, kind, p in seen if kind == "conversation_item_added" and p["item"].get("role") == "user"]
    assert commit == 2.0


async def test_without_a_vad_endpointing_uses_the_recognizer_end_time(autojump_clock):
    """One clock in every mode: STT-only endpointing waits min_delay after the
    speech ended, not after the transcript arrived (the reference adds them, #4325)."""
    session = voxtrio.AgentSession(
        stt=EndpointSTT(delay=0.3),
        llm=ScriptedLLM([LLMResponse(input="hello there", content="hi")]),
        tts=ScriptedTTS([], default_chars_per_second=10.0),
        min_endpointing_delay=0.5,
    )
    commits = []
    session.on("conversation_item_added", lambda e: commits.append(round(trio.current_time(), 3)))
    audio = np.concatenate([silence(0.5), tone(1.0), silence(3.0)])
    await run_until(session, ArrayTransport(audio), 5.0)
    assert commits[1] == 2.0  # speech ended 1.5, final at 1.8, commit 1.5 + 0.5


async def test_late_fragment_after_a_commit_opens_the_next_turn_instead_of_a_phantom_turn(autojump_clock):
    class TwoFinals(STT):
        capabilities = STTCapabilities(streaming=True)

        async def stream(self, frames, events, *, language=None, conn_options=None):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_drain, frames)
                await trio.sleep(1.7)
                await events.send(STTEvent(kind="final", text="book a table", end_time=1.5))
                await trio.sleep(1.0)  # long after the commit at 2.0
                await events.send(STTEvent(kind="final", text="for two", end_time=1.5))
                await trio.sleep(1.9)  # during the next speech (4.0-4.4, VAD end 4.7)
                await events.send(STTEvent(kind="final", text="at eight", end_time=4.4))

    session = speech_session(TwoFinals(), min_endpointing_delay=0.5)
    audio = np.concatenate([silence(0.5), tone(1.0), silence(2.5), tone(0.4), silence(3)])
    await run_until(session, ArrayTransport(audio), 7.0)
    users = [m.content for m in session.history.items if m.type == "message" and m.role == "user"]
    assert users == ["book a table", "for two at eight"]


async def _drain(frames):
    async for _ in frames:
        pass


async def test_recognizer_stream_heals_after_an_error(autojump_clock):
    class FlakyStream(EndpointSTT):
        def __init__(self):
            super().__init__()
            self.attempts = 0

        async def stream(self, frames, events, *, language=None, conn_options=None):
            self.attempts += 1
            if self.attempts == 1:
                await frames.receive()
                raise voxtrio.APIConnectionError("connection reset by peer")
            await super().stream(frames, events)

    stt = FlakyStream()
    session = speech_session(stt)
    errors = []
    session.on("error", errors.append)
    audio = np.concatenate([silence(0.5), tone(1.0), silence(3.0)])
    await run_until(session, ArrayTransport(audio), 5.0)
    assert stt.attempts == 2
    assert [(e.source, e.recoverable) for e in errors] == [("stt", True)]
    assert [m.content for m in session.history.items if m.type == "message"][:1] == ["hello there"]


async def test_an_stt_that_keeps_failing_exhausts_the_error_budget(autojump_clock):
    class Broken(STT):
        capabilities = STTCapabilities(streaming=True)

        async def stream(self, frames, events, *, language=None, conn_options=None):
            await frames.receive()
            raise voxtrio.APIConnectionError("refused")

    options = voxtrio.APIConnectOptions(max_retry=1, retry_interval=0.5)
    session = speech_session(
        Broken(),
        conn_options=voxtrio.SessionConnectOptions(stt_conn_options=options, max_unrecoverable_errors=1),
    )
    closes = []
    session.on("close", closes.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(), ArrayTransport(silence(1.0)))
    [close] = closes
    assert close.reason == "error" and "refused" in close.error


async def test_non_streaming_stt_is_driven_by_vad_segments(autojump_clock):
    class Batch(STT):
        capabilities = STTCapabilities(streaming=False)

        def __init__(self):
            self.segments = []

        async def recognize(self, audio, *, language=None, conn_options=None):
            self.segments.append((round(audio.timestamp, 2), round(audio.duration, 2)))
            await trio.sleep(0.3)  # decoding time
            return STTEvent(kind="final", text="hello there")

    stt = Batch()
    session = speech_session(stt, min_endpointing_delay=0.5)
    commits = []
    session.on("conversation_item_added", lambda e: commits.append((round(trio.current_time(), 3), e.item)))
    audio = np.concatenate([silence(1.0), tone(1.0), silence(3.0)])
    await run_until(session, ArrayTransport(audio), 5.0)
    # the segment covers the speech (1.0-2.0) with 0.3 s of audio either side
    [(start, duration)] = stt.segments
    assert start == pytest.approx(0.7, abs=0.03) and duration == pytest.approx(1.6, abs=0.05)
    user = [t for t, item in commits if item.type == "message" and item.role == "user"]
    assert user == [2.6]  # VAD end 2.3, recognized at 2.6 (> 2.0 + 0.5)


async def test_stt_turn_detection_follows_the_recognizer_boundaries(autojump_clock):
    class Boundaries(STT):
        capabilities = STTCapabilities(streaming=True)

        async def stream(self, frames, events, *, language=None, conn_options=None):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_drain, frames)
                await trio.sleep(0.7)
                await events.send(STTEvent(kind="start_of_speech"))
                await trio.sleep(1.0)
                await events.send(STTEvent(kind="final", text="hello there", end_time=1.5))
                await events.send(STTEvent(kind="end_of_speech", end_time=1.5))
                await trio.sleep_forever()

    session = speech_session(Boundaries(), turn_detection="stt", min_endpointing_delay=0.4)
    seen = []
    session.on("*", lambda e: seen.append((round(trio.current_time(), 3), e.type, e.payload())))
    audio = np.concatenate([silence(0.5), tone(1.0), silence(3.0)])
    await run_until(session, ArrayTransport(audio), 4.0)
    # The VAD drives the user state in every mode: speaking from its start of
    # speech (0.6); the recognizer's end of speech (1.7) comes before the VAD's.
    assert [(t, p["new"]) for t, k, p in seen if k == "user_state_changed"] == [(0.6, "speaking"), (1.7, "listening")]
    [commit] = [t for t, k, p in seen if k == "conversation_item_added" and p["item"].get("role") == "user"]
    assert commit == 1.9  # recognizer end 1.5 + 0.4


async def test_an_unlikely_end_of_turn_waits_for_the_max_delay(autojump_clock):
    class Unsure(EndOfTurnDetector):
        async def predict_end_of_turn(self, chat_ctx, transcript):
            await trio.sleep(0.05)
            return 0.01

    session = speech_session(
        EndpointSTT(delay=0.2), turn_detection=Unsure(), min_endpointing_delay=0.5, max_endpointing_delay=2.0
    )
    eou = []
    session.on("metrics_collected", lambda e: eou.append(e.metrics) if e.kind == "eou" else None)
    audio = np.concatenate([silence(0.5), tone(1.0), silence(4.0)])
    await run_until(session, ArrayTransport(audio), 6.0)
    [metrics] = eou
    assert metrics["endpointing_delay"] == 2.0
    assert metrics["end_of_utterance_delay"] == pytest.approx(2.0)
    assert metrics["end_of_turn_probability"] == 0.01


class SlowDetector(EndOfTurnDetector):
    """Answers ``probability`` after ``thinking`` seconds (never, if None), for
    the ``languages`` it knows (any, if None)."""

    def __init__(self, thinking, probability=0.01, languages=None):
        self.thinking = thinking
        self.probability = probability
        self.languages = languages
        self.asked = []

    def supports_language(self, language):
        return self.languages is None or language in self.languages

    async def predict_end_of_turn(self, chat_ctx, transcript):
        assert isinstance(chat_ctx, ChatContext)  # the conversation so far
        self.asked.append((round(trio.current_time(), 3), transcript))
        if self.thinking is None:
            await trio.sleep_forever()
        await trio.sleep(self.thinking)
        return self.probability


@pytest.mark.parametrize(
    "thinking, commit_at, delay",
    [
        # asked at the VAD's end of speech (1.8); the speech ended at 1.5
        (0.9, 3.5, 2.0),  # answered in time: unlikely, so the max delay (1.5 + 2.0)
        (1.1, 2.8, 0.5),  # too late: the turn goes on after PREDICTION_TIMEOUT (1.8 + 1.0)
        (None, 2.8, 0.5),  # never: the same, and the agent still answers
    ],
)
async def test_an_end_of_turn_detector_gets_one_second_to_answer(autojump_clock, thinking, commit_at, delay):
    detector = SlowDetector(thinking)
    session = speech_session(
        EndpointSTT(delay=0.2), turn_detection=detector, min_endpointing_delay=0.5, max_endpointing_delay=2.0
    )
    seen = []
    session.on("*", lambda e: seen.append((round(trio.current_time(), 3), e.type, e.payload())))
    audio = np.concatenate([silence(0.5), tone(1.0), silence(4.0)])
    await run_until(session, ArrayTransport(audio), 5.0)
    assert detector.asked == [(1.8, "hello there")]
    [commit] = [t for t, k, p in seen if k == "conversation_item_added" and p["item"].get("role") == "user"]
    assert commit == commit_at
    [eou] = [p for t, k, p in seen if k == "metrics_collected" and p["kind"] == "eou"]
    assert eou["endpointing_delay"] == delay
    assert ("end_of_turn_probability" in eou) == (thinking == 0.9)
    replies = [p["item"]["content"] for t, k, p in seen if k == "conversation_item_added" and p["item"].get("role") == "assistant"]
    assert replies == ["hi"]


@pytest.mark.parametrize(
    "probability, languages, stt_language, commit_at",
    [
        (0.15, None, None, 2.7),  # exactly the threshold is not "unlikely": min delay, after the answer (1.8 + 0.9)
        (0.14, None, None, 3.5),  # below it: max delay (1.5 + 2.0)
        (0.01, {"fr"}, "fr", 3.5),  # the detector knows the language the recognizer heard
        (0.01, {"fr"}, "en", 2.0),  # it does not: not asked, min delay (1.5 + 0.5)
    ],
)
async def test_the_detector_decides_only_below_its_threshold_and_in_its_languages(
    autojump_clock, probability, languages, stt_language, commit_at
):
    detector = SlowDetector(0.9, probability, languages)
    session = speech_session(
        EndpointSTT(delay=0.2, language=stt_language), turn_detection=detector, min_endpointing_delay=0.5, max_endpointing_delay=2.0
    )
    commits = []
    session.on("conversation_item_added", lambda e: commits.append(round(trio.current_time(), 3)) if getattr(e.item, "role", None) == "user" else None)
    audio = np.concatenate([silence(0.5), tone(1.0), silence(4.0)])
    await run_until(session, ArrayTransport(audio), 5.0)
    assert commits == [commit_at]
    assert len(detector.asked) == (0 if stt_language == "en" else 1)


async def test_protected_speech_sends_silence_to_the_recognizer(autojump_clock):
    stt = EndpointSTT(texts=())
    session = speech_session(stt, discard_audio_if_uninterruptible=True)

    async def body():
        await trio.sleep(0.5)
        session.say("a protected announcement here", allow_interruptions=False)

    audio = np.concatenate([tone(6.0)])
    await run_until(session, ArrayTransport(audio), 6.0, body)
    heard = stt.heard_silence_only
    # loud at first, silence while the protected say plays (0.7 .. 3.6), loud again after
    assert heard[:20] == [False] * 20
    assert all(heard[40:170])
    assert not any(heard[190:290])


async def test_clear_user_turn_forgets_what_was_heard(autojump_clock):
    session = speech_session(EndpointSTT(delay=0.2), turn_detection="manual")

    async def body():
        await trio.sleep(2.0)  # the final "hello there" came at 1.7
        session.clear_user_turn()
        transcript = await session.commit_user_turn(transcript_timeout=0.5)
        assert transcript == ""

    audio = np.concatenate([silence(0.5), tone(1.0), silence(3.0)])
    await run_until(session, ArrayTransport(audio), 4.0, body)
    assert not [m for m in session.history.items if m.type == "message"]


async def test_the_away_timer_waits_while_a_tool_runs(autojump_clock):
    async def slow_lookup():
        await trio.sleep(8.0)
        return None

    tool = voxtrio.FunctionTool.raw(name="lookup", description="slow", parameters={}, function=slow_lookup)
    from voxtrio.testing import ToolCall

    llm = ScriptedLLM(
        [LLMResponse(input="hello there", content="Let me check.", tool_calls=(ToolCall(name="lookup", arguments="{}", call_id="1"),))]
    )
    session = voxtrio.AgentSession(
        vad=EnergyVAD(min_speech_duration=0.1, min_silence_duration=0.3),
        stt=EndpointSTT(),
        llm=llm,
        tts=ScriptedTTS([], default_chars_per_second=10.0),
        user_away_timeout=3.0,
    )
    seen = []
    session.on("*", lambda e: seen.append((round(trio.current_time(), 3), e.type, e.payload())))
    audio = np.concatenate([silence(0.5), tone(1.0), silence(20)])
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(tools=[tool]), ArrayTransport(audio))
        await trio.sleep(16)
        await session.aclose()
    agent = [(t, p["new"]) for t, k, p in seen if k == "agent_state_changed"]
    # the tool call is parsed at 2.3 and runs 8 s; "Let me check." plays 2.5-3.8:
    # the agent thinks until the tool ends, and the user is away 3 s after that
    assert agent[2:] == [(2.5, "speaking"), (3.8, "thinking"), (10.3, "listening")]
    away = [t for t, k, p in seen if k == "user_state_changed" and p["new"] == "away"]
    assert away == [13.3]


async def test_talking_past_the_turn_limit_calls_on_user_turn_exceeded(autojump_clock):
    exceeded = []

    class Patient(voxtrio.Agent):
        async def on_user_turn_exceeded(self, event):
            exceeded.append((event.word_count, event.accumulated_transcript))

    stt = EndpointSTT(delay=0.2, texts=("one two three", "four five six"))
    session = speech_session(stt, user_turn_max_words=5)
    audio = np.concatenate([silence(0.5), tone(1.0), silence(0.25), tone(1.0), silence(3.0)])
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, Patient(), ArrayTransport(audio))
        await trio.sleep(5)
        await session.aclose()
    assert exceeded == [(6, "one two three four five six")]


async def test_turning_audio_input_off_ends_the_users_speech(autojump_clock):
    session = speech_session(EndpointSTT(delay=5.0, texts=()))
    states = []
    session.on("user_state_changed", lambda e: states.append((round(trio.current_time(), 3), e.new_state)))

    async def body():
        await trio.sleep(1.0)
        session.set_audio_input_enabled(False)  # push-to-talk released mid-speech

    audio = np.concatenate([silence(0.5), tone(3.0)])
    await run_until(session, ArrayTransport(audio), 3.0, body)
    assert states == [(0.6, "speaking"), (1.0, "listening")]


@pytest.mark.parametrize("inline", [True, False])
async def test_a_failing_vad_closes_the_session_inline_or_as_an_actor(autojump_clock, inline):
    class BrokenVAD(EnergyVAD):
        def detector(self):
            return _Broken() if inline else None

        async def run(self, frames, events):
            await frames.receive()
            raise RuntimeError("vad model missing")

    class _Broken:
        def push(self, frame):
            raise RuntimeError("vad model missing")

    session = voxtrio.AgentSession(vad=BrokenVAD(), stt=EndpointSTT(), llm=ScriptedLLM([]))
    closes = []
    errors = []
    session.on("close", closes.append)
    session.on("error", errors.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(), ArrayTransport(silence(1.0)))
    [close] = closes
    assert close.reason == "error" and "vad model missing" in close.error
    assert [e.source for e in errors] == ["vad"]


async def test_inline_input_converts_in_the_transports_task_and_resamples_the_same(autojump_clock, monkeypatch):
    """With ``inline_input`` the frame is converted by the task that sent it (no
    wake-up of AudioIn's loop), and the recognizer hears the same audio."""
    from voxtrio.actors import audio_in

    heard = {}
    push = audio_in.PipelineConverter.push
    for transport in (ArrayTransport, InlineArrayTransport):
        converted_by = set()

        def spy(self, frame, converted_by=converted_by):
            converted_by.add(trio.lowlevel.current_task().name.rsplit(".", 1)[-1])
            return push(self, frame)

        monkeypatch.setattr(audio_in.PipelineConverter, "push", spy)
        stt = EndpointSTT(delay=0.2)
        session = speech_session(stt, min_endpointing_delay=0.5)
        audio = np.concatenate([silence(0.5), tone(1.0, sample_rate=8_000), silence(1.0)])
        await run_until(session, transport(audio, sample_rate=8_000), trio.current_time() + 4.0)
        heard[transport] = (stt.heard_silence_only, [m.content for m in session.history.items if m.type == "message"])
        assert converted_by == ({"run"} if transport is ArrayTransport else {"_read_transport"})
    assert heard[ArrayTransport] == heard[InlineArrayTransport]
    assert heard[ArrayTransport][1] == ["hello there", "hi"]


@pytest.mark.parametrize("transport", [ArrayTransport, InlineArrayTransport])
async def test_a_failure_of_audio_in_itself_ends_the_session_alike_inline_or_not(autojump_clock, monkeypatch, transport):
    """AudioIn's own bug, met in the transport's task, is still AudioIn's: not
    reported as the transport's error, and the session closes as it would."""
    from voxtrio.actors import audio_in

    def broken(self, frame):
        if frame.timestamp >= 1.0:
            raise ZeroDivisionError("AudioIn's own bug")

    monkeypatch.setattr(audio_in.AudioIn, "_fan_out", broken)
    session = speech_session(EndpointSTT(delay=0.2))
    errors = []
    session.on("error", errors.append)
    with pytest.raises(BaseExceptionGroup) as crashed, trio.fail_after(30):
        await session.main(voxtrio.Agent(), transport(silence(3.0)))
    assert crashed.value.subgroup(ZeroDivisionError) is not None  # AudioIn's crash, out of main
    assert [e.source for e in errors if e.source == "transport"] == []


async def test_inline_input_refuses_frames_once_the_session_has_stopped_listening(autojump_clock):
    """A transport that keeps the input past the session's end gets
    BrokenResourceError, as from a channel whose reader has gone."""

    class Keeper(InlineArrayTransport):
        async def read_audio(self, frames):
            self.kept = frames
            await frames.send(voxtrio.AudioFrame.silence(0.02))
            await trio.sleep_forever()

    transport = Keeper(silence(0.1))
    session = speech_session(EndpointSTT())
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(), transport)
        await trio.sleep(0.5)
        await session.aclose()
    with pytest.raises(trio.BrokenResourceError):
        transport.kept.send_nowait(voxtrio.AudioFrame.silence(0.02))
