"""Deepgram live transcription: ``STT(model="nova-3")`` over Deepgram's WebSocket.

The protocol, from Deepgram's "Live Audio" API reference and its feature
pages (Endpointing & Interim Results, Utterance End, Speech Started,
KeepAlive, Finalize, CloseStream, the troubleshooting and the recovery
guides):

- handshake: ``GET /v1/listen?model=...&encoding=linear16&sample_rate=...&channels=1
  &interim_results=true&vad_events=true&utterance_end_ms=1000&endpointing=...`` with
  ``Authorization: Token <key>``; a refusal is an HTTP status with a
  ``dg-error`` header;
- we send raw PCM as binary frames (never an empty one: Deepgram closes the
  stream on it) and the text frames ``{"type": "KeepAlive"}`` (at least every
  10 s of no audio, or Deepgram closes with 1011 NET-0001), ``{"type":
  "Finalize"}`` (flush: what was heard comes back final, marked
  ``from_finalize``) and ``{"type": "CloseStream"}`` (finish, send Metadata,
  close);
- Deepgram sends ``Results`` (``channel.alternatives[0]`` with transcript,
  confidence and words; ``start``/``duration`` in seconds of the stream;
  ``is_final`` when the span will not change, ``speech_final`` at an
  endpoint), ``SpeechStarted`` (``timestamp``), ``UtteranceEnd``
  (``last_word_end``) and ``Metadata`` (``request_id``); errors close the
  connection with a code and Deepgram's reason (1008 DATA-0000 bad audio,
  1011 NET-0000 / NET-0001 timeouts).

Speech boundaries: the user starts speaking at ``SpeechStarted`` (or the
first words, if that event was missed) and stops at ``speech_final`` or
``UtteranceEnd``, which is what ``turn_detection="stt"`` follows.

Reconnecting: Deepgram's times count from the first audio a connection got,
so a new connection starts a new clock. Every frame is kept until a final
result covers it; after a failure (a refused or dropped connection, a close
with an error code, a malformed frame, nothing heard from Deepgram for
``timeout`` seconds while audio was going out) the stream connects again
within ``max_retry`` attempts in a row and replays what was not finalized,
mapping the new connection's times back onto the session's audio clock. The
audio of the backoff is kept too. Each recovered failure is reported as an
:class:`~voxtrio.providers.base.STTReconnected`; one that cannot be retried,
or a streak that exhausts the budget, is raised.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import functools
import json
import math
from typing import Any, Mapping, Sequence

import attrs
import trio

from ..audio import AudioFrame
from ..errors import APIError, APITimeoutError, AudioFormatError
from .base import STTEvent
from ..options import APIConnectOptions
from ..retry import unwrap
from . import base
from .api_common import api_key as api_key_of
from .base import DEFAULT_CONN_OPTIONS, STTCapabilities, STTReconnected, STTStreamItem, STTUsage
from .vendor_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    closed_error,
    connect,
    json_object,
    protocol_error,
    run_beside,
    websocket_url,
)

VENDOR = "Deepgram"
KEY_VARIABLE = "DEEPGRAM_API_KEY"
DEFAULT_BASE_URL = "wss://api.deepgram.com/v1/listen"

_KEEPALIVE = json.dumps({"type": "KeepAlive"})
_FINALIZE = json.dumps({"type": "Finalize"})
_CLOSE_STREAM = json.dumps({"type": "CloseStream"})

# Audio seconds worth reporting on their own, when no transcript comes.
USAGE_REPORT_INTERVAL = 5.0
# How long a cancelled stream may take to send its CloseStream.
CLOSE_STREAM_TIMEOUT = 0.5


class STT(base.STT):
    """Deepgram streaming speech-to-text.

    ``interim_results``, ``vad_events`` and ``utterance_end_ms`` are on by
    default: they give interim transcripts and the speech boundaries that
    ``turn_detection="stt"`` needs (``UtteranceEnd`` only works with interim
    results, as Deepgram documents). ``endpointing_ms`` is the silence after
    which a result is ``speech_final`` (None: Deepgram's default; 0: off).
    ``extra_query`` adds any other documented query parameter as is.

    ``keepalive_interval``: a ``KeepAlive`` goes out when no audio has for
    this long (the input turned off, a transport that pauses); silence
    itself is audio and keeps flowing, Deepgram's endpointing needs it.
    ``max_replay``: seconds of not-yet-finalized audio kept for a
    reconnection; older audio is dropped (and said so in the next
    reconnection report).
    """

    def __init__(
        self,
        model: str = "nova-3",
        *,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        language: str | None = "en-US",
        interim_results: bool = True,
        vad_events: bool = True,
        utterance_end_ms: int | None = 1000,
        endpointing_ms: int | None = 25,
        punctuate: bool = True,
        smart_format: bool = False,
        filler_words: bool = False,
        keyterms: Sequence[str] = (),
        extra_query: Mapping[str, Any] | None = None,
        keepalive_interval: float = 5.0,
        max_replay: float = 30.0,
    ) -> None:
        if utterance_end_ms is not None and not interim_results:
            raise ValueError("Deepgram's utterance_end_ms needs interim_results=True")
        if not 0 < keepalive_interval < 10:
            raise ValueError("keepalive_interval must be between 0 and 10 s (Deepgram closes after 10 s)")
        self.model = model
        self.language = language
        self._api_key = api_key_of(api_key, KEY_VARIABLE, VENDOR)
        self._base_url = base_url
        self._query: dict[str, Any] = {
            "model": model,
            "interim_results": interim_results,
            "vad_events": vad_events,
            "utterance_end_ms": utterance_end_ms,
            "endpointing": (False if endpointing_ms == 0 else endpointing_ms),
            "punctuate": punctuate,
            "smart_format": smart_format,
            "filler_words": filler_words,
            "keyterm": list(keyterms) or None,
            **(extra_query or {}),
        }
        websocket_url(base_url)  # a bad URL fails here, not at the first call
        self.keepalive_interval = keepalive_interval
        self.max_replay = max_replay
        self.capabilities = STTCapabilities(
            streaming=True, interim_results=interim_results, offline_recognize=False, speech_boundaries=True
        )

    def url(self, *, sample_rate: int, language: str | None) -> str:
        query = {**self._query, "encoding": "linear16", "sample_rate": sample_rate, "channels": 1}
        if language:
            query["language"] = language
        return websocket_url(self._base_url, "", query)

    async def stream(
        self,
        frames: trio.MemoryReceiveChannel[AudioFrame],
        events: trio.MemorySendChannel[STTStreamItem],
        *,
        language: str | None = None,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        live = _LiveStream(self, events, language or self.language, conn_options)
        await live.run(frames)

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self._api_key}"}


@attrs.define(eq=False)
class _Item:
    """A frame (or a flush, ``data`` None) waiting for Deepgram to finalize it."""

    seq: int
    data: bytes | None
    start: float  # audio time of the first sample
    duration: float

    @property
    def end(self) -> float:
        return self.start + self.duration


@attrs.define(eq=False)
class _Connection:
    """What one connection has been sent, on its own clock."""

    ws: WebSocketConnection
    next_seq: int  # the next item to send
    sent: float = 0.0  # seconds of audio sent: Deepgram's clock
    runs: list[tuple[float, float]] = attrs.Factory(list)  # (Deepgram time, audio time) of each contiguous run
    audio_end: float = math.nan  # audio time just after the last frame sent
    sent_at: collections.deque[tuple[float, float]] = attrs.Factory(collections.deque)  # (Deepgram end, trio time)
    last_sent: float = 0.0  # trio time of the last frame or KeepAlive
    # Stall detection: audio went out and Deepgram has not answered since. The
    # clock stops while no audio flows (Deepgram owes no answer for a pause).
    answer_due: float | None = None  # trio time by which an answer must come
    answer_budget: float | None = None  # what is left of the wait while it is paused
    watchdog: trio.CancelScope | None = None
    # Audio or CloseStream is being written: a Deepgram that stopped reading
    # fills the socket and the write never returns, so an answer stays due.
    writing: bool = False
    closing: bool = False  # CloseStream sent
    answered: bool = False  # Deepgram sent a result on this connection
    request_id: str | None = None  # Deepgram's id of the stream, for its support

    @property
    def vendor(self) -> str:
        """Who to blame in an error: Deepgram, and which of its streams."""
        return f"{VENDOR} (request {self.request_id})" if self.request_id else VENDOR

    def record(self, item: _Item, now: float) -> None:
        if not self.runs or abs(item.start - self.audio_end) > 1e-6:
            self.runs.append((self.sent, item.start))
        self.sent += item.duration
        self.audio_end = item.end
        self.sent_at.append((self.sent, now))
        self.last_sent = now

    def audio_time(self, deepgram_time: float, *, end: bool = False) -> float:
        """Deepgram's time on this connection as audio time of the session.

        Where a gap in the audio joins two runs, a start belongs to the run
        after it and an ``end`` to the run before (within a microsecond: both
        clocks are sums of frame durations)."""
        if not self.runs:
            return deepgram_time
        key = deepgram_time - 1e-6 if end else deepgram_time + 1e-6
        index = max(0, bisect.bisect_right(self.runs, (key, math.inf)) - 1)
        offset, audio_start = self.runs[index]
        return audio_start + (deepgram_time - offset)

    def sent_time_of(self, deepgram_end: float) -> float | None:
        """When the audio up to ``deepgram_end`` had been sent; forgets older sends."""
        while self.sent_at and self.sent_at[0][0] < deepgram_end - 1e-6:
            self.sent_at.popleft()
        return self.sent_at[0][1] if self.sent_at else None


class _LiveStream:
    """One ``stream()`` call: the audio kept for replay, and the connections."""

    def __init__(
        self,
        stt: STT,
        events: trio.MemorySendChannel[STTStreamItem],
        language: str | None,
        conn_options: APIConnectOptions,
    ) -> None:
        self._stt = stt
        self._events = events
        self._language = language
        self._options = conn_options
        self._pending: collections.deque[_Item] = collections.deque()
        self._pending_audio = 0.0  # seconds of audio in _pending
        self._next_seq = 0
        self._input_ended = False
        self._changed = trio.Event()
        self._sample_rate: int | None = None
        self._next_timestamp = 0.0
        self._dropped = 0.0  # seconds of audio dropped since the last report
        self._unreported = 0.0  # seconds of audio sent since the last usage report
        self._speaking = False
        self._last_word_end: float | None = None

    # -- the input: kept until finalized ---------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _push(self, data: bytes | None, start: float, duration: float) -> None:
        self._pending.append(_Item(self._next_seq, data, start, duration))
        self._next_seq += 1
        self._pending_audio += duration
        while self._pending_audio > self._stt.max_replay and self._pending:
            dropped = self._pending.popleft()
            self._pending_audio -= dropped.duration
            self._dropped += dropped.duration
        self._notify()

    async def _read(self, frames: trio.MemoryReceiveChannel[AudioFrame]) -> None:
        async for frame in frames:
            if not frame.samples_per_channel:
                self._push(None, self._next_timestamp, 0.0)  # a flush: Finalize
                continue
            if frame.num_channels != 1 or frame.sample_rate != (self._sample_rate or frame.sample_rate):
                raise AudioFormatError(
                    f"Deepgram is streamed mono audio at one rate; got {frame.num_channels} channel(s) "
                    f"at {frame.sample_rate} Hz after {self._sample_rate} Hz"
                )
            self._sample_rate = frame.sample_rate
            start = frame.timestamp if frame.timestamp is not None else self._next_timestamp
            self._next_timestamp = start + frame.duration
            self._push(frame.data.astype("<i2", copy=False).tobytes(), start, frame.duration)
        self._input_ended = True
        self._notify()

    def _acknowledge(self, audio_end: float, connection: _Connection) -> None:
        """Deepgram finalized the audio up to ``audio_end``: it needs no replay."""
        pending = self._pending
        while pending and pending[0].seq < connection.next_seq:
            head = pending[0]
            if head.data is not None and head.end > audio_end + 1e-6:
                break
            pending.popleft()
            self._pending_audio -= head.duration

    # -- connections ----------------------------------------------------------------------

    async def run(self, frames: trio.MemoryReceiveChannel[AudioFrame]) -> None:
        await run_beside(self._connect_until_done, functools.partial(self._read, frames))

    async def _connect_until_done(self) -> None:
        failures = 0
        while True:
            while self._sample_rate is None and not self._input_ended:
                await self._changed.wait()  # no audio yet: nothing to connect for
            if self._sample_rate is None:
                return
            connection: list[_Connection] = []
            try:
                await self._connect(connection)
                break
            except Exception as raised:
                error = unwrap(raised)
                if not isinstance(error, APIError):
                    raise
                if self._input_ended and not any(item.data for item in self._pending):
                    break  # the input is over and all of it was finalized
                if connection and connection[0].answered:
                    failures = 0  # it worked for a while: a new streak
                if not error.retryable or failures >= self._options.max_retry:
                    error.retryable = False  # within this stream, no retry is left
                    raise error from None
                delay = max(self._options.retry_delay(failures), error.retry_after or 0.0)
                failures += 1
                await self._events.send(STTReconnected(error))
                await trio.sleep(delay)
                if self._dropped:
                    lost = APIError(f"{VENDOR}: {self._dropped:.2f} s of audio were dropped while reconnecting")
                    self._dropped = 0.0
                    await self._events.send(STTReconnected(lost))
        await self._report_usage(None)

    async def _connect(self, holder: list[_Connection]) -> None:
        assert self._sample_rate is not None
        url = self._stt.url(sample_rate=self._sample_rate, language=self._language)
        async with connect(
            url, headers=self._stt._headers, vendor=VENDOR, key_variable=KEY_VARIABLE, timeout=self._options.timeout
        ) as ws:
            first = self._pending[0].seq if self._pending else self._next_seq
            connection = _Connection(ws, next_seq=first, last_sent=trio.current_time())
            connection.request_id = next(
                (v.decode("latin-1") for k, v in ws.handshake_headers if k.lower() == b"dg-request-id"), None
            )
            holder.append(connection)
            try:
                await run_beside(
                    functools.partial(self._receive, connection),
                    functools.partial(self._send, connection),
                    functools.partial(self._keep_alive, connection),
                )
            finally:
                if not connection.closing:
                    # Cancelled (the session is closing, the turn was cleared) or
                    # failed: tell a live Deepgram this stream is over.
                    with trio.move_on_after(CLOSE_STREAM_TIMEOUT, shield=True):
                        with contextlib.suppress(ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                            await ws.send_message(_CLOSE_STREAM)

    def _item(self, seq: int) -> _Item | None:
        if not self._pending:
            return None
        index = seq - self._pending[0].seq
        return self._pending[index] if 0 <= index < len(self._pending) else None

    async def _send(self, connection: _Connection) -> None:
        ws = connection.ws
        try:
            while True:
                if self._pending and connection.next_seq < self._pending[0].seq:
                    connection.next_seq = self._pending[0].seq  # dropped while away
                item = self._item(connection.next_seq)
                if item is None:
                    if self._input_ended:
                        connection.closing = connection.writing = True
                        self._arm_watchdog(connection)
                        await ws.send_message(_CLOSE_STREAM)
                        connection.writing = False
                        return
                    self._pause_watchdog(connection)
                    await self._changed.wait()
                    continue
                if item.data is None:
                    # Deepgram answers a Finalize only when it has audio to finalize:
                    # no watchdog for it.
                    if connection.sent > 0:
                        await ws.send_message(_FINALIZE)
                else:
                    connection.writing = True
                    self._arm_watchdog(connection)
                    await ws.send_message(item.data)
                    connection.writing = False
                    now = trio.current_time()
                    connection.record(item, now)
                    self._unreported += item.duration
                    self._arm_watchdog(connection)
                connection.next_seq = item.seq + 1
        except ConnectionClosed:
            return  # the receiver reports why

    def _arm_watchdog(self, connection: _Connection) -> None:
        if connection.answer_due is None:
            budget = connection.answer_budget if connection.answer_budget is not None else self._options.timeout
            connection.answer_due, connection.answer_budget = trio.current_time() + budget, None
            self._set_watchdog(connection)

    def _pause_watchdog(self, connection: _Connection) -> None:
        if connection.answer_due is not None:
            connection.answer_budget = max(0.0, connection.answer_due - trio.current_time())
            connection.answer_due = None
            self._set_watchdog(connection)

    def _set_watchdog(self, connection: _Connection) -> None:
        if connection.watchdog is not None:
            connection.watchdog.deadline = connection.answer_due if connection.answer_due is not None else math.inf

    async def _keep_alive(self, connection: _Connection) -> None:
        interval = self._stt.keepalive_interval
        try:
            while True:
                await trio.sleep_until(connection.last_sent + interval)
                if trio.current_time() >= connection.last_sent + interval - 1e-9:
                    await connection.ws.send_message(_KEEPALIVE)
                    connection.last_sent = trio.current_time()
        except ConnectionClosed:
            return

    async def _receive(self, connection: _Connection) -> None:
        ws = connection.ws
        timeout = self._options.timeout
        while True:
            with trio.CancelScope() as watchdog:
                connection.watchdog = watchdog
                self._set_watchdog(connection)
                try:
                    message = await ws.get_message()
                except ConnectionClosed as closed:
                    if connection.closing and closed.reason is not None and closed.reason.code == 1000:
                        return  # CloseStream answered: everything was finalized
                    raise closed_error(closed.reason, vendor=connection.vendor) from None
            connection.watchdog = None
            if watchdog.cancelled_caught:
                raise APITimeoutError(f"{connection.vendor} sent nothing for {timeout:g} s while audio was streaming")
            connection.answer_due = connection.answer_budget = None
            if connection.writing:
                self._arm_watchdog(connection)
            await self._handle(json_object(message, vendor=connection.vendor), message, connection)

    # -- what Deepgram says -------------------------------------------------------------

    async def _handle(self, data: dict[str, Any], raw: str | bytes, connection: _Connection) -> None:
        kind = data.get("type")
        try:
            if kind == "Results":
                await self._on_results(data, connection)
            elif kind == "SpeechStarted":
                timestamp = float(data["timestamp"])
                await self._start_of_speech(connection.audio_time(timestamp))
            elif kind == "UtteranceEnd":
                last = data.get("last_word_end")
                end = connection.audio_time(float(last), end=True) if last is not None and last >= 0 else self._last_word_end
                await self._end_of_speech(end)
            elif kind == "Metadata":
                connection.request_id = str(data.get("request_id") or connection.request_id or "") or None
            # Message types added later need nothing.
        except (KeyError, IndexError, TypeError, ValueError):
            raise protocol_error(
                connection.vendor, f"a {kind} message that does not follow its documented shape", raw
            ) from None

    async def _on_results(self, data: dict[str, Any], connection: _Connection) -> None:
        alternative = data["channel"]["alternatives"][0]
        transcript = alternative["transcript"]
        if not isinstance(transcript, str):
            raise TypeError("transcript")
        confidence = float(alternative.get("confidence", 1.0))
        words = alternative.get("words") or []
        start, duration = float(data["start"]), float(data["duration"])
        span_end = start + duration
        text = transcript.strip()
        connection.answered = True
        if connection.request_id is None:
            connection.request_id = (data.get("metadata") or {}).get("request_id")
        start_time = connection.audio_time(float(words[0]["start"]) if words else start)
        end_time = connection.audio_time(float(words[-1]["end"]) if words else span_end, end=True)
        if text:
            self._last_word_end = end_time
            await self._start_of_speech(start_time)
        if not data.get("is_final"):
            if text:
                await self._send_event(STTEvent(
                    kind="interim", text=text, confidence=confidence, language=self._language,
                    start_time=start_time, end_time=end_time,
                ))
            return
        self._acknowledge(connection.audio_time(span_end, end=True), connection)
        sent_at = connection.sent_time_of(span_end)
        if text or data.get("from_finalize"):
            # An empty final answers a flush: the Turn waits for one.
            await self._send_event(STTEvent(
                kind="final", text=text, confidence=confidence, language=self._language,
                start_time=start_time, end_time=end_time,
            ))
        if text:
            await self._report_usage(None if sent_at is None else trio.current_time() - sent_at)
        elif self._unreported >= USAGE_REPORT_INTERVAL:
            await self._report_usage(None)
        if data.get("speech_final"):
            await self._end_of_speech(self._last_word_end)

    async def _start_of_speech(self, at: float) -> None:
        if not self._speaking:
            self._speaking = True
            await self._send_event(STTEvent(kind="start_of_speech", start_time=at))

    async def _end_of_speech(self, end: float | None) -> None:
        if self._speaking:
            self._speaking = False
            await self._send_event(STTEvent(kind="end_of_speech", end_time=end))

    async def _send_event(self, event: STTEvent) -> None:
        await self._events.send(event)

    async def _report_usage(self, latency: float | None) -> None:
        if self._unreported > 0 or latency is not None:
            audio, self._unreported = self._unreported, 0.0
            await self._events.send(STTUsage(audio_duration=audio, latency=latency))

