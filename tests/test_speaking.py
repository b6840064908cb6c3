"""Speaking: text transforms, what was heard, TTS errors, the playout model, audio checks."""

import numpy as np
import pytest
import trio

import voxtrio
from voxtrio.audio import AudioFrame, PlayoutTimeline
from voxtrio.providers.base import TTS, SynthesizedAudio, TimedWord, TTSCapabilities
from voxtrio.testing import LLMResponse, ScriptedLLM, ScriptedTransport, ScriptedTTS, TTSResponse
from voxtrio.text import SentenceSplitter, heard_prefix, strip_emoji, strip_markdown


async def run(session, agent, body):
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, agent, ScriptedTransport(input_audio=False))
        await body()
        await session.aclose()


async def test_markdown_and_emoji_are_not_spoken_but_stay_in_the_transcript(autojump_clock):
    raw = "**Great** news 🎉 — see [the docs](http://x.y) now."
    tts = ScriptedTTS([], default_chars_per_second=20.0)
    session = voxtrio.AgentSession(llm=ScriptedLLM([LLMResponse(input="q", content=raw)]), tts=tts)

    async def body():
        await session.generate_reply(user_input="q")

    await run(session, voxtrio.Agent(), body)
    assert tts.requests == ["Great news  — see the docs now."]
    assert session.history.items[-1].content == raw


async def test_custom_transform_and_disabling_transforms(autojump_clock):
    from voxtrio.text import replace

    tts = ScriptedTTS([], default_chars_per_second=20.0)
    session = voxtrio.AgentSession(
        tts=tts, tts_text_transforms=[replace({"SQL": "sequel"})]
    )

    async def body():
        await session.say("I like **SQL** a lot")

    await run(session, voxtrio.Agent(), body)
    assert tts.requests == ["I like **sequel** a lot"]
    with pytest.raises(ValueError, match="unknown text transform"):
        voxtrio.AgentSession(tts_text_transforms=["filter_nothing"])


def test_strip_helpers():
    assert strip_markdown("# Title\n- *one*\n- `two`") == "Title\none\ntwo"
    assert strip_emoji("ok 👍🏽!") == "ok !"


def test_sentence_splitter_joins_short_sentences_and_flushes_the_rest():
    splitter = SentenceSplitter()
    out = splitter.push("Hi. I am a bot. This is ")
    out += splitter.push("the end! And then")
    assert out == ["Hi. I am a bot.", "This is the end!"]
    assert splitter.flush() == ["And then"]


@pytest.mark.parametrize(
    "fraction, heard",
    [
        # "Here is a long story": 20 characters, words ending at 4, 7, 9, 14, 20
        (0.0, ""),
        (0.19, ""),  # 3.8 characters in: "Here" is not finished
        (0.2, "Here"),  # its last character just reached
        (0.3, "Here"),  # half-way through "is"
        (0.36, "Here is"),
        (0.69, "Here is a"),  # "long" cut at its last letter
        (0.99, "Here is a long"),
        (1.0, "Here is a long story"),
        (-0.5, ""),
        (1.5, "Here is a long story"),
    ],
)
def test_heard_prefix_counts_whole_words_only(fraction, heard):
    assert heard_prefix("Here is a long story", fraction) == heard


def test_heard_prefix_keeps_the_text_as_written_up_to_the_last_word_heard():
    assert heard_prefix("Hi,  there\nfriend", 0.7) == "Hi,  there"  # 11.9 of 17 characters
    assert heard_prefix("", 0.5) == ""


class WordTimedTTS(TTS):
    """Half a second per word, with word timings, in 100 ms chunks."""

    capabilities = TTSCapabilities(streaming=True, aligned_transcript=True)
    sample_rate = 16_000

    async def stream(self, text, audio, *, conn_options):
        words = "".join([chunk async for chunk in text]).split()
        for index, word in enumerate(words):
            timing = (TimedWord(text=word, start=0.0, end=0.5),)
            for chunk in range(5):
                frame = AudioFrame(np.zeros(1600, np.int16), 16_000)
                await audio.send(SynthesizedAudio(frame=frame, words=timing if chunk == 0 else ()))


async def test_interrupted_text_uses_tts_word_timings_when_given(autojump_clock):
    session = voxtrio.AgentSession(tts=WordTimedTTS())

    async def body():
        handle = session.say("one two three four five six")
        await trio.sleep(1.6)  # playback started at once: three words heard
        handle.interrupt()
        await handle

    await run(session, voxtrio.Agent(), body)
    message = session.history.items[-1]
    assert (message.content, message.interrupted) == ("one two three", True)


class FailingTTS(TTS):
    capabilities = TTSCapabilities(streaming=True)
    sample_rate = 16_000

    def __init__(self, fail_after_audio):
        self.fail_after_audio = fail_after_audio
        self.attempts = 0

    async def stream(self, text, audio, *, conn_options):
        self.attempts += 1
        self.texts = getattr(self, "texts", []) + ["".join([c async for c in text])]
        if self.fail_after_audio:
            await audio.send(SynthesizedAudio(frame=AudioFrame(np.zeros(1600, np.int16), 16_000)))
        raise voxtrio.APIConnectionError("tts connection lost")


async def test_tts_is_not_retried_once_audio_was_delivered(autojump_clock):
    tts = FailingTTS(fail_after_audio=True)
    session = voxtrio.AgentSession(tts=tts)
    errors = []
    session.on("error", errors.append)

    async def body():
        await session.say("hello")

    await run(session, voxtrio.Agent(), body)
    assert tts.attempts == 1
    assert [(e.source, e.recoverable) for e in errors] == [("tts", False)]


async def test_tts_is_retried_before_any_audio(autojump_clock):
    tts = FailingTTS(fail_after_audio=False)
    session = voxtrio.AgentSession(tts=tts)
    errors = []
    session.on("error", errors.append)

    async def body():
        await session.say("hello")

    await run(session, voxtrio.Agent(), body)
    assert tts.texts == ["hello"] * 4
    assert tts.attempts == 4  # the first try and max_retry=3 retries, each with the whole text
    assert [(e.source, e.recoverable) for e in errors] == [("tts", True)] * 3 + [("tts", False)]


async def test_a_stalled_llm_times_out_and_is_reported(autojump_clock):
    from voxtrio.providers.base import LLM

    class StalledLLM(LLM):
        async def chat(self, *, chat_ctx, tools, tool_choice, output, conn_options):
            await trio.sleep_forever()

    options = voxtrio.APIConnectOptions(max_retry=1, retry_interval=1.0, timeout=2.0)
    session = voxtrio.AgentSession(
        llm=StalledLLM(),
        tts=ScriptedTTS([], default_chars_per_second=10.0),
        conn_options=voxtrio.SessionConnectOptions(llm_conn_options=options),
    )
    errors = []
    session.on("error", errors.append)

    async def body():
        t0 = trio.current_time()
        handle = session.generate_reply(user_input="anyone?")
        await handle
        assert isinstance(handle.exception(), voxtrio.APITimeoutError)
        assert trio.current_time() - t0 == pytest.approx(2.0 + 0.1 + 2.0)

    await run(session, voxtrio.Agent(), body)
    assert [(e.source, e.recoverable) for e in errors] == [("llm", True), ("llm", False)]


def test_playout_timeline_tracks_underruns_and_pauses():
    timeline = PlayoutTimeline()
    timeline.write(0.5, now=1.0)
    assert timeline.started_at == 1.0
    assert timeline.position(1.2) == pytest.approx(0.2)
    timeline.pause(1.2)
    assert timeline.position(5.0) == pytest.approx(0.2)
    timeline.resume(2.0)
    assert timeline.end_time(2.0) == pytest.approx(2.3)
    timeline.write(0.1, now=3.0)  # ran dry at 2.3: 0.7 s underrun
    assert timeline.underrun_time == pytest.approx(0.7)
    assert timeline.position(3.05) == pytest.approx(0.55)


def test_malformed_audio_gets_a_typed_error_naming_the_problem():
    with pytest.raises(voxtrio.AudioFormatError, match="int16"):
        AudioFrame(np.zeros(10, np.float32), 16_000)
    with pytest.raises(voxtrio.AudioFormatError, match="even byte count"):
        AudioFrame.from_bytes(b"\x00\x01\x02", sample_rate=16_000)
    with pytest.raises(voxtrio.AudioFormatError, match="sample rate"):
        AudioFrame(np.zeros(10, np.int16), 1_000_000)
    with pytest.raises(voxtrio.AudioFormatError, match="channels"):
        AudioFrame(np.zeros(9, np.int16), 16_000, 2)
    frame = AudioFrame.from_bytes(b"\x00\x00" * 320, sample_rate=16_000)
    assert frame.duration == pytest.approx(0.02)


async def test_filter_markdown_streams_words_and_strips_like_the_whole_text():
    from voxtrio.text import filter_markdown

    async def chunks(text, size):
        for i in range(0, len(text), size):
            yield text[i : i + size]

    texts = [
        "Sure, I can help with that. Your order shipped yesterday.",
        "**Great** news — see [the docs](http://x.y) now.\n  # Head\n- *one* and 5 * 3 ~~x~~",
        "Done.**really** ok *x.* y. [a.](b.) c ![img](u) is it?*x* `a.b` c.`d` e.",
    ]
    for text in texts:
        for size in (1, 3, 7, 100):
            out = [piece async for piece in filter_markdown(chunks(text, size))]
            assert "".join(out) == strip_markdown(text)
    first = [piece async for piece in filter_markdown(chunks(texts[0], 3))]
    assert first[0] == "Sure, "  # not held until the line ends
    assert "that." in first  # nor a sentence's last word until the next token


def test_sentence_splitter_ends_a_sentence_at_an_unambiguous_terminator():
    splitter = SentenceSplitter()
    assert splitter.push("Sure, I can help with that.") == ["Sure, I can help with that."]
    for ambiguous in ("The total is 3.", "Please ask Dr.", "Bring tools, e.g.", 'He said "stop.'):
        splitter = SentenceSplitter()
        assert splitter.push(ambiguous) == []  # waits for what follows
