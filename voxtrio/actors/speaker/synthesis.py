"""The Speaker's synthesis: text to audio, one TTS request at a time, in request order.

A segment is synthesized as soon as its text starts to exist (so the next
one is ready while the previous one plays), and kept until it is played
(:meth:`Synthesizer.take`) or discarded.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import Any, AsyncIterable, AsyncIterator

import attrs
import trio

from ..._sync import Flag
from ...audio import AudioFrame
from ...errors import describe_error
from ...events import ErrorEvent, EventBus, MetricsCollected
from ...messages import ProviderFailed, SynthesizeSegment
from ...options import NOT_GIVEN, SessionOptions
from ...providers.base import TTS, TTS_REQUEST_STARTED, SynthesizedAudio, TimedWord, check_synthesized_audio
from ...providers.replayable_text import ReplayableText
from ...retry import retrying, stream_attempt
from ...text import SentenceSplitter, resolve_transforms

# Synthesized audio waiting to be played: effectively unbounded for one reply
# (minutes of 10 ms chunks), bounded against a runaway provider.
SEGMENT_AUDIO_BUFFER = 16_384
# Chunks a TTS request may get ahead of the segment's buffer: past that, the
# provider waits (without a bound, a long reply is held in memory at once).
TTS_STREAM_BUFFER = 64


@attrs.define(eq=False)
class Segment:
    """One segment of a speech: its text as it arrives, its audio as it is synthesized."""

    segment_id: str
    speech_id: str
    # The raw text so far (what was heard is a prefix of it).
    text_parts: list[str] = attrs.Factory(list)
    # Set once all of the text arrived.
    text_done: Flag = attrs.Factory(Flag)
    # When its first text arrived (the TTS's time-to-first-byte counts from there).
    first_text_at: float | None = None
    # The synthesized audio, to the playout (bounded: SEGMENT_AUDIO_BUFFER).
    audio_send: Any = None
    audio_receive: Any = None
    # Set once synthesis ended (all of the audio, or a failure).
    synthesis_done: Flag = attrs.Factory(Flag)
    # Seconds of audio synthesized so far.
    synthesized: float = 0.0
    # The words with their times in the segment's audio (when the TTS gives them).
    words: list[TimedWord] = attrs.Factory(list)
    # What made synthesis fail, if it did.
    error: BaseException | None = None
    # No audio: the text is what is "played" (no output device, or no TTS).
    text_only: bool = False
    # The TTS that speaks it (the agent's, else the session's).
    tts: Any = None
    # Its place in the order of TTS requests.
    ticket: int = -1
    # Some of its words were shown (publish_text).
    captioned: bool = False
    # Cancelled to stop its synthesis (discarded, interrupted, failed).
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)


class Synthesizer:
    """Runs each segment's synthesis in the Speaker's nursery."""

    def __init__(
        self,
        *,
        tts: TTS | None,
        has_output: bool,
        bus: EventBus,
        options: SessionOptions,
        session_inbox: trio.MemorySendChannel[Any],
    ) -> None:
        # The session's TTS, for a segment whose agent brings none.
        self._tts = tts
        # False: every segment is text only.
        self._has_output = has_output
        self._bus = bus
        # The session's options (the actor passes on changes).
        self.options = options
        self._session_inbox = session_inbox
        # Segments synthesized (or being synthesized) and not played yet.
        self._segments: dict[str, Segment] = {}
        # TTS requests run one at a time, in the order they were asked for.
        self._tts_turns: list[int] = []
        self._tts_turn_changed = trio.Event()
        self._tts_tickets = itertools.count()

    def start(self, message: SynthesizeSegment, nursery: trio.Nursery) -> None:
        segment = Segment(message.segment_id, message.speech_id)
        # The Planner names the TTS of the agent the segment speaks for.
        segment.tts = self._tts if message.tts is NOT_GIVEN else message.tts
        segment.text_only = not self._has_output or (message.audio is None and segment.tts is None)
        segment.audio_send, segment.audio_receive = trio.open_memory_channel[Any](SEGMENT_AUDIO_BUFFER)
        self._segments[message.segment_id] = segment
        segment.ticket = next(self._tts_tickets)
        self._tts_turns.append(segment.ticket)
        nursery.start_soon(self._synthesize, segment, message.text, message.audio)

    def take(self, segment_id: str) -> Segment:
        """The segment, to be played (it is the playout's from now on)."""
        return self._segments.pop(segment_id)

    def discard(self, segment_id: str) -> None:
        segment = self._segments.pop(segment_id, None)
        if segment is not None:
            segment.scope.cancel()

    async def _synthesize(
        self,
        segment: Segment,
        text: trio.MemoryReceiveChannel[str],
        audio: AsyncIterable[AudioFrame] | None,
    ) -> None:
        with segment.scope:
            try:
                async with trio.open_nursery() as nursery:
                    if segment.text_only:
                        # Text only: nothing to synthesize, the text is what is "played".
                        await self._collect_text(segment, text, None)
                        return
                    if audio is not None:
                        nursery.start_soon(self._collect_text, segment, text, None)
                        await self._forward_prerendered(segment, audio)
                        return
                    spoken = ReplayableText()
                    nursery.start_soon(self._collect_text, segment, text, spoken)
                    async with self._tts_turn(segment.ticket):
                        await self._run_tts(segment, spoken)
            finally:
                self._release_tts_turn(segment.ticket)
                segment.synthesis_done.set()
                segment.text_done.set()
                segment.audio_send.close()

    @contextlib.asynccontextmanager
    async def _tts_turn(self, ticket: int) -> AsyncIterator[None]:
        try:
            while self._tts_turns[0] != ticket:
                await self._tts_turn_changed.wait()
            yield
        finally:
            self._release_tts_turn(ticket)

    def _release_tts_turn(self, ticket: int) -> None:
        if ticket in self._tts_turns:
            self._tts_turns.remove(ticket)
            self._tts_turn_changed.set()
            self._tts_turn_changed = trio.Event()

    async def _collect_text(
        self,
        segment: Segment,
        text: trio.MemoryReceiveChannel[str],
        spoken: ReplayableText | None,
    ) -> None:
        """Keep the raw text (for what was heard) and the transformed text for the TTS."""
        transforms = resolve_transforms(self.options.tts_text_transforms)

        async def raw() -> AsyncIterable[str]:
            async with text:
                async for chunk in text:
                    if segment.first_text_at is None:
                        segment.first_text_at = trio.current_time()
                    segment.text_parts.append(chunk)
                    yield chunk
            segment.text_done.set()

        stream: AsyncIterable[str] = raw()
        try:
            for transform in transforms:
                stream = transform(stream)
            async for chunk in stream:  # type: ignore[attr-defined]
                if spoken is not None and chunk:
                    spoken.append(chunk)
            await stream.aclose()  # type: ignore[attr-defined]
        except Exception as error:
            # A transform is user code of the TTS's: its failure is the TTS's,
            # and none of the segment is spoken (the TTS never gets its text).
            self._bus.emit(
                ErrorEvent(
                    source="tts",
                    message=f"a text transform failed: {describe_error(error)}",
                    recoverable=False,
                    error=error,
                )
            )
            self._synthesis_failed(segment, error)
            segment.scope.cancel()
        finally:
            if spoken is not None:
                spoken.close()

    def _synthesis_failed(self, segment: Segment, error: BaseException) -> None:
        segment.error = error
        self._session_inbox.send_nowait(ProviderFailed(source="tts", error=error))

    async def _forward_prerendered(self, segment: Segment, audio: AsyncIterable[AudioFrame]) -> None:
        """Play say()'s own audio. An application's iterable that fails, or
        yields something else than frames, ends the audio there (as a TTS
        failure would), with an error event."""
        try:
            async for frame in audio:
                if not isinstance(frame, AudioFrame):
                    raise TypeError(f"it yielded {type(frame).__name__}, not an AudioFrame")
                segment.synthesized += frame.duration
                await segment.audio_send.send(SynthesizedAudio(frame=frame))
        except Exception as error:
            segment.error = error
            self._bus.emit(
                ErrorEvent(
                    source="agent",
                    message=f"say(): the audio of {segment.speech_id} failed: {describe_error(error)}",
                    recoverable=True,
                    error=error,
                )
            )

    async def _run_tts(self, segment: Segment, text: ReplayableText) -> None:
        tts = segment.tts
        assert tts is not None
        conn_options = self.options.conn_options.tts_conn_options
        timing = {"started": None, "first_audio": None}

        async def deliver(item: Any) -> None:
            if isinstance(item, str) and item == TTS_REQUEST_STARTED:
                if timing["started"] is None:
                    timing["started"] = trio.current_time()
                return
            check_synthesized_audio(item)
            offset = segment.synthesized
            if timing["first_audio"] is None and item.frame.samples_per_channel:
                timing["first_audio"] = trio.current_time()
            segment.words.extend(
                TimedWord(text=w.text, start=w.start + offset, end=w.end + offset)
                for w in item.words
            )
            segment.synthesized += item.frame.duration
            await segment.audio_send.send(item)

        def on_error(error: BaseException, recoverable: bool) -> None:
            self._bus.emit(
                ErrorEvent(source="tts", message=describe_error(error), recoverable=recoverable, error=error)
            )

        request_started = trio.current_time()
        try:
            if tts.capabilities.streaming:
                async def produce(send: trio.MemorySendChannel[Any]) -> None:
                    # Each attempt reads the segment's text from its beginning.
                    text_send, text_receive = trio.open_memory_channel[str](math.inf)
                    async with trio.open_nursery() as feeding:
                        feeding.start_soon(text.replay, text_send)
                        await tts.stream(text_receive, send, conn_options=conn_options)
                        feeding.cancel_scope.cancel()

                await retrying(
                    lambda: stream_attempt(
                        produce, deliver, timeout=conn_options.timeout, what="the TTS", buffer=TTS_STREAM_BUFFER
                    ),
                    conn_options=conn_options,
                    on_error=on_error,
                    delivered=lambda: segment.synthesized > 0,
                )
            else:
                splitter = SentenceSplitter()
                text_send, text_receive = trio.open_memory_channel[str](math.inf)
                async with trio.open_nursery() as feeding:
                    feeding.start_soon(text.replay, text_send)
                    async for chunk in text_receive:
                        for sentence in splitter.push(chunk):
                            await self._synthesize_sentence(tts, sentence, deliver, on_error)
                for sentence in splitter.flush():
                    await self._synthesize_sentence(tts, sentence, deliver, on_error)
        except Exception as error:  # already an error event (retrying reports every attempt)
            self._synthesis_failed(segment, error)
            return
        finished = trio.current_time()
        if timing["first_audio"] is not None:
            anchor = timing["started"] if timing["started"] is not None else segment.first_text_at
            self._bus.emit(
                MetricsCollected(
                    kind="tts",
                    metrics={
                        "ttfb": timing["first_audio"] - (anchor or request_started),
                        "duration": finished - (anchor or request_started),
                        "audio_duration": segment.synthesized,
                        "characters": text.characters,
                    },
                    speech_id=segment.speech_id,
                    provider=tts,
                )
            )

    async def _synthesize_sentence(self, tts: TTS, sentence: str, deliver: Any, on_error: Any) -> None:
        conn_options = self.options.conn_options.tts_conn_options
        await deliver(TTS_REQUEST_STARTED)
        before = 0.0

        async def attempt() -> None:
            nonlocal before
            before = 0.0

            async def produce(send: trio.MemorySendChannel[Any]) -> None:
                await tts.synthesize(sentence, send, conn_options=conn_options)

            async def counted(item: Any) -> None:
                nonlocal before
                if isinstance(item, SynthesizedAudio):
                    before += item.frame.duration
                await deliver(item)

            await stream_attempt(
                produce, counted, timeout=conn_options.timeout, what="the TTS", buffer=TTS_STREAM_BUFFER
            )

        await retrying(attempt, conn_options=conn_options, on_error=on_error, delivered=lambda: before > 0)

