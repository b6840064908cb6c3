"""Speaker: text to audio (TTS), audio to the output device at real-time pace.

Synthesis runs ahead of playout: the Planner asks for a segment to be
synthesized as soon as its text starts to exist, and asks for it to be played
once the speech is authorized. Synthesis is one request at a time, in request
order, so the next segment is ready while the previous one plays.

Playout writes at most ``AudioOutput.buffer_duration`` ahead of the play head
(a :class:`PlayoutTimeline` says where the head is), so an interruption,
which cancels the playout scope from ``SpeechHandle.interrupt()`` directly,
leaves at most that much audio in the device, and ``clear()`` drops it. The
result of a playout says what was heard: the position, and the words up to
it (from TTS word timings when the provider gives them, else the pacing
estimate of :func:`voxtrio.text.heard_prefix`). A device that knows its play
head better than the timeline (``AudioOutput.queued``) is believed.

A transport that shows the agent's words (``Transport.publish_text``) gets
them as they are heard, by the same measure, and the final text at the end.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
from typing import TYPE_CHECKING, Any, AsyncIterable, AsyncIterator

import attrs
import trio

from .._sync import Flag, Future
from ..audio import AudioFrame, PlayoutTimeline
from ..errors import describe_error
from ..events import ErrorEvent, EventBus, MetricsCollected, PlaybackFinished, PlaybackStarted
from ..messages import (
    DiscardSegment,
    OptionsChanged,
    PausePlayout,
    PlayoutResult,
    PlaySegment,
    ProviderFailed,
    RecordAudio,
    ResumePlayout,
    SpeakerMessage,
    SynthesizeSegment,
)
from ..options import NOT_GIVEN, SessionOptions
from ..providers.base import TTS, TTS_REQUEST_STARTED, SynthesizedAudio, TimedWord, check_synthesized_audio
from ..retry import retrying, stream_attempt
from ..text import SentenceSplitter, heard_prefix, resolve_transforms
from ..transports.base import Transport

if TYPE_CHECKING:
    from ..transports.base import AudioOutput

# Speech pace assumed for text whose audio was never fully synthesized (a TTS
# failure): about 170 words a minute.
NOMINAL_CHARS_PER_SECOND = 15.0

_WORD = re.compile(r"\S+")

# What _next_audio returns when the device ran dry waiting for audio.
_STALLED = object()

# The longest wait between two looks at what has been heard, when the next
# word's end is only estimated (its audio is still being synthesized).
CAPTION_RECHECK = 0.25

# How long a playout waits, after the timeline says it has played, for a
# device that reports it is still playing.
DEVICE_LAG_LIMIT = 1.0

# Synthesized audio waiting to be played: effectively unbounded for one reply
# (minutes of 10 ms chunks), bounded against a runaway provider.
SEGMENT_AUDIO_BUFFER = 16_384
# Chunks a TTS request may get ahead of the segment's buffer: past that, the
# provider waits (without a bound, a long reply is held in memory at once).
TTS_STREAM_BUFFER = 64


@attrs.define(eq=False)
class _Segment:
    segment_id: str
    speech_id: str
    text_parts: list[str] = attrs.Factory(list)
    text_done: Flag = attrs.Factory(Flag)
    first_text_at: float | None = None
    audio_send: Any = None
    audio_receive: Any = None
    synthesis_done: Flag = attrs.Factory(Flag)
    synthesized: float = 0.0
    words: list[TimedWord] = attrs.Factory(list)
    error: BaseException | None = None
    text_only: bool = False
    tts: Any = None
    ticket: int = -1
    captioned: bool = False  # some of its words were shown (publish_text)
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)


class _ReplayableText:
    """The text of a segment as it arrives, readable again from the start
    (a retried TTS request must get the whole text, not what is left)."""

    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._closed = False
        self._changed = trio.Event()

    def append(self, chunk: str) -> None:
        self._chunks.append(chunk)
        self._notify()

    @property
    def characters(self) -> int:
        return sum(len(chunk) for chunk in self._chunks)

    def close(self) -> None:
        self._closed = True
        self._notify()

    @property
    def characters(self) -> int:
        return sum(len(chunk) for chunk in self._chunks)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def replay(self, send: trio.MemorySendChannel[str]) -> None:
        async with send:
            index = 0
            while True:
                while index < len(self._chunks):
                    send.send_nowait(self._chunks[index])
                    index += 1
                if self._closed:
                    return
                await self._changed.wait()


class Speaker:
    def __init__(
        self,
        *,
        tts: TTS | None,
        transport: Transport | None,
        bus: EventBus,
        options: SessionOptions,
        session_inbox: trio.MemorySendChannel[Any],
        recorder: trio.MemorySendChannel[RecordAudio] | None = None,
    ) -> None:
        self._tts = tts
        self._transport = transport
        self._output: AudioOutput | None = transport.audio_output if transport else None
        self._bus = bus
        self._options = options
        self._session_inbox = session_inbox
        self._recorder = recorder
        self.recorder_drops = 0
        self.inbox, self._inbox = trio.open_memory_channel[SpeakerMessage](math.inf)
        self._segments: dict[str, _Segment] = {}
        # TTS requests run one at a time, in the order they were asked for.
        self._tts_turns: list[int] = []
        self._tts_turn_changed = trio.Event()
        self._tts_tickets = itertools.count()
        self._timeline = PlayoutTimeline()
        self._paused = Flag()
        self._pauses = 0  # pauses applied so far
        self._nursery: trio.Nursery | None = None
        self._shows_text = transport is not None and type(transport).publish_text is not Transport.publish_text

    @property
    def can_pause(self) -> bool:
        return bool(self._output is not None and self._output.can_pause)

    def set_tts(self, tts: TTS | None) -> None:
        self._tts = tts

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            # Inboxes are never closed from this side: a late message from an
            # actor that is itself shutting down is simply not read.
            async for message in self._inbox:
                self._handle(message)
            nursery.cancel_scope.cancel()

    def _handle(self, message: SpeakerMessage) -> None:
        assert self._nursery is not None
        if isinstance(message, SynthesizeSegment):
            segment = _Segment(message.segment_id, message.speech_id)
            # The Planner names the TTS of the agent the segment speaks for.
            segment.tts = self._tts if message.tts is NOT_GIVEN else message.tts
            segment.text_only = self._output is None or (message.audio is None and segment.tts is None)
            segment.audio_send, segment.audio_receive = trio.open_memory_channel[Any](
                SEGMENT_AUDIO_BUFFER
            )
            self._segments[message.segment_id] = segment
            segment.ticket = next(self._tts_tickets)
            self._tts_turns.append(segment.ticket)
            self._nursery.start_soon(self._synthesize, segment, message.text, message.audio)
        elif isinstance(message, PlaySegment):
            segment = self._segments.pop(message.segment_id)
            self._nursery.start_soon(self._play, segment, message)
        elif isinstance(message, OptionsChanged):
            self._options = message.options
        elif isinstance(message, DiscardSegment):
            segment = self._segments.pop(message.segment_id, None)
            if segment is not None:
                segment.scope.cancel()
        elif isinstance(message, PausePlayout):
            if self.can_pause and not self._paused:
                assert self._output is not None
                self._output.pause()
                self._timeline.pause(trio.current_time())
                self._paused.set()
                self._pauses += 1
        elif isinstance(message, ResumePlayout):
            if self._paused:
                assert self._output is not None
                self._output.resume()
                self._timeline.resume(trio.current_time())
                self._paused.clear()

    # -- synthesis ------------------------------------------------------------

    async def _synthesize(
        self,
        segment: _Segment,
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
                    spoken = _ReplayableText()
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
        segment: _Segment,
        text: trio.MemoryReceiveChannel[str],
        spoken: _ReplayableText | None,
    ) -> None:
        """Keep the raw text (for what was heard) and the transformed text for the TTS."""
        transforms = resolve_transforms(self._options.tts_text_transforms)

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

    def _synthesis_failed(self, segment: _Segment, error: BaseException) -> None:
        segment.error = error
        self._session_inbox.send_nowait(ProviderFailed(source="tts", error=error))

    async def _forward_prerendered(self, segment: _Segment, audio: AsyncIterable[AudioFrame]) -> None:
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

    async def _run_tts(self, segment: _Segment, text: _ReplayableText) -> None:
        tts = segment.tts
        assert tts is not None
        conn_options = self._options.conn_options.tts_conn_options
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
        conn_options = self._options.conn_options.tts_conn_options
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

    # -- playout --------------------------------------------------------------

    async def _play(self, segment: _Segment, request: PlaySegment) -> None:
        handle = request.handle
        started_at: float | None = None
        wrote_any = False
        interrupted = False
        # Pauses applied before the audio, ready, began to be held back for the
        # user to be silent (None: it was never held back).
        held_after: int | None = None
        captions = trio.CancelScope() if self._shows_text else None
        with trio.CancelScope() as scope:
            handle._bind_scope(scope)
            try:
                if segment.text_only:
                    started_at = await self._play_text_only(segment, request)
                else:
                    self._timeline.reset()
                    if self._paused:
                        self._timeline.pause(trio.current_time())
                    stalled = False
                    while True:
                        item = await self._next_audio(segment, request, stalled or not wrote_any)
                        if item is _STALLED:
                            stalled = True
                            continue
                        if item is None:
                            break
                        frame = item.frame
                        if not frame.samples_per_channel:
                            continue  # it only carried word timings
                        if not wrote_any and request.hold_while_user_speaks is not None:
                            held_after = self._pauses - (1 if self._paused else 0)
                            await request.hold_while_user_speaks.wait_value(True)
                        await self._wait_for_room(frame.duration)
                        now = trio.current_time()
                        await self._output.write(frame)
                        self._timeline.write(frame.duration, now)
                        if not wrote_any and captions is not None:
                            assert self._nursery is not None
                            self._nursery.start_soon(self._show_words, segment, handle.id, captions)
                        wrote_any = True
                        if stalled:
                            stalled = False
                            if request.on_stall is not None:
                                request.on_stall(False)
                        self._record(frame)
                        if started_at is None:
                            started_at = await self._await_audible(request)
                    self._output.segment_done()
                    if started_at is None and wrote_any:
                        started_at = await self._await_audible(request)
                    await self._wait_until_played()
            finally:
                handle._unbind_scope(scope)
                if captions is not None:
                    captions.cancel()
        interrupted = scope.cancelled_caught or handle.interrupted
        # Synthesis that failed after some audio cut the speech short: the user
        # heard the start of it, as if it had been interrupted there.
        interrupted = interrupted or (wrote_any and segment.error is not None)
        now = trio.current_time()
        if not segment.text_only:
            assert self._output is not None
            if interrupted:
                position = self._heard_position(now)  # before clear(): it empties the device
                self._output.clear()
            else:
                position = self._timeline.pushed
            self._timeline.reset()
            if self._paused:
                self._timeline.pause(now)
            if interrupted or position < segment.synthesized:
                segment.scope.cancel()
            # No audio (the TTS failed or had nothing): nothing was heard.
            heard = self._heard_text(segment, position, interrupted) if wrote_any else ""
        else:
            position = 0.0
            heard = "" if started_at is None or segment.error is not None else segment.text
            if interrupted:
                segment.scope.cancel()
        if self._shows_text and (heard or segment.captioned):
            self._publish_text(handle.id, heard, final=True)
        # Audio that was ready, held back and paused (the agent went to
        # listening with it parked) and then dropped has an outcome too.
        parked = held_after is not None and self._pauses > held_after
        if wrote_any or (interrupted and parked):
            self._bus.emit(PlaybackFinished(speech_id=handle.id, position=position, interrupted=interrupted))
        if not request.started.done():
            request.started.set_result(None)  # nothing was audible
        request.reply.set_result(
            PlayoutResult(
                position=position,
                interrupted=interrupted,
                text=heard,
                started_at=started_at,
                finished_at=now,
                synthesized_text=segment.text,
                error=segment.error,
            )
        )

    async def _next_audio(self, segment: _Segment, request: PlaySegment, quiet: bool) -> Any:
        """The next synthesized chunk, None at the end, or ``_STALLED`` once when
        the device runs dry waiting for it (then the caller asks again).

        ``quiet``: nothing is playing anyway (not started yet, or already stalled)."""
        receive = segment.audio_receive
        dry_at = math.inf
        if not quiet and not self._paused and request.on_stall is not None:
            dry_at = self._timeline.end_time(trio.current_time())
        with trio.move_on_at(dry_at):
            try:
                return await receive.receive()
            except trio.EndOfChannel:
                return None
        request.on_stall(True)  # type: ignore[misc]
        return _STALLED

    async def _await_audible(self, request: PlaySegment) -> float | None:
        """Resolve ``started`` once the first frame is actually playing (after a pause)."""
        await self._paused.wait_value(False)
        started_at = self._timeline.started_at or trio.current_time()
        self._bus.emit(PlaybackStarted(speech_id=request.handle.id))
        request.started.set_result(started_at)
        return started_at

    async def _play_text_only(self, segment: _Segment, request: PlaySegment) -> float | None:
        started_at = None
        while not segment.text_done:
            if segment.text_parts and started_at is None:
                started_at = trio.current_time()
                request.started.set_result(started_at)
            await segment.text_done.wait_value(True)
        if segment.text_parts and started_at is None:
            started_at = trio.current_time()
            request.started.set_result(started_at)
        return started_at

    async def _wait_for_room(self, duration: float) -> None:
        """Wait until writing ``duration`` more keeps the device within its buffer.

        When the buffer is full, wait until it is half empty and then refill it
        in one go: ten wake-ups a second instead of one per TTS chunk, and never
        more than ``buffer_duration`` of audio in the device.
        """
        assert self._output is not None
        buffer = self._output.buffer_duration
        if self._timeline.queued(trio.current_time()) + duration <= buffer + 1e-9:
            return
        limit = max(0.0, min(buffer / 2, buffer - duration))
        while True:
            if self._paused:
                await self._paused.wait_value(False)
                continue
            wake = self._timeline.end_time(trio.current_time()) - limit
            if wake <= trio.current_time() + 1e-9:
                return
            with trio.move_on_at(wake):
                await self._paused.wait_value(True)

    async def _wait_until_played(self) -> None:
        while True:
            if self._paused:
                await self._paused.wait_value(False)
                continue
            end = self._timeline.end_time(trio.current_time())
            if end <= trio.current_time() + 1e-9:
                break
            with trio.move_on_at(end):
                await self._paused.wait_value(True)
        # A device that reports its play head may still be playing what the
        # timeline says has played (a network and a jitter buffer behind).
        give_up = trio.current_time() + DEVICE_LAG_LIMIT
        while True:
            queued = self._output.queued() if self._output is not None else None
            now = trio.current_time()
            if queued is None or queued <= 1e-3 or now >= give_up:
                return
            if self._paused:
                await self._paused.wait_value(False)
                continue
            with trio.move_on_at(min(give_up, now + queued)):
                await self._paused.wait_value(True)

    def _heard_position(self, now: float) -> float:
        """Seconds of the playing segment heard so far (the device's word for it
        when it has one)."""
        assert self._output is not None
        queued = self._output.queued()
        if queued is None:
            return self._timeline.position(now)
        return min(self._timeline.pushed, max(0.0, self._timeline.pushed - queued))

    async def _show_words(self, segment: _Segment, speech_id: str, scope: trio.CancelScope) -> None:
        """Publish the segment's words as they are heard, until ``scope`` is cancelled."""
        with scope:
            shown = ""
            while not scope.cancel_called:  # (the playout ends before a start_soon task first runs)
                position = self._heard_position(trio.current_time())
                text, next_end, exact = self._words_heard(segment, position)
                if segment.synthesis_done and position >= segment.synthesized - 1e-9:
                    return  # all of it played: the final text comes now
                if text != shown and not shown.startswith(text):  # estimates may wobble: never unsay
                    shown = text
                    segment.captioned = True
                    self._publish_text(speech_id, text, final=False)
                if self._paused:
                    await self._paused.wait_value(False)
                    continue
                wait = CAPTION_RECHECK if next_end is None else max(next_end - position, 0.02)
                await trio.sleep(wait if exact else min(wait, CAPTION_RECHECK))

    def _words_heard(self, segment: _Segment, position: float) -> tuple[str, float | None, bool]:
        """What has been heard at ``position``, where the next word ends (or None),
        and whether that end is exact (word timings, or all of the audio known)."""
        timed = segment.tts is not None and segment.tts.capabilities.aligned_transcript
        if segment.words or (timed and not segment.synthesis_done):
            heard = [w.text for w in segment.words if w.end <= position + 1e-9]
            following = [w.end for w in segment.words if w.end > position + 1e-9]
            if following:
                return " ".join(heard), following[0], True
            # The next word's timing has not come yet: it ends after the audio known so far.
            return " ".join(heard), max(segment.synthesized, position), bool(segment.synthesis_done)
        text = segment.text
        exact = bool(segment.synthesis_done)
        total = segment.synthesized
        if not exact:
            total = max(total, len(text) / NOMINAL_CHARS_PER_SECOND)
        if total <= 0 or not text:
            return "", None, exact
        heard = heard_prefix(text, (position + 1e-9) / total)
        following = _WORD.search(text, len(heard))
        if following is None:
            return heard, None, exact
        # The next word counts as heard once its middle has played (heard_prefix).
        return heard, (following.start() + following.end()) / 2 / len(text) * total, exact

    def _publish_text(self, speech_id: str, text: str, *, final: bool) -> None:
        assert self._transport is not None
        try:
            self._transport.publish_text(speech_id, text, final=final)
        except Exception as error:  # showing words must not stop the speech
            self._bus.emit(ErrorEvent(source="transport", message=str(error), recoverable=True, error=error))

    def _heard_text(self, segment: _Segment, position: float, interrupted: bool) -> str:
        if not interrupted:
            return segment.text
        if segment.words:
            return " ".join(w.text for w in segment.words if w.end <= position + 1e-9)
        if segment.synthesized <= 0:
            return ""
        total = segment.synthesized
        if segment.error is not None:
            # The rest was never synthesized: estimate how long all of it would be.
            total = max(total, len(segment.text) / NOMINAL_CHARS_PER_SECOND)
        return heard_prefix(segment.text, position / total)

    def _record(self, frame: AudioFrame) -> None:
        if self._recorder is None:
            return
        try:
            self._recorder.send_nowait(RecordAudio("agent", frame))
        except trio.WouldBlock:
            self.recorder_drops += 1
