"""A WebSocket to a vendor's API, in voxtrio's terms: the key, the URL, the
connection within the connect options, and every way it fails as an ``APIError``.

The streaming providers (Deepgram, ElevenLabs, Cartesia) speak different
protocols over the same kind of connection, and fail in the same ways: the
handshake is refused with an HTTP status, the connection never completes,
the vendor closes it with a close code, or sends a frame that is not what its
protocol says. This module turns each into the error type the session's
retry policy understands, with a message that says what to do about it.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import urllib.parse
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

import trio

try:
    from trio_websocket import (
        CloseReason,
        ConnectionClosed,
        ConnectionRejected,
        HandshakeError,
        WebSocketConnection,
        wrap_client_stream,
    )
except ImportError as missing:  # pragma: no cover - depends on the install
    raise ImportError(
        "voxtrio's WebSocket providers (Deepgram, ElevenLabs, Cartesia, the realtime models) need "
        "trio-websocket: pip install 'voxtrio[deepgram]' (or [elevenlabs], [cartesia], [openai], [gemini])"
    ) from missing

from ..errors import APIConnectionError, APIError, APIStatusError, APITimeoutError
from .api_common import retry_after

# Waiting for the vendor's answer to our close frame once we are done with a
# connection: what we needed has arrived, so this only bounds the courtesy.
CLOSE_HANDSHAKE_TIMEOUT = 1.0
# Base64 audio frames are tens of kilobytes; leave room for long ones.
MAX_MESSAGE_SIZE = 8 * 2**20

# Close codes (RFC 6455, 7.4.1) after which the same request can succeed:
# the server went away or restarted, the connection dropped, the server
# failed or is overloaded. Protocol, data and policy errors (1002, 1003,
# 1007, 1008, 1009, 1010) would fail again.
_RETRYABLE_CLOSE_CODES = frozenset({1000, 1001, 1005, 1006, 1011, 1012, 1013, 1014})


def websocket_url(base_url: str, path: str = "", query: Mapping[str, Any] | None = None) -> str:
    """``base_url`` (ws, wss, http or https) joined with ``path`` and ``query``.

    Booleans are written ``true``/``false`` and sequences repeat their key, as
    the vendors' query strings expect; ``None`` values are left out.
    """
    parts = urllib.parse.urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"base_url must be a ws://, wss://, http:// or https:// URL, got {base_url!r}")
    pairs = urllib.parse.parse_qsl(parts.query)
    for name, value in (query or {}).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if item is None:
                continue
            pairs.append((name, ("true" if item else "false") if isinstance(item, bool) else str(item)))
    full_path = parts.path.rstrip("/") + path
    return urllib.parse.urlunsplit((scheme, parts.netloc, full_path, urllib.parse.urlencode(pairs), ""))


def _header(headers: Any, name: str) -> str | None:
    wanted = name.lower().encode()
    for key, value in headers or ():
        if key.lower() == wanted:
            return value.decode("latin-1")
    return None


def rejected_error(rejected: ConnectionRejected, *, vendor: str, key_variable: str) -> APIStatusError:
    """A refused handshake: 401/403 name the key variable and are final,
    429 and 5xx may be retried (after ``Retry-After`` when given)."""
    status = rejected.status_code
    body = rejected.body.decode("utf-8", "replace").strip() if rejected.body else ""
    detail = _header(rejected.headers, "dg-error") or body[:300]
    suffix = f": {detail}" if detail else ""
    if status in (401, 403):
        return APIStatusError(
            f"{vendor} refused the API key (HTTP {status}){suffix}. "
            f"Check {key_variable} or the api_key argument.",
            status_code=status,
            retryable=False,
            body=body or None,
        )
    return APIStatusError(
        f"{vendor} refused the connection with HTTP {status}{suffix}",
        status_code=status,
        body=body or None,
        retry_after=retry_after({k.decode('latin-1').lower(): v.decode('latin-1') for k, v in rejected.headers or ()}),
    )


def closed_error(reason: CloseReason | None, *, vendor: str) -> APIStatusError:
    """The vendor closed the connection while we still expected something.

    ``status_code`` holds the WebSocket close code; the vendor's reason (its
    own error code, such as Deepgram's ``NET-0001``) is in the message."""
    code = reason.code if reason is not None else 1006
    why = f" ({reason.reason})" if reason is not None and reason.reason else ""
    name = reason.name if reason is not None else "ABNORMAL_CLOSURE"
    return close_code_error(code, f"{vendor} closed the connection with code {code} {name}{why}")


def close_code_error(code: int, message: str) -> APIStatusError:
    """An error the vendor reported with a WebSocket close code: retryable
    when the code says the server failed or went away, final when it says
    the request itself was wrong (policy, protocol, data, size)."""
    return APIStatusError(message, status_code=code, retryable=code in _RETRYABLE_CLOSE_CODES)


def protocol_error(vendor: str, what: str, message: str | bytes) -> APIError:
    """A frame that is not what the vendor's protocol says: the connection is
    not to be trusted any more, but a new one may well work."""
    shown = message[:200] if isinstance(message, str) else f"<{len(message)} bytes of binary data>"
    return APIError(f"{vendor} sent {what}: {shown!r}", retryable=True, body=message)


def json_object(message: str | bytes, *, vendor: str) -> dict[str, Any]:
    """A text frame holding a JSON object (every message these vendors send)."""
    if not isinstance(message, str):
        raise protocol_error(vendor, "a binary frame where its protocol has only JSON text", message)
    try:
        value = json.loads(message)
    except ValueError:
        raise protocol_error(vendor, "a frame that is not JSON", message) from None
    if not isinstance(value, dict):
        raise protocol_error(vendor, "a JSON frame that is not an object", message)
    return value


async def run_beside(main: Callable[[], Awaitable[None]], *side: Callable[[], Awaitable[None]]) -> None:
    """Run ``main`` with the ``side`` tasks beside it; they stop when it returns.

    An error of ``main`` leaves as itself, not in an exception group: the
    session's retry policy and a caller's ``except APIError`` both look for it.
    """
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        for task in side:
            nursery.start_soon(task)
        try:
            await main()
        except Exception as error:  # raised below, outside the nursery
            failure = error
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure


@contextlib.asynccontextmanager
async def connect(
    url: str,
    *,
    headers: Mapping[str, str],
    vendor: str,
    key_variable: str,
    timeout: float,
) -> AsyncIterator[WebSocketConnection]:
    """Open the connection within ``timeout`` and map every failure of it.

    A ``ConnectionClosed`` raised in the body (a receive or send on a
    connection the vendor closed) leaves as :func:`closed_error`; the body's
    own errors leave as they are, not in an exception group. Leaving the
    body closes the connection; when cancelled, at once.

    The connection's reader task runs in a nursery of this function:
    trio-websocket's own ``open_websocket_url`` leaves its reader running
    after a handshake timeout, so a server that accepts the TCP connection
    and never answers would hold it forever.
    """
    parts = urllib.parse.urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = host if port in (80, 443) else f"{host}:{port}"
    extra = [(name.encode(), value.encode()) for name, value in headers.items()]
    failure: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            connection: WebSocketConnection | None = None
            with trio.move_on_after(timeout):
                if secure:
                    stream: Any = await trio.open_ssl_over_tcp_stream(
                        host, port, ssl_context=ssl.create_default_context(), https_compatible=True
                    )
                else:
                    stream = await trio.open_tcp_stream(host, port)
                try:
                    connection = await wrap_client_stream(
                        nursery, stream, host_header, resource, extra_headers=extra, max_message_size=MAX_MESSAGE_SIZE
                    )
                finally:
                    if connection is None:
                        await trio.aclose_forcefully(stream)
            if connection is None:
                failure = APITimeoutError(f"{vendor} did not complete the WebSocket handshake within {timeout:g} s")
                nursery.cancel_scope.cancel()
            else:
                try:
                    yield connection
                except Exception as error:  # raised below, outside the nursery
                    failure = error
                finally:
                    with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT):
                        await connection.aclose()
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The reader task failed during the handshake: refused, or the network.
        rejected, rest = group.split(ConnectionRejected)
        if rejected is not None:
            raise rejected_error(_leaves(rejected)[0], vendor=vendor, key_variable=key_variable) from None
        broken, rest = group.split((OSError, HandshakeError, trio.BrokenResourceError))
        if broken is not None and rest is None:
            raise APIConnectionError(f"could not connect to {vendor}: {_leaves(broken)[0]}") from None
        raise
    except (OSError, HandshakeError, trio.BrokenResourceError) as broken:
        raise APIConnectionError(f"could not connect to {vendor}: {broken}") from None
    if isinstance(failure, ConnectionClosed):
        raise closed_error(failure.reason, vendor=vendor) from None
    if isinstance(failure, (OSError, trio.BrokenResourceError)):
        raise APIConnectionError(f"the connection to {vendor} broke: {failure}") from None
    if failure is not None:
        raise failure


def _leaves(group: BaseExceptionGroup) -> list[Any]:
    leaves: list[Any] = []
    for error in group.exceptions:
        leaves.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    return leaves
