"""TelephonyServer: the webhooks and media streams of phone calls, on one port.

For each provider given (``Twilio(...)``, ``Telnyx(...)``, ``Plivo(...)``,
``Vonage(...)``) the server answers, under ``public_url`` (the address the
provider reaches, e.g. an ngrok tunnel to this port):

* ``/<provider>/answer``: the incoming-call webhook. Its signature is checked
  (a request that fails is refused with 403 and counted in
  ``stats.webhooks_refused`` by reason), then it is answered with the
  provider's markup, which points the call at the media URL below carrying a
  signed, single-use stream token that expires in ``token_ttl`` seconds;
* ``/<provider>/events``: status callbacks, checked the same way, answered 204;
* ``/<provider>/media/<token>``: the media WebSocket. The token (and the
  provider's handshake signature, if it sends one) is checked before the
  handshake: a refused stream never becomes a WebSocket (counted in
  ``stats.streams_refused``). Past ``max_calls`` the answer is 503.

Each accepted stream is one call: the server reads its start message, makes
a :class:`~voxtrio.transports.telephony.call.PhoneCall` and runs
``entrypoint(call)``; when the entrypoint returns, the call is ended (through
the provider's REST API when its credentials were given, and by closing the
stream, which ends a call whose markup has nothing after the stream). All
calls are tasks of the one trio process; ``dial()`` places outbound calls,
which run the same way once answered.

``serve(...)`` is the whole server for ``trio.run``.
"""

from __future__ import annotations

import collections
import logging
import math
import secrets
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Sequence

import attrs
import trio

from ...errors import VoxtrioError
from .base import (
    MediaProtocolError,
    Provider,
    ProviderSetupError,
    ReplayGuard,
    StreamStarted,
    WebhookRejected,
)
from .call import PhoneCall
from .http import HTTPError, HTTPRequest, HTTPResponse, serve_http
from .media_socket import ConnectionClosed, MediaSocket
from ...tokens import InvalidToken, TokenSigner
from .transport import TelephonyTransport

if TYPE_CHECKING:
    import httpx2

logger = logging.getLogger("voxtrio.telephony")

Entrypoint = Callable[[PhoneCall], Awaitable[None]]

# How long a connected stream may take to say which call it is.
START_TIMEOUT = 10.0
# How long ending a call (REST hangup, closing the stream) may take.
FINISH_TIMEOUT = 5.0


@attrs.define
class ServerStats:
    webhooks_accepted: int = 0
    webhooks_refused: collections.Counter[str] = attrs.Factory(collections.Counter)
    """Refused webhooks by reason: missing, bad_signature, stale, replayed, malformed."""
    streams_accepted: int = 0
    streams_refused: collections.Counter[str] = attrs.Factory(collections.Counter)
    """Refused media streams by reason: malformed, bad_signature, expired, reused, busy, no_start."""
    calls_active: int = 0
    calls_total: int = 0
    calls_failed: int = 0
    """Entrypoints that raised."""
    hangups_failed: int = 0
    """REST hangups the provider refused (the stream was closed anyway)."""


@attrs.define(eq=False)
class DialedCall:
    """An outbound call being placed: ``connected`` is set once it is answered
    and its media stream runs (``call`` is then the PhoneCall)."""

    provider: str
    to: str
    from_: str
    call_id: str = ""
    reference: str = ""
    parameters: Mapping[str, str] = attrs.Factory(dict)
    entrypoint: Entrypoint | None = None
    expires: float = math.inf
    call: PhoneCall | None = None
    connected: trio.Event = attrs.Factory(trio.Event)


class TelephonyServer:
    """Phone calls into sessions (see the module docstring).

    ``public_url``: where the providers reach the server (an https address
    in front of it); by default the address it listens on, for loopback.
    ``secret``: signs the stream tokens (32 random bytes by default; give the
    same one to every process behind one address). ``token_ttl``: seconds
    between answering a call and its stream connecting. ``call_options``
    (``dtmf_timeout``) go to each PhoneCall, ``output_options``
    (``buffer_duration``, ``max_chunk``, ``hold``) to each call's audio output.
    """

    def __init__(
        self,
        entrypoint: Entrypoint,
        providers: Sequence[Provider],
        *,
        public_url: str | None = None,
        secret: bytes | None = None,
        token_ttl: float = 30.0,
        dial_timeout: float = 90.0,
        max_calls: int = 100,
        replay_window: float = 600.0,
        call_options: Mapping[str, Any] | None = None,
        output_options: Mapping[str, Any] | None = None,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        if public_url is not None and not public_url.startswith(("https://", "http://")):
            raise ValueError(f"public_url must be the http(s) address the provider reaches, got {public_url!r}")
        self.entrypoint = entrypoint
        self.providers = {provider.name: provider for provider in providers}
        if len(self.providers) != len(providers):
            raise ValueError("one provider of each kind")
        self.public_url = (public_url or "").rstrip("/")
        """Where the providers reach this server (default: the address it listens on)."""
        self.tokens = TokenSigner(secret, ttl=token_ttl) if secret else TokenSigner.generate(ttl=token_ttl)
        self.dial_timeout = dial_timeout
        self.max_calls = max_calls
        self.replay = ReplayGuard(replay_window)
        self.call_options = dict(call_options or {})
        self.output_options = dict(output_options or {})
        self.stats = ServerStats()
        self.calls: set[PhoneCall] = set()
        self._dialing: dict[str, DialedCall] = {}
        self._http = http_client
        self._port: int | None = None

    # -- addresses ----------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.public_url}{path}"

    def media_url(self, provider: str, token: str) -> str:
        scheme, rest = self.public_url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/{provider}/media/{token}"

    @property
    def port(self) -> int | None:
        """The port the server listens on (once started)."""
        return self._port

    # -- running ------------------------------------------------------------------------

    async def serve(
        self, *, host: str = "127.0.0.1", port: int = 0, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; ``task_status.started`` gets the port."""
        import httpx2

        async with httpx2.AsyncClient(timeout=10.0) as own_client:
            if self._http is None:
                self._http = own_client

            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(lambda task_status: serve_http(
                    self._on_request, self._on_upgrade, host=host, port=port, task_status=task_status
                ))
                self._port = listeners[0].socket.getsockname()[1]
                if not self.public_url:
                    self.public_url = f"http://{host}:{self._port}"
                task_status.started(self._port)

    # -- webhooks -----------------------------------------------------------------------

    async def _on_request(self, request: HTTPRequest) -> HTTPResponse:
        parts = request.path.strip("/").split("/")
        if parts == ["healthz"]:
            return HTTPResponse.text(200, "ok")
        provider = self.providers.get(parts[0]) if parts else None
        if provider is None or len(parts) != 2 or parts[1] not in ("answer", "events"):
            return HTTPResponse.text(404, "no such endpoint")
        if request.method not in ("GET", "POST"):
            return HTTPResponse.text(405, "GET or POST")
        try:
            provider.verify_webhook(request, self.url(request.target), self.replay)
            if parts[1] == "events":
                self.stats.webhooks_accepted += 1
                return HTTPResponse(204)
            info = provider.incoming_call(request)
        except WebhookRejected as error:
            self.stats.webhooks_refused[error.reason] += 1
            logger.warning("%s webhook refused (%s): %s", provider.name, error.reason, error)
            return HTTPResponse.text(400 if error.reason == "malformed" else 403, str(error))
        except HTTPError as error:
            self.stats.webhooks_refused["malformed"] += 1
            return HTTPResponse.text(error.status, str(error))
        self.stats.webhooks_accepted += 1
        claims = {"p": provider.name, "c": info.call_id, "f": info.from_number, "t": info.to_number, "d": info.direction}
        reference = dict(request.query).get("dial")
        dialed = self._dialing.get(reference) if reference else None
        if dialed is not None:
            claims.update(d="outbound", f=dialed.from_, t=dialed.to, x=dict(dialed.parameters), r=dialed.reference)
        try:
            return provider.answer(self.media_url(provider.name, self.tokens.issue(claims)), info)
        except ProviderSetupError as error:
            logger.error("%s", error)
            return HTTPResponse.text(500, str(error))

    # -- media streams ------------------------------------------------------------------

    async def _on_upgrade(self, request: HTTPRequest, stream: trio.abc.HalfCloseableStream) -> HTTPResponse | None:
        parts = request.path.strip("/").split("/")
        provider = self.providers.get(parts[0]) if parts else None
        if provider is None or len(parts) != 3 or parts[1] != "media":
            return HTTPResponse.text(404, "no such media endpoint")
        if self.stats.calls_active >= self.max_calls:
            self.stats.streams_refused["busy"] += 1
            return HTTPResponse.text(503, "too many calls")
        try:
            claims = self.tokens.check(parts[2])
            if claims.get("p") != provider.name:
                raise InvalidToken("malformed", "the token is for another provider")
            provider.verify_stream(request, self.url(request.target).replace("http", "ws", 1))
        except InvalidToken as error:
            self.stats.streams_refused[error.reason] += 1
            logger.warning("%s media stream refused (%s): %s", provider.name, error.reason, error)
            return HTTPResponse.text(401 if error.reason == "malformed" else 403, str(error))
        except WebhookRejected as error:
            self.stats.streams_refused[error.reason] += 1
            return HTTPResponse.text(403, str(error))
        self.stats.streams_accepted += 1
        self.stats.calls_active += 1
        try:
            await self._run_call(provider, claims, stream)
        finally:
            self.stats.calls_active -= 1
        return None

    async def _run_call(self, provider: Provider, claims: dict[str, Any], stream: trio.abc.HalfCloseableStream) -> None:
        async with trio.open_nursery() as nursery:
            try:
                connection = await MediaSocket.accept(stream)
            except ConnectionClosed:
                await trio.aclose_forcefully(stream)
                return
            serializer = provider.serializer()
            started: StreamStarted | None = None
            first: list[Any] = []
            with trio.move_on_after(START_TIMEOUT):
                while started is None:
                    try:
                        events = serializer.decode(await connection.get_message())
                    except MediaProtocolError as error:
                        logger.warning("%s: %s", provider.name, error)
                        continue
                    except ConnectionClosed:
                        break
                    for event in events:
                        if started is None and isinstance(event, StreamStarted):
                            started = event
                        elif started is not None:
                            first.append(event)
            if started is None:
                self.stats.streams_refused["no_start"] += 1
                with trio.move_on_after(FINISH_TIMEOUT):
                    await connection.aclose(1008, "no start message")
                nursery.cancel_scope.cancel()
                return
            transport = TelephonyTransport(serializer, **self.output_options)
            call = PhoneCall(
                provider=provider.name,
                call_id=started.call_id or str(claims.get("c") or ""),
                stream_id=started.stream_id,
                from_number=str(claims.get("f", "")),
                to_number=str(claims.get("t", "")),
                direction="outbound" if claims.get("d") == "outbound" else "inbound",
                parameters={**dict(claims.get("x") or {}), **dict(started.parameters)},
                transport=transport,
                **self.call_options,
            )
            dialed = self._dialing.pop(str(claims.get("r", "")), None)
            if dialed is not None and not call.call_id:
                call.call_id = dialed.call_id  # Vonage's stream does not say which call it is
            entrypoint = dialed.entrypoint if dialed is not None and dialed.entrypoint else self.entrypoint
            nursery.start_soon(transport.run, connection, first)
            self.calls.add(call)
            self.stats.calls_total += 1
            if dialed is not None:
                dialed.call = call
                dialed.connected.set()
            try:
                await entrypoint(call)
            except Exception:
                self.stats.calls_failed += 1
                logger.exception("the entrypoint of %r raised", call)
            finally:
                self.calls.discard(call)
                await self._finish(provider, call)
                nursery.cancel_scope.cancel()

    async def _finish(self, provider: Provider, call: PhoneCall) -> None:
        """End the call: through the REST API when possible, and by closing the stream."""
        with trio.CancelScope(shield=True), trio.move_on_after(FINISH_TIMEOUT):
            if not call.ended and provider.can_dial and self._http is not None and call.call_id:
                try:
                    await provider.hang_up(self._http, call.call_id)
                except Exception as error:  # the stream is closed below anyway
                    self.stats.hangups_failed += 1
                    logger.warning("%s: hanging up %s failed: %s", provider.name, call.call_id, error)
            await call.transport.close()

    # -- dialling out ---------------------------------------------------------------------

    async def dial(
        self,
        provider: str,
        *,
        to: str,
        from_: str,
        parameters: Mapping[str, str] | None = None,
        entrypoint: Entrypoint | None = None,
    ) -> DialedCall:
        """Ask ``provider`` to call ``to`` from ``from_``; once answered, the call
        runs ``entrypoint`` (the server's by default) like an incoming one, with
        ``direction == "outbound"`` and ``parameters``. Returns at once; await
        ``dialed.connected`` for the answer."""
        if self._http is None:
            raise VoxtrioError("the server is not running: start serve() first")
        chosen = self.providers.get(provider)
        if chosen is None:
            raise ProviderSetupError(f"no {provider!r} provider on this server")
        now = trio.current_time()
        self._dialing = {ref: d for ref, d in self._dialing.items() if d.expires > now}
        reference = secrets.token_urlsafe(12)
        dialed = DialedCall(
            provider=provider,
            to=to,
            from_=from_,
            reference=reference,
            parameters=dict(parameters or {}),
            entrypoint=entrypoint,
            expires=now + self.dial_timeout,
        )
        claims = {"p": provider, "c": "", "f": from_, "t": to, "d": "outbound", "x": dict(dialed.parameters), "r": reference}
        token = self.tokens.issue(claims, ttl=self.dial_timeout)
        self._dialing[reference] = dialed
        try:
            dialed.call_id = await chosen.dial(
                self._http,
                to=to,
                from_=from_,
                media_url=self.media_url(provider, token),
                answer_url=self.url(f"/{provider}/answer?dial={reference}"),
            )
        except BaseException:
            self._dialing.pop(reference, None)
            raise
        return dialed


async def serve(
    entrypoint: Entrypoint,
    providers: Sequence[Provider],
    *,
    public_url: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    task_status: trio.TaskStatus[TelephonyServer] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Run a :class:`TelephonyServer` on ``host:port`` until cancelled
    (``task_status.started`` gets the server, its ``port`` set)."""
    server = TelephonyServer(entrypoint, providers, public_url=public_url, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: server.serve(host=host, port=port, task_status=task_status))
        task_status.started(server)
