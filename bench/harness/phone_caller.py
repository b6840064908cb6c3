"""The caller side of "phone call v1": scripted users on raw Twilio media streams.

Each call is ``harness.call.Call`` (the same reactive script, records and
playout model as "scripted call v1") reaching the server the way Twilio
does: the signed voice webhook, the ``<Connect><Stream>`` URL of its TwiML,
then a WebSocket carrying ``connected``, ``start``, one ``media`` message per
20 ms (base64 μ-law, 8 kHz) and ``stop`` at the end. What the server sends
back is played as Twilio plays it: ``media`` payloads queue up on the call's
playout timeline (one 20 ms frame at a time, so lateness is counted per frame
as in scripted call v1), a ``mark`` comes back once the audio queued before
it has played, and ``clear`` drops what is queued and returns the pending
marks at once.

The generator must stay far cheaper than the server it loads, so it is
written close to the socket: the client frames of every input frame of the
script are built once (the masking key is zero, which leaves the payload
as it is; only the sequence numbers are formatted per message), the agent's
audio is counted from the base64 length rather than decoded, and one global
ticker sends every call's frame for a slot (with the marks that became due).
The transcript ``Call.tick`` returns is not sent anywhere: the server has to
hear the end of speech in the audio.

The frame building and parsing are pure functions (tested in
``bench/tests/test_phone_caller.py``); the trio part is ``Caller`` and
``CallerTicker``.
"""

from __future__ import annotations

import base64
import collections
import json
import secrets
from dataclasses import dataclass, field

import numpy as np
import trio

from . import workload as W
from .call import Call

WIRE_RATE = 8000
WIRE_FRAME = 160  # samples (and μ-law bytes) per 20 ms
OUT_PER_WIRE = W.OUT_RATE // WIRE_RATE  # one 8 kHz sample is 3 samples of the 24 kHz timeline

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


# ------------------------------------------------------------------ framing (pure)
def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A masked client WebSocket frame with the all-zero key (XOR by zero
    leaves the payload as it is, so frames can be built once)."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    elif size < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def parse_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Take every complete (unmasked, server) frame off the front of ``buffer``.

    Returns (opcode, payload) pairs; an incomplete frame stays in the buffer.
    The server never fragments a message (trio-websocket sends each whole).
    """
    out = []
    pos, end = 0, len(buffer)
    while end - pos >= 2:
        opcode, size, offset = buffer[pos] & 0x0F, buffer[pos + 1] & 0x7F, pos + 2
        if size == 126:
            if end - pos < 4:
                break
            size, offset = int.from_bytes(buffer[pos + 2 : pos + 4], "big"), pos + 4
        elif size == 127:
            if end - pos < 10:
                break
            size, offset = int.from_bytes(buffer[pos + 2 : pos + 10], "big"), pos + 10
        if end < offset + size:
            break
        out.append((opcode, bytes(buffer[offset : offset + size])))
        pos = offset + size
    del buffer[:pos]
    return out


def to_wire(pcm16k: bytes) -> bytes:
    """A 20 ms harness frame (16 kHz PCM16) as Twilio's payload: 8 kHz μ-law.

    Every other sample: the script's audio is a 220 Hz tone or digital zero,
    far below the 4 kHz Nyquist limit, so no filter is needed.
    """
    from voxtrio.transports.telephony.g711 import ulaw_encode

    return ulaw_encode(np.frombuffer(pcm16k, "<i2")[::2])


def media_template(sid: str, payload: str) -> bytes:
    """The JSON of one inbound ``media`` message (``payload``: base64 μ-law) with
    ``%d`` holes for the sequence number, chunk and timestamp (Twilio's numbers
    are strings)."""
    return (
        '{"event":"media","sequenceNumber":"%%d","streamSid":"%s","media":{"track":"inbound",'
        '"chunk":"%%d","timestamp":"%%d","payload":"%s"}}' % (sid, payload)
    ).encode()


def payload_samples(message: bytes) -> int:
    """8 kHz samples in an outbound ``media`` message, from its base64 length."""
    start = message.index(b'"payload":"') + 11
    stop = message.index(b'"', start)
    padding = (message[stop - 1] == 61) + (message[stop - 2] == 61)  # "="
    return (stop - start) * 3 // 4 - padding


def message_kind(message: bytes) -> str:
    """``media``, ``mark``, ``clear`` or another event name."""
    start = message.index(b'"event"')
    start = message.index(b'"', start + 7) + 1
    return message[start : message.index(b'"', start)].decode()


def mark_name(message: bytes) -> str:
    return str(json.loads(message)["mark"]["name"])


def split_frames(samples: int) -> list[int]:
    """A payload of ``samples`` (8 kHz) as 20 ms frames, in 24 kHz samples."""
    whole, rest = divmod(samples, WIRE_FRAME)
    return [WIRE_FRAME * OUT_PER_WIRE] * whole + ([rest * OUT_PER_WIRE] if rest else [])


# ------------------------------------------------------------------- the caller
@dataclass
class WireStats:
    media_out: int = 0  # media messages sent by the caller
    media_in: int = 0  # media messages received from the server
    media_in_samples: int = 0
    marks_in: int = 0
    marks_returned: int = 0
    clears_in: int = 0
    frames_in_largest: int = 0  # the largest media message received, in 8 kHz samples
    other_in: collections.Counter = field(default_factory=collections.Counter)


class Caller:
    """One Twilio media stream driving one scripted ``Call``."""

    def __init__(self, call: Call, templates: dict[bytes, bytes], sid: str) -> None:
        self.call = call
        self.sid = sid
        self.stats = WireStats()
        self.stream: trio.SocketStream | None = None
        self._templates = templates  # harness frame -> media JSON template
        self._seq = 1  # Twilio's sequenceNumber: connected is 0... start is 1
        self._chunk = 0
        self._marks: collections.deque[tuple[float, str]] = collections.deque()  # (due, name)
        self.outbox = bytearray()  # what goes out with the next tick's frame
        self.hung_up = False  # the caller sent stop: the ticker writes no more
        self.ended = trio.Event()
        self.status = 0

    # -- setting up ----------------------------------------------------------------
    async def connect(self, url: str) -> None:
        """Open the media WebSocket at ``url`` (the TwiML's stream URL) and send
        ``connected`` and ``start``."""
        rest = url.removeprefix("ws://")
        hostport, path = rest.split("/", 1)
        host, _, port = hostport.partition(":")
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {base64.b64encode(secrets.token_bytes(16)).decode()}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            data = await stream.receive_some(4096)
            if not data:
                raise ConnectionError("the server closed the media handshake")
            head += data
        self.status = int(head.split()[1])
        if self.status != 101:
            status_line = head.split(b"\r\n", 1)[0].decode()
            raise ConnectionError(f"media handshake refused: {status_line}")
        self._rest = bytearray(head.split(b"\r\n\r\n", 1)[1])
        start = {
            "event": "start", "sequenceNumber": "1", "streamSid": self.sid,
            "start": {
                "streamSid": self.sid, "callSid": "CA" + self.sid[2:], "accountSid": "AC" + "0" * 32,
                "tracks": ["inbound"], "customParameters": {},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": WIRE_RATE, "channels": 1},
            },
        }
        connected = b'{"event":"connected","protocol":"Call","version":"1.0.0"}'
        await stream.send_all(client_frame(connected) + client_frame(json.dumps(start).encode()))
        self.stream = stream

    # -- the ticker's side ------------------------------------------------------------
    def frame_for(self, pcm16k: bytes) -> bytes:
        """The client frame of the next inbound media message carrying ``pcm16k``."""
        self._seq += 1
        self._chunk += 1
        self.stats.media_out += 1
        return client_frame(self._templates[pcm16k] % (self._seq, self._chunk, self._chunk * 20))

    def due_marks(self, now: float) -> bytes:
        """The returned marks now due, and the replies waiting in the outbox."""
        out = bytes(self.outbox)
        self.outbox.clear()
        while self._marks and self._marks[0][0] <= now:
            out += self._mark_frame(self._marks.popleft()[1])
        return out

    def _mark_frame(self, name: str) -> bytes:
        self._seq += 1
        self.stats.marks_returned += 1
        return client_frame(
            b'{"event":"mark","sequenceNumber":"%d","streamSid":"%s","mark":{"name":%s}}'
            % (self._seq, self.sid.encode(), json.dumps(name).encode())
        )

    def stop_frame(self) -> bytes:
        self._seq += 1
        return client_frame(b'{"event":"stop","sequenceNumber":"%d","streamSid":"%s","stop":{}}' % (self._seq, self.sid.encode()))

    # -- what the server sends ----------------------------------------------------------
    async def receive(self) -> None:
        """Play what the server sends until it closes the stream.

        Replies (returned marks, pongs) wait in ``outbox`` for the ticker's
        next write: one task writes to the socket, and Twilio plays in 20 ms
        frames anyway. Once the script is over nobody ticks, so the close
        handshake is answered here.
        """
        assert self.stream is not None
        buffer = self._rest
        try:
            while True:
                for opcode, payload in parse_frames(buffer):
                    if opcode == OP_TEXT:
                        self.outbox += self.on_message(payload, trio.current_time())
                    elif opcode == OP_PING:
                        self.outbox += client_frame(payload, OP_PONG)
                    elif opcode == OP_CLOSE:
                        if self.hung_up:
                            await self.stream.send_all(client_frame(payload[:2], OP_CLOSE))
                        return
                data = await self.stream.receive_some(65536)
                if not data:
                    return
                buffer += data
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            self.ended.set()

    def on_message(self, message: bytes, now: float) -> bytes:
        """Apply one message from the server; returns what to send back at once."""
        kind = message_kind(message)
        call, stats = self.call, self.stats
        if kind == "media":
            samples = payload_samples(message)
            stats.media_in += 1
            stats.media_in_samples += samples
            stats.frames_in_largest = max(stats.frames_in_largest, samples)
            for n in split_frames(samples):
                call.audio_written(now, n)  # Twilio has no back-pressure: release_at is moot
            return b""
        if kind == "mark":
            stats.marks_in += 1
            name = mark_name(message)
            due = call.playout.end
            if due <= now and not self._marks:
                return self._mark_frame(name)
            self._marks.append((due, name))
            return b""
        if kind == "clear":
            stats.clears_in += 1
            call.audio_cleared(now)
            return b"".join(self._mark_frame(name) for _, name in self._drain_marks())
        stats.other_in[kind] += 1
        return b""

    def _drain_marks(self) -> list[tuple[float, str]]:
        marks = list(self._marks)
        self._marks.clear()
        return marks

    async def hang_up(self) -> None:
        """Send ``stop``; the server then closes the stream."""
        if self.stream is None:
            return
        try:
            await self.stream.send_all(self.stop_frame() + self.due_marks(trio.current_time()))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self.hung_up = True
        with trio.move_on_after(10.0):
            await self.ended.wait()
        await self.stream.aclose()


class CallerTicker:
    """One 20 ms ticker for every call (absolute schedule, overdue slots back to back,
    as ``trio_driver.Ticker``): each slot sends every live call's media frame and
    the marks that have become due, in one write per call."""

    def __init__(self) -> None:
        self.live: list[Caller] = []
        self.lags: list[float] = []
        self.recording = False
        self.finished: dict[Caller, trio.Event] = {}

    async def run(self) -> None:
        base, k = trio.current_time(), 0
        while True:
            slot = base + k * W.FRAME_S
            if slot > trio.current_time():
                await trio.sleep_until(slot)
            await self._deliver(slot, trio.current_time())
            k += 1

    async def _deliver(self, slot: float, now: float) -> None:
        if self.recording and self.live:
            self.lags.append(max(0.0, now - slot))
        for caller in list(self.live):
            out = caller.call.tick(slot, now)
            if out is None:
                self.live.remove(caller)
                self.finished.pop(caller).set()
                continue
            data = caller.frame_for(out[0]) + caller.due_marks(now)
            try:
                await caller.stream.send_all(data)  # type: ignore[union-attr]
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                caller.call.aborted = True
                self.live.remove(caller)
                self.finished.pop(caller).set()

    async def drive(self, caller: Caller) -> None:
        """Until the call's script is over (or its stream broke)."""
        done = self.finished[caller] = trio.Event()
        self.live.append(caller)
        await done.wait()


_PAYLOADS: dict[bytes, str] = {}


def templates_for(sid: str) -> dict[bytes, bytes]:
    """The media templates of every input frame the script can send (the
    payloads are encoded once per process, the stream's sid put in per call)."""
    if not _PAYLOADS:
        for frame in {W.SILENCE_FRAME, *W.SPEECH_FRAMES}:
            _PAYLOADS[frame] = base64.b64encode(to_wire(frame)).decode("ascii")
    return {frame: media_template(sid, payload) for frame, payload in _PAYLOADS.items()}


# ------------------------------------------------------------------ placing calls
async def place_call(client, base_url: str, auth_token: str, call: Call) -> Caller:
    """The signed voice webhook, then the media stream its TwiML points at."""
    from xml.etree import ElementTree

    from voxtrio.transports.telephony.twilio import SIGNATURE_HEADER, compute_signature

    sid = "MZ" + secrets.token_hex(16)
    params = {"CallSid": "CA" + sid[2:], "AccountSid": "AC" + "0" * 32, "From": f"+1555{call.index % 10**7:07d}",
              "To": "+15550000000", "Direction": "inbound", "CallStatus": "ringing"}
    url = f"{base_url}/twilio/answer"
    answer = await client.post(url, data=params, headers={SIGNATURE_HEADER: compute_signature(auth_token, url, params.items())})
    answer.raise_for_status()
    stream = ElementTree.fromstring(answer.content).find("./Connect/Stream")
    if stream is None:
        raise ConnectionError(f"the TwiML has no <Connect><Stream>: {answer.text[:200]}")
    caller = Caller(call, templates_for(sid), sid)
    await caller.connect(str(stream.get("url")))
    return caller


async def run_call(ticker: CallerTicker, client, base_url: str, auth_token: str, call: Call, out: list[Caller]) -> None:
    caller = await place_call(client, base_url, auth_token, call)
    out.append(caller)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller.receive)
        await ticker.drive(caller)
        await caller.hang_up()
        nursery.cancel_scope.cancel()
