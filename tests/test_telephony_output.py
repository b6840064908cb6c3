"""The call's audio output on the virtual clock: chunking, marks as the play
head, clear, and a provider whose marks may never come back."""

import json

import numpy as np
import pytest
import trio
import trio.testing

from voxtrio.audio import AudioFrame
from voxtrio.transports.telephony import TelephonyTransport
from voxtrio.transports.telephony.media_socket import ConnectionClosed
from voxtrio.transports.telephony.twilio import TwilioSerializer
from voxtrio.transports.telephony.vonage import VonageSerializer


class Connection:
    """A media WebSocket in memory: what the transport sends, and what the provider says."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str | bytes]] = []
        self._send, self._receive = trio.open_memory_channel[str | bytes](100)

    async def send_message(self, message):
        self.sent.append((trio.current_time(), message))

    async def get_message(self):
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise ConnectionClosed(1006) from None

    def say(self, message) -> None:
        self._send.send_nowait(message)

    async def aclose(self, code=1000, reason=None):
        self._send.close()

    def json(self) -> list[dict]:
        return [json.loads(m) for _, m in self.sent if isinstance(m, str)]


def twilio_transport(**options):
    serializer = TwilioSerializer()
    serializer.stream_sid = "MZ1"
    return TelephonyTransport(serializer, **options)


def frames(seconds: float, rate: int = 24_000, step: float = 0.01):
    n = int(rate * step)
    return [AudioFrame(np.full(n, 1000, np.int16), rate) for _ in range(int(round(seconds / step)))]


async def test_a_burst_of_frames_goes_out_in_few_messages_each_between_marks(autojump_clock):
    transport, connection = twilio_transport(max_chunk=0.2), Connection()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport.run, connection)
        output = transport.audio_output
        for frame in frames(1.0):
            await output.write(frame)
        output.segment_done()
        await trio.sleep(0.1)
        events = [m["event"] for m in connection.json()]
        # An anchor mark (nothing was queued at the provider), then media, mark, media, mark...
        assert events[0] == "mark" and events[1] == "media"
        assert events.count("media") <= 6 and events[1:] == ["media", "mark"] * events.count("media")
        payload = sum(len(m["media"]["payload"]) * 3 // 4 for m in connection.json() if m["event"] == "media")
        assert abs(payload - 8000) <= 80  # one second at 8 kHz (the resampler's edges aside)
        assert output.queued() == pytest.approx(1.0)  # nothing confirmed yet: nothing heard
        nursery.cancel_scope.cancel()


async def test_by_default_a_refill_goes_out_as_one_message_and_a_clear_stops_it_at_what_was_heard(autojump_clock):
    """The defaults: a Speaker refill (150 ms of 10 ms frames) is one media message, not
    fifteen (a WebSocket message costs about 200 µs each way: measured in
    bench/phone_call.py, 20 ms messages cost a phone call about a fifth more CPU), and a
    clear still goes out at once and leaves the play head where the caller stopped hearing."""
    transport, connection = twilio_transport(), Connection()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport.run, connection)
        output = transport.audio_output
        for frame in frames(0.15):
            await output.write(frame)
        await trio.sleep(0.05)
        media = [m for m in connection.json() if m["event"] == "media"]
        # one message: all of it but what soxr still holds back until the segment ends
        assert len(media) == 1 and len(media[0]["media"]["payload"]) * 3 // 4 >= 800
        anchor = connection.json()[0]["mark"]["name"]
        connection.say(json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": anchor}}))
        await trio.sleep(0.1)  # the caller has heard 0.1 s of it
        sent_before = len(connection.sent)
        output.clear()
        await trio.testing.wait_all_tasks_blocked()  # no time passes: the clear goes out at once
        assert [json.loads(m)["event"] for _, m in connection.sent[sent_before:]] == ["clear"]
        assert output.heard() == pytest.approx(0.1, abs=1e-3) and output.queued() == 0.0
        nursery.cancel_scope.cancel()


async def test_the_play_head_moves_only_from_confirmed_marks(autojump_clock):
    transport, connection = twilio_transport(max_chunk=0.2), Connection()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport.run, connection)
        output = transport.audio_output
        for frame in frames(0.4):
            await output.write(frame)
        output.segment_done()
        await trio.sleep(0.05)
        marks = [m["mark"]["name"] for m in connection.json() if m["event"] == "mark"]
        anchor, first_end, second_end = marks
        await trio.sleep(1.0)
        assert output.heard() == 0.0  # a second later, but nothing came back
        connection.say(json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": anchor}}))
        await trio.sleep(0.1)
        assert output.heard() == pytest.approx(0.1, abs=1e-6)  # playing since the anchor came back
        await trio.sleep(0.3)
        assert output.heard() == pytest.approx(0.2, abs=1e-6)  # no further than the first chunk's end
        connection.say(json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": first_end}}))
        await trio.sleep(0.05)
        assert output.heard() == pytest.approx(0.25, abs=1e-6)
        connection.say(json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": second_end}}))
        await trio.sleep(0.01)
        assert output.heard() == pytest.approx(0.4, abs=1e-3) and output.queued() == pytest.approx(0.0, abs=1e-3)
        assert transport.stats.marks_played == 3
        nursery.cancel_scope.cancel()


async def test_clear_goes_out_first_and_forgets_the_marks_still_out(autojump_clock):
    transport, connection = twilio_transport(max_chunk=0.2, hold=0.05), Connection()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport.run, connection)
        output = transport.audio_output
        for frame in frames(0.4):
            await output.write(frame)
        await trio.sleep(0.01)
        anchor = connection.json()[0]["mark"]["name"]
        connection.say(json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": anchor}}))
        await trio.sleep(0.1)
        for frame in frames(0.1):  # more audio, waiting here when the clear comes
            await output.write(frame)
        sent_before = len(connection.sent)
        output.clear()
        assert output.queued() == 0.0
        await trio.sleep(0.01)
        assert [json.loads(m)["event"] for _, m in connection.sent[sent_before:]] == ["clear"]
        stale = [m["mark"]["name"] for m in connection.json() if m["event"] == "mark"][1:]
        for name in stale:  # Twilio returns the cleared marks: they move nothing
            connection.say(json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": name}}))
        await trio.sleep(0.5)
        assert output.heard() == pytest.approx(0.1, abs=1e-6) and output.queued() == 0.0
        assert transport.stats.clears_sent == 1 and transport.stats.marks_played == 1
        nursery.cancel_scope.cancel()


async def test_without_marks_coming_back_the_play_head_follows_the_clock(autojump_clock):
    serializer = VonageSerializer(16_000)
    transport, connection = TelephonyTransport(serializer, max_chunk=0.2), Connection()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport.run, connection)
        output = transport.audio_output
        for frame in frames(0.45, rate=16_000):
            await output.write(frame)
        output.segment_done()
        await trio.sleep(0.001)
        binary = [m for _, m in connection.sent if isinstance(m, bytes)]
        assert {len(m) for m in binary} == {640} and len(binary) == 23  # 0.45 s in 20 ms frames, the last padded
        assert not any(json.loads(m).get("action") == "clear" for _, m in connection.sent if isinstance(m, str))
        await trio.sleep(0.2)
        assert output.heard() == pytest.approx(0.2, abs=0.01)
        await trio.sleep(1.0)
        assert output.queued() == pytest.approx(0.0, abs=1e-3)
        nursery.cancel_scope.cancel()


async def test_the_callers_audio_reaches_the_session_and_the_end_of_the_stream_ends_it(autojump_clock):
    from voxtrio.transports.base import TransportDisconnected
    from voxtrio.transports.telephony.g711 import ulaw_encode
    import base64

    transport, connection = twilio_transport(), Connection()
    received = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport.run, connection)
        send, receive = trio.open_memory_channel(10)
        payload = base64.b64encode(ulaw_encode(np.full(160, 500, np.int16))).decode()
        for chunk in range(3):
            connection.say(json.dumps({"event": "media", "streamSid": "MZ1", "media": {"track": "inbound", "payload": payload}}))
        connection.say("{not json")
        connection.say(json.dumps({"event": "stop", "streamSid": "MZ1"}))

        async def read():
            async for frame in receive:
                received.append(frame)

        nursery.start_soon(read)
        with pytest.raises(TransportDisconnected, match="stopped"):
            async with send:
                await transport.read_audio(send)
    assert [(f.sample_rate, len(f.data)) for f in received] == [(8000, 160)] * 3
    assert transport.stats.bad_messages == 1


async def test_the_stream_reader_hands_each_frame_to_the_session_itself(autojump_clock):
    """No relay task between the WebSocket and the session: one hop less per 20 ms frame.
    Frames that came before the session read are passed on first, in order."""
    from voxtrio.transports.base import TransportDisconnected
    from voxtrio.transports.telephony.g711 import ulaw_encode
    import base64

    transport, connection = twilio_transport(), Connection()

    def media(level: int) -> str:
        payload = base64.b64encode(ulaw_encode(np.full(160, level, np.int16))).decode()
        return json.dumps({"event": "media", "streamSid": "MZ1", "media": {"track": "inbound", "payload": payload}})

    class Input:
        """The session's input channel, noting which task delivered each frame."""

        def __init__(self) -> None:
            self.got: list[tuple[int, object]] = []

        async def send(self, frame) -> None:
            self.send_nowait(frame)

        def send_nowait(self, frame) -> None:
            self.got.append((int(frame.data[0]), trio.lowlevel.current_task()))

    session_input = Input()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport.run, connection)
        connection.say(media(100))  # before the session reads: held
        await trio.testing.wait_all_tasks_blocked()
        reader = trio.lowlevel.current_task()

        async def read() -> None:
            nonlocal reader
            reader = trio.lowlevel.current_task()
            with pytest.raises(TransportDisconnected):
                await transport.read_audio(session_input)  # type: ignore[arg-type]

        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        connection.say(media(1000))
        connection.say(media(3000))
        await trio.testing.wait_all_tasks_blocked()
        connection.say(json.dumps({"event": "stop", "streamSid": "MZ1"}))
    levels = [level for level, _ in session_input.got]
    assert levels[0] < levels[1] < levels[2]  # in order, the held frame first
    assert session_input.got[0][1] is reader  # the held one: passed on by read_audio
    assert all(task is not reader for _, task in session_input.got[1:])  # the rest: by the stream's reader
    assert transport.stats.inbound_frames == 3 and transport.stats.inbound_dropped == 0


async def test_audio_that_came_before_the_session_read_reaches_it_even_after_the_call_ended(autojump_clock):
    from voxtrio.transports.base import TransportDisconnected
    from voxtrio.transports.telephony.g711 import ulaw_encode
    import base64

    transport, connection = twilio_transport(), Connection()
    payload = base64.b64encode(ulaw_encode(np.full(160, 500, np.int16))).decode()
    for _ in range(2):
        connection.say(json.dumps({"event": "media", "streamSid": "MZ1", "media": {"track": "inbound", "payload": payload}}))
    connection.say(json.dumps({"event": "stop", "streamSid": "MZ1"}))
    await transport.run(connection)  # the whole stream, before any session reads
    send, receive = trio.open_memory_channel(10)
    with pytest.raises(TransportDisconnected):
        await transport.read_audio(send)
    assert [len(f.data) for f in [receive.receive_nowait(), receive.receive_nowait()]] == [160, 160]


async def test_a_caller_gone_while_the_agent_speaks_ends_the_stream_quietly(autojump_clock):
    class Hung(Connection):
        async def send_message(self, message):
            raise ConnectionClosed(1006)

    transport, connection = twilio_transport(), Hung()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport.run, connection)
        for frame in frames(0.2):
            await transport.audio_output.write(frame)
        with trio.fail_after(5):
            await transport.ended.wait()
        connection.say(json.dumps({"event": "stop", "streamSid": "MZ1"}))  # the run ends without an error
    assert transport.end_reason == "the stream closed"
