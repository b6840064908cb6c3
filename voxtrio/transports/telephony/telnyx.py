"""Telnyx: media streaming (TeXML ``<Stream>`` or Call Control), Ed25519 webhooks.

Media (Telnyx's "Stream call media over WebSocket"): JSON text frames,
Twilio-like but snake_case. Telnyx sends ``connected``, ``start``
(``stream_id`` at the top, ``start.call_control_id`` and
``start.media_format``: ``encoding``, ``sample_rate``, ``channels``),
``media`` (``media.payload``: the base64 RTP payload, ``media.chunk``),
``dtmf`` (``dtmf.digit``), ``mark``, ``error`` and ``stop``. Telnyx warns that
media frames may arrive out of order: they are put back in ``chunk`` order
here, waiting at most ``reorder_window`` frames for a missing one (then it
is counted lost and replaced by silence, so the caller's audio keeps its
timing; the stream's first frame waits for its second, which may come
first). Encodings: PCMU, PCMA (8 kHz) and L16 (16-bit linear PCM in network
byte order, the RTP payload format). With bidirectional RTP mode on, we send
``media`` (20 ms to 30 s of audio a message), ``mark`` and ``clear``.

Webhooks (TeXML and Call Control alike) carry ``telnyx-signature-ed25519``
(base64 Ed25519 signature) and ``telnyx-timestamp`` (Unix seconds): the
signature is over ``"<timestamp>|<raw body>"`` with the account's public key
(base64, 32 bytes, from the Telnyx portal). A timestamp more than
``tolerance`` seconds away from now is refused (Telnyx's SDKs use 300 s); a
signature already accepted within that window is a replay.

Answering: TeXML ``<Start><Stream bidirectionalMode="rtp">`` then a long
``<Pause>`` (the stream runs while the call waits), so ending the call is
the REST ``actions/hangup`` on the ``call_control_id`` of the start message.
Dialling out is Call Control's ``POST /v2/calls`` with the stream settings.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any, Callable
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
    ProviderSetupError,
    ReplayGuard,
    StreamEvent,
    StreamFailed,
    StreamStarted,
    StreamStopped,
    WebhookRejected,
    check_response,
    field,
    load_json,
)
from .g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from .http import HTTPRequest, HTTPResponse

if TYPE_CHECKING:
    import httpx2

API_BASE = "https://api.telnyx.com"
SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
CODECS = ("PCMU", "PCMA", "L16")
# How long a TeXML call waits while its stream runs (the call ends sooner by hangup).
PAUSE_SECONDS = 14_400


def _decoder(encoding: str) -> Callable[[bytes], np.ndarray]:
    if encoding == "PCMU":
        return ulaw_decode
    if encoding == "PCMA":
        return alaw_decode
    if encoding == "L16":
        return lambda data: np.frombuffer(data, ">i2").astype(np.int16)
    raise MediaProtocolError(f"Telnyx announced {encoding!r}; this stream speaks {', '.join(CODECS)}")


def _encoder(encoding: str) -> Callable[[np.ndarray], bytes]:
    if encoding == "PCMU":
        return ulaw_encode
    if encoding == "PCMA":
        return alaw_encode
    if encoding == "L16":
        return lambda samples: np.ascontiguousarray(samples, ">i2").tobytes()
    raise ValueError(f"Telnyx codec must be one of {', '.join(CODECS)}, got {encoding!r}")


class TelnyxSerializer(MediaSerializer):
    provider = "telnyx"
    playback_marks = "confirmed"

    def __init__(self, codec: str = "PCMU", *, reorder_window: int = 3) -> None:
        self.codec = codec
        self._encode = _encoder(codec)
        self.sample_rate = 16_000 if codec == "L16" else 8000
        self._decode: Callable[[bytes], np.ndarray] = _decoder(codec)
        self.reorder_window = reorder_window
        self._next_chunk: int | None = None
        self._held: dict[int, np.ndarray] = {}
        self._frame_samples = 0
        self.frames_lost = 0
        """Media chunks that never came (replaced by silence)."""
        self.frames_late = 0
        """Media chunks that came after their place was given up (dropped)."""

    def decode(self, message: str | bytes) -> list[StreamEvent]:
        data = load_json(message, "Telnyx")
        event = data.get("event")
        if event == "media":
            media = field(data, "media", provider="Telnyx")
            if media.get("track", "inbound") != "inbound":
                return []
            try:
                samples = self._decode(base64.b64decode(field(media, "payload", provider="Telnyx"), validate=True))
                chunk = int(field(media, "chunk", provider="Telnyx"))
            except (ValueError, TypeError) as error:
                raise MediaProtocolError(f"Telnyx sent an unreadable media message: {error}") from error
            return [InboundAudio(s) for s in self._in_order(chunk, samples)]
        if event == "mark":
            return [MarkPlayed(str(field(data, "mark", "name", provider="Telnyx")))]
        if event == "dtmf":
            return [DtmfPressed(str(field(data, "dtmf", "digit", provider="Telnyx")))]
        if event == "start":
            start = field(data, "start", provider="Telnyx")
            media_format = start.get("media_format") or {}
            encoding = str(media_format.get("encoding", self.codec)).upper()
            self._decode = _decoder(encoding)
            rate = int(media_format.get("sample_rate", 16_000 if encoding == "L16" else 8000))
            if rate != self.sample_rate:
                raise MediaProtocolError(
                    f"Telnyx streams {encoding} at {rate} Hz but the agent's audio goes out at {self.sample_rate} Hz"
                )
            return [
                StreamStarted(
                    call_id=start.get("call_control_id"),
                    stream_id=data.get("stream_id"),
                    sample_rate=rate,
                )
            ]
        if event == "stop":
            return [StreamStopped()]
        if event == "error":
            return [StreamFailed(str(data.get("payload") or data.get("error") or data))]
        if event == "connected":
            return []
        raise MediaProtocolError(f"Telnyx sent an unknown event {event!r}")

    def _in_order(self, chunk: int, samples: np.ndarray) -> list[np.ndarray]:
        """The media chunks that can be played now, in chunk order."""
        self._frame_samples = len(samples)
        if self._next_chunk is None:  # the first frames may come swapped too: start from the lower
            self._held[chunk] = samples
            if len(self._held) < 2:
                return []
            self._next_chunk = min(self._held)
            return self._release()
        if chunk < self._next_chunk or chunk in self._held:
            self.frames_late += 1
            return []
        self._held[chunk] = samples
        return self._release()

    def _release(self) -> list[np.ndarray]:
        assert self._next_chunk is not None
        ready: list[np.ndarray] = []
        while self._held:
            if self._next_chunk in self._held:
                ready.append(self._held.pop(self._next_chunk))
                self._next_chunk += 1
            elif len(self._held) > self.reorder_window:
                first = min(self._held)
                lost = first - self._next_chunk
                self.frames_lost += lost
                ready.extend(np.zeros(self._frame_samples, np.int16) for _ in range(lost))
                self._next_chunk = first
            else:
                break
        return ready

    def encode_audio(self, samples: np.ndarray) -> list[str | bytes]:
        payload = base64.b64encode(self._encode(samples)).decode("ascii")
        return ['{"event":"media","media":{"payload":"%s"}}' % payload]

    def encode_mark(self, name: str) -> str:
        return '{"event":"mark","mark":{"name":"%s"}}' % name

    def encode_clear(self) -> str:
        return '{"event":"clear"}'


def signed_payload(timestamp: str, body: bytes) -> bytes:
    return timestamp.encode("ascii") + b"|" + body


class Telnyx(Provider):
    """Telnyx, with the account's Ed25519 ``public_key`` (base64, from the portal).

    ``api_key`` enables the REST API (hanging up; dialling out also needs the
    Call Control ``connection_id``). ``codec``: PCMU, PCMA or L16 (16 kHz).
    """

    name = "telnyx"

    def __init__(
        self,
        *,
        public_key: str,
        api_key: str | None = None,
        connection_id: str | None = None,
        codec: str = "PCMU",
        tolerance: float = 300.0,
        api_base: str = API_BASE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            raw = base64.b64decode(public_key, validate=True)
            self._key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as error:
            raise ValueError(f"the Telnyx public key must be 32 bytes of base64: {error}") from error
        _encoder(codec)
        self.codec = codec
        self.api_key = api_key
        self.connection_id = connection_id
        self.tolerance = tolerance
        self.api_base = api_base.rstrip("/")
        self._clock = clock

    def serializer(self) -> TelnyxSerializer:
        return TelnyxSerializer(self.codec)

    def verify_webhook(self, request: HTTPRequest, url: str, replay: ReplayGuard) -> None:
        from cryptography.exceptions import InvalidSignature

        signature = request.headers.get(SIGNATURE_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise WebhookRejected("missing", f"no {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
        try:
            sent = int(timestamp)
            raw = base64.b64decode(signature, validate=True)
        except ValueError as error:
            raise WebhookRejected("malformed", f"unreadable Telnyx signature headers: {error}") from error
        try:
            self._key.verify(raw, signed_payload(timestamp, request.body))
        except InvalidSignature:
            raise WebhookRejected("bad_signature", "the Ed25519 signature does not match the request") from None
        if abs(self._clock() - sent) > self.tolerance:
            raise WebhookRejected("stale", f"the webhook was signed {self._clock() - sent:.0f} s ago")
        replay.check(f"telnyx:{signature}")

    def incoming_call(self, request: HTTPRequest) -> CallInfo:
        params = dict(request.form() or request.query)
        if not params.get("CallSid"):
            raise WebhookRejected("malformed", "the TeXML webhook has no CallSid")
        return CallInfo(call_id=params["CallSid"], from_number=params.get("From", ""), to_number=params.get("To", ""))

    def answer(self, media_url: str, call: CallInfo) -> HTTPResponse:
        if self.codec == "L16":
            raise ProviderSetupError(
                "Telnyx: a TeXML <Stream> sends back PCMU or PCMA; L16 is for calls dialled through Call Control"
            )
        texml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Start>'
            f'<Stream url={quoteattr(media_url)} track="inbound_track" bidirectionalMode="rtp"'
            f' bidirectionalCodec={quoteattr(self.codec)}/>'
            f'</Start><Pause length="{PAUSE_SECONDS}"/></Response>'
        )
        return HTTPResponse.xml(texml)

    # -- REST (Call Control) -------------------------------------------------------------

    @property
    def can_dial(self) -> bool:
        return self.api_key is not None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    async def dial(
        self, client: httpx2.AsyncClient, *, to: str, from_: str, media_url: str, answer_url: str
    ) -> str:
        if self.api_key is None or self.connection_id is None:
            raise ProviderSetupError("Telnyx: dialling out needs api_key and connection_id")
        body: dict[str, Any] = {
            "connection_id": self.connection_id,
            "to": to,
            "from": from_,
            "stream_url": media_url,
            "stream_track": "inbound_track",
            "stream_bidirectional_mode": "rtp",
            "stream_bidirectional_codec": self.codec,
        }
        if self.codec == "L16":
            body["stream_bidirectional_sampling_rate"] = 16_000
        response = await client.post(f"{self.api_base}/v2/calls", json=body, headers=self._headers())
        return str(check_response(response, "Telnyx: dialling")["data"]["call_control_id"])

    async def hang_up(self, client: httpx2.AsyncClient, call_id: str) -> None:
        if self.api_key is None:
            return await super().hang_up(client, call_id)
        response = await client.post(
            f"{self.api_base}/v2/calls/{call_id}/actions/hangup", json={}, headers=self._headers()
        )
        check_response(response, "Telnyx: hanging up")

