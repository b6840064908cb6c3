"""What the fake vendor servers share: a trio-websocket server on loopback,
the per-connection log, and the faults a connection can be scripted with."""

from __future__ import annotations

import contextlib
import functools
import json
import urllib.parse
from typing import Any, AsyncIterator, Literal

import attrs
import trio
from trio_websocket import WebSocketConnection, WebSocketRequest, serve_websocket

FaultKind = Literal["reject", "stall_handshake", "drop", "stall", "close", "malformed"]


@attrs.frozen(kw_only=True)
class Fault:
    """What goes wrong on one connection.

    ``reject``: the handshake is answered with HTTP ``status`` (and
    ``headers``); ``stall_handshake``: it is never answered. The others
    happen once ``after`` seconds of audio went through the connection
    (received for an STT; for a TTS, sent: ``after=0`` strikes before the
    first chunk of audio): ``drop`` closes the TCP
    connection with no close frame, ``stall`` stops answering (the
    connection stays open), ``close`` sends a close frame with ``code`` and
    ``reason``, ``malformed`` sends ``payload`` (text or bytes) and goes on.
    """

    kind: FaultKind
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    code: int = 1011
    reason: str = ""
    payload: str | bytes = ""
    after: float = 0.0


@attrs.define(eq=False)
class ConnectionLog:
    """One connection as the server saw it."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    opened_at: float
    fault: Fault | None
    texts: list[dict[str, Any]] = attrs.Factory(list)  # JSON text frames received, in order
    audio_seconds: float = 0.0  # audio received (STT) or sent (TTS)
    words: list[tuple[str, float, float]] = attrs.Factory(list)  # TTS: words sent, timed on this connection's audio
    finished: bool = False  # TTS: the whole input was synthesized and the end announced
    client_gone_at: float | None = None  # when the server saw the client close or drop the connection
    closed_at: float | None = None
    close_code: int | None = None  # the code of the close frame the client sent, if any

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def types(self) -> list[str]:
        return [str(message.get("type")) for message in self.texts]


class FakeServer:
    """Accepts connections, checks the API key, applies handshake faults and
    hands each accepted connection to ``serve`` with its log."""

    key_header = "authorization"

    def __init__(self, *, faults: list[Fault | None] | tuple[Fault | None, ...] = ()) -> None:
        self.faults = list(faults)
        self.connections: list[ConnectionLog] = []
        self.url = ""

    def expected_key_value(self) -> str:
        raise NotImplementedError

    def serves(self, path: str) -> bool:
        """Whether ``path`` is the vendor's endpoint (others get a 404)."""
        raise NotImplementedError

    def accept_headers(self) -> list[tuple[bytes, bytes]]:
        """Headers of the handshake's answer (a vendor's request id)."""
        return []

    def reject_key(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return 401, [], b'{"error": "invalid api key"}'

    def authorized(self, log: ConnectionLog) -> bool:
        """Whether the handshake carries the key (a header, for most vendors)."""
        return log.headers.get(self.key_header) == self.expected_key_value()

    async def serve(self, ws: WebSocketConnection, log: ConnectionLog) -> None:
        raise NotImplementedError

    async def _handle(self, request: WebSocketRequest) -> None:
        parts = urllib.parse.urlsplit(request.path)
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        index = len(self.connections)
        fault = self.faults[index] if index < len(self.faults) else None
        log = ConnectionLog(
            path=parts.path,
            query=urllib.parse.parse_qs(parts.query),
            headers=headers,
            opened_at=trio.current_time(),
            fault=fault,
        )
        self.connections.append(log)
        if fault is not None and fault.kind == "stall_handshake":
            await trio.sleep_forever()
        if fault is not None and fault.kind == "reject":
            extra = [(k.encode(), v.encode()) for k, v in fault.headers]
            await request.reject(fault.status, extra_headers=extra, body=b"rejected by the script")
            return
        if not self.serves(log.path):
            await request.reject(404, body=b"not found")
            return
        if not self.authorized(log):
            status, extra, body = self.reject_key()
            await request.reject(status, extra_headers=extra, body=body)
            return
        ws = await request.accept(extra_headers=self.accept_headers())
        try:
            await self.serve(ws, log)
        finally:
            log.closed_at = trio.current_time()
            if ws.closed is not None:
                log.close_code = ws.closed.code

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeServer]:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                functools.partial(serve_websocket, self._handle, "127.0.0.1", 0, ssl_context=None)
            )
            self.url = f"ws://127.0.0.1:{server.port}"
            yield self
            nursery.cancel_scope.cancel()


async def drop(ws: WebSocketConnection) -> None:
    """Close the TCP connection under the WebSocket: the client sees no close frame."""
    await ws._stream.aclose()  # noqa: SLF001 - the fault needs the raw stream


async def stall() -> None:
    await trio.sleep_forever()


async def apply_fault(ws: WebSocketConnection, fault: Fault) -> bool:
    """Play a mid-stream fault; True if the connection is over."""
    if fault.kind == "drop":
        await drop(ws)
        return True
    if fault.kind == "stall":
        await stall()
    if fault.kind == "close":
        await ws.aclose(fault.code, fault.reason)
        return True
    if fault.kind == "malformed":
        await ws.send_message(fault.payload)
    return False


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message)


class SpeechModel:
    """How the fake TTSs "speak": each character lasts ``1 / chars_per_second``
    (a word and the space after it), rendered ``speed`` times faster than real
    time after ``ttfb``; the samples are a constant, so a test can recognize them.
    20 characters a second makes every character a whole 50 ms, so alignments
    in integer milliseconds are exact."""

    def __init__(self, *, chars_per_second: float = 20.0, ttfb: float = 0.05, speed: float = 4.0,
                 chunk_seconds: float = 0.25, value: int = 100) -> None:
        self.chars_per_second = chars_per_second
        self.ttfb = ttfb
        self.speed = speed
        self.chunk_seconds = chunk_seconds
        self.value = value

    def char_duration(self) -> float:
        return 1.0 / self.chars_per_second

    def samples(self, seconds: float, rate: int) -> bytes:
        import numpy as np

        return np.full(int(round(seconds * rate)), self.value, "<i2").tobytes()


def timed_words(text: str, start: float, char_duration: float) -> list[tuple[str, float, float]]:
    """The words of ``text`` rendered from ``start``: (word, start, end)."""
    words = []
    position = 0
    for word in text.split():
        position = text.index(word, position)
        words.append((word, start + position * char_duration, start + (position + len(word)) * char_duration))
        position += len(word)
    return words
