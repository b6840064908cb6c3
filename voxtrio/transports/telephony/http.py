"""One port for a provider's webhooks (plain HTTP) and its media streams (WebSocket).

Each connection's request head is read here with h11 (the HTTP/1.1 parser
wsproto itself uses): a request for a WebSocket upgrade is checked *before*
any handshake (a refused stream never becomes a WebSocket) and then handed to
the media socket (media_socket.py) with the bytes already read replayed in
front of the socket; anything else is an ordinary request, answered and closed.

One request per connection (the response says ``Connection: close``): the
providers open a connection per webhook, and the media streams are long.
"""

from __future__ import annotations

import http
import logging
from typing import Awaitable, Callable
from urllib.parse import parse_qsl, urlsplit

import attrs
import h11
import trio

from ...errors import VoxtrioError

logger = logging.getLogger("voxtrio.telephony")

# A request head larger than this, or a body, is refused (413): webhooks are small.
MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 256 * 1024
# How long a client may take to send its request (a slow-loris guard).
REQUEST_TIMEOUT = 10.0
READ_SIZE = 16 * 1024


class HTTPError(VoxtrioError):
    """A request that cannot be served: ``status`` says how it is refused."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@attrs.frozen
class HTTPRequest:
    method: str
    target: str
    """The request target as sent: the path and the query."""
    headers: dict[str, str]
    """Names lowercased; a repeated header keeps its last value."""
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.target).query, keep_blank_values=True)

    def form(self) -> list[tuple[str, str]]:
        """The body's ``application/x-www-form-urlencoded`` fields, in order."""
        if "application/x-www-form-urlencoded" not in self.headers.get("content-type", ""):
            return []
        try:
            return parse_qsl(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError as error:
            raise HTTPError(400, "the form is not UTF-8") from error

    @property
    def is_websocket(self) -> bool:
        return (
            self.method == "GET"
            and self.headers.get("upgrade", "").lower() == "websocket"
            and "upgrade" in self.headers.get("connection", "").lower()
        )


@attrs.frozen
class HTTPResponse:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"

    @classmethod
    def text(cls, status: int, text: str) -> HTTPResponse:
        return cls(status, text.encode("utf-8"))

    @classmethod
    def xml(cls, markup: str) -> HTTPResponse:
        """A 200 with an XML document (TwiML, TeXML, Plivo XML)."""
        return cls(200, markup.encode("utf-8"), "text/xml; charset=utf-8")


class ReplayedStream(trio.abc.HalfCloseableStream):
    """A stream that first returns bytes already read from it."""

    def __init__(self, stream: trio.abc.HalfCloseableStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    def replayed(self) -> trio.abc.HalfCloseableStream | None:
        """The stream underneath once the prefix has been read, else None: a
        long-lived reader (a media stream) then reads it without this layer."""
        return None if self._prefix else self._stream

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


HTTPHandler = Callable[[HTTPRequest], Awaitable[HTTPResponse]]
UpgradeHandler = Callable[[HTTPRequest, trio.abc.HalfCloseableStream], Awaitable[HTTPResponse | None]]


async def read_request(stream: trio.abc.HalfCloseableStream) -> tuple[HTTPRequest, bytes]:
    """The request on ``stream`` and everything read from it so far (to replay)."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    raw = bytearray()
    request: h11.Request | None = None
    body = bytearray()
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as error:
            raise HTTPError(error.error_status_hint, f"bad request: {error}") from error
        if event is h11.NEED_DATA:
            data = await stream.receive_some(READ_SIZE)
            if not data:
                raise HTTPError(400, "the connection closed before the request was complete")
            raw += data
            connection.receive_data(bytes(data))
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY_BYTES:
                raise HTTPError(413, "the request body is too large")
        elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
            break
        elif isinstance(event, h11.ConnectionClosed):
            raise HTTPError(400, "the connection closed before the request was complete")
    assert request is not None
    headers: dict[str, str] = {}
    for name, value in request.headers:
        headers[name.decode("latin-1").lower()] = value.decode("latin-1")
    parsed = HTTPRequest(
        method=request.method.decode("ascii"),
        target=request.target.decode("latin-1"),
        headers=headers,
        body=bytes(body),
    )
    return parsed, bytes(raw)


def encode_response(response: HTTPResponse) -> bytes:
    reason = http.HTTPStatus(response.status).phrase if response.status in _STATUSES else ""
    head = (
        f"HTTP/1.1 {response.status} {reason}\r\n"
        f"content-type: {response.content_type}\r\n"
        f"content-length: {len(response.body)}\r\n"
        "connection: close\r\n"
        "cache-control: no-store\r\n\r\n"
    )
    return head.encode("latin-1") + response.body


_STATUSES = {status.value for status in http.HTTPStatus}


async def serve_connection(
    stream: trio.abc.HalfCloseableStream,
    on_request: HTTPHandler,
    on_upgrade: UpgradeHandler,
    *,
    request_timeout: float = REQUEST_TIMEOUT,
) -> None:
    """Serve the one request of ``stream``: ``on_upgrade`` gets a WebSocket
    upgrade (with a stream that replays the head) and returns None once it has
    taken the connection, or a refusal to send; ``on_request`` answers the rest."""
    async with stream:
        try:
            with trio.fail_after(request_timeout):
                request, raw = await read_request(stream)
        except HTTPError as error:
            await _respond(stream, HTTPResponse.text(error.status, str(error)))
            return
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if request.is_websocket:
            response = await on_upgrade(request, ReplayedStream(stream, raw))
            if response is None:
                return
        else:
            response = await on_request(request)
        await _respond(stream, response)


async def _respond(stream: trio.abc.HalfCloseableStream, response: HTTPResponse) -> None:
    with trio.move_on_after(REQUEST_TIMEOUT):
        try:
            await stream.send_all(encode_response(response))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def serve_http(
    on_request: HTTPHandler,
    on_upgrade: UpgradeHandler,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` until cancelled; ``task_status.started`` gets the listeners."""

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await serve_connection(stream, on_request, on_upgrade)
        except Exception:  # one connection's failure must not end the others
            logger.exception("a connection failed")

    listeners = await trio.open_tcp_listeners(port, host=host)
    async with trio.open_nursery() as nursery:
        task_status.started(listeners)
        await trio.serve_listeners(handler, listeners, handler_nursery=nursery)
