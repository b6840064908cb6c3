"""What every HTTP provider shares: the API key, the connection pool, the
error mapping and the server-sent events.

The providers send no retries of their own: a failed request becomes one of
voxtrio's errors (:mod:`voxtrio.errors`) with ``retryable`` and
``retry_after`` set from the status and the headers, and the session retries
it per its ``APIConnectOptions``. ``APIConnectOptions.timeout`` bounds every
wait for progress (connecting, the status line, each chunk of the body), as it
does for the offline providers.

HTTP goes through httpx2 (the maintained continuation of httpx, same API),
which runs on trio through anyio: cancelling the trio scope around a request
closes its connection at once.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

import httpx2
import trio

from ..errors import APIConnectionError, APIError, APIStatusError, APITimeoutError
from ..options import APIConnectOptions
from .api_common import retry_after

# A provider asking for a longer wait than this is treated as unavailable for
# now (not retryable): a voice turn cannot wait that long.
MAX_RETRY_AFTER = 60.0

# After a stream's end marker, how long to wait for the end of the body: a
# connection read to its end goes back to the pool, saving the next turn a
# TCP and TLS handshake; a server that keeps it open past this loses it.
END_OF_BODY_WAIT = 1.0


def _error_message(body: Any, fallback: str) -> str:
    # OpenAI: {"error": {"message": ...}}; Anthropic: {"type": "error", "error": {"type", "message"}}.
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        kind = error.get("type")
        return f"{kind}: {error['message']}" if isinstance(kind, str) else error["message"]
    if isinstance(error, str):
        return error
    return fallback


def status_error(response: httpx2.Response, content: bytes, *, vendor: str, key_env: str) -> APIStatusError:
    """The error for a response with an error status, as voxtrio classifies it."""
    status = response.status_code
    try:
        body: Any = json.loads(content)
    except ValueError:
        body = content.decode("utf-8", "replace")
    message = _error_message(body, body[:200] if isinstance(body, str) and body else response.reason_phrase)
    wait = retry_after(response.headers)
    retryable = status in (408, 409, 429) or status >= 500
    should_retry = response.headers.get("x-should-retry")
    if should_retry in ("true", "false"):
        retryable = should_retry == "true"
    if wait is not None and wait > MAX_RETRY_AFTER:
        retryable = False
    if status in (401, 403):
        message = f"{message} (check {key_env} or the api_key argument)"
    request_id = (
        response.headers.get("x-request-id")
        or response.headers.get("request-id")
        or (body.get("request_id") if isinstance(body, dict) else None)
    )
    if request_id:
        message = f"{message} [request {request_id}]"
    return APIStatusError(
        f"{vendor} answered {status}: {message}",
        status_code=status,
        retryable=retryable,
        body=body,
        retry_after=wait,
    )


def protocol_error(vendor: str, what: str, body: object = None) -> APIError:
    """The server sent something its protocol does not allow (a malformed chunk,
    a stream cut before its end marker). Retryable: a new request may go right."""
    return APIError(f"{vendor} sent {what}", retryable=True, body=body)


_TLS: list[ssl.SSLContext] = []


def _shared_tls() -> ssl.SSLContext:
    """One TLS context for every pool. Building one loads the CA certificates:
    70-400 ms that would otherwise stall the event loop at a run's first
    request; it is done when the first provider is built instead."""
    if not _TLS:
        _TLS.append(httpx2.create_ssl_context())
    return _TLS[0]


class HTTPClient:
    """A vendor's base URL, headers and connection pool.

    The pool belongs to the trio run that first used it (its sockets cannot
    move between runs); a provider used from a new run gets a new pool. Idle
    connections are kept so that the next turn skips the TCP and TLS set-up.
    """

    def __init__(self, *, base_url: str, headers: Mapping[str, str], vendor: str, key_env: str) -> None:
        _shared_tls()
        self.base_url = base_url.rstrip("/")
        self.vendor = vendor
        self.key_env = key_env
        self._headers = dict(headers)
        self._client: httpx2.AsyncClient | None = None
        self._run: trio.lowlevel.TrioToken | None = None

    def _pool(self) -> httpx2.AsyncClient:
        run = trio.lowlevel.current_trio_token()
        if self._client is None or self._run is not run:
            self._client = httpx2.AsyncClient(base_url=self.base_url, headers=self._headers, verify=_shared_tls())
            self._run = run
        return self._client

    @contextlib.asynccontextmanager
    async def request(
        self, method: str, path: str, *, conn_options: APIConnectOptions, **kwargs: Any
    ) -> AsyncIterator[httpx2.Response]:
        """Send a request and yield its response once the status says success;
        transport failures, inside the block too, become voxtrio's errors."""
        timeout = httpx2.Timeout(conn_options.timeout or None)
        try:
            async with self._pool().stream(method, path, timeout=timeout, **kwargs) as response:
                if response.status_code >= 400:
                    content = await response.aread()
                    raise status_error(response, content, vendor=self.vendor, key_env=self.key_env)
                yield response
        except httpx2.SSEError as error:
            raise APIError(f"{self.vendor}: {error}", retryable=False) from None
        except httpx2.TimeoutException as error:
            raise APITimeoutError(
                f"{self.vendor} made no progress for {conn_options.timeout:g} s ({type(error).__name__})"
            ) from None
        except httpx2.TransportError as error:
            raise APIConnectionError(f"{self.vendor}: {type(error).__name__}: {error}") from None

    async def post_stream(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        conn_options: APIConnectOptions,
        on_event: Callable[[httpx2.ServerSentEvent], Awaitable[bool]],
    ) -> bool:
        """POST ``body`` and hand each server-sent event of the answer to
        ``on_event`` until it returns True (the vendor's end marker); whether
        the end marker came. An event whose structure is not what ``on_event``
        expects (a missing key, a wrong type) is a protocol error."""
        ended = False
        async with self.request("POST", path, json=body, conn_options=conn_options) as response, _events(
            response
        ) as stream:
            with trio.CancelScope() as rest_of_body:
                async for event in stream:
                    if ended:
                        continue  # read to the end, so that the connection is kept for the next turn
                    try:
                        ended = await on_event(event)
                    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
                        raise protocol_error(
                            self.vendor, f"a malformed {event.event} event: {event.data[:200]!r}", event.data
                        ) from None
                    if ended:
                        rest_of_body.deadline = trio.current_time() + END_OF_BODY_WAIT
        return ended

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _events(response: httpx2.Response) -> contextlib.aclosing[AsyncIterator[httpx2.ServerSentEvent]]:
    """The server-sent events of a streaming response, as they arrive
    (leaving the ``async with`` early closes the iterator there and then)."""
    return contextlib.aclosing(httpx2.EventSource(response).__aiter__())  # type: ignore[type-var]


def set_options(extra_body: Mapping[str, Any] | None, **options: Any) -> dict[str, Any]:
    """The request options that were given (None: not sent, so a server that
    does not know one is not asked for it), then ``extra_body`` as it is."""
    return {k: v for k, v in options.items() if v is not None} | dict(extra_body or {})


def decode_event(event: httpx2.ServerSentEvent, vendor: str) -> Any:
    """An event's JSON data, or a protocol error naming what came instead."""
    try:
        return json.loads(event.data)
    except ValueError:
        raise protocol_error(vendor, f"a malformed stream event: {event.data[:200]!r}", event.data) from None
