"""Vonage: the Voice API's WebSocket endpoint (NCCO ``connect``), signed webhooks, the Calls API.

Media (Vonage's "WebSockets" guide): audio is binary WebSocket frames of
16-bit linear PCM, little-endian, mono, 20 ms each (640 bytes at 16 kHz, 320
at 8 kHz), in both directions; text frames are JSON. The first is
``{"event": "websocket:connected", "content-type": "audio/l16;rate=16000", ...}``
with the ``headers`` of the NCCO endpoint at its top level; a keypress is
``websocket:dtmf`` (``digit``, ``duration`` in ms; accepted also nested
under ``dtmf``). We send 20 ms binary frames, faster than real time if we
like (Vonage buffers up to about a minute; the Speaker stays 0.3 s ahead).

Clearing and marks: Vonage's guide as published in the ``nexmo-developer``
repository documents only audio, ``websocket:connected`` and
``websocket:dtmf``. A later description of the same protocol (an AsyncAPI
document derived from Vonage's current page, and the open-source voice agent
frameworks that talk to it) adds ``{"action": "clear"}`` (answered by
``websocket:cleared``) and ``{"action": "notify", "payload": {...}}``
(answered by ``websocket:notify`` once the audio sent before it has played).
We could not read Vonage's current page itself, so neither is relied on:
the clear is sent on a barge-in, and the output paces itself in real time,
so if Vonage ignored the clear the caller would hear at most what is queued
(0.3 s); notifies are sent and, when they come back, correct the play head,
which otherwise follows the clock from when each chunk was sent.

Webhooks: with signed callbacks on, Vonage sends ``Authorization: Bearer
<JWT>`` signed HS256 with the account's signature secret; its claims carry
``iat`` (refused beyond ``tolerance`` seconds), ``jti`` (accepted once) and
``payload_hash`` (the SHA-256 of the body, checked when there is a body).
Nothing signs a GET's query (the answer webhook's default method): the JWT
proves that the request comes from Vonage, recently and once, not what its
query says; set the answer method to POST to have the call's details signed.
The REST API authenticates with a JWT signed RS256 with the application's
private key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable

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
    ProviderSetupError,
    ReplayGuard,
    StreamEvent,
    StreamStarted,
    WebhookRejected,
    check_response,
    load_json,
)
from .http import HTTPRequest, HTTPResponse

if TYPE_CHECKING:
    import httpx2

API_BASE = "https://api.nexmo.com"
RATES = (8000, 16_000)
_RATE = re.compile(r"audio/l16;\s*rate=(\d+)")


class VonageSerializer(MediaSerializer):
    provider = "vonage"
    playback_marks = "best_effort"

    def __init__(self, sample_rate: int = 16_000) -> None:
        self.sample_rate = sample_rate

    def frame_samples(self) -> int:
        return self.sample_rate // 50

    def decode(self, message: str | bytes) -> list[StreamEvent]:
        if isinstance(message, (bytes, bytearray)):
            if len(message) % 2:
                raise MediaProtocolError(f"Vonage sent {len(message)} bytes of 16-bit audio (an odd count)")
            return [InboundAudio(np.frombuffer(message, "<i2").astype(np.int16))]
        data = load_json(message, "Vonage")
        event = data.get("event")
        if event == "websocket:dtmf":
            nested = data.get("dtmf") if isinstance(data.get("dtmf"), dict) else {}
            digit = data.get("digit", nested.get("digit"))
            if digit is None:
                raise MediaProtocolError("Vonage sent websocket:dtmf without a digit")
            duration = data.get("duration", nested.get("duration"))
            return [DtmfPressed(str(digit), None if duration is None else float(duration) / 1000)]
        if event == "websocket:notify":
            payload = data.get("payload")
            if isinstance(payload, dict) and "name" in payload:
                return [MarkPlayed(str(payload["name"]))]
            return []
        if event == "websocket:cleared":
            return [AudioCleared()]
        if event == "websocket:connected":
            content_type = str(data.get("content-type", ""))
            match = _RATE.match(content_type)
            if match is None or int(match.group(1)) not in RATES:
                raise MediaProtocolError(f"Vonage announced {content_type!r}; this stream speaks audio/l16 at 8 or 16 kHz")
            self.sample_rate = int(match.group(1))
            parameters = {k: str(v) for k, v in data.items() if k not in ("event", "content-type")}
            return [StreamStarted(call_id=None, stream_id=None, sample_rate=self.sample_rate, parameters=parameters)]
        raise MediaProtocolError(f"Vonage sent an unknown event {event!r}")

    def encode_audio(self, samples: np.ndarray) -> list[str | bytes]:
        data = np.ascontiguousarray(samples, "<i2").tobytes()
        size = self.frame_samples() * 2
        return [data[i : i + size] for i in range(0, len(data), size)]

    def encode_mark(self, name: str) -> str:
        return json.dumps({"action": "notify", "payload": {"name": name}})

    def encode_clear(self) -> str:
        return '{"action":"clear"}'


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_hs256(token: str, secret: str) -> dict[str, Any]:
    """The claims of an HS256 JWT signed with ``secret``; WebhookRejected otherwise.

    Only HS256 is accepted: the algorithm named in the token never chooses the check.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise WebhookRejected("malformed", "the Authorization token is not a JWT")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        signature = _b64url_decode(parts[2])
    except ValueError as error:
        raise WebhookRejected("malformed", f"unreadable JWT: {error}") from error
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise WebhookRejected("bad_signature", "the JWT is not signed HS256")
    expected = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise WebhookRejected("bad_signature", "the JWT signature does not match the signature secret")
    try:
        claims = json.loads(_b64url_decode(parts[1]))
    except ValueError as error:
        raise WebhookRejected("malformed", f"unreadable JWT claims: {error}") from error
    if not isinstance(claims, dict):
        raise WebhookRejected("malformed", "the JWT claims are not an object")
    return claims


def sign_hs256(claims: dict[str, Any], secret: str) -> str:
    """An HS256 JWT (what Vonage sends; tests and fakes use it to sign)."""
    body = f"{_b64url(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64url(json.dumps(claims).encode())}"
    return f"{body}.{_b64url(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())}"


def application_jwt(application_id: str, private_key_pem: str | bytes, *, now: float, ttl: int = 900) -> str:
    """The RS256 JWT that authenticates Voice API requests."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    pem = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ProviderSetupError("the Vonage application key must be an RSA private key (PEM)")
    claims = {"application_id": application_id, "iat": int(now), "exp": int(now) + ttl, "jti": str(uuid.uuid4())}
    body = f"{_b64url(json.dumps({'alg': 'RS256', 'typ': 'JWT'}).encode())}.{_b64url(json.dumps(claims).encode())}"
    return f"{body}.{_b64url(key.sign(body.encode(), padding.PKCS1v15(), hashes.SHA256()))}"


class Vonage(Provider):
    """Vonage, with the account's ``signature_secret`` (it signs the webhooks).

    ``application_id`` and ``private_key`` (PEM) enable the REST API.
    ``sample_rate``: 16000 (the default) or 8000.
    """

    name = "vonage"
    answer_method = "GET"

    def __init__(
        self,
        *,
        signature_secret: str,
        application_id: str | None = None,
        private_key: str | bytes | None = None,
        sample_rate: int = 16_000,
        tolerance: float = 300.0,
        api_base: str = API_BASE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if sample_rate not in RATES:
            raise ValueError(f"Vonage streams L16 at 8000 or 16000 Hz, not {sample_rate}")
        self.signature_secret = signature_secret
        self.application_id = application_id
        self.private_key = private_key
        self.sample_rate = sample_rate
        self.tolerance = tolerance
        self.api_base = api_base.rstrip("/")
        self._clock = clock

    def serializer(self) -> VonageSerializer:
        return VonageSerializer(self.sample_rate)

    def verify_webhook(self, request: HTTPRequest, url: str, replay: ReplayGuard) -> None:
        authorization = request.headers.get("authorization", "")
        if not authorization.lower().startswith("bearer "):
            raise WebhookRejected("missing", "no signed JWT in the Authorization header")
        claims = verify_hs256(authorization[7:].strip(), self.signature_secret)
        now = self._clock()
        try:
            issued = float(claims["iat"])
        except (KeyError, TypeError, ValueError):
            raise WebhookRejected("malformed", "the JWT has no iat") from None
        if abs(now - issued) > self.tolerance or float(claims.get("exp", now + 1)) < now:
            raise WebhookRejected("stale", f"the JWT was issued {now - issued:.0f} s ago")
        expected_hash = claims.get("payload_hash")
        if request.body and expected_hash is not None:
            if not hmac.compare_digest(str(expected_hash), hashlib.sha256(request.body).hexdigest()):
                raise WebhookRejected("bad_signature", "the body does not match the JWT's payload_hash")
        replay.check(f"vonage:{claims.get('jti') or authorization}")

    def incoming_call(self, request: HTTPRequest) -> CallInfo:
        params: dict[str, Any] = dict(request.query)
        if request.body and "json" in request.headers.get("content-type", ""):
            try:
                params.update(json.loads(request.body))
            except ValueError as error:
                raise WebhookRejected("malformed", f"the answer webhook's JSON is unreadable: {error}") from error
        if not params.get("uuid"):
            raise WebhookRejected("malformed", "the answer webhook has no uuid")
        return CallInfo(
            call_id=str(params["uuid"]), from_number=str(params.get("from", "")), to_number=str(params.get("to", ""))
        )

    def ncco(self, media_url: str, parameters: Any = ()) -> list[dict[str, Any]]:
        endpoint: dict[str, Any] = {
            "type": "websocket",
            "uri": media_url,
            "content-type": f"audio/l16;rate={self.sample_rate}",
        }
        if parameters:
            endpoint["headers"] = {str(k): str(v) for k, v in dict(parameters).items()}
        return [{"action": "connect", "endpoint": [endpoint]}]

    def answer(self, media_url: str, call: CallInfo) -> HTTPResponse:
        body = json.dumps(self.ncco(media_url, call.parameters)).encode()
        return HTTPResponse(200, body, "application/json")

    # -- REST ----------------------------------------------------------------------------

    @property
    def can_dial(self) -> bool:
        return self.application_id is not None and self.private_key is not None

    def _headers(self) -> dict[str, str]:
        if self.application_id is None or self.private_key is None:
            raise ProviderSetupError("Vonage: the REST API needs application_id and private_key")
        return {"Authorization": f"Bearer {application_jwt(self.application_id, self.private_key, now=self._clock())}"}

    async def dial(
        self, client: httpx2.AsyncClient, *, to: str, from_: str, media_url: str, answer_url: str
    ) -> str:
        body = {
            "to": [{"type": "phone", "number": to}],
            "from": {"type": "phone", "number": from_},
            "ncco": self.ncco(media_url),
        }
        response = await client.post(f"{self.api_base}/v1/calls", json=body, headers=self._headers())
        return str(check_response(response, "Vonage: creating the call")["uuid"])

    async def hang_up(self, client: httpx2.AsyncClient, call_id: str) -> None:
        response = await client.put(
            f"{self.api_base}/v1/calls/{call_id}", json={"action": "hangup"}, headers=self._headers()
        )
        check_response(response, "Vonage: hanging up")
