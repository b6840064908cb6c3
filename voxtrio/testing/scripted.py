"""Scripted providers: a whole conversation's timing as data, for tests.

These implement voxtrio's provider protocols on a script instead of a model,
with exactly the semantics of ``scenario-format.md``. They are for testing
agents and the runtime on trio's ``MockClock``; they are not real providers.
All times are seconds relative to the first audio frame the provider sees.
"""

from __future__ import annotations

import collections
import itertools
from typing import Any, Sequence

import attrs
import numpy as np
import trio

from ..actors.speaker import TTS_REQUEST_STARTED
from ..audio import AudioFrame
from ..chat import ChatContext
from ..messages import STTEvent, VADEvent
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
from ..transports.base import AudioOutput, Transport


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
    silence); end at ``end + min_silence_duration``."""

    def __init__(
        self,
        speeches: Sequence[UserSpeech],
        *,
        min_speech_duration: float = 0.05,
        min_silence_duration: float = 0.5,
    ) -> None:
        self._speeches = _sorted_speeches(speeches)
        self.min_speech_duration = min_speech_duration
        self.min_silence_duration = min_silence_duration
        self.capabilities = VADCapabilities(update_interval=min_speech_duration)

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

            for speech in self._speeches:
                start_at = speech.start + self.min_speech_duration
                end_at = speech.end + self.min_silence_duration
                await trio.sleep_until(origin + start_at)
                await events.send(self._event("start_of_speech", speech, now()))
                interval = self.min_speech_duration
                while now() + interval <= speech.end + 1e-9:
                    await trio.sleep(interval)
                    await events.send(self._event("inference", speech, now()))
                await trio.sleep_until(origin + end_at)
                await events.send(self._event("end_of_speech", speech, now()))

    @staticmethod
    def _event(kind: Any, speech: UserSpeech, t: float) -> VADEvent:
        speaking = t <= speech.end
        return VADEvent(
            kind=kind,
            timestamp=t,
            speech_duration=min(t, speech.end) - speech.start,
            silence_duration=max(0.0, t - speech.end),
            speaking=speaking if kind != "end_of_speech" else False,
            probability=1.0 if speaking else 0.0,
            raw_accumulated_silence=0.0 if speaking else t - speech.end,
        )


class ScriptedSTT(STT):
    """A streaming recognizer: for each speech with a transcript, an interim of
    its first two words at ``end + stt_delay / 2`` and the final transcript at
    ``end + stt_delay`` (unless ``final`` is false).

    A flush (``commit_user_turn``, a closing session) finalizes at once what is
    being heard, as a real recognizer would: the transcript of a speech that
    has started but not been finalized yet, or an empty final if there is none.
    """

    capabilities = STTCapabilities(streaming=True, interim_results=True)

    def __init__(self, speeches: Sequence[UserSpeech]) -> None:
        self._speeches = [s for s in _sorted_speeches(speeches) if s.transcript]

    async def stream(
        self,
        frames: trio.MemoryReceiveChannel[AudioFrame],
        events: trio.MemorySendChannel[STTEvent],
        *,
        language: str | None = None,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        finalized: set[int] = set()
        origin: float | None = None

        def final(index: int) -> STTEvent:
            speech = self._speeches[index]
            finalized.add(index)
            return STTEvent(kind="final", text=speech.transcript, start_time=speech.start, end_time=speech.end)

        async def flushed() -> None:
            assert origin is not None
            now = trio.current_time() - origin
            heard = [
                i
                for i, speech in enumerate(self._speeches)
                if i not in finalized and speech.final and speech.start <= now
            ]
            if heard:
                await events.send(final(heard[0]))
            else:
                await events.send(STTEvent(kind="final", text=""))

        async with trio.open_nursery() as nursery:
            origin = await _origin_and_drain(frames, nursery, flushed)
            if origin is None:
                return
            for index, speech in enumerate(self._speeches):
                await trio.sleep_until(origin + speech.end + speech.stt_delay * 0.5)
                if index in finalized:
                    continue
                interim = " ".join(speech.transcript.split()[:2])
                await events.send(STTEvent(kind="interim", text=interim, start_time=speech.start))
                await trio.sleep_until(origin + speech.end + speech.stt_delay)
                if speech.final and index not in finalized:
                    await events.send(final(index))


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


class ScriptedLLM(LLM):
    """Matches the last item of the context: a user or system message by its
    text, a tool output by its output. On a match it waits ``ttft``, streams
    the content, and ends at ``duration`` with the tool calls; with no match the
    stream ends at once, empty. Several responses for one input are used in
    order, the last one repeating."""

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
        return queue.popleft() if len(queue) > 1 else queue[0]

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
        for index in range(0, len(response.content), 3):
            await output.send(response.content[index : index + 3])
        await trio.sleep_until(started + response.duration)
        for call in response.tool_calls:
            await output.send(ToolCallChunk(name=call.name, arguments=call.arguments, call_id=call.call_id))


@attrs.frozen(kw_only=True)
class TTSResponse:
    input: str
    audio_duration: float
    ttfb: float = 0.2
    duration: float = 0.3


class ScriptedTTS(TTS):
    """A streaming TTS matched on the exact text of a segment: once the text
    has ended it waits ``ttfb``, produces ``audio_duration`` seconds of audio
    (24 kHz, 10 ms chunks) and finishes ``duration`` after the text ended. No
    match: no audio, unless ``default_chars_per_second`` is set."""

    capabilities = TTSCapabilities(streaming=True)
    sample_rate = 24_000
    num_channels = 1

    def __init__(
        self, responses: Sequence[TTSResponse], *, default_chars_per_second: float | None = None
    ) -> None:
        self._responses = {response.input: response for response in responses}
        self._default_cps = default_chars_per_second
        self.requests: list[str] = []

    def _match(self, text: str) -> TTSResponse | None:
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
        total = int(self.sample_rate * response.audio_duration + 0.5)
        chunk = self.sample_rate // 100
        for offset in range(0, total, chunk):
            samples = np.zeros(min(chunk, total - offset), np.int16)
            await audio.send(SynthesizedAudio(frame=AudioFrame(samples, self.sample_rate)))
        await trio.sleep_until(started + response.duration)


class ScriptedAudioOutput(AudioOutput):
    """An output device on the virtual clock that records what it was given."""

    buffer_duration = 0.2

    def __init__(self, *, can_pause: bool = False, sample_rate: int | None = None) -> None:
        self.can_pause = can_pause
        self.sample_rate = sample_rate
        self.writes: list[tuple[float, float]] = []
        self.clears: list[float] = []
        self.pauses: list[tuple[str, float]] = []

    async def write(self, frame: AudioFrame) -> None:
        self.writes.append((trio.current_time(), frame.duration))

    def clear(self) -> None:
        self.clears.append(trio.current_time())

    def pause(self) -> None:
        self.pauses.append(("pause", trio.current_time()))

    def resume(self) -> None:
        self.pauses.append(("resume", trio.current_time()))


class ScriptedTransport(Transport):
    """Pushes 20 ms of silence every 20 ms (the scripted VAD and STT only need a
    clock to start from) and plays agent audio on a :class:`ScriptedAudioOutput`."""

    def __init__(self, *, can_pause: bool = False, input_audio: bool = True) -> None:
        self.audio_output = ScriptedAudioOutput(can_pause=can_pause)
        self._input_audio = input_audio

    async def read_audio(self, frames: trio.MemorySendChannel[AudioFrame]) -> None:
        if not self._input_audio:
            await trio.sleep_forever()
        started = trio.current_time()
        frame_duration = 0.02
        silence = np.zeros(320, np.int16)
        for index in itertools.count():
            await trio.sleep_until(started + index * frame_duration)
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
