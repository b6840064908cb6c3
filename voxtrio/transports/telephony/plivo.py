"""Plivo: Audio Streams over ``<Stream bidirectional="true">``, V3 signatures, the Call API.

Media (Plivo's Audio Streaming protocol): JSON text frames. Plivo sends
``start`` (``start.streamId``, ``start.callId``, ``start.mediaFormat``:
``encoding``, ``sampleRate``), ``media`` (``media.payload``: base64 audio,
20 ms a message), ``dtmf`` (``dtmf.digit``), ``playedStream`` (``name``: a
checkpoint whose audio finished playing; a cleared checkpoint never comes
back) and ``clearedAudio``; the stream ends with the socket (a ``stop``, if
one comes, ends it too). We send ``playAudio`` (``media.contentType``,
``media.sampleRate``, ``media.payload``), ``checkpoint`` (``name``) and
``clearAudio``, each with the ``streamId``. The stream is μ-law at 8 kHz
(``contentType="audio/x-mulaw;rate=8000"`` in the XML).

Webhooks carry ``X-Plivo-Signature-V3`` and ``X-Plivo-Signature-V3-Nonce``:
base64 HMAC-SHA256, keyed with the auth token, of the URL (its query sorted
by name then value; for a POST, followed by the form parameters, sorted,
each name then value, no separator; a POST with a query also puts a ``.``
between the two), then ``.`` and the nonce. The header may list several
signatures separated by commas (key rotation). A nonce is accepted once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING, Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from .base import (
    AudioCleared,
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

API_BASE = "https://api.plivo.com"
SIGNATURE_HEADER = "x-plivo-signature-v3"
NONCE_HEADER = "x-plivo-signature-v3-nonce"
CONTENT_TYPE = "audio/x-mulaw;rate=8000"


class PlivoSerializer(MediaSerializer):
    provider = "plivo"
    playback_marks = "confirmed"
    sample_rate = 8000

    def __init__(self) -> None:
        self.stream_id: str | None = None

    def decode(self, message: str | bytes) -> list[StreamEvent]:
        data = load_json(message, "Plivo")
        event = data.get("event")
        if event == "media":
            media = field(data, "media", provider="Plivo")
            if media.get("track", "inbound") not in ("inbound", "inbound_track"):
                return []
            try:
                return [InboundAudio(ulaw_decode(base64.b64decode(field(media, "payload", provider="Plivo"), validate=True)))]
            except (ValueError, TypeError) as error:
                raise MediaProtocolError(f"Plivo sent media that is not base64: {error}") from error
        if event == "playedStream":
            return [MarkPlayed(str(field(data, "name", provider="Plivo")))]
        if event == "dtmf":
            return [DtmfPressed(str(field(data, "dtmf", "digit", provider="Plivo")))]
        if event == "clearedAudio":
            return [AudioCleared()]
        if event == "start":
            start = field(data, "start", provider="Plivo")
            self.stream_id = str(field(start, "streamId", provider="Plivo"))
            media_format = start.get("mediaFormat") or {}
            encoding = media_format.get("encoding", "audio/x-mulaw")
            if not str(encoding).startswith("audio/x-mulaw"):
                raise MediaProtocolError(f"Plivo announced {encoding!r}; this stream speaks audio/x-mulaw")
            return [
                StreamStarted(
                    call_id=start.get("callId"),
                    stream_id=self.stream_id,
                    sample_rate=int(media_format.get("sampleRate", 8000)),
                )
            ]
        if event == "stop":
            return [StreamStopped()]
        raise MediaProtocolError(f"Plivo sent an unknown event {event!r}")

    def _id(self) -> str:
        if self.stream_id is None:
            raise MediaProtocolError("nothing can be sent to Plivo before its start message")
        return self.stream_id

    def encode_audio(self, samples: np.ndarray) -> list[str | bytes]:
        payload = base64.b64encode(ulaw_encode(samples)).decode("ascii")
        return [
            '{"event":"playAudio","streamId":"%s","media":{"contentType":"audio/x-mulaw","sampleRate":8000,'
            '"payload":"%s"}}' % (self._id(), payload)
        ]

    def encode_mark(self, name: str) -> str:
        return '{"event":"checkpoint","streamId":"%s","name":"%s"}' % (self._id(), name)

    def encode_clear(self) -> str:
        return '{"event":"clearAudio","streamId":"%s"}' % self._id()


def _sorted_query(pairs: Iterable[tuple[str, str]]) -> str:
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name, []).append(value)
    return "&".join(f"{name}={value}" for name in sorted(values) for value in sorted(values[name]))


def _sorted_params(pairs: Iterable[tuple[str, str]]) -> str:
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name, []).append(value)
    return "".join(f"{name}{value}" for name in sorted(values) for value in sorted(values[name]))


def signed_string(method: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """What Plivo signs (V3) for a request, before the ``.nonce``."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = _sorted_query(parse_qsl(parts.query, keep_blank_values=True))
    params = list(params)
    if method.upper() == "GET":
        query = _sorted_query([*parse_qsl(parts.query, keep_blank_values=True), *params])
        return f"{base}?{query}" if query else base
    if not params:
        return f"{base}?{query}" if query else base
    return f"{base}?{query}{'.' if query else ''}{_sorted_params(params)}"


def compute_signature(auth_token: str, method: str, url: str, nonce: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """Plivo's ``X-Plivo-Signature-V3`` for a request."""
    message = f"{signed_string(method, url, params)}.{nonce}".encode()
    return base64.b64encode(hmac.new(auth_token.encode(), message, hashlib.sha256).digest()).decode("ascii")


def validate_signature(
    auth_token: str, method: str, url: str, nonce: str, signatures: str, params: Iterable[tuple[str, str]] = ()
) -> bool:
    expected = compute_signature(auth_token, method, url, nonce, params)
    return any(hmac.compare_digest(expected, candidate.strip()) for candidate in signatures.split(","))


class Plivo(Provider):
    """Plivo, with the account's ``auth_id`` and ``auth_token`` (the token signs
    the webhooks; both authenticate the REST API)."""

    name = "plivo"

    def __init__(self, *, auth_token: str, auth_id: str | None = None, api_base: str = API_BASE) -> None:
        self.auth_token = auth_token
        self.auth_id = auth_id
        self.api_base = api_base.rstrip("/")

    def serializer(self) -> PlivoSerializer:
        return PlivoSerializer()

    def verify_webhook(self, request: HTTPRequest, url: str, replay: ReplayGuard) -> None:
        signature = request.headers.get(SIGNATURE_HEADER)
        nonce = request.headers.get(NONCE_HEADER)
        if not signature or not nonce:
            raise WebhookRejected("missing", "no X-Plivo-Signature-V3 or its nonce")
        if not validate_signature(self.auth_token, request.method, url, nonce, signature, request.form()):
            raise WebhookRejected("bad_signature", "X-Plivo-Signature-V3 does not match the request")
        replay.check(f"plivo:{nonce}")

    def incoming_call(self, request: HTTPRequest) -> CallInfo:
        params = dict(request.form() or request.query)
        if not params.get("CallUUID"):
            raise WebhookRejected("malformed", "the answer webhook has no CallUUID")
        direction = "outbound" if params.get("Direction") == "outbound" else "inbound"
        return CallInfo(
            call_id=params["CallUUID"],
            from_number=params.get("From", ""),
            to_number=params.get("To", ""),
            direction=direction,  # type: ignore[arg-type]
        )

    def answer(self, media_url: str, call: CallInfo) -> HTTPResponse:
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response>'
            f'<Stream bidirectional="true" keepCallAlive="true" contentType={quoteattr(CONTENT_TYPE)}>'
            f"{escape(media_url)}</Stream></Response>"
        )
        return HTTPResponse.xml(xml)

    # -- REST ----------------------------------------------------------------------------

    @property
    def can_dial(self) -> bool:
        return self.auth_id is not None

    async def dial(
        self, client: httpx2.AsyncClient, *, to: str, from_: str, media_url: str, answer_url: str
    ) -> str:
        if self.auth_id is None:
            return await super().dial(client, to=to, from_=from_, media_url=media_url, answer_url=answer_url)
        response = await client.post(
            f"{self.api_base}/v1/Account/{self.auth_id}/Call/",
            json={"from": from_, "to": to, "answer_url": answer_url, "answer_method": "POST"},
            auth=(self.auth_id, self.auth_token),
        )
        answer = check_response(response, "Plivo: making the call")
        uuid = answer.get("request_uuid")
        return str(uuid[0] if isinstance(uuid, list) else uuid)

    async def hang_up(self, client: httpx2.AsyncClient, call_id: str) -> None:
        if self.auth_id is None:
            return await super().hang_up(client, call_id)
        response = await client.delete(
            f"{self.api_base}/v1/Account/{self.auth_id}/Call/{call_id}/", auth=(self.auth_id, self.auth_token)
        )
        if response.status_code != 404:  # 404: the call had already ended
            check_response(response, "Plivo: hanging up")
