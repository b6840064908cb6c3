"""The server side of a provider's media WebSocket, read by the task that handles its messages.

trio-websocket runs a reader task for every connection: it parses the frames
and hands each message to the consumer through a memory channel, two task
wake-ups and a channel operation for every 20 ms of a caller's audio. A media
stream has exactly one consumer, the telephony transport's ``run``, and it
reads all the time, so :class:`MediaSocket` drives wsproto (the RFC 6455
state machine trio-websocket itself uses) from ``get_message()``: a message
costs one wake-up of that task (``bench/phone_call.py --framework transport``
measures the difference).

What a reader task also does is done where it is needed: a ping is answered,
and a close from the provider acknowledged, while reading; ``aclose`` sends
the close and waits, bounded, for the provider's answer, through the reader
if one is reading, by reading itself if not.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

import trio
from wsproto import ConnectionState, ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ...errors import VoxtrioError
from .http import ReplayedStream

# A message larger than this closes the stream with 1009: the providers' are a
# few kilobytes (Vonage's binary 20 ms of 16 kHz PCM: 640 bytes).
MAX_MESSAGE_BYTES = 1 << 20
# Bytes asked of the socket per read: a burst of queued messages is parsed at once.
RECEIVE_BYTES = 1 << 16
# How long aclose waits for the provider to answer the close before dropping the connection.
CLOSE_TIMEOUT = 2.0
ABNORMAL_CLOSURE = 1006


class ConnectionClosed(VoxtrioError):
    """The media stream has ended; ``code`` is its WebSocket close code (1006:
    the connection went away without a close handshake)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"the media stream closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class MediaSocket:
    """One accepted media WebSocket; :meth:`accept` makes one from an upgrade request's stream.

    One task reads (``get_message``), any task may send; ``aclose`` may be
    called from another task while the reader waits.
    """

    def __init__(self, stream: trio.abc.Stream, *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._stream = stream
        self._max_message_bytes = max_message_bytes
        # wsproto's state machine: handshake, frames, close handshake
        self._ws = WSConnection(ConnectionType.SERVER)
        # whole messages parsed but not yet returned by get_message, oldest first
        self._messages: collections.deque[str | bytes] = collections.deque()
        # the frames so far of the message being received, and their total size
        self._parts: list[str | bytes] = []
        self._part_bytes = 0
        # serializes writes: a pong from the reader and a message from a sender
        self._send_lock = trio.StrictFIFOLock()
        # how the stream ended, once it has; raised by every later call
        self._closed: ConnectionClosed | None = None
        self._ended = trio.Event()
        # a task is inside the socket's receive_some (only one may be)
        self._reading = False

    @classmethod
    async def accept(cls, stream: trio.abc.Stream, **options: int) -> MediaSocket:
        """Complete the WebSocket handshake of ``stream`` (which starts with the
        upgrade request) and return the open socket; ConnectionClosed if the
        request is not one or the client goes away first."""
        socket = cls(stream, **options)
        while True:
            try:
                for event in socket._ws.events():
                    if isinstance(event, Request):
                        await socket._write(socket._ws.send(AcceptConnection()))
                        if isinstance(stream, ReplayedStream) and stream.replayed() is not None:
                            socket._stream = stream.replayed()  # type: ignore[assignment]
                        return socket
                data = await socket._read()
                if not data:
                    raise ConnectionClosed(ABNORMAL_CLOSURE, "the client left during the handshake")
                socket._ws.receive_data(data)
            except (LocalProtocolError, RemoteProtocolError) as error:
                raise ConnectionClosed(ABNORMAL_CLOSURE, f"not a WebSocket handshake: {error}") from error

    @property
    def closed(self) -> ConnectionClosed | None:
        """How the stream ended, or None while it is open."""
        return self._closed

    async def get_message(self) -> str | bytes:
        """The next message (text as str, binary as bytes); ConnectionClosed once the stream ends."""
        while not self._messages:
            if self._closed is not None:
                raise self._closed
            data = await self._read()
            if self._closed is not None:  # aclose ended it meanwhile
                continue
            self._ws.receive_data(data or None)  # None: the peer left without a close
            await self._handle(self._ws.events())
        return self._messages.popleft()

    async def send_message(self, message: str | bytes) -> None:
        """Send one message; ConnectionClosed if the stream has ended or is closing."""
        if self._closed is not None:
            raise self._closed
        event = TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message)
        try:
            data = self._ws.send(event)
        except LocalProtocolError:  # a close is under way
            raise ConnectionClosed(ABNORMAL_CLOSURE, "the stream is closing") from None
        await self._write(data)

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the stream with ``code``: send the close, wait at most
        CLOSE_TIMEOUT for the provider's answer, then drop the connection."""
        try:
            if self._closed is None and self._ws.state is ConnectionState.OPEN:
                try:
                    await self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
                except ConnectionClosed:
                    pass
                with trio.move_on_after(CLOSE_TIMEOUT):
                    while self._closed is None:
                        if self._reading:
                            await self._ended.wait()
                        else:
                            try:
                                await self.get_message()  # discarded: we are closing
                            except ConnectionClosed:
                                break
            self._end(code, reason or "")
        finally:
            await trio.aclose_forcefully(self._stream)

    async def _handle(self, events: Iterator[Event]) -> None:
        for event in events:
            if isinstance(event, (TextMessage, BytesMessage)):
                self._part_bytes += len(event.data)
                if self._part_bytes > self._max_message_bytes:
                    await self._refuse(1009, f"a message over {self._max_message_bytes} bytes")
                    return
                self._parts.append(event.data)
                if event.message_finished:
                    text = isinstance(event, TextMessage)
                    whole = "".join(self._parts) if text else b"".join(self._parts)  # type: ignore[arg-type]
                    self._messages.append(whole)
                    self._parts, self._part_bytes = [], 0
            elif isinstance(event, Ping):
                try:
                    await self._write(self._ws.send(event.response()))
                except (ConnectionClosed, LocalProtocolError):
                    pass  # the reader sees the end next
            elif isinstance(event, CloseConnection):
                if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                    # the provider's close, or a frame wsproto could not parse (then the
                    # state is still OPEN): answer it, then the connection is done
                    try:
                        await self._write(self._ws.send(event.response()))
                    except (ConnectionClosed, LocalProtocolError):
                        pass
                self._end(event.code, event.reason or "")
                return

    async def _refuse(self, code: int, reason: str) -> None:
        try:
            await self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
        except (ConnectionClosed, LocalProtocolError):
            pass
        self._end(code, reason)

    def _end(self, code: int, reason: str) -> None:
        if self._closed is None:
            self._closed = ConnectionClosed(code, reason)
            self._ended.set()

    async def _read(self) -> bytes:
        if self._reading:
            raise trio.BusyResourceError("another task is already reading this media stream")
        self._reading = True
        try:
            return await self._stream.receive_some(RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""
        finally:
            self._reading = False

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            if self._closed is not None:  # every close frame is written before the end
                raise self._closed
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                self._end(ABNORMAL_CLOSURE, "the connection was lost")
                raise self._closed from error  # type: ignore[misc]
