"""Twilio: Media Streams over ``<Connect><Stream>``, signed webhooks, the Calls API.

Media (Twilio's "Media Streams - WebSocket Messages"): every frame is JSON
text. Twilio sends ``connected``, then ``start`` (``start.streamSid``,
``start.callSid``, ``start.customParameters``, ``start.mediaFormat``:
audio/x-mulaw, 8000 Hz, mono), then ``media`` (``media.payload``: base64
μ-law, 20 ms a message), ``dtmf`` (``dtmf.digit``), ``mark`` (``mark.name``,
once the audio sent before that mark has played, or was cleared) and
``stop``. Numbers in them (``sequenceNumber``, ``chunk``, ``timestamp``) are
strings. We send ``media`` (any length of base64 μ-law), ``mark`` and
``clear`` (which drops what Twilio has queued and returns the pending marks),
each with the ``streamSid``.

Webhooks carry ``X-Twilio-Signature``: base64 HMAC-SHA1, keyed with the auth
token, of the full URL Twilio requested followed by each POST parameter's name
and value, sorted by name (a repeated name: its values sorted, duplicates
once); the URL is tried with and without its default port, as Twilio's own
validators do. The media WebSocket's handshake is signed the same way (the
URL alone). There is no timestamp in it: a request replayed verbatim has the
same signature and is refused by the replay guard.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import quoteattr

import numpy as np

from .base import (
    CallInfo,
    DtmfPressed,
    InboundAudio,
    MarkPlayed,
    MediaProtocolError,
    MediaSerializer,
    Provider,
    ReplayGuard,
    StreamEvent,
    StreamStarted,
    StreamStopped,
    WebhookRejected,
    check_response,
    field,
    load_json,
)
from .g711 import ulaw_decode, ulaw_encode
from .http import HTTPRequest, HTTPResponse

if TYPE_CHECKING:
    import httpx2

API_BASE = "https://api.twilio.com"
SIGNATURE_HEADER = "x-twilio-signature"


class TwilioSerializer(MediaSerializer):
    provider = "twilio"
    playback_marks = "confirmed"
    sample_rate = 8000

    def __init__(self) -> None:
        self.stream_sid: str | None = None

    def decode(self, message: str | bytes) -> list[StreamEvent]:
        data = load_json(message, "Twilio")
        event = data.get("event")
        if event == "media":
            payload = field(data, "media", "payload", provider="Twilio")
            if field(data, "media", "track", provider="Twilio") not in ("inbound", "inbound_track"):
                return []
            try:
                return [InboundAudio(ulaw_decode(base64.b64decode(payload, validate=True)))]
            except (ValueError, TypeError) as error:
                raise MediaProtocolError(f"Twilio sent media that is not base64: {error}") from error
        if event == "mark":
            return [MarkPlayed(str(field(data, "mark", "name", provider="Twilio")))]
        if event == "dtmf":
            return [DtmfPressed(str(field(data, "dtmf", "digit", provider="Twilio")))]
        if event == "start":
            start = field(data, "start", provider="Twilio")
            self.stream_sid = str(field(start, "streamSid", provider="Twilio"))
            encoding = start.get("mediaFormat", {}).get("encoding", "audio/x-mulaw")
            if encoding != "audio/x-mulaw":
                raise MediaProtocolError(f"Twilio announced {encoding!r}; only audio/x-mulaw is spoken")
            parameters = start.get("customParameters") or {}
            return [
                StreamStarted(
                    call_id=start.get("callSid"),
                    stream_id=self.stream_sid,
                    sample_rate=int(start.get("mediaFormat", {}).get("sampleRate", 8000)),
                    parameters={str(k): str(v) for k, v in parameters.items()},
                )
            ]
        if event == "stop":
            return [StreamStopped()]
        if event == "connected":
            return []
        raise MediaProtocolError(f"Twilio sent an unknown event {event!r}")

    def _sid(self) -> str:
        if self.stream_sid is None:
            raise MediaProtocolError("nothing can be sent to Twilio before its start message")
        return self.stream_sid

    def encode_audio(self, samples: np.ndarray) -> list[str | bytes]:
        payload = base64.b64encode(ulaw_encode(samples)).decode("ascii")
        return ['{"event":"media","streamSid":"%s","media":{"payload":"%s"}}' % (self._sid(), payload)]

    def encode_mark(self, name: str) -> str:
        return '{"event":"mark","streamSid":"%s","mark":{"name":"%s"}}' % (self._sid(), name)

    def encode_clear(self) -> str:
        return '{"event":"clear","streamSid":"%s"}' % self._sid()


def _sorted_params(params: Iterable[tuple[str, str]]) -> str:
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    return "".join(name + value for name in sorted(values) for value in sorted(values[name]))


def compute_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """Twilio's ``X-Twilio-Signature`` for a request to ``url`` with POST ``params``."""
    digest = hmac.new(auth_token.encode(), (url + _sorted_params(params)).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _url_variants(url: str) -> list[str]:
    """The URL without and with its default port (Twilio signs either)."""
    parts = urlsplit(url)
    default = {"https": 443, "wss": 443, "http": 80, "ws": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if parts.port is not None:
        return [url, urlunsplit(parts._replace(netloc=host))]
    if default is None:
        return [url]
    return [url, urlunsplit(parts._replace(netloc=f"{host}:{default}"))]


def validate_signature(auth_token: str, signature: str, url: str, params: Iterable[tuple[str, str]] = ()) -> bool:
    params = list(params)
    return any(
        hmac.compare_digest(compute_signature(auth_token, candidate, params), signature)
        for candidate in _url_variants(url)
    )


class Twilio(Provider):
    """Twilio, with the account's auth token (it signs the webhooks).

    ``account_sid`` (and the auth token, or an API key pair) enable the REST
    API: dialling out and hanging up.
    """

    name = "twilio"

    def __init__(
        self,
        *,
        auth_token: str,
        account_sid: str | None = None,
        api_key: tuple[str, str] | None = None,
        api_base: str = API_BASE,
    ) -> None:
        self.auth_token = auth_token
        self.account_sid = account_sid
        self.api_key = api_key
        self.api_base = api_base.rstrip("/")

    def serializer(self) -> TwilioSerializer:
        return TwilioSerializer()

    def verify_webhook(self, request: HTTPRequest, url: str, replay: ReplayGuard) -> None:
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise WebhookRejected("missing", "no X-Twilio-Signature header")
        if not validate_signature(self.auth_token, signature, url, request.form()):
            raise WebhookRejected("bad_signature", "X-Twilio-Signature does not match the request")
        replay.check(f"twilio:{signature}")

    def verify_stream(self, request: HTTPRequest, url: str) -> None:
        signature = request.headers.get(SIGNATURE_HEADER)
        if signature is not None and not validate_signature(self.auth_token, signature, url):
            raise WebhookRejected("bad_signature", "the media handshake's X-Twilio-Signature does not match")

    def incoming_call(self, request: HTTPRequest) -> CallInfo:
        params = dict(request.form() or request.query)
        if not params.get("CallSid"):
            raise WebhookRejected("malformed", "the voice webhook has no CallSid")
        direction = "inbound" if params.get("Direction", "inbound") == "inbound" else "outbound"
        return CallInfo(
            call_id=params["CallSid"],
            from_number=params.get("From", ""),
            to_number=params.get("To", ""),
            direction=direction,  # type: ignore[arg-type]
        )

    def answer(self, media_url: str, call: CallInfo) -> HTTPResponse:
        return HTTPResponse.xml(twiml(media_url, call.parameters))

    # -- REST ----------------------------------------------------------------------------

    @property
    def can_dial(self) -> bool:
        return self.account_sid is not None

    def _auth(self) -> tuple[str, str]:
        assert self.account_sid is not None
        return self.api_key or (self.account_sid, self.auth_token)

    async def dial(
        self, client: httpx2.AsyncClient, *, to: str, from_: str, media_url: str, answer_url: str
    ) -> str:
        if self.account_sid is None:
            return await super().dial(client, to=to, from_=from_, media_url=media_url, answer_url=answer_url)
        response = await client.post(
            f"{self.api_base}/2010-04-01/Accounts/{self.account_sid}/Calls.json",
            data={"To": to, "From": from_, "Twiml": twiml(media_url, {})},
            auth=self._auth(),
        )
        return str(check_response(response, "Twilio: creating the call")["sid"])

    async def hang_up(self, client: httpx2.AsyncClient, call_id: str) -> None:
        if self.account_sid is None:
            return await super().hang_up(client, call_id)
        response = await client.post(
            f"{self.api_base}/2010-04-01/Accounts/{self.account_sid}/Calls/{call_id}.json",
            data={"Status": "completed"},
            auth=self._auth(),
        )
        check_response(response, "Twilio: ending the call")


def twiml(media_url: str, parameters: Any) -> str:
    """``<Connect><Stream>``: a bidirectional stream to ``media_url`` (the call
    ends when the stream does: nothing follows it)."""
    children = "".join(
        f"<Parameter name={quoteattr(str(k))} value={quoteattr(str(v))}/>" for k, v in dict(parameters).items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Connect><Stream url={quoteattr(media_url)}>{children}</Stream></Connect></Response>"
    )
