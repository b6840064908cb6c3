"""Test doubles for phone calls: each provider's side of a call, on loopback.

A :class:`FakeCaller` plays what Twilio, Telnyx, Plivo or Vonage does on a
call, in real time: it calls the server's answer webhook, signed as the
provider signs it, follows the markup to the media URL, sends the start
message and then a 20 ms frame of the caller's voice every 20 ms (the
script's lines, silence between them), plays back what it receives at the
wire rate (a playback queue, 20 ms a tick), returns each mark once the audio
before it has played, honours clears, and presses keys. What the caller
heard is kept (``heard``), with where each clear landed, so a test can check
what the agent said against what was heard. The provider's differences live
in a :class:`Wire` per provider.

:class:`FakeProviderAPI` is the providers' REST API (dialling out and
hanging up) on loopback: a dialled call is answered by a FakeCaller.

:class:`LinesSTT` is the recognizer of calls whose models are not what is
tested: it hears the lines of a list, one per VAD segment (with
:class:`~voxtrio.testing.model_free.ToneTTS` speaking, a tone per word with
exact word timings).
"""

from __future__ import annotations

import abc
import base64
import collections
import hashlib
import json
import secrets
import time
import xml.etree.ElementTree as ElementTree
from typing import Any, Callable, Sequence
from urllib.parse import urlencode

import attrs
import numpy as np
import trio

from ..audio import AudioFrame
from ..messages import STTEvent
from ..options import APIConnectOptions
from ..providers.base import STT, STTCapabilities
from ..transports.telephony import plivo, telnyx, twilio, vonage
from ..transports.telephony.dtmf import DTMFDetector
from ..transports.telephony.g711 import ulaw_decode, ulaw_encode
from ..transports.telephony.http import HTTPRequest, HTTPResponse, serve_http

FRAME = 0.02

# -- the scripted pipeline ----------------------------------------------------------------


class LinesSTT(STT):
    """A recognizer that hears ``lines`` in order, one per VAD segment
    (``segments`` records how long each segment was)."""

    capabilities = STTCapabilities(streaming=False)

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = collections.deque(lines)
        self.segments: list[float] = []

    async def recognize(
        self, audio: AudioFrame, *, language: str | None = None, conn_options: APIConnectOptions = APIConnectOptions()
    ) -> STTEvent:
        self.segments.append(audio.duration)
        text = self.lines.popleft() if self.lines else ""
        return STTEvent(kind="final", text=text)


# -- what a caller does --------------------------------------------------------------------


@attrs.frozen
class Say:
    """Speak ``audio`` (int16 at 8 kHz; resampled for a 16 kHz wire)."""

    audio: np.ndarray = attrs.field(eq=False)


@attrs.frozen
class Pause:
    seconds: float


@attrs.frozen
class WaitForAgent:
    """Until the agent has been heard for ``speech`` seconds (since this step
    began) and then, if ``silence`` is given, been quiet that long."""

    speech: float = 0.05
    silence: float | None = None
    timeout: float = 20.0


@attrs.frozen
class Press:
    digits: str
    gap: float = 0.15


@attrs.frozen
class HangUp:
    pass


Step = Say | Pause | WaitForAgent | Press | HangUp


@attrs.frozen(eq=False)
class Play:
    samples: np.ndarray


@attrs.frozen
class Mark:
    name: str


@attrs.frozen
class Clear:
    pass


# -- each provider's side of the wire -------------------------------------------------------

_PAYLOADS: dict[bytes, str] = {}


class Wire(abc.ABC):
    """One provider's side of a call: its webhook, its messages."""

    rate = 8000
    returns_cleared_marks = False
    """Twilio returns the marks still pending when it clears; Plivo does not."""
    honours_clear = True
    """False: the clear is received and ignored (what a provider without one does)."""

    def __init__(self, *, call_id: str | None = None, from_number: str = "+15550001111", to_number: str = "+15550002222") -> None:
        self.call_id = call_id or f"call-{secrets.token_hex(8)}"
        self.stream_id = f"stream-{secrets.token_hex(8)}"
        self.from_number, self.to_number = from_number, to_number
        self.sequence = 0
        self.chunk = 0

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence

    @abc.abstractmethod
    def answer_request(self, base_url: str) -> tuple[str, str, dict[str, str], bytes]:
        """The incoming-call webhook: method, URL, headers, body."""

    @abc.abstractmethod
    def media_url(self, markup: bytes) -> str:
        """Where the markup sends the call's audio."""

    def ws_headers(self, url: str) -> list[tuple[str, str]]:
        return []

    @abc.abstractmethod
    def opening(self) -> list[str]:
        """The messages the provider sends first."""

    @abc.abstractmethod
    def media(self, samples: np.ndarray) -> list[str | bytes]:
        """The messages for one frame of the caller's voice (usually one)."""

    @abc.abstractmethod
    def dtmf(self, digit: str) -> str:
        """A keypress."""

    def stop(self) -> str | None:
        return None

    @abc.abstractmethod
    def decode(self, message: str | bytes) -> list[Play | Mark | Clear]:
        """What the agent's side sent."""

    @abc.abstractmethod
    def mark_played(self, name: str) -> str:
        """The message returning a mark."""

    def cleared(self) -> str | None:
        return None

    def encode_ulaw(self, samples: np.ndarray) -> str:
        # A caller says the same frames (its lines, silence): encode each once.
        key = samples.tobytes()
        payload = _PAYLOADS.get(key)
        if payload is None:
            payload = base64.b64encode(ulaw_encode(samples)).decode("ascii")
            if len(_PAYLOADS) < 50_000:
                _PAYLOADS[key] = payload
        return payload


def _xml_stream(markup: bytes) -> ElementTree.Element:
    stream = ElementTree.fromstring(markup).find(".//Stream")
    if stream is None:
        raise AssertionError(f"no <Stream> in the markup: {markup!r}")
    return stream


class TwilioWire(Wire):
    returns_cleared_marks = True

    def __init__(self, auth_token: str, **options: Any) -> None:
        super().__init__(**options)
        self.auth_token = auth_token
        self.call_id = options.get("call_id") or "CA" + secrets.token_hex(16)
        self.stream_id = "MZ" + secrets.token_hex(16)
        self.parameters: dict[str, str] = {}

    def answer_request(self, base_url: str) -> tuple[str, str, dict[str, str], bytes]:
        url = f"{base_url}/twilio/answer"
        params = {"CallSid": self.call_id, "AccountSid": "AC" + "0" * 32, "From": self.from_number,
                  "To": self.to_number, "Direction": "inbound", "CallStatus": "ringing"}
        headers = {"X-Twilio-Signature": twilio.compute_signature(self.auth_token, url, params.items()),
                   "Content-Type": "application/x-www-form-urlencoded"}
        return "POST", url, headers, urlencode(params).encode()

    def media_url(self, markup: bytes) -> str:
        stream = _xml_stream(markup)
        self.parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        return str(stream.get("url"))

    def ws_headers(self, url: str) -> list[tuple[str, str]]:
        return [("X-Twilio-Signature", twilio.compute_signature(self.auth_token, url))]

    def _message(self, event: str, **fields: Any) -> str:
        return json.dumps({"event": event, "sequenceNumber": str(self.next_sequence()), "streamSid": self.stream_id, **fields})

    def opening(self) -> list[str]:
        start = {"accountSid": "AC" + "0" * 32, "streamSid": self.stream_id, "callSid": self.call_id,
                 "tracks": ["inbound"], "customParameters": self.parameters,
                 "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
        return [json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}), self._message("start", start=start)]

    def media(self, samples: np.ndarray) -> list[str | bytes]:
        self.chunk += 1
        media = {"track": "inbound", "chunk": str(self.chunk), "timestamp": str(self.chunk * 20), "payload": self.encode_ulaw(samples)}
        return [self._message("media", media=media)]

    def dtmf(self, digit: str) -> str:
        return self._message("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    def stop(self) -> str:
        return self._message("stop", stop={"accountSid": "AC" + "0" * 32, "callSid": self.call_id})

    def decode(self, message: str | bytes) -> list[Play | Mark | Clear]:
        data = json.loads(message)
        assert data.get("streamSid") == self.stream_id, f"a message for another stream: {data}"
        return _media_mark_or_clear(data, "Twilio")

    def mark_played(self, name: str) -> str:
        return self._message("mark", mark={"name": name})


def _media_mark_or_clear(data: dict[str, Any], vendor: str) -> list[Play | Mark | Clear]:
    """What Twilio's and Telnyx's servers send a caller: base64 μ-law media, marks, clears."""
    if data["event"] == "media":
        return [Play(ulaw_decode(base64.b64decode(data["media"]["payload"])))]
    if data["event"] == "mark":
        return [Mark(data["mark"]["name"])]
    if data["event"] == "clear":
        return [Clear()]
    raise AssertionError(f"{vendor} takes no {data['event']!r} message")


class TelnyxWire(Wire):
    def __init__(self, private_key: Any, *, shuffle: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.private_key = private_key
        self.call_id = options.get("call_id") or "v3:" + secrets.token_urlsafe(24)
        self.shuffle = shuffle  # send media frames in swapped pairs (Telnyx does not promise order)
        self._held: str | None = None

    def sign(self, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        signature = self.private_key.sign(telnyx.signed_payload(timestamp, body))
        return {"telnyx-signature-ed25519": base64.b64encode(signature).decode(), "telnyx-timestamp": timestamp}

    def answer_request(self, base_url: str) -> tuple[str, str, dict[str, str], bytes]:
        body = urlencode({"CallSid": self.call_id, "From": self.from_number, "To": self.to_number,
                          "AccountSid": secrets.token_hex(8), "CallStatus": "ringing"}).encode()
        headers = {**self.sign(body), "Content-Type": "application/x-www-form-urlencoded"}
        return "POST", f"{base_url}/telnyx/answer", headers, body

    def media_url(self, markup: bytes) -> str:
        stream = _xml_stream(markup)
        assert stream.get("bidirectionalMode") == "rtp", "the stream must be bidirectional"
        return str(stream.get("url"))

    def _message(self, event: str, **fields: Any) -> str:
        return json.dumps({"event": event, "sequence_number": str(self.next_sequence()), **fields, "stream_id": self.stream_id})

    def opening(self) -> list[str]:
        start = {"user_id": secrets.token_hex(8), "call_control_id": self.call_id, "client_state": "",
                 "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}}
        return [json.dumps({"event": "connected", "version": "1.0.0"}), self._message("start", start=start)]

    def media(self, samples: np.ndarray) -> list[str | bytes]:
        self.chunk += 1
        media = {"track": "inbound", "chunk": str(self.chunk), "timestamp": str(self.chunk * 20), "payload": self.encode_ulaw(samples)}
        message = self._message("media", media=media)
        if not self.shuffle:
            return [message]
        if self._held is None:
            self._held = message
            return []
        held, self._held = self._held, None
        return [message, held]

    def dtmf(self, digit: str) -> str:
        return self._message("dtmf", occurred_at="2026-01-01T00:00:00Z", dtmf={"digit": digit})

    def stop(self) -> str:
        return self._message("stop", stop={"call_control_id": self.call_id})

    def decode(self, message: str | bytes) -> list[Play | Mark | Clear]:
        return _media_mark_or_clear(json.loads(message), "Telnyx")

    def mark_played(self, name: str) -> str:
        return self._message("mark", mark={"name": name})


class PlivoWire(Wire):
    def __init__(self, auth_token: str, **options: Any) -> None:
        super().__init__(**options)
        self.auth_token = auth_token

    def signed(self, method: str, url: str, params: dict[str, str]) -> dict[str, str]:
        nonce = str(secrets.randbelow(10**20))
        signature = plivo.compute_signature(self.auth_token, method, url, nonce, params.items())
        return {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}

    def answer_request(self, base_url: str, *, url: str | None = None, direction: str = "inbound") -> tuple[str, str, dict[str, str], bytes]:
        url = url or f"{base_url}/plivo/answer"
        params = {"CallUUID": self.call_id, "From": self.from_number, "To": self.to_number,
                  "Direction": direction, "Event": "StartApp", "CallStatus": "in-progress"}
        headers = {**self.signed("POST", url, params), "Content-Type": "application/x-www-form-urlencoded"}
        return "POST", url, headers, urlencode(params).encode()

    def media_url(self, markup: bytes) -> str:
        stream = _xml_stream(markup)
        assert stream.get("bidirectional") == "true", "the stream must be bidirectional"
        return (stream.text or "").strip()

    def opening(self) -> list[str]:
        start = {"callId": self.call_id, "streamId": self.stream_id, "accountId": "MA" + secrets.token_hex(9),
                 "tracks": ["inbound"], "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}}
        return [json.dumps({"sequenceNumber": 0, "event": "start", "start": start, "extra_headers": "{}"})]

    def media(self, samples: np.ndarray) -> list[str | bytes]:
        self.chunk += 1
        media = {"track": "inbound", "timestamp": str(self.chunk * 20), "chunk": self.chunk, "payload": self.encode_ulaw(samples)}
        return [json.dumps({"sequenceNumber": self.next_sequence(), "streamId": self.stream_id, "event": "media",
                            "media": media, "extra_headers": "{}"})]

    def dtmf(self, digit: str) -> str:
        return json.dumps({"event": "dtmf", "streamId": self.stream_id, "dtmf": {"digit": digit}})

    def decode(self, message: str | bytes) -> list[Play | Mark | Clear]:
        data = json.loads(message)
        assert data.get("streamId") == self.stream_id, f"a message for another stream: {data}"
        if data["event"] == "playAudio":
            assert data["media"]["contentType"] == "audio/x-mulaw" and data["media"]["sampleRate"] == 8000
            return [Play(ulaw_decode(base64.b64decode(data["media"]["payload"])))]
        if data["event"] == "checkpoint":
            return [Mark(data["name"])]
        if data["event"] == "clearAudio":
            return [Clear()]
        raise AssertionError(f"Plivo takes no {data['event']!r} message")

    def mark_played(self, name: str) -> str:
        return json.dumps({"event": "playedStream", "streamId": self.stream_id, "name": name})

    def cleared(self) -> str:
        return json.dumps({"sequenceNumber": self.next_sequence(), "event": "clearedAudio", "streamId": self.stream_id})


class VonageWire(Wire):
    rate = 16_000

    def __init__(self, signature_secret: str, *, honours_clear: bool = True, **options: Any) -> None:
        super().__init__(**options)
        self.signature_secret = signature_secret
        self.honours_clear = honours_clear  # Vonage's own guide does not document the clear
        self.headers: dict[str, str] = {}

    def token(self, body: bytes = b"") -> str:
        claims: dict[str, Any] = {"iat": int(time.time()), "jti": secrets.token_hex(8), "iss": "Vonage",
                                  "api_key": "abcd1234", "application_id": secrets.token_hex(8)}
        if body:
            claims["payload_hash"] = hashlib.sha256(body).hexdigest()
        return vonage.sign_hs256(claims, self.signature_secret)

    def answer_request(self, base_url: str) -> tuple[str, str, dict[str, str], bytes]:
        query = urlencode({"to": self.to_number, "from": self.from_number, "uuid": self.call_id,
                           "conversation_uuid": "CON-" + secrets.token_hex(8)})
        return "GET", f"{base_url}/vonage/answer?{query}", {"Authorization": f"Bearer {self.token()}"}, b""

    def media_url(self, markup: bytes) -> str:
        endpoint = json.loads(markup)[0]["endpoint"][0]
        assert endpoint["type"] == "websocket" and endpoint["content-type"] == f"audio/l16;rate={self.rate}"
        self.headers = dict(endpoint.get("headers", {}))
        return str(endpoint["uri"])

    def opening(self) -> list[str]:
        return [json.dumps({"event": "websocket:connected", "content-type": f"audio/l16;rate={self.rate}", **self.headers})]

    def media(self, samples: np.ndarray) -> list[str | bytes]:
        return [np.ascontiguousarray(samples, "<i2").tobytes()]

    def dtmf(self, digit: str) -> str:
        return json.dumps({"event": "websocket:dtmf", "digit": digit, "duration": 260})

    def decode(self, message: str | bytes) -> list[Play | Mark | Clear]:
        if isinstance(message, bytes):
            assert len(message) == self.rate // 50 * 2, f"Vonage takes 20 ms frames, got {len(message)} bytes"
            return [Play(np.frombuffer(message, "<i2").astype(np.int16))]
        data = json.loads(message)
        if data.get("action") == "clear":
            return [Clear()]
        if data.get("action") == "notify":
            return [Mark(json.dumps(data.get("payload", {})))]
        raise AssertionError(f"Vonage takes no {data!r} message")

    def mark_played(self, name: str) -> str:
        return json.dumps({"event": "websocket:notify", "payload": json.loads(name)})

    def cleared(self) -> str | None:
        return json.dumps({"event": "websocket:cleared"}) if self.honours_clear else None


# -- the caller ---------------------------------------------------------------------------------

_TLS: list[Any] = []


def _tls() -> Any:
    """One TLS context for every fake's HTTP client (making one costs ~50 ms)."""
    if not _TLS:
        import ssl

        _TLS.append(ssl.create_default_context())
    return _TLS[0]



class FakeCaller:
    """One call from (or answered by) a fake of the provider (see the module docstring)."""

    def __init__(self, wire: Wire, script: Sequence[Step], *, timeout: float = 60.0, detect_dtmf: bool = True) -> None:
        self.wire = wire
        self.detect_dtmf = detect_dtmf
        self.script = list(script)
        self.timeout = timeout
        self.frame_samples = int(wire.rate * FRAME)
        self._speech: collections.deque[np.ndarray] = collections.deque()
        self._queue: collections.deque[np.ndarray | str] = collections.deque()
        self._outbox: collections.deque[str | bytes] = collections.deque()
        self.heard_frames: list[np.ndarray] = []
        """What the caller heard, one 20 ms frame a tick (zeros when nothing played)."""
        self.speaking_ticks: list[int] = []
        """The ticks at which the caller's own voice (not silence) was sent."""
        self.clears: list[int] = []
        """For each clear, the number of heard samples when it took effect."""
        self.ignored_clears: list[int] = []
        """For each clear received and ignored (``Wire.honours_clear`` false), the same."""
        self.clear_times: list[float] = []
        self.silence_times: list[float] = []
        """When the first silent frame played after each clear."""
        self.marks_returned: list[str] = []
        self.monotonic_offset = 0.0
        """``time.monotonic()`` minus trio's clock (trio's clock has a random offset)."""
        self.late: list[float] = []
        """How late each tick ran (seconds): a load generator that falls behind shows here."""
        self.messages_received = 0
        self.answer_status: int | None = None
        self.media_url: str | None = None
        self.ended_by: str | None = None
        self.dtmf = DTMFDetector(wire.rate)
        self._ticks = 0
        self._voiced_frames = 0  # heard frames with agent audio in them
        self._last_voice_tick = -1
        self._hung_up = trio.Event()

    # -- results ------------------------------------------------------------------

    @property
    def heard(self) -> np.ndarray:
        return np.concatenate(self.heard_frames) if self.heard_frames else np.zeros(0, np.int16)

    def heard_seconds(self, until: int | None = None) -> float:
        """Seconds of agent audio (not silence) heard, up to sample ``until``."""
        heard = self.heard[:until]
        frames = heard[: len(heard) // self.frame_samples * self.frame_samples].reshape(-1, self.frame_samples)
        return float(np.count_nonzero(np.abs(frames).max(axis=1) > 0)) * FRAME

    # -- running ------------------------------------------------------------------

    async def dial_in(self, base_url: str, *, client: Any = None) -> None:
        """Call the server: its answer webhook, then the media stream; returns when the call is over."""
        import httpx2

        method, url, headers, body = self.wire.answer_request(base_url)
        async with httpx2.AsyncClient(timeout=10.0, verify=_tls()) as own:
            response = await (client or own).request(method, url, headers=headers, content=body)
        self.answer_status = response.status_code
        if response.status_code != 200:
            return
        await self.connect(self.wire.media_url(response.content))

    async def connect(self, url: str) -> None:
        """Open the media stream at ``url`` and play the script; returns when the call is over."""
        import trio_websocket

        self.media_url = url
        self.monotonic_offset = time.monotonic() - trio.current_time()
        with trio.move_on_after(self.timeout):
            try:
                async with trio_websocket.open_websocket_url(url, extra_headers=[
                    (k.encode(), v.encode()) for k, v in self.wire.ws_headers(url)
                ]) as ws:
                    try:
                        for message in self.wire.opening():
                            await ws.send_message(message)
                    except trio_websocket.ConnectionClosed:
                        self.ended_by = "agent"
                        return
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._receive, ws, nursery.cancel_scope)
                        nursery.start_soon(self._tick, ws)
                        await self._play_script()
                        self.ended_by = self.ended_by or "caller"
                        stop = self.wire.stop()
                        if stop is not None and self.ended_by != "agent":
                            with trio.move_on_after(1.0):
                                try:
                                    await ws.send_message(stop)
                                except trio_websocket.ConnectionClosed:
                                    pass
                        nursery.cancel_scope.cancel()
            except trio_websocket.HandshakeError as error:
                self.ended_by = f"refused: {error}"

    def hang_up(self) -> None:
        """The provider ends the call (its REST API was asked to)."""
        self.ended_by = "hangup"
        self._hung_up.set()

    async def _receive(self, ws: Any, scope: trio.CancelScope) -> None:
        import trio_websocket

        try:
            while True:
                message = await ws.get_message()
                self.messages_received += 1
                for action in self.wire.decode(message):
                    if isinstance(action, Play):
                        self._queue.append(action.samples)
                    elif isinstance(action, Mark):
                        self._queue.append(action.name)
                    else:
                        self._clear()
        except trio_websocket.ConnectionClosed:
            self.ended_by = self.ended_by or "agent"
            self._hung_up.set()

    def _clear(self) -> None:
        if not self.wire.honours_clear:
            self.ignored_clears.append(sum(len(f) for f in self.heard_frames))
            return
        self.clears.append(sum(len(f) for f in self.heard_frames))
        self.clear_times.append(trio.current_time())
        pending = [item for item in self._queue if isinstance(item, str)]
        self._queue.clear()
        if self.wire.returns_cleared_marks:
            for name in pending:
                self._return_mark(name)
        cleared = self.wire.cleared()
        if cleared is not None:
            self._outbox.append(cleared)

    def _return_mark(self, name: str) -> None:
        self.marks_returned.append(name)
        self._outbox.append(self.wire.mark_played(name))

    def _play_frame(self) -> np.ndarray:
        needed, pieces = self.frame_samples, []
        while self._queue and isinstance(self._queue[0], str):
            self._return_mark(self._queue.popleft())  # type: ignore[arg-type]
        while needed and self._queue:
            head = self._queue[0]
            if isinstance(head, str):
                self._return_mark(head)
                self._queue.popleft()
                continue
            piece, rest = head[:needed], head[needed:]
            pieces.append(piece)
            needed -= len(piece)
            if len(rest):
                self._queue[0] = rest
            else:
                self._queue.popleft()
        while self._queue and isinstance(self._queue[0], str):
            self._return_mark(self._queue.popleft())  # type: ignore[arg-type]
        if needed:
            pieces.append(np.zeros(needed, np.int16))
        return np.concatenate(pieces)

    async def _tick(self, ws: Any) -> None:
        import trio_websocket

        try:
            await self._ticks_forever(ws)
        except trio_websocket.ConnectionClosed:
            self.ended_by = self.ended_by or "agent"
            self._hung_up.set()

    async def _ticks_forever(self, ws: Any) -> None:
        silence = np.zeros(self.frame_samples, np.int16)
        start = trio.current_time()
        while True:
            self._ticks += 1
            await trio.sleep_until(start + self._ticks * FRAME)
            voice = self._speech.popleft() if self._speech else silence
            if voice is not silence:
                self.speaking_ticks.append(self._ticks)
            for message in self.wire.media(voice):
                await ws.send_message(message)
            frame = self._play_frame()
            if self.clears and len(self.silence_times) < len(self.clears) and not frame.any():
                self.silence_times.append(trio.current_time())
            if frame.any():
                self._voiced_frames += 1
                self._last_voice_tick = self._ticks
            self.heard_frames.append(frame)
            if self.detect_dtmf:
                self.dtmf.push(frame)
            self.late.append(trio.current_time() - (start + self._ticks * FRAME))
            while self._outbox:
                await ws.send_message(self._outbox.popleft())

    async def _play_script(self) -> None:
        for step in self.script:
            if self._hung_up.is_set():
                return
            if isinstance(step, Say):
                audio = step.audio
                if self.wire.rate != 8000:
                    import soxr

                    audio = soxr.resample(audio, 8000, self.wire.rate).astype(np.int16)
                for offset in range(0, len(audio), self.frame_samples):
                    piece = audio[offset : offset + self.frame_samples]
                    self._speech.append(np.pad(piece, (0, self.frame_samples - len(piece))))
                while self._speech and not self._hung_up.is_set():
                    await trio.sleep(FRAME)
            elif isinstance(step, Pause):
                with trio.move_on_after(step.seconds):
                    await self._hung_up.wait()
            elif isinstance(step, Press):
                for digit in step.digits:
                    self._outbox.append(self.wire.dtmf(digit))
                    await trio.sleep(step.gap)
            elif isinstance(step, WaitForAgent):
                await self._wait_for_agent(step)
            elif isinstance(step, HangUp):
                return

    async def _wait_for_agent(self, step: WaitForAgent) -> None:
        begin = self._voiced_frames
        with trio.move_on_after(step.timeout):
            while not self._hung_up.is_set():
                spoken = (self._voiced_frames - begin) * FRAME
                if spoken >= step.speech:
                    if step.silence is None:
                        return
                    quiet = (self._ticks - self._last_voice_tick) * FRAME
                    if quiet >= step.silence and not self._queue:
                        return
                await trio.sleep(FRAME)


# -- the providers' REST APIs -----------------------------------------------------------------


@attrs.define
class APICall:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FakeProviderAPI:
    """The four providers' REST APIs (calls and hangups) on loopback.

    ``callee(provider, call_id)`` makes the FakeCaller that answers a dialled
    call (None: nobody answers). ``api_calls`` records every request;
    ``hangups`` the call ids hung up (their callers are hung up too).
    """

    def __init__(
        self,
        callee: Callable[[str, str], FakeCaller | None],
        *,
        twilio_auth: tuple[str, str] | None = None,
        telnyx_api_key: str | None = None,
        plivo_auth: tuple[str, str] | None = None,
        vonage_public_key: Any = None,
    ) -> None:
        self.callee = callee
        self.twilio_auth, self.telnyx_api_key, self.plivo_auth = twilio_auth, telnyx_api_key, plivo_auth
        self.vonage_public_key = vonage_public_key
        self.api_calls: list[APICall] = []
        self.hangups: list[str] = []
        self.callers: dict[str, FakeCaller] = {}
        self.base_url = ""
        self._nursery: trio.Nursery | None = None

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            listeners = await nursery.start(lambda task_status: serve_http(
                self._on_request, self._no_upgrade, host="127.0.0.1", port=0, task_status=task_status))
            self.base_url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
            task_status.started(self.base_url)

    async def _no_upgrade(self, request: HTTPRequest, stream: Any) -> HTTPResponse:
        return HTTPResponse.text(404, "no WebSockets here")

    def _basic(self, request: HTTPRequest, expected: tuple[str, str] | None) -> bool:
        if expected is None:
            return False
        value = request.headers.get("authorization", "")
        return value == "Basic " + base64.b64encode(f"{expected[0]}:{expected[1]}".encode()).decode()

    def _answer_with(self, provider: str, call_id: str, url: str | None = None, answer_url: str | None = None) -> None:
        caller = self.callee(provider, call_id)
        if caller is None:
            return
        self.callers[call_id] = caller
        assert self._nursery is not None

        async def answer_call() -> None:
            await trio.sleep(0.05)  # ringing
            if url is not None:
                await caller.connect(url)
            elif answer_url is not None:
                import httpx2

                wire = caller.wire
                assert isinstance(wire, PlivoWire)
                method, _, headers, body = wire.answer_request("", url=answer_url, direction="outbound")
                async with httpx2.AsyncClient(timeout=10.0, verify=_tls()) as client:
                    response = await client.request(method, answer_url, headers=headers, content=body)
                caller.answer_status = response.status_code
                if response.status_code == 200:
                    await caller.connect(wire.media_url(response.content))

        self._nursery.start_soon(answer_call)

    async def _on_request(self, request: HTTPRequest) -> HTTPResponse:
        self.api_calls.append(APICall(request.method, request.path, dict(request.headers), request.body))
        path, method = request.path, request.method
        if path.startswith("/2010-04-01/Accounts/"):
            if not self._basic(request, self.twilio_auth):
                return HTTPResponse.text(401, "bad credentials")
            form = dict(request.form())
            if path.endswith("/Calls.json") and method == "POST":
                sid = "CA" + secrets.token_hex(16)
                self._answer_with("twilio", sid, url=_xml_stream(form["Twiml"].encode()).get("url"))
                return HTTPResponse(201, json.dumps({"sid": sid, "status": "queued"}).encode(), "application/json")
            sid = path.rsplit("/", 1)[1].removesuffix(".json")
            if form.get("Status") == "completed":
                return self._hang_up(sid, HTTPResponse(200, json.dumps({"sid": sid, "status": "completed"}).encode(), "application/json"))
        elif path.startswith("/v2/calls"):
            if request.headers.get("authorization") != f"Bearer {self.telnyx_api_key}":
                return HTTPResponse.text(401, "bad credentials")
            if path == "/v2/calls" and method == "POST":
                body = json.loads(request.body)
                assert body["stream_bidirectional_mode"] == "rtp"
                call_id = "v3:" + secrets.token_urlsafe(16)
                self._answer_with("telnyx", call_id, url=body["stream_url"])
                return HTTPResponse(200, json.dumps({"data": {"call_control_id": call_id}}).encode(), "application/json")
            if path.endswith("/actions/hangup"):
                call_id = path.split("/")[3]
                return self._hang_up(call_id, HTTPResponse(200, b'{"data":{"result":"ok"}}', "application/json"))
        elif path.startswith("/v1/Account/"):
            if not self._basic(request, self.plivo_auth):
                return HTTPResponse.text(401, "bad credentials")
            if path.endswith("/Call/") and method == "POST":
                body = json.loads(request.body)
                uuid = secrets.token_hex(16)
                self._answer_with("plivo", uuid, answer_url=body["answer_url"])
                return HTTPResponse(201, json.dumps({"api_id": secrets.token_hex(8), "message": "call fired",
                                                     "request_uuid": uuid}).encode(), "application/json")
            if method == "DELETE":
                return self._hang_up(path.rstrip("/").rsplit("/", 1)[1], HTTPResponse(204))
        elif path.startswith("/v1/calls"):
            if not self._vonage_authorized(request):
                return HTTPResponse.text(401, "bad credentials")
            if path == "/v1/calls" and method == "POST":
                body = json.loads(request.body)
                uuid = secrets.token_hex(16)
                self._answer_with("vonage", uuid, url=body["ncco"][0]["endpoint"][0]["uri"])
                return HTTPResponse(201, json.dumps({"uuid": uuid, "status": "started"}).encode(), "application/json")
            if method == "PUT" and json.loads(request.body).get("action") == "hangup":
                return self._hang_up(path.rsplit("/", 1)[1], HTTPResponse(204))
        return HTTPResponse.text(404, f"the fake API has no {method} {path}")

    def _vonage_authorized(self, request: HTTPRequest) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        parts = token.split(".")
        if self.vonage_public_key is None or len(parts) != 3:
            return False
        signature = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        try:
            self.vonage_public_key.verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True

    def _hang_up(self, call_id: str, response: HTTPResponse) -> HTTPResponse:
        self.hangups.append(call_id)
        caller = self.callers.get(call_id)
        if caller is not None:
            caller.hang_up()
        return response

