"""A scripted HTTP/1.1 server on loopback (trio + h11), for the HTTP providers.

It runs in the test's own trio run, so its waits are on the test's clock: a
scripted delay, a stall, a Retry-After all take virtual time on MockClock. It
listens on 127.0.0.1 (a numeric address: the client resolves nothing in a
thread, which would let the autojumping clock run ahead of real I/O).

Each path has a queue of responses, used in order (the last one repeats). A
response is a :class:`Reply` (status, headers, body) or a :class:`Stream`
(chunks sent with pauses, then an end, a stall or a dropped connection).
Requests are recorded; so is when a client went away in the middle of a
stream and how many chunks it had been sent (a cancelled request must close
its connection at once).
"""

from __future__ import annotations

import collections
import email.parser
import email.policy
import functools
import json
from typing import Any, Callable, Literal, Sequence, Union

import attrs
import h11
import trio


@attrs.frozen
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    connection: int  # which TCP connection it came on (1, 2...)

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, Any]:
        """A multipart/form-data body: field name -> text, or (filename, content type, bytes)."""
        head = f"Content-Type: {self.headers['content-type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + self.body)
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            filename = part.get_filename()
            fields[name] = (filename, part.get_content_type(), payload) if filename else payload.decode()
        return fields


@attrs.frozen
class Reply:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: Sequence[tuple[str, str]] = ()) -> Reply:
        return cls(status=status, body=json.dumps(value).encode(), headers=tuple(headers))


@attrs.frozen
class Stream:
    """A 200 response whose body goes out in ``chunks``: ``first_delay`` before
    the first, ``interval`` between the others; then ``end`` (a complete body),
    ``stall`` (nothing more, the connection left open) or ``drop`` (the
    connection closed without ending the body)."""

    chunks: tuple[bytes, ...]
    first_delay: float = 0.0
    interval: float = 0.0
    then: Literal["end", "stall", "drop"] = "end"
    content_type: str = "text/event-stream"


Response = Union[Reply, Stream]


@attrs.define
class Disconnect:
    path: str
    at: float
    chunks_sent: int


class LoopbackServer:
    """``async with LoopbackServer(authorized=...) as server:`` serves at ``server.url``.

    ``authorized(request)`` checks the credentials; a request that fails it is
    answered ``unauthorized`` (the vendor's 401).
    """

    def __init__(self, *, authorized: Callable[[Request], bool], unauthorized: Reply) -> None:
        self._authorized = authorized
        self._unauthorized = unauthorized
        self._scripts: dict[str, collections.deque[Response]] = collections.defaultdict(collections.deque)
        self.requests: list[Request] = []
        self.disconnects: list[Disconnect] = []
        self.url = ""
        self._connections = 0
        self._nursery: trio.Nursery | None = None

    def script(self, path: str, *responses: Response) -> None:
        self._scripts[path].extend(responses)

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    async def __aenter__(self) -> LoopbackServer:
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        listeners = await self._nursery.start(functools.partial(trio.serve_tcp, self._serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        return await self._nursery_manager.__aexit__(*exc_info)

    def _next(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized
        queue = self._scripts.get(request.path)
        if not queue:
            return Reply(status=404, body=b'{"error": {"message": "no such path"}}')
        return queue.popleft() if len(queue) > 1 else queue[0]

    async def _serve(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        self._connections += 1
        number = self._connections
        try:
            while True:
                request = await self._read_request(stream, connection, number)
                if request is None:
                    return
                self.requests.append(request)
                if not await self._respond(stream, connection, request, self._next(request)):
                    return
                if connection.our_state is h11.MUST_CLOSE:
                    return
                connection.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _read_request(
        self, stream: trio.SocketStream, connection: h11.Connection, number: int
    ) -> Request | None:
        head: h11.Request | None = None
        body = b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                connection.receive_data(data)
                if not data and connection.their_state is not h11.DONE:
                    return None
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers = {k.decode().lower(): v.decode() for k, v in head.headers}
                return Request(head.method.decode(), head.target.decode(), headers, body, trio.current_time(), number)
            else:  # ConnectionClosed, or a pipelined request we do not expect
                return None

    async def _respond(
        self, stream: trio.SocketStream, connection: h11.Connection, request: Request, response: Response
    ) -> bool:
        """Send ``response``; False when the connection is to be closed."""
        if isinstance(response, Reply):
            headers = [("content-type", response.content_type), ("content-length", str(len(response.body)))]
            await stream.send_all(connection.send(h11.Response(status_code=response.status, headers=headers + list(response.headers))))
            await stream.send_all(connection.send(h11.Data(data=response.body)))
            await stream.send_all(connection.send(h11.EndOfMessage()))
            return True
        await stream.send_all(
            connection.send(
                h11.Response(
                    status_code=200,
                    headers=[("content-type", response.content_type), ("transfer-encoding", "chunked")],
                )
            )
        )
        sent = 0
        gone = False
        async with trio.open_nursery() as nursery:

            async def watch_for_close() -> None:
                # The client sends nothing while it reads a response: data or
                # EOF here means it went away.
                nonlocal gone
                try:
                    await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                gone = True
                self.disconnects.append(Disconnect(request.path, trio.current_time(), sent))
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_for_close)
            await trio.sleep(response.first_delay)
            for index, chunk in enumerate(response.chunks):
                if index:
                    await trio.sleep(response.interval)
                await stream.send_all(connection.send(h11.Data(data=chunk)))
                sent += 1
            if response.then == "stall":
                await trio.sleep_forever()
            if response.then == "drop":
                nursery.cancel_scope.cancel()
                return False
            await stream.send_all(connection.send(h11.EndOfMessage()))
            nursery.cancel_scope.cancel()
        return not gone


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event (``data`` as JSON unless it is a str)."""
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()

