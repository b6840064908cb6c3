"""The providers' media formats: G.711 tables, each serializer on its documented messages."""

import base64
import json
import warnings

import numpy as np
import pytest

from voxtrio.transports.telephony import MediaProtocolError
from voxtrio.transports.telephony.base import (
    AudioCleared,
    DtmfPressed,
    InboundAudio,
    MarkPlayed,
    StreamFailed,
    StreamStarted,
    StreamStopped,
)
from voxtrio.transports.telephony.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from voxtrio.transports.telephony.plivo import PlivoSerializer
from voxtrio.transports.telephony.telnyx import TelnyxSerializer
from voxtrio.transports.telephony.twilio import TwilioSerializer
from voxtrio.transports.telephony.vonage import VonageSerializer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop")  # the oracle (Python 3.11/3.12)

EVERY_SAMPLE = np.arange(65_536, dtype=np.uint32).astype(np.uint16).view(np.int16)
EVERY_CODE = bytes(range(256))


def test_ulaw_matches_the_reference_quantizer_on_every_input():
    assert ulaw_encode(EVERY_SAMPLE) == audioop.lin2ulaw(EVERY_SAMPLE.tobytes(), 2)
    assert ulaw_decode(EVERY_CODE).tobytes() == audioop.ulaw2lin(EVERY_CODE, 2)


def test_alaw_matches_the_reference_quantizer_on_every_input():
    assert alaw_encode(EVERY_SAMPLE) == audioop.lin2alaw(EVERY_SAMPLE.tobytes(), 2)
    assert alaw_decode(EVERY_CODE).tobytes() == audioop.alaw2lin(EVERY_CODE, 2)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def speech(n: int = 160) -> np.ndarray:
    return (8000 * np.sin(np.arange(n) / 3)).astype(np.int16)


def test_twilio_stream_messages():
    s = TwilioSerializer()
    assert s.decode(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})) == []
    start = {
        "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
        "start": {"accountSid": "AC1", "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound"],
                  "customParameters": {"caller": "+1555"},
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
    }
    assert s.decode(json.dumps(start)) == [StreamStarted("CA1", "MZ1", 8000, {"caller": "+1555"})]
    frame = ulaw_encode(speech())
    media = {"event": "media", "sequenceNumber": "3", "streamSid": "MZ1",
             "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": b64(frame)}}
    [audio] = s.decode(json.dumps(media))
    assert isinstance(audio, InboundAudio) and ulaw_encode(audio.samples) == frame
    dtmf = {"event": "dtmf", "streamSid": "MZ1", "sequenceNumber": "5", "dtmf": {"track": "inbound_track", "digit": "7"}}
    assert s.decode(json.dumps(dtmf)) == [DtmfPressed("7")]
    assert s.decode(json.dumps({"event": "mark", "sequenceNumber": "4", "streamSid": "MZ1", "mark": {"name": "m1"}})) == [MarkPlayed("m1")]
    assert s.decode(json.dumps({"event": "stop", "sequenceNumber": "9", "streamSid": "MZ1", "stop": {}})) == [StreamStopped()]
    out = json.loads(s.encode_audio(speech())[0])
    assert out == {"event": "media", "streamSid": "MZ1", "media": {"payload": b64(ulaw_encode(speech()))}}
    assert json.loads(s.encode_mark("m2")) == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "m2"}}
    assert json.loads(s.encode_clear()) == {"event": "clear", "streamSid": "MZ1"}


@pytest.mark.parametrize(
    "message",
    ["not json", "[1, 2]", '{"event": "media", "media": {}}', '{"event": "mark"}',
     '{"event": "media", "media": {"track": "inbound", "payload": "%%%"}}', '{"event": "surprise"}'],
)
def test_twilio_bad_messages_are_typed_errors(message):
    with pytest.raises(MediaProtocolError):
        TwilioSerializer().decode(message)


def test_nothing_goes_to_twilio_before_its_start_message():
    with pytest.raises(MediaProtocolError, match="start"):
        TwilioSerializer().encode_clear()


def telnyx_media(chunk: int, samples: np.ndarray, encode=ulaw_encode) -> str:
    return json.dumps({"event": "media", "sequence_number": str(chunk + 1), "stream_id": "S1",
                       "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20),
                                 "payload": b64(encode(samples))}})


def test_telnyx_stream_messages():
    s = TelnyxSerializer("PCMA")
    start = {"event": "start", "sequence_number": "1", "stream_id": "S1",
             "start": {"user_id": "u", "call_control_id": "v3:cc", "client_state": "",
                       "media_format": {"encoding": "PCMA", "sample_rate": 8000, "channels": 1}}}
    assert s.decode(json.dumps(start)) == [StreamStarted("v3:cc", "S1", 8000)]
    assert s.decode(telnyx_media(1, speech(), alaw_encode)) == []  # the first frame waits for the second
    first, second = s.decode(telnyx_media(2, speech(), alaw_encode))
    assert alaw_encode(first.samples) == alaw_encode(speech())
    assert s.decode(json.dumps({"event": "dtmf", "stream_id": "S1", "dtmf": {"digit": "#"}})) == [DtmfPressed("#")]
    assert s.decode(json.dumps({"event": "mark", "stream_id": "S1", "mark": {"name": "x"}})) == [MarkPlayed("x")]
    assert isinstance(s.decode(json.dumps({"event": "error", "payload": {"code": 100003}}))[0], StreamFailed)
    assert s.decode(json.dumps({"event": "stop", "stream_id": "S1"})) == [StreamStopped()]
    assert json.loads(s.encode_audio(speech())[0]) == {"event": "media", "media": {"payload": b64(alaw_encode(speech()))}}
    assert json.loads(s.encode_mark("m")) == {"event": "mark", "mark": {"name": "m"}}
    assert json.loads(s.encode_clear()) == {"event": "clear"}


def test_telnyx_media_is_put_back_in_chunk_order():
    s = TelnyxSerializer()
    frames = {chunk: np.full(160, chunk * 100, np.int16) for chunk in range(1, 9)}
    order = [2, 1, 3, 5, 4, 6, 8, 7]  # the very first pair swapped too
    played = [a.samples for chunk in order for a in s.decode(telnyx_media(chunk, frames[chunk]))]
    assert [int(ulaw_encode(p)[0]) for p in played] == [int(ulaw_encode(frames[c])[0]) for c in range(1, 9)]
    assert s.frames_lost == s.frames_late == 0


def test_telnyx_gives_up_on_a_lost_frame_and_keeps_the_timing():
    s = TelnyxSerializer(reorder_window=2)
    frames = {chunk: np.full(160, 1000, np.int16) for chunk in range(1, 8)}
    played = []
    for chunk in (1, 3, 4, 5, 6, 2):  # 2 comes too late
        played += [a.samples for a in s.decode(telnyx_media(chunk, frames[chunk]))]
    assert len(played) == 6  # 1, silence for 2 (given up when 5 came), 3, 4, 5, 6
    assert not played[1].any() and played[2].any()
    assert s.frames_lost == 1 and s.frames_late == 1


def test_telnyx_l16_is_network_byte_order_at_16_khz():
    s = TelnyxSerializer("L16")
    assert s.sample_rate == 16_000
    samples = speech(320)
    s.decode(telnyx_media(1, samples, lambda x: x.astype(">i2").tobytes()))
    audio, _ = s.decode(telnyx_media(2, samples, lambda x: x.astype(">i2").tobytes()))
    assert np.array_equal(audio.samples, samples)
    assert base64.b64decode(json.loads(s.encode_audio(samples)[0])["media"]["payload"]) == samples.astype(">i2").tobytes()
    with pytest.raises(MediaProtocolError, match="8000 Hz"):
        s.decode(json.dumps({"event": "start", "stream_id": "S", "start": {
            "call_control_id": "c", "media_format": {"encoding": "PCMU", "sample_rate": 8000}}}))


def test_plivo_stream_messages():
    s = PlivoSerializer()
    start = {"sequenceNumber": 0, "event": "start", "extra_headers": "{}",
             "start": {"callId": "c1", "streamId": "s1", "accountId": "MA1", "tracks": ["inbound"],
                       "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}}}
    assert s.decode(json.dumps(start)) == [StreamStarted("c1", "s1", 8000)]
    media = {"sequenceNumber": 1, "streamId": "s1", "event": "media",
             "media": {"track": "inbound", "timestamp": "20", "chunk": 1, "payload": b64(ulaw_encode(speech()))}}
    assert isinstance(s.decode(json.dumps(media))[0], InboundAudio)
    assert s.decode(json.dumps({"event": "playedStream", "streamId": "s1", "name": "cp"})) == [MarkPlayed("cp")]
    assert s.decode(json.dumps({"event": "clearedAudio", "streamId": "s1"})) == [AudioCleared()]
    assert s.decode(json.dumps({"event": "dtmf", "streamId": "s1", "dtmf": {"digit": "3"}})) == [DtmfPressed("3")]
    out = json.loads(s.encode_audio(speech())[0])
    assert out == {"event": "playAudio", "streamId": "s1", "media": {
        "contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": b64(ulaw_encode(speech()))}}
    assert json.loads(s.encode_mark("cp")) == {"event": "checkpoint", "streamId": "s1", "name": "cp"}
    assert json.loads(s.encode_clear()) == {"event": "clearAudio", "streamId": "s1"}
    with pytest.raises(MediaProtocolError, match="x-mulaw"):
        PlivoSerializer().decode(json.dumps({**start, "start": {**start["start"], "mediaFormat": {"encoding": "audio/x-l16"}}}))


def test_vonage_stream_messages():
    s = VonageSerializer(8000)
    connected = {"event": "websocket:connected", "content-type": "audio/l16;rate=16000", "caller-id": "447700900123"}
    assert s.decode(json.dumps(connected)) == [StreamStarted(None, None, 16_000, {"caller-id": "447700900123"})]
    assert s.sample_rate == 16_000 and s.frame_samples() == 320
    samples = speech(320)
    [audio] = s.decode(samples.astype("<i2").tobytes())
    assert np.array_equal(audio.samples, samples)
    assert s.decode(json.dumps({"event": "websocket:dtmf", "digit": "5", "duration": 260})) == [DtmfPressed("5", 0.26)]
    assert s.decode(json.dumps({"event": "websocket:dtmf", "dtmf": {"digit": "9", "duration": 100}})) == [DtmfPressed("9", 0.1)]
    assert s.decode(json.dumps({"event": "websocket:cleared"})) == [AudioCleared()]
    assert s.decode(json.dumps({"event": "websocket:notify", "payload": {"name": "v0-3"}})) == [MarkPlayed("v0-3")]
    frames = s.encode_audio(speech(640))
    assert [len(f) for f in frames] == [640, 640]
    assert json.loads(s.encode_clear()) == {"action": "clear"}
    assert json.loads(s.encode_mark("n")) == {"action": "notify", "payload": {"name": "n"}}
    with pytest.raises(MediaProtocolError, match="odd"):
        s.decode(b"\x00\x01\x02")
    with pytest.raises(MediaProtocolError, match="l16"):
        VonageSerializer().decode(json.dumps({"event": "websocket:connected", "content-type": "audio/pcmu"}))
