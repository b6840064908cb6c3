"""Checks of "phone call v1"'s pure parts (the caller's frames, the server STT's
end-of-speech rule) and one short run of the whole thing on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from harness import phone_caller as P  # noqa: E402
from harness import workload as W  # noqa: E402
from harness.call import QUICK, Call  # noqa: E402
from phone_server import MIN_TURN_FRAMES, EndOfSpeech  # noqa: E402

from voxtrio.transports.telephony.base import InboundAudio  # noqa: E402
from voxtrio.transports.telephony.twilio import TwilioSerializer  # noqa: E402

SID = "MZ" + "0" * 32


def server_frame(payload: bytes, opcode: int = P.OP_TEXT) -> bytes:
    """A server frame (unmasked), as trio-websocket sends it."""
    size = len(payload)
    if size < 126:
        return bytes([0x80 | opcode, size]) + payload
    if size < 65536:
        return bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big") + payload
    return bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big") + payload


def unmask(frame: bytes) -> tuple[int, bytes]:
    """Read one client frame the way a server must (with its masking key)."""
    size, offset = frame[1] & 0x7F, 2
    if size == 126:
        size, offset = int.from_bytes(frame[2:4], "big"), 4
    elif size == 127:
        size, offset = int.from_bytes(frame[2:10], "big"), 10
    assert frame[1] & 0x80, "a client frame must be masked"
    key, payload = frame[offset : offset + 4], frame[offset + 4 : offset + 4 + size]
    assert len(payload) == size
    return frame[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_client_frames_are_masked_frames_of_every_length(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert unmask(P.client_frame(payload)) == (P.OP_TEXT, payload)
    assert unmask(P.client_frame(b"\x03\xe8", P.OP_CLOSE)) == (P.OP_CLOSE, b"\x03\xe8")


def test_parse_frames_takes_whole_frames_and_keeps_a_partial_one():
    big = b"x" * 70_000
    data = server_frame(b"one") + server_frame(b"y" * 300) + server_frame(big) + server_frame(b"", P.OP_PING)
    buffer = bytearray()
    seen = []
    for i in range(0, len(data), 997):  # the socket delivers arbitrary pieces
        buffer += data[i : i + 997]
        seen += P.parse_frames(buffer)
    assert seen == [(P.OP_TEXT, b"one"), (P.OP_TEXT, b"y" * 300), (P.OP_TEXT, big), (P.OP_PING, b"")]
    assert buffer == bytearray()
    buffer = bytearray(server_frame(b"abc")[:3])
    assert P.parse_frames(buffer) == [] and len(buffer) == 3


def test_inbound_media_is_what_twilio_sends_and_the_server_decodes_the_script_audio():
    templates = P.templates_for(SID)
    assert set(templates) == {W.SILENCE_FRAME, *W.SPEECH_FRAMES}
    caller = Caller()
    _, first = unmask(caller.frame_for(W.SPEECH_FRAMES[3]))
    _, second = unmask(caller.frame_for(W.SILENCE_FRAME))
    message = json.loads(first)
    assert message["event"] == "media" and message["streamSid"] == SID
    assert message["media"]["track"] == "inbound"
    assert [message["sequenceNumber"], message["media"]["chunk"], message["media"]["timestamp"]] == ["2", "1", "20"]
    assert json.loads(second)["sequenceNumber"] == "3"
    serializer = TwilioSerializer()
    [speech] = serializer.decode(first)
    [silence] = serializer.decode(second)
    assert isinstance(speech, InboundAudio) and len(speech.samples) == P.WIRE_FRAME
    assert W.is_speech(speech.samples) and not silence.samples.any()
    # every other sample of the 16 kHz frame, through μ-law and back
    original = np.frombuffer(W.SPEECH_FRAMES[3], "<i2")[::2].astype(int)
    assert np.abs(speech.samples - original).max() <= 0.04 * W.AMPLITUDE


@pytest.mark.parametrize("samples", [1, 159, 160, 161, 162, 1600, 1601])
def test_outbound_media_is_counted_from_its_base64_length(samples):
    serializer = TwilioSerializer()
    serializer.stream_sid = SID
    [message] = serializer.encode_audio(np.arange(samples, dtype=np.int16))
    assert P.message_kind(message.encode()) == "media"
    assert P.payload_samples(message.encode()) == samples
    frames = P.split_frames(samples)
    assert sum(frames) == samples * 3 and all(n <= 480 for n in frames) and len(frames) == -(-samples // 160)


class Caller(P.Caller):
    def __init__(self) -> None:
        super().__init__(Call(QUICK), P.templates_for(SID), SID)


def test_media_plays_on_the_timeline_and_a_mark_comes_back_once_it_has_played():
    serializer = TwilioSerializer()
    serializer.stream_sid = SID
    caller = Caller()
    call = caller.call
    call.answering = 0  # a reply is due
    media = serializer.encode_audio(np.zeros(1600, np.int16))[0].encode()  # 200 ms
    assert caller.on_message(media, 10.0) == b""
    assert call.playout.end == pytest.approx(10.2) and call.frames_out == 10
    assert caller.on_message(serializer.encode_mark("m1").encode(), 10.0) == b""  # not played yet
    assert caller.due_marks(10.19) == b""
    back = caller.due_marks(10.2)
    assert json.loads(unmask(back)[1])["mark"]["name"] == "m1"
    # a mark after everything has played comes back at once
    opcode, payload = unmask(caller.on_message(serializer.encode_mark("m2").encode(), 11.0))
    assert json.loads(payload) == {"event": "mark", "sequenceNumber": "3", "streamSid": SID, "mark": {"name": "m2"}}


def test_clear_stops_playout_at_once_and_returns_the_pending_marks():
    serializer = TwilioSerializer()
    serializer.stream_sid = SID
    caller = Caller()
    call = caller.call
    call.answering = 0
    caller.on_message(serializer.encode_audio(np.zeros(8000, np.int16))[0].encode(), 5.0)  # 1 s
    caller.on_message(serializer.encode_mark("a").encode(), 5.0)
    caller.on_message(serializer.encode_mark("b").encode(), 5.0)
    returned = caller.on_message(serializer.encode_clear().encode(), 5.3)
    names = []
    buffer = bytearray(returned)
    while buffer:
        opcode, payload = unmask(bytes(buffer))
        names.append(json.loads(payload)["mark"]["name"])
        del buffer[: 2 + 4 + len(payload)]
    assert names == ["a", "b"]
    assert call.playout.end == 5.3 and call.clears == 1 and call.replies[0].cleared
    assert caller.due_marks(100.0) == b""


def frames(n: int, speech: bool) -> list[np.ndarray]:
    chunk = np.frombuffer(W.SPEECH_FRAMES[0] if speech else W.SILENCE_FRAME, "<i2")
    return [chunk] * n


def test_end_of_speech_is_heard_in_the_audio_100_ms_after_the_last_speech_frame():
    rule = EndOfSpeech(QUICK)
    heard, t = [], 0.0
    audio = frames(50, False) + frames(50, True) + frames(30, False) + frames(MIN_TURN_FRAMES - 1, True)
    audio += frames(30, False) + frames(50, True) + frames(5, False) + frames(50, True) + frames(3, False)
    audio += frames(50, True) + frames(3, False)  # a fourth turn: QUICK has three
    for pcm in audio:
        t += 0.02
        if (ended := rule.feed(pcm, t)) is not None:
            heard.append((round(ended[0], 6), ended[1], ended[2], round(t, 6)))
    # due 100 ms after the last speech frame, known one frame after it
    assert heard == [
        (round(2.0 + 0.1, 6), 0, QUICK.transcript(0), 2.02),
        (round(4.38 + 0.1, 6), 1, QUICK.transcript(1), 4.4),  # the short burst in between is no turn
        (round(5.48 + 0.1, 6), 2, QUICK.transcript(2), 5.5),
    ]
    assert QUICK.transcript(0) == W.TOOL_TEXT


def test_a_short_phone_run_answers_every_turn_and_records_what_was_heard():
    bench = os.path.join(os.path.dirname(__file__), "..")
    run = subprocess.run(
        [sys.executable, os.path.join(bench, "phone_call.py"), "--quick", "--sessions", "2", "--stagger", "1",
         "--no-warmup", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    r = json.loads(run.stdout)
    assert r["workload"] == "phone-call-v1" and r["sessions"] == 2
    assert r["turns_answered"] == r["turns_expected"] == 6
    assert r["anomalies"]["leaked_frames"] == 0 and r["anomalies"]["tts_mismatches"] == 0
    p = r["phone"]
    assert p["inbound_dropped"] == 0 and p["inbound_frames"] == p["media_sent_by_callers"]
    assert p["clears_sent"] >= 2 and p["finals"] == 6
    assert p["media_ms_max"] > 20  # agent audio goes in messages longer than one frame
    history = p["history"]
    assert history["interrupted"] == 2 and history["whole_replies"] == 4
    assert 0 < history["interrupted_chars_max"] < len(W.REPLY)
