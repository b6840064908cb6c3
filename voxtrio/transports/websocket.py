"""WebSocketTransport: one session's audio and events over one WebSocket.

The wire, version 1 (``docs/client-events.md`` is the full schema):

* client to server, binary: the user's audio, PCM16 little-endian mono at
  16 kHz, 20 ms (640 bytes) a message; any whole number of samples up to
  ``limits.max_audio_bytes`` is taken;
* server to client, binary: the agent's audio, PCM16 little-endian mono at
  the ``ready`` event's ``output.sample_rate``, at most ``chunk_duration`` a
  message, at most ``AudioOutput.buffer_duration`` ahead of real time;
* text: JSON objects with a ``type``. The client events of
  :mod:`voxtrio.transports.client_events`, plus media control: the server
  sends ``clear`` (drop every queued sample: the user cut in), ``pause`` and
  ``resume``, each with the playback ``epoch`` (the number of clears so far);
  the client sends ``playback`` reports (``epoch``, ``played``: seconds of
  agent audio played since that epoch began, ``state``: playing, idle or
  paused) a few times a second while it plays and at once after a clear.
  From those the output knows the client's play head (``AudioOutput.queued``),
  so the history records what the user really heard.

Bad input never ends the session: an odd byte count, a frame over the size
limit, text that is not JSON, an unknown type, frames faster than the rate
limits each get an ``error`` event (``source`` "client", a code from
``client_events.ERROR_CODES``) and are dropped. A client that stops reading
(its queue of outgoing messages full) is disconnected. When the client goes
away the session ends with ``participant_disconnected``; the history and
transcript are kept.

The socket itself is any :class:`MessageConnection` (the server in
:mod:`voxtrio.server` adapts an ASGI WebSocket; a trio-websocket connection
fits as easily). :meth:`WebSocketTransport.run` runs one session on it.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

import attrs
import numpy as np
import trio

from ..audio import PIPELINE_SAMPLE_RATE, AudioFrame
from .base import AudioOutput, Transport, TransportDisconnected
from .client_events import ClientCommandError, ClientEvents, finite_number

if TYPE_CHECKING:
    from ..agent import Agent
    from ..session import AgentSession

# Messages waiting to be sent to one client (audio chunks and events). The
# Speaker keeps audio at most 200 ms ahead, so a full queue means the client
# stopped reading.
OUTBOX_SIZE = 256

# A message waiting to go to the client: ("audio", epoch, PCM bytes),
# ("text", 0, JSON) or ("close", code, reason).
Outgoing = tuple[str, int, Any]


class MessageConnection(Protocol):
    """A WebSocket as the transport uses it."""

    async def receive(self) -> bytes | str:
        """The next message; raise TransportDisconnected once the peer has gone."""

    async def send(self, message: bytes | str) -> None:
        """Send one message (a no-op once the connection is closed)."""

    async def close(self, code: int, reason: str) -> None: ...


@attrs.frozen(kw_only=True)
class WebSocketLimits:
    """What one client may send. Beyond them messages are dropped with an error event."""

    max_audio_bytes: int = 3200  # 100 ms of 16 kHz PCM16
    max_text_bytes: int = 8192
    audio_burst: float = 1.0  # seconds of audio above real time a client may send at once
    messages_per_second: float = 100.0
    message_burst: float = 200.0
    commands_per_second: float = 5.0
    command_burst: float = 20.0
    errors_per_second: float = 5.0  # error events about bad input; the rest are counted


class _Bucket:
    """A token bucket on the trio clock."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._at = burst, trio.current_time()

    def take(self, amount: float = 1.0) -> bool:
        now = trio.current_time()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < amount:
            return False
        self._tokens -= amount
        return True


class WebSocketAudioOutput(AudioOutput):
    """The agent's audio to a remote player, which reports its play head back.

    Audio is mixed to mono, resampled to ``sample_rate`` and cut into chunks
    of at most ``chunk_duration``. ``clear`` starts a new playback epoch:
    chunks of the old one still waiting to be sent are dropped, and the
    client is told to drop what it holds.
    """

    can_pause = True
    buffer_duration = 0.2

    def __init__(
        self,
        queue: Callable[[Outgoing], Awaitable[None]],
        queue_now: Callable[[Outgoing], None],
        *,
        sample_rate: int = 24_000,
        chunk_duration: float = 0.04,
    ) -> None:
        self._queue = queue  # a message for the client, waiting for room
        self._queue_now = queue_now  # a message for the client, at once
        self.sample_rate = sample_rate
        self._chunk = max(1, int(round(sample_rate * chunk_duration)))
        self._resampler: Any = None
        self._input_rate: int | None = None
        self._pending = np.zeros(0, np.int16)  # resampled audio short of a whole chunk
        self.epoch = 0
        self._written = 0.0  # seconds written in this epoch
        self._played = 0.0  # seconds the client said it had played in this epoch
        self._reported_at: float | None = None  # when (None: no report in this epoch)
        self._client_playing = False
        self._paused = False
        self.chunks_sent = 0

    async def write(self, frame: AudioFrame) -> None:
        samples = frame.data
        if frame.num_channels > 1:
            samples = samples.reshape(-1, frame.num_channels).astype(np.int32).mean(axis=1).astype(np.int16)
        if frame.sample_rate != self.sample_rate:
            samples = self._resample(samples, frame.sample_rate)
        if len(self._pending):
            samples = np.concatenate([self._pending, samples])
        whole = len(samples) - len(samples) % self._chunk
        self._pending = samples[whole:]
        for offset in range(0, whole, self._chunk):
            await self._send_chunk(samples[offset : offset + self._chunk])
        # Counted once written, as the Speaker's timeline counts it (no checkpoint between).
        self._written += frame.duration

    async def _send_chunk(self, samples: np.ndarray) -> None:
        self.chunks_sent += 1
        await self._queue(("audio", self.epoch, samples.tobytes()))

    def segment_done(self) -> None:
        # The rest of the utterance (under a chunk) goes now, not with the next one.
        if len(self._pending):
            pending, self._pending = self._pending, np.zeros(0, np.int16)
            self.chunks_sent += 1
            self._queue_now(("audio", self.epoch, pending.tobytes()))

    def _resample(self, samples: np.ndarray, rate: int) -> np.ndarray:
        import soxr

        if rate != self._input_rate:
            self._resampler = soxr.ResampleStream(rate, self.sample_rate, 1, dtype="int16")
            self._input_rate = rate
        return self._resampler.resample_chunk(samples)

    def clear(self) -> None:
        self.epoch += 1
        self._written = self._played = 0.0
        self._reported_at = None
        self._resampler = self._input_rate = None
        self._pending = np.zeros(0, np.int16)
        self._control("clear")

    def pause(self) -> None:
        self._paused = True
        self._advance(trio.current_time())
        self._control("pause")

    def resume(self) -> None:
        self._paused = False
        if self._reported_at is not None:
            self._reported_at = trio.current_time()
        self._control("resume")

    def _control(self, kind: str) -> None:
        self._queue_now(("text", 0, json.dumps({"type": kind, "epoch": self.epoch}, separators=(",", ":"))))

    def queued(self) -> float | None:
        if self._reported_at is None:
            return None
        return max(0.0, self._written - self._estimate(trio.current_time()))

    def _estimate(self, now: float) -> float:
        played = self._played
        if self._client_playing and not self._paused and self._reported_at is not None:
            played += now - self._reported_at
        return min(played, self._written)

    def _advance(self, now: float) -> None:
        if self._reported_at is not None:
            self._played = self._estimate(now)
            self._reported_at = now

    def report(self, epoch: int, played: float, state: str) -> None:
        """The client's play head: ``played`` seconds of epoch ``epoch``, now ``state``."""
        if epoch != self.epoch:
            return  # about audio already cleared
        self._played = min(played, self._written)
        self._reported_at = trio.current_time()
        self._client_playing = state == "playing"


class WebSocketTransport(Transport):
    """A session over one WebSocket; ``await transport.run(session, agent)``."""

    inline_input = True  # AudioIn's work runs in the reading task (transports/base.py)

    def __init__(
        self,
        connection: MessageConnection,
        *,
        session_id: str = "session",
        output_sample_rate: int = 24_000,
        chunk_duration: float = 0.04,
        limits: WebSocketLimits | None = None,
        transcript_path: str | os.PathLike[str] | None = None,
        close_timeout: float = 2.0,
    ) -> None:
        self.connection = connection
        self.session_id = session_id
        self.limits = limits or WebSocketLimits()
        self.transcript_path = transcript_path
        self.close_timeout = close_timeout
        self._outbox, self._outbox_out = trio.open_memory_channel[Outgoing](OUTBOX_SIZE)
        self.audio_output = self.output = WebSocketAudioOutput(
            self._outbox.send, self._queue_now, sample_rate=output_sample_rate, chunk_duration=chunk_duration
        )
        self.events = ClientEvents(
            self._queue_event,
            ready={
                "session_id": session_id,
                "input": {"encoding": "pcm_s16le", "sample_rate": PIPELINE_SAMPLE_RATE, "frame_ms": 20},
                "output": {"encoding": "pcm_s16le", "sample_rate": output_sample_rate},
                "limits": {"max_audio_bytes": self.limits.max_audio_bytes, "max_text_bytes": self.limits.max_text_bytes},
            },
        )
        self._session: AgentSession | None = None
        self._gone = trio.Event()  # the client is to be disconnected (it stopped reading)
        self._reading: trio.CancelScope | None = None
        self._sender_done = trio.Event()
        self.frames_received = 0
        self.bad_input = 0  # client messages dropped as malformed or over a limit
        self.errors_suppressed = 0  # error events not sent (over errors_per_second)
        self.close_code: int | None = None

    @property
    def session(self) -> AgentSession | None:
        """The session on this connection (once it has started)."""
        return self._session

    # -- the session's side ---------------------------------------------------------

    def attach(self, session: AgentSession) -> None:
        self._session = session
        self.events.attach(session)

    def publish_text(self, speech_id: str, text: str, *, final: bool) -> None:
        self.events.agent_transcript(speech_id, text, final=final)

    async def run(self, session: AgentSession, agent: Agent) -> None:
        """Run ``session`` with ``agent`` on this connection; return once both are closed."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_messages)
            try:
                await session.main(agent, self)
            finally:
                nursery.cancel_scope.cancel()

    async def read_audio(self, frames: trio.MemorySendChannel[AudioFrame]) -> None:
        self._message_bucket = _Bucket(self.limits.messages_per_second, self.limits.message_burst)
        self._command_bucket = _Bucket(self.limits.commands_per_second, self.limits.command_burst)
        self._audio_bucket = _Bucket(1.0, self.limits.audio_burst)
        self._error_bucket = _Bucket(self.limits.errors_per_second, self.limits.errors_per_second)
        with trio.CancelScope() as self._reading:
            while not self._gone.is_set():
                message = await self.connection.receive()
                try:
                    frame = self._decode(message)
                except ClientCommandError as error:
                    self.bad_input += 1
                    self._report(error)
                    continue
                if frame is not None:
                    self.frames_received += 1
                    await frames.send(frame)
        raise TransportDisconnected("the client stopped reading")

    async def aclose(self) -> None:
        """Send what is queued (the close event last), close the socket, write the transcript."""
        reason = "closed"
        if self._session is not None and self._session.last_close is not None:
            reason = self._session.last_close.reason
        self.close_code = 1000 if not self._gone.is_set() else 1008
        try:
            self._outbox.send_nowait(("close", self.close_code, reason))
        except (trio.WouldBlock, trio.ClosedResourceError):
            pass
        with trio.move_on_after(self.close_timeout):
            await self._sender_done.wait()
        if not self._sender_done.is_set():
            with trio.move_on_after(self.close_timeout):
                await self.connection.close(self.close_code, reason)
        if self.transcript_path is not None:
            self._write_transcript()

    # -- sending ---------------------------------------------------------------------------------

    def _queue_now(self, message: Outgoing) -> None:
        try:
            self._outbox.send_nowait(message)
        except trio.WouldBlock:
            # A client that does not read would see a broken conversation: let it go.
            self._gone.set()
            if self._reading is not None:
                self._reading.cancel()

    def _queue_event(self, event: dict[str, Any]) -> None:
        self._queue_now(("text", 0, json.dumps(event, separators=(",", ":"))))

    async def _send_messages(self) -> None:
        try:
            async for kind, epoch, payload in self._outbox_out:
                if kind == "close":  # (code, reason)
                    with trio.move_on_after(self.close_timeout):
                        await self.connection.close(epoch, payload)
                    return
                if kind == "audio" and epoch != self.output.epoch:
                    continue  # cleared before it was sent
                await self.connection.send(payload)
        finally:
            self._sender_done.set()

    # -- receiving ---------------------------------------------------------------------------------

    def _decode(self, message: bytes | str) -> AudioFrame | None:
        """An audio frame for the session, or None after acting on a text message."""
        limits = self.limits
        if not self._message_bucket.take():
            raise ClientCommandError("rate_limited", f"more than {limits.messages_per_second:g} messages a second")
        if isinstance(message, str):
            if len(message) > limits.max_text_bytes or len(message.encode()) > limits.max_text_bytes:
                raise ClientCommandError("too_large", f"text messages are limited to {limits.max_text_bytes} bytes")
            self._on_text(message)
            return None
        size = len(message)
        if size > limits.max_audio_bytes:
            raise ClientCommandError("too_large", f"audio messages are limited to {limits.max_audio_bytes} bytes, got {size}")
        if size == 0 or size % 2:
            raise ClientCommandError("bad_audio", f"audio is PCM16: a non-zero, even byte count, got {size} bytes")
        if not self._audio_bucket.take(size / (2 * PIPELINE_SAMPLE_RATE)):
            raise ClientCommandError("rate_limited", "audio is arriving faster than real time; the excess was dropped")
        return AudioFrame(np.frombuffer(message, "<i2").astype(np.int16), PIPELINE_SAMPLE_RATE)

    def _on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            raise ClientCommandError("bad_json", "a text message must be JSON") from None
        if isinstance(message, dict) and message.get("type") == "playback":
            self._on_playback(message)
            return
        if not self._command_bucket.take():
            raise ClientCommandError("rate_limited", f"more than {self.limits.commands_per_second:g} commands a second")
        self.events.handle(message)

    def _on_playback(self, message: dict[str, Any]) -> None:
        epoch, played, state = message.get("epoch"), message.get("played"), message.get("state")
        if not (isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0):
            raise ClientCommandError("bad_message", 'playback needs an integer "epoch" >= 0')
        if not finite_number(played) or played < 0:
            raise ClientCommandError("bad_message", 'playback needs a number "played" >= 0 (seconds)')
        if state not in ("playing", "idle", "paused"):
            raise ClientCommandError("bad_message", 'playback "state" is playing, idle or paused')
        self.output.report(epoch, float(played), state)

    def _report(self, error: ClientCommandError) -> None:
        if self._error_bucket.take():
            self.events.client_error(error)
        else:
            self.errors_suppressed += 1

    def _write_transcript(self) -> None:
        assert self.transcript_path is not None
        session = self._session
        document = {
            "session_id": self.session_id,
            "close": None if session is None or session.last_close is None else session.last_close.payload(),
            "history": [] if session is None else session.history.to_dicts(),
            **self.events.log.to_dict(),
        }
        temporary = f"{os.fspath(self.transcript_path)}.partial"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(document, file, indent=2)
            file.write("\n")
        os.replace(temporary, self.transcript_path)

