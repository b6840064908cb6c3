"""TelephonyTransport: one phone call's media stream as a session transport.

The caller's audio comes in at the wire rate (8 kHz μ-law for most
providers, decoded by the stream's serializer) and goes to the session as it
is: AudioIn resamples to the pipeline rate. The agent's audio is resampled
to the wire rate here and sent in chunks: a WebSocket message costs about
200 µs each way here, so the output groups what the Speaker writes in one
refill (up to ``max_chunk`` seconds a message) instead of sending every 10 or
20 ms frame alone, and only waits to group when the caller is not about to
run dry (nothing queued at the provider: the first audio goes at once).

What the caller heard is timed on the provider's marks (Twilio and Telnyx
``mark``, Plivo ``checkpoint``/``playedStream``): every chunk is followed by
a mark, and a chunk sent when nothing is queued is preceded by one, so each
chunk's start is anchored on a confirmation that everything before it has
played. Between two confirmations the play head advances in real time from
the last one. A confirmation can only arrive after the audio it confirms has
played, so the heard position is never ahead of what the caller heard, and
behind it by at most the time since the last mark came back.
:meth:`TelephonyAudioOutput.queued` reports it (what was written and not yet
heard) and the Speaker records an interruption there. On an interruption,
``clear()`` sends the provider's clear at once (ahead of anything queued
here) and forgets the marks still out.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Callable, Sequence

import attrs
import numpy as np
import trio

from ...audio import AudioFrame
from ...events import ErrorEvent
from ..base import AudioOutput, Transport, TransportDisconnected
from .base import (
    AudioCleared,
    DtmfPressed,
    InboundAudio,
    MarkPlayed,
    MediaProtocolError,
    MediaSerializer,
    StreamFailed,
    StreamStopped,
)
from .media_socket import ConnectionClosed, MediaSocket

if TYPE_CHECKING:
    from ...session import AgentSession

# Caller frames held for a session that does not read them yet (1 s at 20 ms).
INBOUND_CAPACITY = 50


@attrs.define
class TelephonyStats:
    inbound_frames: int = 0
    inbound_dropped: int = 0
    """Caller frames dropped because no session read them (before it started, after it ended)."""
    bad_messages: int = 0
    """Messages from the provider that its protocol does not allow (reported as errors)."""
    messages_sent: int = 0
    media_messages_sent: int = 0
    marks_sent: int = 0
    marks_played: int = 0
    clears_sent: int = 0


@attrs.define(eq=False)
class _Chunk:
    start: float  # position (seconds of agent audio) of its first sample
    end: float
    end_mark: str | None
    after_mark: str | None  # the mark whose return says this chunk is playing
    playing_since: float | None = None


class PlayHead:
    """Where the caller's play head is in the agent's audio, from the marks.

    Positions are seconds of agent audio since the stream began (cleared
    audio never counts). ``confirmed`` providers return each mark once what
    precedes it has played; a chunk starts playing when the mark before it
    comes back. ``best_effort`` ones may never return a mark: a chunk is then
    assumed to play from when it was sent (after the chunk before it).
    """

    def __init__(self, marks: str) -> None:
        self.marks = marks
        self.confirmed = 0.0
        self.chunks: collections.deque[_Chunk] = collections.deque()

    def idle(self, now: float) -> bool:
        """Nothing sent is still waiting to play (the provider may have nothing to play)."""
        self._prune(now)
        return not self.chunks

    def _prune(self, now: float) -> None:
        if self.marks != "best_effort":
            return
        # Marks may never come back: a chunk played out by the clock is done.
        while self.chunks and self.chunks[0].playing_since is not None and (
            now >= self.chunks[0].playing_since + self.chunks[0].end - self.chunks[0].start
        ):
            self.confirmed = self.chunks.popleft().end

    def position(self, now: float) -> float:
        self._prune(now)
        position = self.confirmed
        for chunk in self.chunks:
            if chunk.playing_since is None:
                break
            played = min(chunk.end - chunk.start, max(0.0, now - chunk.playing_since))
            position = chunk.start + played
            if chunk.start + played < chunk.end:
                break
        return position

    def sent(self, start: float, end: float, *, after_mark: str | None, end_mark: str | None, now: float) -> None:
        chunk = _Chunk(start, end, end_mark, after_mark)
        if self.marks == "best_effort" or after_mark is None:
            previous_end = now
            if self.chunks and self.chunks[-1].playing_since is not None:
                last = self.chunks[-1]
                previous_end = last.playing_since + (last.end - last.start)
            chunk.playing_since = max(now, previous_end)
        self.chunks.append(chunk)

    def mark_played(self, name: str, now: float) -> bool:
        """A mark came back; False if it is not one of ours (cleared, or unknown)."""
        known = any(name in (c.end_mark, c.after_mark) for c in self.chunks)
        if not known:
            return False
        while self.chunks and self.chunks[0].after_mark != name:
            chunk = self.chunks.popleft()
            self.confirmed = chunk.end
            if chunk.end_mark == name:
                break
        if self.chunks and self.chunks[0].after_mark == name and self.chunks[0].playing_since is None:
            self.chunks[0].playing_since = now
        return True

    def clear(self, now: float) -> float:
        """Forget the chunks in flight; the position is where the caller stopped."""
        position = self.position(now)
        self.confirmed = position
        self.chunks.clear()
        return position


class TelephonyAudioOutput(AudioOutput):
    """The agent's voice on the call (any rate in; resampled to the wire rate)."""

    can_pause = False

    def __init__(
        self,
        transport: TelephonyTransport,
        *,
        buffer_duration: float = 0.3,
        max_chunk: float = 0.2,
        hold: float = 0.01,
    ) -> None:
        self._transport = transport
        self.buffer_duration = buffer_duration
        self.max_chunk = max_chunk
        self.hold = hold
        self.sample_rate = None
        serializer = transport.serializer
        self._head = PlayHead(serializer.playback_marks)
        self._resampler: Any = None
        self._resampling_from: int | None = None
        self._pending: list[np.ndarray] = []
        self._pending_samples = 0
        self._pending_since: float | None = None
        self._flush_requested = False
        self._written = 0.0  # seconds of agent audio written (and not cleared)
        self._sent_until = 0.0  # position of the end of what was sent
        self._generation = 0
        self._mark_ids = 0
        self._last_mark: str | None = None
        self._clear_requested = False
        self._wake = trio.Event()

    # -- what the Speaker calls ---------------------------------------------------------

    async def write(self, frame: AudioFrame) -> None:
        rate = self._transport.serializer.sample_rate
        samples = frame.data
        if frame.num_channels > 1:
            samples = samples.reshape(-1, frame.num_channels).astype(np.int32).mean(axis=1).astype(np.int16)
        if frame.sample_rate != rate:
            if frame.sample_rate != self._resampling_from:
                import soxr

                self._flush_resampler()
                self._resampler = soxr.ResampleStream(frame.sample_rate, rate, 1, dtype="int16")
                self._resampling_from = frame.sample_rate
            samples = self._resampler.resample_chunk(samples)
        elif self._resampler is not None:
            self._flush_resampler()
        self._written += frame.duration
        self._queue(samples)

    def queue_samples(self, samples: np.ndarray) -> float:
        """Play int16 samples at the wire rate after what is queued (DTMF tones);
        returns the position at which they will have played."""
        self._flush_resampler()
        self._written += len(samples) / self._transport.serializer.sample_rate
        self._queue(samples)
        self._flush_requested = True
        self._notify()
        return self._written

    def segment_done(self) -> None:
        self._flush_resampler()
        self._flush_requested = True
        self._notify()

    def clear(self) -> None:
        """Drop what is queued here and ask the provider to drop what it has."""
        now = trio.current_time()
        self._pending.clear()
        self._pending_samples = 0
        self._pending_since = None
        self._resampler = None
        self._resampling_from = None
        position = self._head.clear(now)
        self._written = self._sent_until = position
        self._generation += 1
        self._last_mark = None
        self._clear_requested = True
        self._notify()

    def queued(self) -> float | None:
        """Seconds of the audio written that the caller has not heard yet."""
        return max(0.0, self._written - self._head.position(trio.current_time()))

    # -- what the transport calls -------------------------------------------------------

    def heard(self) -> float:
        """Seconds of agent audio the caller has heard since the stream began."""
        return self._head.position(trio.current_time())

    async def wait_played(self, position: float) -> None:
        """Until the caller has heard up to ``position`` (or it was cleared)."""
        generation = self._generation
        while self._generation == generation and (heard := self.heard()) + 1e-6 < position:
            await trio.sleep(max(0.02, position - heard))

    def mark_played(self, name: str) -> None:
        if self._head.mark_played(name, trio.current_time()):
            self._transport.stats.marks_played += 1
        self._notify()

    def _queue(self, samples: np.ndarray) -> None:
        if len(samples):
            self._pending.append(samples)
            self._pending_samples += len(samples)
            if self._pending_since is None:
                self._pending_since = trio.current_time()
            self._notify()

    def _flush_resampler(self) -> None:
        if self._resampler is not None:
            self._queue(self._resampler.resample_chunk(np.zeros(0, np.int16), last=True))
            self._resampler = None
            self._resampling_from = None

    def _notify(self) -> None:
        self._wake.set()

    def _next_mark(self) -> str:
        self._mark_ids += 1
        return f"v{self._generation}-{self._mark_ids}"

    # -- the sender task -----------------------------------------------------------------

    async def _wait_wake(self) -> None:
        if not self._wake.is_set():
            await self._wake.wait()
        self._wake = trio.Event()

    def _sendable(self, frame: int) -> int:
        """Samples of what is pending that may go now (whole frames unless flushing)."""
        if frame <= 1 or self._flush_requested:
            return self._pending_samples
        return self._pending_samples - self._pending_samples % frame

    async def run_sender(self, send: Callable[[str | bytes], Any]) -> None:
        """Send clears, audio and marks, in order, until cancelled."""
        serializer = self._transport.serializer
        rate = serializer.sample_rate
        max_samples = max(1, int(round(min(self.max_chunk, serializer.max_message_duration) * rate)))
        frame = serializer.frame_samples()
        while True:
            if self._clear_requested:
                self._clear_requested = False
                self._transport.stats.clears_sent += 1
                await send(serializer.encode_clear())
                continue
            sendable = self._sendable(frame)
            if not sendable:
                if not self._pending_samples:
                    self._flush_requested = False
                await self._wait_wake()
                continue
            if not (self._flush_requested or sendable >= max_samples or self._head.idle(trio.current_time())):
                assert self._pending_since is not None
                due = self._pending_since + self.hold
                if trio.current_time() < due:
                    with trio.move_on_at(due):
                        await self._wait_wake()
                    continue
            await self._send_chunk(send, min(sendable, max_samples), frame)

    async def _send_chunk(self, send: Callable[[str | bytes], Any], take: int, frame: int) -> None:
        serializer = self._transport.serializer
        samples = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        chunk, rest = samples[:take], samples[take:]
        self._pending = [rest] if len(rest) else []
        self._pending_samples = len(rest)
        self._pending_since = trio.current_time() if len(rest) else None
        start = self._sent_until
        self._sent_until = end = start + len(chunk) / serializer.sample_rate
        if frame > 1 and len(chunk) % frame:  # the end of a segment: pad the last frame
            chunk = np.concatenate([chunk, np.zeros(frame - len(chunk) % frame, np.int16)])
        stats = self._transport.stats
        messages: list[str | bytes] = []
        after_mark = None if self._head.idle(trio.current_time()) else self._last_mark
        if after_mark is None and serializer.playback_marks == "confirmed":
            name = self._next_mark()
            anchor = serializer.encode_mark(name)
            if anchor is not None:
                after_mark = name
                messages.append(anchor)
                stats.marks_sent += 1
        media = serializer.encode_audio(chunk)
        stats.media_messages_sent += len(media)
        messages += media
        end_mark: str | None = self._next_mark()
        mark = serializer.encode_mark(end_mark)  # type: ignore[arg-type]
        if mark is None:
            end_mark = None
        else:
            messages.append(mark)
            stats.marks_sent += 1
        # Known before it is sent: a mark may come back before the last send returns.
        self._head.sent(start, end, after_mark=after_mark, end_mark=end_mark, now=trio.current_time())
        self._last_mark = end_mark
        for message in messages:
            await send(message)


class TelephonyTransport(Transport):
    """A media stream that the server accepted, for one session.

    ``run(connection)`` reads the provider's messages and sends ours until the
    stream ends; the session reads the caller's audio through
    ``read_audio`` and speaks through ``audio_output``. When the stream ends
    (the caller hung up), the input ends with TransportDisconnected.
    """

    inline_input = True  # AudioIn's work runs in the reading task (transports/base.py)

    def __init__(self, serializer: MediaSerializer, **output_options: Any) -> None:
        self.serializer = serializer
        self.stats = TelephonyStats()
        self.audio_output: TelephonyAudioOutput = TelephonyAudioOutput(self, **output_options)
        self.session: AgentSession | None = None
        self.on_dtmf: Callable[[DtmfPressed], None] | None = None
        self.ended = trio.Event()
        self.end_reason: str | None = None
        self._audio_send, self._audio_receive = trio.open_memory_channel[np.ndarray](INBOUND_CAPACITY)
        self._connection: MediaSocket | None = None
        # the session's input while it reads the caller's audio (None: hold it here)
        self._frames: trio.MemorySendChannel[AudioFrame] | None = None

    def attach(self, session: AgentSession) -> None:
        self.session = session

    async def read_audio(self, frames: trio.MemorySendChannel[AudioFrame]) -> None:
        """Hand the caller's audio to ``frames`` until the call ends.

        What came before the session read is passed on first; after that the
        task reading the stream hands each frame to ``frames`` itself, where
        AudioIn converts it (``inline_input``): the one task wake-up per 20 ms
        frame is that reader's, on the network.
        """
        rate = self.serializer.sample_rate
        while True:
            try:
                samples = self._audio_receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            await frames.send(AudioFrame(samples, rate))
        if not self.ended.is_set():
            self._frames = frames
            try:
                await self.ended.wait()
            finally:
                self._frames = None
        raise TransportDisconnected(f"the call ended ({self.end_reason or 'stream closed'})")

    async def run(self, connection: MediaSocket, first: Sequence[Any] = ()) -> None:
        """Serve the stream until it ends; ``first``: events already decoded."""
        self._connection = connection

        async def send(message: str | bytes) -> None:
            if self.ended.is_set():
                return
            self.stats.messages_sent += 1
            try:
                await connection.send_message(message)
            except ConnectionClosed:
                self._end("the stream closed")  # the reader hears it too, and ends the run

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.audio_output.run_sender, send)
                for event in first:
                    await self._handle(event)
                while not self.ended.is_set():
                    try:
                        message = await connection.get_message()
                    except ConnectionClosed as closed:
                        self._end(f"the provider closed the stream ({closed.code})")
                        break
                    try:
                        events = self.serializer.decode(message)
                    except MediaProtocolError as error:
                        self.stats.bad_messages += 1
                        self._report(str(error))
                        continue
                    for event in events:
                        await self._handle(event)
                nursery.cancel_scope.cancel()
        except ConnectionClosed:
            self._end("the stream closed")
        finally:
            self._end("the stream closed")

    async def _handle(self, event: Any) -> None:
        if isinstance(event, InboundAudio):
            self.stats.inbound_frames += 1
            try:
                if self._frames is not None:  # inline input: converted here, never waits
                    self._frames.send_nowait(AudioFrame(event.samples, self.serializer.sample_rate))
                else:
                    self._audio_send.send_nowait(event.samples)
            except trio.WouldBlock:
                self.stats.inbound_dropped += 1
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._frames = None  # the session's input ended: hold (and count) what comes now
        elif isinstance(event, MarkPlayed):
            self.audio_output.mark_played(event.name)
        elif isinstance(event, DtmfPressed):
            if self.on_dtmf is not None:
                self.on_dtmf(event)
        elif isinstance(event, StreamStopped):
            self._end("the provider stopped the stream")
        elif isinstance(event, StreamFailed):
            self._report(f"{self.serializer.provider} reported: {event.message}")
        elif isinstance(event, AudioCleared):
            pass  # the clear's own effect is already accounted for

    def _report(self, message: str) -> None:
        if self.session is not None and self.session.running:
            self.session.emit(ErrorEvent(source="transport", message=message, recoverable=True))

    def _end(self, reason: str) -> None:
        if not self.ended.is_set():
            self.end_reason = reason
            self.ended.set()
            self._audio_send.close()

    async def close(self, code: int = 1000, reason: str = "call ended") -> None:
        """Close the media stream (for most markups, this ends the call)."""
        self._end("closed by the agent")
        if self._connection is not None:
            with trio.move_on_after(2.0):
                await self._connection.aclose(code, reason)
