"""What a realtime model's session needs whatever its vendor: one WebSocket
at a time, replaced when it is lost, audio cut into the chunks the vendor
takes and back into 20 ms frames, and the vendor's audio clock mapped onto
the session's.

OpenAI's Realtime API and Google's Live API speak different protocols over
the same kind of connection; :class:`ReconnectingSession` is the part they
share (the ``async with`` that owns the reader's nursery, the retries, the
events channel), each vendor's session says how a connection is configured
and read.
"""

from __future__ import annotations

import abc
import contextlib
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

import numpy as np
import trio

from ..audio import AudioFrame
from ..errors import APIError, AudioFormatError
from ..options import APIConnectOptions
from . import base
from .base import RealtimeEvent, RealtimeReconnected
from .streamed_audio import PCMStream
from .vendor_websocket import (
    CLOSE_HANDSHAKE_TIMEOUT,
    ConnectionClosed,
    WebSocketConnection,
    closed_error,
    connect,
    json_object,
)

if TYPE_CHECKING:
    from ..chat import ChatContext

RESAMPLER_QUALITY = "LQ"  # soxr's low-latency setting, as AudioIn uses
OUTPUT_FRAME = 0.02
EVENT_BUFFER = 256


def given(**fields: Any) -> dict[str, Any]:
    """The fields that are not None (a vendor's defaults stand for the rest)."""
    return {name: value for name, value in fields.items() if value is not None}


def _resampler(rate_in: int, rate_out: int) -> Any:
    import soxr

    return soxr.ResampleStream(rate_in, rate_out, 1, dtype="int16", quality=RESAMPLER_QUALITY)


class InputAudio:
    """The user's frames as the vendor takes them: mono at ``rate``, in
    chunks of ``chunk`` seconds, each with the audio time of its first
    sample (a gap in the input blurs by less than a chunk)."""

    def __init__(self, rate: int, chunk: float = 0.02) -> None:
        self.rate = rate
        self._chunk = int(round(rate * chunk))
        self._input_rate: int | None = None
        self._resampler: Any = None
        self._held = np.zeros(0, np.int16)
        self._held_start = 0.0  # audio time of the first held sample
        self._next_timestamp = 0.0

    def push(self, frame: Any) -> list[tuple[np.ndarray, float]]:
        if not isinstance(frame, AudioFrame):
            raise AudioFormatError(f"push_audio takes an AudioFrame, got {type(frame).__name__}")
        if not frame.samples_per_channel:
            return []
        if frame.num_channels != 1 or frame.sample_rate != (self._input_rate or frame.sample_rate):
            raise AudioFormatError(
                f"the realtime model is sent mono audio at one rate; got {frame.num_channels} channel(s) "
                f"at {frame.sample_rate} Hz after {self._input_rate} Hz"
            )
        if self._input_rate is None:
            self._input_rate = frame.sample_rate
            if frame.sample_rate != self.rate:
                self._resampler = _resampler(frame.sample_rate, self.rate)
        start = frame.timestamp if frame.timestamp is not None else self._next_timestamp
        self._next_timestamp = start + frame.duration
        samples = self._resampler.resample_chunk(frame.data) if self._resampler is not None else frame.data
        if not len(self._held):
            self._held_start = start
        self._held = np.concatenate([self._held, samples]) if len(self._held) else samples
        chunks = []
        while len(self._held) >= self._chunk:
            chunks.append((self._held[: self._chunk], self._held_start))
            self._held = self._held[self._chunk :]
            self._held_start += self._chunk / self.rate
        return chunks

    def flush(self) -> list[tuple[np.ndarray, float]]:
        """What is held back, as a last short chunk (the user's turn ends now)."""
        if not len(self._held):
            return []
        chunk, self._held = self._held, self._held[:0]
        return [(chunk, self._held_start)]

    def clear(self) -> None:
        self._held = self._held[:0]


class AudioClock:
    """A connection's clock (seconds of audio it was sent) against the
    session's audio time: a new run starts wherever the two stop moving
    together (the first chunk, a gap in the input)."""

    def __init__(self) -> None:
        self.sent = 0.0
        self._runs: list[tuple[float, float]] = []  # (connection seconds, audio time) where a run starts

    def record(self, duration: float, audio_time: float) -> None:
        if not self._runs or abs(self._runs[-1][1] + (self.sent - self._runs[-1][0]) - audio_time) > 1e-3:
            self._runs.append((self.sent, audio_time))
        self.sent += duration

    def audio_time(self, seconds: float) -> float:
        run = self._runs[0] if self._runs else (0.0, 0.0)
        for candidate in self._runs:
            if candidate[0] <= seconds + 1e-6:
                run = candidate
        return run[1] + (seconds - run[0])


class OutputAudio:
    """One reply's audio: the vendor's base64 PCM decoded, resampled to the
    session's rate, cut into 20 ms frames; ``seconds`` is how much the
    vendor sent (at its own rate)."""

    def __init__(self, vendor_rate: int, rate: int, *, vendor: str) -> None:
        self.rate = rate
        self.seconds = 0.0
        self._vendor = vendor
        self._vendor_rate = vendor_rate
        self._pcm = PCMStream(vendor_rate, vendor=vendor)
        self._resampler = _resampler(vendor_rate, rate) if rate != vendor_rate else None
        self._frame = int(round(rate * OUTPUT_FRAME))
        self._held = np.zeros(0, np.int16)
        self._flushed = False

    def push(self, encoded: str) -> list[AudioFrame]:
        if self._flushed:
            raise APIError(f"{self._vendor} sent audio after the end of a reply's audio")
        frames = self._pcm.decode(encoded)
        if not frames:
            return []
        samples = frames[0].data if len(frames) == 1 else np.concatenate([f.data for f in frames])
        self.seconds += len(samples) / self._vendor_rate
        return self._cut(self._resampler.resample_chunk(samples) if self._resampler else samples, last=False)

    def flush(self) -> list[AudioFrame]:
        """The end of the reply's audio (once: a vendor may say so twice)."""
        if self._flushed:
            return []
        self._flushed = True
        tail = self._resampler.resample_chunk(np.zeros(0, np.int16), last=True) if self._resampler else self._held[:0]
        return self._cut(tail, last=True)

    def _cut(self, samples: np.ndarray, *, last: bool) -> list[AudioFrame]:
        held = np.concatenate([self._held, samples.astype(np.int16, copy=False)]) if len(self._held) else samples
        whole = len(held) - len(held) % self._frame
        frames = [AudioFrame(held[i : i + self._frame].copy(), self.rate) for i in range(0, whole, self._frame)]
        self._held = held[whole:]
        if last and len(self._held):
            frames.append(AudioFrame(self._held.copy(), self.rate))
            self._held = self._held[:0]
        return frames


def share_of(text: str, share: float) -> str:
    """The whole words of ``text`` in its first ``share`` (of characters,
    standing for the share of its audio that played)."""
    cut = int(len(text) * share)
    if cut >= len(text):
        return text
    space = text.rfind(" ", 0, cut + 1)
    return text[:space].rstrip() if space > 0 else ""


class ReconnectingSession(base.RealtimeSession):
    """A realtime session over one WebSocket at a time.

    Entering :meth:`running` connects and configures the first connection
    (what refuses it is raised there); the reader runs in a nursery of the
    session's own. A lost connection is replaced, configured the same way
    and given the conversation so far, while ``max_retry`` failures in a
    row are allowed (a connection that lasted ``timeout`` seconds worked:
    its loss starts a new streak); each replacement is reported as a
    :class:`RealtimeReconnected`. The failure that ends the session is
    raised by its ``async with``, after the body.
    """

    vendor = "a realtime model"
    key_variable = "the API key"

    def __init__(
        self, *, url: str, headers: Mapping[str, str], input_rate: int, conn_options: APIConnectOptions
    ) -> None:
        self._url = url
        self._headers = dict(headers)
        self._options = conn_options
        self._events_send, self.events = trio.open_memory_channel[RealtimeEvent](EVENT_BUFFER)
        self._ws: WebSocketConnection | None = None  # None while (re)connecting
        self._lost_audio = 0.0  # seconds of input dropped while disconnected
        self._reconfiguring = False  # we closed the connection to open one configured anew
        self._failure: BaseException | None = None
        self._nursery: trio.Nursery | None = None
        self._input = InputAudio(input_rate)

    async def push_audio(self, frame: AudioFrame) -> None:
        for chunk, audio_time in self._input.push(frame):
            await self._append(chunk, audio_time)

    @abc.abstractmethod
    async def _append(self, chunk: np.ndarray, audio_time: float) -> None:
        """Send a chunk of the user's audio (its first sample at ``audio_time``)."""

    @abc.abstractmethod
    async def _configure(self, ws: WebSocketConnection) -> None:
        """Configure a new connection and give it the conversation so far."""

    @abc.abstractmethod
    async def _read(self, ws: WebSocketConnection) -> None:
        """Read the vendor's messages until the connection ends (raising why)."""

    def _connection_lost(self) -> None:
        """Forget what belonged to the connection that ended."""
        self._ws = None

    async def _connected(self) -> None:
        """The connection is configured and the session's events may flow."""

    async def _emit(self, event: RealtimeEvent) -> None:
        await self._events_send.send(event)

    async def _send_message(self, message: str) -> None:
        """Send on the current connection; while there is none, what matters
        is kept by the vendor's session (its mirror of the conversation)."""
        ws = self._ws
        if ws is None:
            return
        try:
            await ws.send_message(message)
        except ConnectionClosed:
            pass  # the reader sees the close and reconnects

    async def _reconfigure(self) -> None:
        """Replace the connection by one configured anew (a vendor whose
        configuration is fixed for a connection's life)."""
        if self._ws is not None:
            self._reconfiguring = True
            with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT):
                await self._ws.aclose()

    @abc.abstractmethod
    def _mirror_chat_item(self, item: Any) -> None:
        """Take an item of the session's ChatContext into the conversation."""

    def _close_error(self, reason: Any) -> APIError:
        """The vendor closed the connection (with ``reason``): the error it is."""
        return closed_error(reason, vendor=self.vendor)

    async def _receive(self, ws: WebSocketConnection) -> dict[str, Any]:
        """The vendor's next message (a JSON object, as both protocols have)."""
        try:
            message = await ws.get_message()
        except ConnectionClosed as closed:
            raise self._close_error(closed.reason) from None
        return json_object(message, vendor=self.vendor)

    @contextlib.asynccontextmanager
    async def running(self, chat_ctx: ChatContext | None = None) -> AsyncIterator[ReconnectingSession]:
        """The session, started from ``chat_ctx`` and connected (what
        :meth:`RealtimeModel.session` returns)."""
        for item in chat_ctx.items if chat_ctx is not None else ():
            self._mirror_chat_item(item)
        failure: BaseException | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await nursery.start(self._supervise)
            except Exception as error:  # raised below, outside the nursery
                failure = error
                nursery.cancel_scope.cancel()
            if failure is None:
                try:
                    yield self
                except Exception as error:  # raised below, outside the nursery
                    failure = error
                finally:
                    nursery.cancel_scope.cancel()
        self._events_send.close()
        if failure is not None:
            raise failure
        if self._failure is not None:
            raise self._failure

    async def _supervise(self, task_status: trio.TaskStatus[None]) -> None:
        started = False

        def on_connected() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        try:
            await self._connect_until_done(on_connected)
        except Exception as error:
            if not started:
                raise
            self._failure = error  # raised by the session's `async with`
            self._events_send.close()  # the reader of events sees the end
            assert self._nursery is not None
            self._nursery.cancel_scope.cancel()

    async def _connect_until_done(self, on_connected: Any) -> None:
        failures = 0
        connected_at = 0.0
        lost: APIError | None = None  # why the last connection that worked ended
        while True:
            worked = False
            try:
                async with connect(
                    self._url, headers=self._headers, vendor=self.vendor, key_variable=self.key_variable,
                    timeout=self._options.timeout,
                ) as ws:
                    await self._configure(ws)
                    worked = True
                    connected_at = trio.current_time()
                    if lost is not None:
                        missed, self._lost_audio = self._lost_audio, 0.0
                        await self._emit(RealtimeReconnected(lost, lost_audio=missed))
                        lost = None
                    on_connected()
                    await self._connected()
                    await self._read(ws)
            except APIError as error:
                self._connection_lost()
                if self._reconfiguring and worked:
                    self._reconfiguring = False
                    continue
                if worked:
                    lost = error
                    if trio.current_time() - connected_at >= self._options.timeout:
                        failures = 0  # it worked for a while: a new streak
                if not error.retryable or failures >= self._options.max_retry:
                    error.retryable = False  # within this session, no retry is left
                    raise error from None
                delay = max(self._options.retry_delay(failures), error.retry_after or 0.0)
                failures += 1
                await trio.sleep(delay)
