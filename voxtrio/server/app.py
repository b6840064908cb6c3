"""VoiceServer: the ASGI app behind ``voxtrio serve``: page, static files, WebSocket.

One port serves everything (hypercorn's trio worker runs it, so every
connection is a task in one trio process):

* ``GET /?key=K``: the access link the server prints. A valid key is kept in
  an HttpOnly, same-site cookie and the browser is sent on to ``/``;
* ``GET /``: the page (``voxtrio/transports/web/``), for a browser holding the
  cookie; anyone else gets a 401 page saying where the link is;
* ``GET /static/NAME``: the page's scripts and style (no secret in them);
* ``POST /token``: a fresh session token, for a request with the cookie from
  an allowed origin;
* ``/ws?token=T``: the WebSocket. The Origin (when the client sends one) must
  be allowed and the token valid and unused, or the handshake is refused
  (403, 401) before any session exists; past ``max_sessions`` it is 503.
  Each accepted connection runs one session on a
  :class:`~voxtrio.transports.websocket.WebSocketTransport`.
"""

from __future__ import annotations

import collections
import hmac
import itertools
import json
import os
import secrets
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence
from urllib.parse import parse_qs

from ..transports.base import TransportDisconnected
from ..transports.websocket import WebSocketLimits, WebSocketTransport
from ..tokens import InvalidToken, TokenSigner

COOKIE = "voxtrio_key"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'self'; connect-src 'self'; frame-ancestors 'none'"),
]

NEEDS_LINK = """<!doctype html><meta charset="utf-8"><title>voxtrio</title>
<p>This voxtrio server needs its access link: open the address that
<code>voxtrio serve</code> printed when it started (it ends in <code>?key=...</code>).</p>
"""


def page_files() -> dict[str, tuple[bytes, str]]:
    """The page's files, by name, with their content types."""
    folder = resources.files("voxtrio.transports") / "web"
    files = {}
    for entry in folder.iterdir():
        suffix = Path(entry.name).suffix
        if entry.is_file() and suffix in CONTENT_TYPES:
            files[entry.name] = (entry.read_bytes(), CONTENT_TYPES[suffix])
    return files


class ASGIWebSocket:
    """An ASGI WebSocket as a :class:`~voxtrio.transports.websocket.MessageConnection`."""

    def __init__(self, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]) -> None:
        self._receive = receive
        self._send = send
        self.closed = False
        self.disconnect_code: int | None = None

    async def receive(self) -> bytes | str:
        while not self.closed:
            message = await self._receive()
            if message["type"] == "websocket.receive":
                data = message.get("bytes")
                return data if data is not None else message.get("text") or ""
            if message["type"] == "websocket.disconnect":
                self.closed = True
                self.disconnect_code = message.get("code")
        raise TransportDisconnected(f"the client went away (WebSocket code {self.disconnect_code})")

    async def send(self, message: bytes | str) -> None:
        if not self.closed:
            key = "text" if isinstance(message, str) else "bytes"
            await self._send({"type": "websocket.send", key: message})

    async def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})


class VoiceServer:
    """The app. ``new_session()`` makes the (AgentSession, Agent) pair of each call."""

    def __init__(
        self,
        new_session: Callable[[], tuple[Any, Any]],
        *,
        signer: TokenSigner | None = None,
        allowed_origins: set[str] | frozenset[str] = frozenset(),
        max_sessions: int = 20,
        limits: WebSocketLimits | None = None,
        output_sample_rate: int = 24_000,
        record_dir: str | os.PathLike[str] | None = None,
        keep_finished: int = 100,
    ) -> None:
        self._new_session = new_session
        self.signer = signer or TokenSigner.generate()
        self.access_key = self.signer.derive("page access")
        self.allowed_origins = frozenset(allowed_origins)
        self.max_sessions = max_sessions
        self.limits = limits
        self.output_sample_rate = output_sample_rate
        self.record_dir = None if record_dir is None else Path(record_dir)
        self._files = page_files()
        self._ids = itertools.count(1)
        self.live: dict[str, WebSocketTransport] = {}
        """The sessions running now, by id."""
        self.finished: collections.deque[WebSocketTransport] = collections.deque(maxlen=keep_finished)
        """The last sessions that ended (their history and transcript are kept)."""
        self.refused: collections.Counter[str] = collections.Counter()
        """WebSocket handshakes refused, by reason."""

    def access_url(self, base: str) -> str:
        return f"{base.rstrip('/')}/?key={self.access_key}"

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)

    # -- checks ------------------------------------------------------------------------------

    def _origin_allowed(self, scope: dict) -> bool:
        origin = _header(scope, b"origin")
        return origin is None or origin in self.allowed_origins

    def _has_access(self, scope: dict) -> bool:
        cookie = _header(scope, b"cookie") or ""
        for part in cookie.split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value, self.access_key):
                return True
        return False

    # -- HTTP ------------------------------------------------------------------------------

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict, receive: Callable, send: Callable) -> None:
        path, method = scope["path"], scope["method"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if path == "/" and method in ("GET", "HEAD"):
            key = query.get("key", [None])[0]
            if key is not None and hmac.compare_digest(key, self.access_key):
                cookie = f"{COOKIE}={self.access_key}; HttpOnly; SameSite=Strict; Path=/"
                await _respond(send, 303, b"", "text/plain", [(b"location", b"/"), (b"set-cookie", cookie.encode())])
            elif self._has_access(scope):
                body, kind = self._files["index.html"]
                await _respond(send, 200, body, kind)
            else:
                await _respond(send, 401, NEEDS_LINK.encode(), CONTENT_TYPES[".html"])
        elif path.startswith("/static/") and method in ("GET", "HEAD"):
            name = path[len("/static/") :]
            if name in self._files and name != "index.html":
                body, kind = self._files[name]
                await _respond(send, 200, body, kind)
            else:
                await _respond(send, 404, b"not found", "text/plain")
        elif path == "/token" and method == "POST":
            if not self._origin_allowed(scope):
                await _respond(send, 403, b"origin not allowed", "text/plain")
            elif not self._has_access(scope):
                await _respond(send, 401, b"open the access link first", "text/plain")
            else:
                body = {"token": self.signer.issue(), "expires_in": self.signer.ttl, "ws_path": "/ws"}
                await _respond(send, 200, json.dumps(body).encode(), "application/json")
        else:
            await _respond(send, 404, b"not found", "text/plain")

    # -- WebSocket ------------------------------------------------------------------------------

    async def _websocket(self, scope: dict, receive: Callable, send: Callable) -> None:
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        problem: tuple[int, str, str] | None = None
        if scope["path"] != "/ws":
            problem = (404, "not_found", "no WebSocket here: use /ws")
        elif not self._origin_allowed(scope):
            problem = (403, "origin", "this origin may not open sessions")
        elif query.get("v", ["1"])[0] != "1":
            problem = (400, "version", "this server speaks protocol version 1")
        else:
            try:
                self.signer.check(query.get("token", [None])[0])
            except InvalidToken as error:
                problem = (401, f"token_{error.reason}", str(error))
        if problem is None and len(self.live) >= self.max_sessions:
            problem = (503, "busy", f"the server is at its limit of {self.max_sessions} sessions")
        if problem is not None:
            status, reason, text = problem
            self.refused[reason] += 1
            await _refuse(scope, send, status, text)
            return
        await send({"type": "websocket.accept"})
        session_id = f"s{next(self._ids)}-{secrets.token_hex(3)}"
        session, agent = self._new_session()
        transport = WebSocketTransport(
            ASGIWebSocket(receive, send),
            session_id=session_id,
            output_sample_rate=self.output_sample_rate,
            limits=self.limits,
            transcript_path=None if self.record_dir is None else self.record_dir / f"{session_id}.json",
        )
        self.live[session_id] = transport
        try:
            await transport.run(session, agent)
        finally:
            del self.live[session_id]
            self.finished.append(transport)


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _respond(
    send: Callable, status: int, body: bytes, kind: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", kind.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *SECURITY_HEADERS,
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _refuse(scope: dict, send: Callable, status: int, text: str) -> None:
    """Refuse a WebSocket handshake with an HTTP status (a plain 403 without the extension)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = text.encode()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})
