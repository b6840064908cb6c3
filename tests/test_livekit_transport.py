"""The LiveKit transport with no server.

Layer (a): the real native media path. A LoopbackRoom plays the room's
signalling, but the audio goes through the SDK's own AudioSource, LocalAudioTrack
and AudioStream (native resampling, framing, the 200 ms queue and clear_queue).
Layer (c): the connect path of a real ``rtc.Room`` against a loopback endpoint
that is not LiveKit. These run on the real clock (the SDK has its own threads);
each is bounded by a deadline, and nothing asserts on how long anything took.
"""

from __future__ import annotations

import threading
from functools import partial

import numpy as np
import pytest
import trio

pytest.importorskip("livekit.rtc")
pytestmark = pytest.mark.thorough  # a loopback room bridged to asyncio: seconds a test

import voxtrio  # noqa: E402
from voxtrio.audio import AudioFrame  # noqa: E402
from voxtrio.testing import LLMResponse, ScriptedLLM  # noqa: E402
from voxtrio.transports.base import TransportDisconnected  # noqa: E402
from voxtrio.transports.livekit import (  # noqa: E402
    DataReceived,
    LiveKitConnectError,
    LiveKitTransport,
    ParticipantLeft,
    ParticipantTimeout,
    Reconnected,
    Reconnecting,
    TextReceived,
)
from voxtrio.testing.livekit_room import LoopbackRoom  # noqa: E402

from livekit_helpers import ToneTTS, collect_heard, dominant_frequency, loud, tone, wait_for_loud  # noqa: E402

DEADLINE = 20


def bridge_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "voxtrio-livekit" and t.is_alive()]


class Greeter(voxtrio.Agent):
    def __init__(self, *, interruptible: bool = True) -> None:
        super().__init__(instructions="greet")
        self.interruptible = interruptible

    async def on_enter(self) -> None:
        self.session.say("Hello there", allow_interruptions=self.interruptible)


async def join_when_ready(room: LoopbackRoom, identity: str = "user", **options) -> None:
    await room.agent_joined.wait()
    await room.join(identity, **options)


async def test_the_callers_tone_reaches_the_session_at_the_pipeline_rate_in_20ms_frames():
    room = LoopbackRoom()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(join_when_ready, room)
            async with LiveKitTransport(room=room) as transport:
                assert transport.linked_identity == "user"
                send, receive = trio.open_memory_channel[AudioFrame](200)
                nursery.start_soon(transport.read_audio, send)
                frames = []
                # The caller may still be talking when enough has been heard: stop
                # them before the transport (and its bridge) closes under them.
                async with trio.open_nursery() as caller:
                    caller.start_soon(room.say, tone(0.6, 440, 48_000))
                    async for frame in receive:
                        frames.append(frame)
                        if sum(loud(f.data) for f in frames) >= 20:
                            break
                    caller.cancel_scope.cancel()
    assert {(f.sample_rate, f.num_channels, len(f.data)) for f in frames} == {(16_000, 1, 320)}
    heard = np.concatenate([f.data for f in frames if loud(f.data)])
    assert abs(dominant_frequency(heard, 16_000) - 440) < 15
    assert bridge_threads() == []


async def test_the_agents_audio_is_heard_in_the_room_and_clear_cuts_it():
    room = LoopbackRoom()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(join_when_ready, room)
            async with LiveKitTransport(room=room, output_queue_ms=200) as transport:
                output = transport.audio_output
                assert output is not None
                # 22.05 kHz, as Piper speaks: the output resamples to its 24 kHz source.
                await output.write(AudioFrame(tone(0.4, 1000, 22_050), 22_050))
                played = await wait_for_loud(room.heard)
                assert abs(dominant_frequency(np.concatenate(played), 16_000) - 1000) < 15
                assert len(played) >= 18  # 0.4 s is 20 frames; the first and last may be partly silent

                await output.write(AudioFrame(tone(0.2, 1000, 24_000), 24_000))
                output.clear()
                after_clear = await collect_heard(room.heard, 25)
                await output.write(AudioFrame(tone(0.2, 1000, 24_000), 24_000))
                uncut = await collect_heard(room.heard, 25)
    cut_loud = sum(map(loud, after_clear))
    uncut_loud = sum(map(loud, uncut))
    assert uncut_loud >= 9  # the whole 200 ms
    assert cut_loud <= uncut_loud // 2  # most of the queue was dropped
    assert room.agent_left.is_set()


async def test_the_linked_participant_leaving_ends_the_input_with_transport_disconnected():
    room = LoopbackRoom()
    left = []
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(join_when_ready, room)
            async with LiveKitTransport(room=room) as transport:
                transport.on("participant_left", left.append)
                send, _receive = trio.open_memory_channel[AudioFrame](1000)
                nursery.start_soon(room.leave, "user")
                with pytest.raises(TransportDisconnected, match="CLIENT_INITIATED"):
                    await transport.read_audio(send)
    assert left == [ParticipantLeft("user", "CLIENT_INITIATED", True)]


async def test_a_participant_dropping_out_is_replaced_by_the_next_one_to_join():
    room = LoopbackRoom()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(join_when_ready, room)
            async with LiveKitTransport(room=room) as transport:
                linked = trio.Event()
                transport.on("participant_linked", lambda event: linked.set())
                await room.leave("user", reason="CONNECTION_TIMEOUT")  # not a reason to close
                await room.join("second")
                await linked.wait()
                assert transport.linked_identity == "second"
                send, receive = trio.open_memory_channel[AudioFrame](500)
                nursery.start_soon(transport.read_audio, send)
                nursery.start_soon(partial(room.say, tone(0.4, 300, 48_000), identity="second"))
                frame = await receive.receive()
                while not loud(frame.data):
                    frame = await receive.receive()
                nursery.cancel_scope.cancel()


async def test_only_the_named_participant_is_linked():
    room = LoopbackRoom()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:

            async def two_join() -> None:
                await join_when_ready(room, "someone-else")
                await room.join("caller", kind="PARTICIPANT_KIND_SIP")

            nursery.start_soon(two_join)
            async with LiveKitTransport(room=room, participant_identity="caller") as transport:
                assert transport.linked_identity == "caller"


async def test_an_agent_participant_is_not_linked_and_the_wait_is_bounded():
    room = LoopbackRoom()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(join_when_ready, room, "other-agent", kind="PARTICIPANT_KIND_AGENT"))
            with pytest.raises(ParticipantTimeout):
                async with LiveKitTransport(room=room, participant_timeout=0.5):
                    pass
    assert room.agent_left.is_set()
    assert bridge_threads() == []


async def test_data_text_and_reconnect_events_reach_trio():
    room = LoopbackRoom()
    seen: list[object] = []
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(join_when_ready, room)
            async with LiveKitTransport(room=room, text_topics=("lk.chat", "app.notes")) as transport:
                got_all = trio.Event()

                def record(event: object) -> None:
                    seen.append(event)
                    if len(seen) == 4:
                        got_all.set()

                for name in ("data_received", "text_received", "reconnecting", "reconnected"):
                    transport.on(name, record)
                await room.send_data(b"\x01\x02", topic="app")
                await room.chat("note this", topic="app.notes")
                await room.reconnect()
                await got_all.wait()
                await transport.send_data("pong", topic="app")
                stream = await transport.stream_text(topic="app.notes", attributes={"k": "v"})
                await stream.write("hello ")
                await stream.write("there")
                await stream.aclose(attributes={"done": "true"})
    assert seen == [
        DataReceived(b"\x01\x02", "app", "user"),
        TextReceived("app.notes", "note this", "user", {}),
        Reconnecting(),
        Reconnected(),
    ]
    assert room.data_sent == [(b"pong", "app")]
    [written] = room.text_streams
    assert (written.topic, written.text, written.attributes, written.final_attributes) == (
        "app.notes", "hello there", {"k": "v"}, {"done": "true"},
    )


async def test_the_room_going_away_cancels_the_body_and_says_why():
    room = LoopbackRoom()
    reached_the_end = False
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(join_when_ready, room)
            async with LiveKitTransport(room=room) as transport:
                await room.drop(reason="ROOM_DELETED")
                await trio.sleep_forever()
            reached_the_end = True
    assert reached_the_end
    assert transport.disconnect_reason == "ROOM_DELETED"
    assert room.agent_left.is_set()


async def test_a_session_in_the_room_greets_and_closes_when_the_caller_hangs_up():
    room = LoopbackRoom()
    session = voxtrio.AgentSession(llm=ScriptedLLM([LLMResponse(input="x", content="y")]), tts=ToneTTS())
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(join_when_ready, room)
            async with LiveKitTransport(room=room) as transport:
                async with trio.open_nursery() as call:
                    call.start_soon(session.main, Greeter(), transport)
                    greeting = await wait_for_loud(room.heard)
                    await room.leave("user")
    assert abs(dominant_frequency(np.concatenate(greeting), 16_000) - 660) < 15
    assert session.last_close is not None and session.last_close.reason == "participant_disconnected"


async def test_joining_something_that_is_not_livekit_is_a_typed_error_and_the_thread_is_joined():
    async def not_livekit(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, not_livekit, 0, host="127.0.0.1"))
            port = listener.socket.getsockname()[1]
            with pytest.raises(LiveKitConnectError, match="cannot join"):
                async with LiveKitTransport(f"ws://127.0.0.1:{port}", "not-a-token", connect_timeout=2.0):
                    pass
            nursery.cancel_scope.cancel()
    assert bridge_threads() == []


async def test_livekit_front_ends_get_the_agent_state_transcripts_and_typed_input():
    from voxtrio.testing import ScriptedSTT, UserSpeech

    room = LoopbackRoom()
    session = voxtrio.AgentSession(
        stt=ScriptedSTT([UserSpeech(start=0.1, end=0.3, transcript="good morning to you")]),
        llm=ScriptedLLM(
            [
                LLMResponse(input="good morning to you", content="Morning"),
                LLMResponse(input="what time is it", content="Noon"),
            ]
        ),
        tts=ToneTTS(),
    )
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(join_when_ready, room)
            async with LiveKitTransport(room=room) as transport:
                replied = trio.Event()
                session.on(
                    "conversation_item_added",
                    lambda event: getattr(event.item, "content", None) == "Noon" and replied.set(),
                )
                async with trio.open_nursery() as call:
                    call.start_soon(session.main, Greeter(interruptible=False), transport)
                    await wait_for_loud(room.heard)
                    await room.chat("what time is it")
                    await replied.wait()
                    await session.aclose()
                track_sid = transport.track_sid
    transcripts = [s for s in room.text_streams if s.topic == "lk.transcription"]
    agent_lines = [s for s in transcripts if s.sender_identity == "agent"]
    assert agent_lines[0].text == "Hello there" and agent_lines[-1].text == "Noon"
    for stream in agent_lines:
        assert stream.closed and stream.attributes["lk.transcription_final"] == "false"
        assert stream.final_attributes == {"lk.transcribed_track_id": track_sid, "lk.transcription_final": "true"}
        assert stream.attributes["lk.segment_id"] and stream.attributes["lk.transcribed_track_id"] == track_sid
    user_lines = [s for s in transcripts if s.sender_identity == "user"]
    assert user_lines[-1].text == "good morning to you"
    assert user_lines[-1].final_attributes["lk.transcription_final"] == "true"
    assert room.attributes["lk.agent.state"] in {"listening", "speaking", "thinking"}
    assert room.attribute_history.count("speaking") >= 2  # the greeting and the reply
