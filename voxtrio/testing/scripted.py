"""Scripted providers: a whole conversation's timing as data, for tests.

These implement voxtrio's provider protocols on a script instead of a model,
with exactly the semantics of ``docs/scenario-format.md``. They are for testing
agents and the runtime on trio's ``MockClock``; they are not real providers.
All times are seconds relative to the first audio frame the provider sees.
"""

from __future__ import annotations

import builtins
import collections
import itertools
import math
from typing import Any, Literal, Sequence

import attrs
import numpy as np
import trio

from ..providers.base import TTS_REQUEST_STARTED
from ..audio import AudioFrame
from ..chat import ChatContext
from ..errors import APIConnectionError, APIError, APIStatusError
from ..providers.base import STTEvent, VADEvent
from ..options import APIConnectOptions
from ..providers.base import (
    DEFAULT_CONN_OPTIONS,
    LLM,
    STT,
    TTS,
    VAD,
    LLMChunk,
    STTCapabilities,
    SynthesizedAudio,
    ToolCallChunk,
    TTSCapabilities,
    VADCapabilities,
)
from ..transports.base import AudioOutput, Transport, TransportDisconnected


@attrs.frozen(kw_only=True)
class UserSpeech:
    """The user talks from ``start`` to ``end``; the recognizer hears ``transcript``
    (empty: a noise the VAD hears but nobody transcribes)."""

    start: float
    end: float
    transcript: str = ""
    stt_delay: float = 0.2
    final: bool = True

    def __attrs_post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"user speech ends ({self.end}) before it starts ({self.start})")


def _sorted_speeches(speeches: Sequence[UserSpeech]) -> list[UserSpeech]:
    ordered = sorted(speeches, key=lambda s: s.start)
    for previous, following in zip(ordered, ordered[1:]):
        if previous.end > following.start:
            raise ValueError(
                f"user speeches overlap: {previous.start}-{previous.end} and "
                f"{following.start}-{following.end}"
            )
    return ordered


FaultKind = Literal["connection", "status", "timeout", "crash", "junk"]


def exception_from(text: str) -> BaseException:
    """``"KeyError: message"`` as an exception: a builtin type by its name,
    ``ToolError``, else a RuntimeError saying what was asked for."""
    from ..errors import ToolError

    kind, _, message = text.partition(":")
    kind, message = kind.strip(), message.strip()
    if kind == "ToolError":
        return ToolError(message)
    error_type = getattr(builtins, kind, None)
    if isinstance(error_type, type) and issubclass(error_type, Exception):
        return error_type(message)
    return RuntimeError(f"{kind}: {message}")


@attrs.frozen(kw_only=True)
class Fault:
    """A scripted provider failure.

    ``kind`` is ``connection`` (the connection drops: :class:`APIConnectionError`),
    ``status`` (the provider answers with an error status: :class:`APIStatusError`,
    500 when ``retryable`` else 400), ``timeout`` (the provider stops sending
    and never finishes; the session's progress timeout ends the request),
    ``crash`` (the provider has a bug: it raises ``exception``, any exception
    type, not an ``APIError``) or ``junk`` (it sends something its protocol
    does not allow, a dict, then stalls).
    ``after`` is how much output comes first: characters of content for the LLM,
    seconds of audio for the TTS (0: the request fails before any output).
    ``at`` is the session time of a recognizer fault.
    """

    kind: FaultKind = "connection"
    retryable: bool = True
    after: float = 0.0
    at: float = 0.0
    exception: str = "RuntimeError: scripted crash"

    def error(self, what: str) -> BaseException:
        if self.kind == "crash":
            return exception_from(self.exception)
        if self.kind == "status":
            code = 500 if self.retryable else 400
            return APIStatusError(f"scripted {what} error: status {code}", status_code=code)
        return APIConnectionError(f"scripted {what} error: connection dropped", retryable=self.retryable)

    async def fail(
        self, what: str, output: trio.MemorySendChannel[Any] | None = None, fired: list[Any] | None = None
    ) -> None:
        """Raise this fault's error (or, for a timeout, never return; for junk,
        send it on ``output`` and never return). What was raised or sent is
        appended to ``fired``: each is a new object, the one the session must
        report."""
        if self.kind == "timeout":
            await trio.sleep_forever()
        if self.kind == "junk" and output is not None:
            junk = {"junk": what}
            if fired is not None:
                fired.append(junk)
            await output.send(junk)
            await trio.sleep_forever()
        error = self.error(what)
        if fired is not None and self.kind in ("crash", "junk"):
            fired.append(error)
        raise error


def _next_response(queue: collections.deque[Any]) -> Any:
    """Responses for one input are used in order; the last one is reused,
    unless it is a failure (a failure is used once)."""
    if not queue:
        return None
    if len(queue) > 1 or queue[0].error is not None:
        return queue.popleft()
    return queue[0]


async def _origin_and_drain(
    frames: trio.MemoryReceiveChannel[AudioFrame],
    nursery: trio.Nursery,
    on_flush: Any = None,
) -> float | None:
    """Wait for the first frame (time zero), then keep reading frames in the
    background (calling ``on_flush`` for an empty frame, the flush request)."""
    try:
        await frames.receive()
    except trio.EndOfChannel:
        return None
    origin = trio.current_time()

    async def drain() -> None:
        async for frame in frames:
            if on_flush is not None and not len(frame.data):
                await on_flush()

    nursery.start_soon(drain)
    return origin


class ScriptedVAD(VAD):
    """Speech start at ``start + min_speech_duration``; an inference event every
    ``min_speech_duration`` after it while speech lasts (each one that interval
    after the previous, as a timer would fire them; none in the trailing
    silence); end at ``end + min_silence_duration``.

    Speeches less than ``min_silence_duration`` apart are one speech to a VAD
    (it never saw enough silence to end the first): one start, inference events
    through the short pause (still speaking, the pause as their silence), one end.
    """

    def __init__(
        self,
        speeches: Sequence[UserSpeech],
        *,
        min_speech_duration: float = 0.05,
        min_silence_duration: float = 0.5,
        fail_at: float | None = None,
    ) -> None:
        if not min_speech_duration > 0:
            raise ValueError(f"min_speech_duration must be positive (it is the update interval), got {min_speech_duration}")
        self._speeches = _sorted_speeches(speeches)
        self.min_speech_duration = min_speech_duration
        self.min_silence_duration = min_silence_duration
        self.capabilities = VADCapabilities(update_interval=min_speech_duration)
        self._fail_at = fail_at

    async def run(
        self,
        frames: trio.MemoryReceiveChannel[AudioFrame],
        events: trio.MemorySendChannel[VADEvent],
    ) -> None:
        async with trio.open_nursery() as nursery:
            origin = await _origin_and_drain(frames, nursery)
            if origin is None:
                return

            def now() -> float:
                return trio.current_time() - origin

            if self._fail_at is None:
                await self._emit(origin, now, events)
                return
            with trio.move_on_at(origin + self._fail_at):
                await self._emit(origin, now, events)
                await trio.sleep_forever()
            nursery.cancel_scope.cancel()
        # Raised outside the nursery, so the VAD actor sees the error itself.
        raise RuntimeError(f"scripted VAD failure at {self._fail_at:g} s")

    def _runs(self) -> list[list[UserSpeech]]:
        runs: list[list[UserSpeech]] = []
        for speech in self._speeches:
            if runs and speech.start < runs[-1][-1].end + self.min_silence_duration:
                runs[-1].append(speech)
            else:
                runs.append([speech])
        return runs

    async def _emit(self, origin: float, now: Any, events: trio.MemorySendChannel[VADEvent]) -> None:
        for run in self._runs():
            end = run[-1].end
            await trio.sleep_until(origin + run[0].start + self.min_speech_duration)
            await events.send(self._event("start_of_speech", run, now()))
            interval = self.min_speech_duration
            while now() + interval <= end + 1e-9:
                await trio.sleep(interval)
                await events.send(self._event("inference", run, now()))
            await trio.sleep_until(origin + end + self.min_silence_duration)
            await events.send(self._event("end_of_speech", run, now()))

    @staticmethod
    def _event(kind: Any, run: list[UserSpeech], t: float) -> VADEvent:
        # The clock is a sum of sleeps: an event due at the end of speech may
        # land a hair after it, and is still speech (as the loop that sends it says).
        heard = [speech for speech in run if speech.start <= t + 1e-9] or run[:1]
        voiced = t <= heard[-1].end + 1e-9
        silence = 0.0 if voiced else t - heard[-1].end
        ended = kind == "end_of_speech"
        return VADEvent(
            kind=kind,
            timestamp=t,
            speech_duration=sum(min(t, speech.end) - speech.start for speech in heard),
            silence_duration=silence if ended else max(0.0, t - run[-1].end),
            speaking=not ended,
            probability=1.0 if voiced else 0.0,
            raw_accumulated_silence=silence,
        )


class ScriptedSTT(STT):
    """A streaming recognizer: for each speech with a transcript, an interim of
    its first two words at ``end + stt_delay / 2`` and the final transcript at
    ``end + stt_delay`` (unless ``final`` is false).

    A flush (``commit_user_turn``, a closing session) changes no scripted time:
    a speech that has started gets its interim and final when the script says
    (none if ``final`` is false), and whoever flushed waits for them within its
    own timeout, as with the reference's scripted recognizer. A flush with
    nothing being heard gets an empty final at once.

    ``faults`` make the stream fail at their ``at`` time (each once). Like a
    real recognizer, a new stream keeps the session's clock but has lost the
    audio of the failed one: speeches that started before it began are not
    transcribed, nor are results the failed stream had not sent yet.
    """

    capabilities = STTCapabilities(streaming=True, interim_results=True)

    def __init__(self, speeches: Sequence[UserSpeech], *, faults: Sequence[Fault] = ()) -> None:
        self._speeches = [s for s in _sorted_speeches(speeches) if s.transcript]
        self._faults = collections.deque(sorted(faults, key=lambda f: f.at))
        self._origin: float | None = None
        self._finalized: set[int] = set()
        self.fired: list[Any] = []  # what crash and junk faults raised or sent

    async def stream(
        self,
        frames: trio.MemoryReceiveChannel[AudioFrame],
        events: trio.MemorySendChannel[STTEvent],
        *,
        language: str | None = None,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        origin = 0.0
        opened = 0.0  # when this stream began (0: the first stream)
        fault: Fault | None = None

        def heard_by_this_stream(speech: UserSpeech) -> bool:
            return opened <= 0 or speech.start >= opened

        async def flushed() -> None:
            # What is being heard keeps its scripted times (the caller waits for
            # it within its own timeout); with nothing pending, the answer is
            # "nothing", at once.
            now = trio.current_time() - origin
            pending = [
                i
                for i, speech in enumerate(self._speeches)
                if i not in self._finalized and speech.start <= now and heard_by_this_stream(speech)
            ]
            if not pending:
                await events.send(STTEvent(kind="final", text=""))

        async with trio.open_nursery() as nursery:
            first = await _origin_and_drain(frames, nursery, flushed)
            if first is None:
                return
            if self._origin is None:
                self._origin = first
            origin = self._origin
            opened = trio.current_time() - origin
            fault = self._faults.popleft() if self._faults else None
            with trio.move_on_at(math.inf if fault is None else origin + fault.at) as failing:
                for index, speech in enumerate(self._speeches):
                    if index in self._finalized or not heard_by_this_stream(speech):
                        continue  # done, or its audio went to a stream that failed
                    await trio.sleep_until(origin + speech.end + speech.stt_delay * 0.5)
                    if index in self._finalized:
                        continue
                    interim = " ".join(speech.transcript.split()[:2])
                    await events.send(STTEvent(kind="interim", text=interim, start_time=speech.start))
                    await trio.sleep_until(origin + speech.end + speech.stt_delay)
                    if speech.final and index not in self._finalized:
                        await events.send(self._final(index))
                if fault is not None:
                    await trio.sleep_forever()
            if not failing.cancelled_caught:
                return
            nursery.cancel_scope.cancel()
        assert fault is not None
        await fault.fail("STT", events, self.fired)

    def _final(self, index: int) -> STTEvent:
        speech = self._speeches[index]
        self._finalized.add(index)
        return STTEvent(kind="final", text=speech.transcript, start_time=speech.start, end_time=speech.end)


@attrs.frozen(kw_only=True)
class ToolCall:
    name: str
    arguments: str
    call_id: str


@attrs.frozen(kw_only=True)
class LLMResponse:
    """Answer ``content`` (and ``tool_calls``) when the last chat item's text is ``input``."""

    input: str
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    ttft: float = 0.1
    duration: float = 0.3
    error: Fault | None = None


class ScriptedLLM(LLM):
    """Matches the last item of the context: a user or system message by its
    text, a tool output by its output. On a match it waits ``ttft``, streams
    the content, and ends at ``duration`` with the tool calls; with no match the
    stream ends at once, empty. Several responses for one input are used in
    order, the last one repeating.

    A response with an ``error`` fails the request it answers (once): at
    ``ttft``, after streaming ``error.after`` characters of its content, or at
    ``duration`` instead of the tool calls when the whole content came first."""

    model = "scripted"

    def __init__(self, responses: Sequence[LLMResponse]) -> None:
        self._responses: dict[str, collections.deque[LLMResponse]] = collections.defaultdict(
            collections.deque
        )
        for response in responses:
            self._responses[response.input].append(response)
        self.requests: list[ChatContext] = []
        self.tool_requests: list[list[Any]] = []  # the tools offered with each request
        self.tool_choices: list[Any] = []
        self.fired: list[Any] = []  # what crash and junk faults raised or sent

    def _match(self, chat_ctx: ChatContext) -> LLMResponse | None:
        if not chat_ctx.items:
            return None
        item = chat_ctx.items[-1]
        if item.type == "message" and item.role in ("user", "system"):
            key = item.content
        elif item.type == "function_call_output":
            key = item.output
        else:
            return None
        queue = self._responses.get(key)
        if not queue:
            return None
        return _next_response(queue)

    async def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: Any,
        tool_choice: Any,
        output: trio.MemorySendChannel[LLMChunk],
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        self.requests.append(chat_ctx.copy())
        self.tool_requests.append(list(tools or ()))
        self.tool_choices.append(tool_choice)
        response = self._match(chat_ctx)
        if response is None:
            return
        started = trio.current_time()
        await trio.sleep(response.ttft)
        fault = response.error
        content = response.content
        if fault is not None and fault.after < len(content):
            content = content[: int(fault.after)]
        for index in range(0, len(content), 3):
            await output.send(content[index : index + 3])
        if fault is not None and fault.after < len(response.content):
            await fault.fail("LLM", output, self.fired)
        await trio.sleep_until(started + response.duration)
        if fault is not None:
            await fault.fail("LLM", output, self.fired)
        for call in response.tool_calls:
            await output.send(ToolCallChunk(name=call.name, arguments=call.arguments, call_id=call.call_id))


@attrs.frozen(kw_only=True)
class TTSResponse:
    input: str
    audio_duration: float
    ttfb: float = 0.2
    duration: float = 0.3
    error: Fault | None = None


class ScriptedTTS(TTS):
    """A streaming TTS matched on the exact text of a segment: once the text
    has ended it waits ``ttfb``, produces ``audio_duration`` seconds of audio
    (24 kHz, 10 ms chunks) and finishes ``duration`` after the text ended. No
    match: no audio, unless ``default_chars_per_second`` is set.

    A response with an ``error`` fails one request for its text (in order,
    before the response without an error answers): at ``ttfb`` after
    ``error.after`` seconds of audio, or at ``duration`` when all the audio
    came first."""

    capabilities = TTSCapabilities(streaming=True)
    sample_rate = 24_000
    num_channels = 1
    # The value of every sample it makes: 0 is silence; a recording test sets
    # another to see where the agent's audio landed.
    level = 0

    def __init__(
        self, responses: Sequence[TTSResponse], *, default_chars_per_second: float | None = None
    ) -> None:
        self._responses = {r.input: r for r in responses if r.error is None}
        self._failures: dict[str, collections.deque[TTSResponse]] = collections.defaultdict(
            collections.deque
        )
        for response in responses:
            if response.error is not None:
                self._failures[response.input].append(response)
        self._default_cps = default_chars_per_second
        self.requests: list[str] = []
        self.fired: list[Any] = []  # what crash and junk faults raised or sent

    def _match(self, text: str) -> TTSResponse | None:
        if self._failures.get(text):
            return self._failures[text].popleft()
        if text in self._responses:
            return self._responses[text]
        if self._default_cps:
            return TTSResponse(input=text, audio_duration=len(text) / self._default_cps)
        return None

    async def stream(
        self,
        text: trio.MemoryReceiveChannel[str],
        audio: trio.MemorySendChannel[SynthesizedAudio],
        *,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        parts = [chunk async for chunk in text]
        full = "".join(parts)
        self.requests.append(full)
        response = self._match(full)
        if response is None or response.audio_duration <= 0:
            return
        started = trio.current_time()
        await audio.send(TTS_REQUEST_STARTED)  # type: ignore[arg-type]
        await trio.sleep(response.ttfb)
        fault = response.error
        seconds = response.audio_duration
        if fault is not None:
            seconds = min(seconds, fault.after)
        total = int(self.sample_rate * seconds + 0.5)
        chunk = self.sample_rate // 100
        for offset in range(0, total, chunk):
            samples = np.full(min(chunk, total - offset), self.level, np.int16)
            await audio.send(SynthesizedAudio(frame=AudioFrame(samples, self.sample_rate)))
        if fault is not None and fault.after < response.audio_duration:
            await fault.fail("TTS", audio, self.fired)
        await trio.sleep_until(started + response.duration)
        if fault is not None:
            await fault.fail("TTS", audio, self.fired)


class ScriptedAudioOutput(AudioOutput):
    """An output device on the virtual clock that records what it was given.

    ``log`` keeps every call in order: ``("write", t, seconds)``,
    ``("clear", t, 0.0)``, ``("pause", t, 0.0)``, ``("resume", t, 0.0)``;
    :meth:`playing_intervals` replays it on a model of the device to say when
    audio was actually coming out of the speaker.
    """

    buffer_duration = 0.2

    def __init__(self, *, can_pause: bool = False, sample_rate: int | None = None) -> None:
        self.can_pause = can_pause
        self.sample_rate = sample_rate
        self.writes: list[tuple[float, float]] = []
        self.clears: list[float] = []
        self.pauses: list[tuple[str, float]] = []
        self.log: list[tuple[str, float, float]] = []

    async def write(self, frame: AudioFrame) -> None:
        now = trio.current_time()
        self.writes.append((now, frame.duration))
        self.log.append(("write", now, frame.duration))

    def clear(self) -> None:
        now = trio.current_time()
        self.clears.append(now)
        self.log.append(("clear", now, 0.0))

    def pause(self) -> None:
        now = trio.current_time()
        self.pauses.append(("pause", now))
        self.log.append(("pause", now, 0.0))

    def resume(self) -> None:
        now = trio.current_time()
        self.pauses.append(("resume", now))
        self.log.append(("resume", now, 0.0))

    def playing_intervals(self) -> list[tuple[float, float]]:
        """When the device was playing audio, as merged ``(start, end)`` intervals
        of trio time: written audio plays back to back from when it is written,
        ``clear`` drops what has not played, ``pause`` freezes the play head."""
        played: list[tuple[float, float]] = []
        head_from: float | None = None  # when the current run of audio started playing
        queue_end = -math.inf  # when what is queued will have played (not paused)
        paused = False
        left = 0.0  # audio still queued while paused

        def cut(now: float) -> None:
            nonlocal head_from
            if head_from is not None:
                end = min(now, queue_end)
                if end > head_from:
                    played.append((head_from, end))
                head_from = None

        for kind, now, seconds in self.log:
            if not paused and head_from is not None and queue_end <= now:
                cut(now)  # the device ran dry before this call
            if kind == "write":
                if paused:
                    left += seconds
                    continue
                if head_from is None:
                    head_from, queue_end = now, now
                queue_end += seconds
            elif kind == "clear":
                cut(now)
                queue_end, left = now, 0.0
            elif kind == "pause" and not paused:
                paused = True
                left = max(0.0, queue_end - now) if head_from is not None else left
                cut(now)
            elif kind == "resume" and paused:
                paused = False
                if left > 0:
                    head_from, queue_end, left = now, now + left, 0.0
        if not paused and head_from is not None:
            played.append((head_from, queue_end))
        merged: list[tuple[float, float]] = []
        for start, end in played:
            if merged and start <= merged[-1][1] + 1e-9:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged


class ScriptedTransport(Transport):
    """Pushes 20 ms of silence every 20 ms (the scripted VAD and STT only need a
    clock to start from) and plays agent audio on a :class:`ScriptedAudioOutput`.

    ``disconnect_at`` (seconds after the first frame) makes the user hang up:
    the input ends with :class:`TransportDisconnected`. ``fail_at`` makes the
    connection break instead (``ConnectionResetError``); at each of ``junk_at``
    the transport sends something that is not a frame (a bytearray). What it
    raised or sent that way is kept in ``fired``.
    """

    def __init__(
        self,
        *,
        can_pause: bool = False,
        input_audio: bool = True,
        disconnect_at: float | None = None,
        fail_at: float | None = None,
        junk_at: Sequence[float] = (),
    ) -> None:
        self.audio_output = ScriptedAudioOutput(can_pause=can_pause)
        self._input_audio = input_audio
        self._disconnect_at = disconnect_at
        self._fail_at = fail_at
        self._junk_at = collections.deque(sorted(junk_at))
        self.fired: list[Any] = []

    async def read_audio(self, frames: trio.MemorySendChannel[AudioFrame]) -> None:
        if not self._input_audio:
            await trio.sleep_forever()
        started = trio.current_time()
        frame_duration = 0.02
        silence = np.zeros(320, np.int16)
        ends = [(t, kind) for t, kind in ((self._disconnect_at, "hang up"), (self._fail_at, "fail")) if t is not None]
        end_at, end_kind = min(ends) if ends else (math.inf, "")
        for index in itertools.count():
            at = index * frame_duration
            while self._junk_at and self._junk_at[0] <= min(at, end_at) + 1e-9:
                await trio.sleep_until(started + self._junk_at.popleft())
                junk = bytearray(b"not a frame")
                self.fired.append(junk)
                await frames.send(junk)  # type: ignore[arg-type]
            if at > end_at + 1e-9:
                await trio.sleep_until(started + end_at)
                if end_kind == "hang up":
                    raise TransportDisconnected(f"the user hung up at {end_at:g} s")
                error = ConnectionResetError(f"scripted transport failure at {end_at:g} s")
                self.fired.append(error)
                raise error
            await trio.sleep_until(started + at)
            await frames.send(AudioFrame(silence, 16_000))


class ArrayTransport(Transport):
    """Plays a numpy array of PCM to the session at real-time pace.

    ``chunk`` is the size of what the transport hands over (any size: AudioIn
    reframes); after the array it keeps sending silence unless ``end_input``.
    """

    def __init__(
        self,
        samples: Any,
        *,
        sample_rate: int = 16_000,
        num_channels: int = 1,
        chunk: float = 0.02,
        end_input: bool = False,
        can_pause: bool = False,
    ) -> None:
        self.audio_output = ScriptedAudioOutput(can_pause=can_pause)
        self._samples = np.asarray(samples, dtype=np.int16)
        self._rate = sample_rate
        self._channels = num_channels
        self._chunk = chunk
        self._end_input = end_input

    async def read_audio(self, frames: trio.MemorySendChannel[AudioFrame]) -> None:
        started = trio.current_time()
        per_chunk = max(1, int(round(self._chunk * self._rate))) * self._channels
        data = self._samples
        offset = 0
        for index in itertools.count(1):
            # A chunk exists once it has been recorded: it arrives at its end.
            await trio.sleep_until(started + index * self._chunk)
            if offset < len(data):
                piece = data[offset : offset + per_chunk]
                offset += per_chunk
            elif self._end_input:
                return
            else:
                piece = np.zeros(per_chunk, np.int16)
            await frames.send(AudioFrame(np.ascontiguousarray(piece), self._rate, self._channels))


def tone(duration: float, *, sample_rate: int = 16_000, frequency: float = 220.0, amplitude: int = 6000) -> Any:
    """A sine tone: "speech" for an energy VAD."""
    t = np.arange(int(round(duration * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def silence(duration: float, *, sample_rate: int = 16_000) -> Any:
    return np.zeros(int(round(duration * sample_rate)), np.int16)
