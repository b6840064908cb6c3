"""OpenAI's realtime model against a local server that speaks the Realtime protocol.

The clock: trio's MockClock with autojump, real sockets on loopback (as in
test_deepgram.py). The user's audio is pushed in 20 ms frames at real-time
pace; the server's turns are scripted in seconds of that audio.
"""

import json
import os

import numpy as np
import pytest
import trio

import voxtrio
from voxtrio.audio import AudioFrame, PlayoutTimeline
from voxtrio.chat import ChatContext
from voxtrio.options import APIConnectOptions
from voxtrio.providers import openai
from voxtrio.providers.base import (
    InputSpeechStarted,
    InputSpeechStopped,
    InputTranscription,
    RealtimeError,
    RealtimeFunctionCall,
    RealtimeReconnected,
    RealtimeUsage,
    ResponseAudio,
    ResponseCreated,
    ResponseDone,
    ResponseTextDelta,
    ResponseTranscriptDelta,
)
from voxtrio.tools import function_tool

from loopback.openai_realtime import Call, Fail, FakeRealtime, Reply, Say, ServerError, Turn
from loopback.server import Fault


@function_tool
async def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: The city's name.
    """
    return "sunny"


def make_model(server, **options):
    return openai.RealtimeModel(api_key="test-key", base_url=f"{server.url}/v1/realtime", **options)


async def converse(model, seconds, *, on_event=None, conn_options=APIConnectOptions(), **session):
    """Push ``seconds`` of 16 kHz silence in 20 ms frames at real-time pace
    and collect the events, with the time each came; ``on_event(session,
    event)`` may act on them. Returns (events, the session)."""
    events = []
    async with model.session(conn_options=conn_options, **session) as live:

        async def read():
            async for event in live.events:
                events.append((trio.current_time(), event))
                if on_event is not None:
                    await on_event(live, event)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            start = trio.current_time()
            for index in range(int(round(seconds / 0.02))):
                await trio.sleep_until(start + (index + 1) * 0.02)
                await live.push_audio(AudioFrame(np.zeros(320, np.int16), 16_000, timestamp=index * 0.02))
            nursery.cancel_scope.cancel()
    return events, live


def of(events, *kinds):
    return [event for _, event in events if isinstance(event, kinds)]


def sent(connection, kind):
    return [event for event in connection.texts if event.get("type") == kind]


# -- construction ---------------------------------------------------------------------


def test_a_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(voxtrio.MissingAPIKeyError, match="OPENAI_API_KEY"):
        openai.RealtimeModel()


def test_options_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="turn_detection"):
        openai.RealtimeModel(api_key="k", turn_detection="vad")
    with pytest.raises(ValueError, match="modalities"):
        openai.RealtimeModel(api_key="k", modalities="video")
    with pytest.raises(ValueError):
        openai.SemanticVAD(eagerness="eager")
    with pytest.raises(voxtrio.AudioFormatError):
        openai.RealtimeModel(api_key="k", sample_rate=100)
    text_only = openai.RealtimeModel(api_key="k", modalities="text", turn_detection=None, transcription_model=None)
    assert not text_only.capabilities.audio_output
    assert not text_only.capabilities.turn_detection and not text_only.capabilities.user_transcription


# -- the protocol ----------------------------------------------------------------------


async def test_the_session_is_configured_then_given_the_conversation(autojump_clock):
    server = FakeRealtime()
    chat_ctx = ChatContext()
    chat_ctx.add_message(role="user", content="My name is Ada.")
    chat_ctx.add_message(role="assistant", content="Hello Ada.")
    async with server.running():
        model = make_model(
            server, model="gpt-realtime-mini", voice="cedar", speed=1.1,
            turn_detection=openai.SemanticVAD(eagerness="low", interrupt_response=False),
            transcription_language="en", noise_reduction="near_field", max_output_tokens=400,
        )
        await converse(model, 0.2, instructions="Be brief.", chat_ctx=chat_ctx, tools=[get_weather])
    [connection] = server.connections
    assert connection.path == "/v1/realtime" and connection.param("model") == "gpt-realtime-mini"
    assert connection.headers["authorization"] == "Bearer test-key"
    update = connection.texts[0]
    assert update["type"] == "session.update" and update["event_id"]
    assert update["session"] == {
        "type": "realtime",
        "instructions": "Be brief.",
        "output_modalities": ["audio"],
        "max_output_tokens": 400,
        "tools": [{"type": "function", "name": "get_weather", "description": "The weather in a city.",
                   "parameters": get_weather.parameters}],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
                "noise_reduction": {"type": "near_field"},
                "turn_detection": {"type": "semantic_vad", "eagerness": "low", "create_response": True,
                                   "interrupt_response": False},
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "cedar", "speed": 1.1},
        },
    }
    assert get_weather.parameters["properties"]["city"]["type"] == "string"
    items = [event["item"] for event in sent(connection, "conversation.item.create")]
    assert [(item["role"], item["content"]) for item in items] == [
        ("user", [{"type": "input_text", "text": "My name is Ada."}]),
        ("assistant", [{"type": "output_text", "text": "Hello Ada."}]),
    ]
    assert [item["id"] for item in items] == [item.id for item in chat_ctx.items]


async def test_audio_is_appended_every_20_ms_at_24_khz(autojump_clock):
    server = FakeRealtime()
    async with server.running():
        await converse(make_model(server), 1.0)
    [appends] = server.appends
    assert {samples for _, samples in appends} == {480}  # 20 ms of 24 kHz audio each
    assert 48 <= len(appends) <= 50  # the resampler holds back a few ms
    gaps = np.diff([at for at, _ in appends])
    assert np.allclose(gaps, 0.02, atol=1e-6)  # each as its audio arrives: no batching


async def ask_the_weather(server_class, make_model, call_id):
    """The user asks (0.5 to 1.5 s of audio); the model calls get_weather,
    is given its output, and answers with 1 s of speech. Checks what both
    vendors must do alike; returns (server, events, session)."""
    server = server_class(
        turns=[Turn(0.5, 1.5, "What's the weather in Paris?")],
        replies=[Reply((Call("get_weather", '{"city": "Paris"}', call_id=call_id),)),
                 Reply((Say("It is sunny in Paris.", 1.0),))],
    )

    async def run_tools(live, event):
        if isinstance(event, RealtimeFunctionCall):
            await live.send_tool_output(event.call_id, "sunny, 21 C")

    async with server.running():
        events, live = await converse(make_model(server), 4.0, on_event=run_tools, tools=[get_weather])
    started, stopped = of(events, InputSpeechStarted)[0], of(events, InputSpeechStopped)[0]
    assert (started.audio_time, stopped.audio_time) == (pytest.approx(0.5, abs=0.021), pytest.approx(1.5, abs=0.021))
    assert started.item_id == stopped.item_id
    finals = [t for t in of(events, InputTranscription) if t.final]
    assert [(t.item_id, t.text) for t in finals] == [(started.item_id, "What's the weather in Paris?")]
    [call] = of(events, RealtimeFunctionCall)
    assert (call.name, json.loads(call.arguments), call.call_id) == ("get_weather", {"city": "Paris"}, call_id)
    first, second = of(events, ResponseDone)
    assert first.status == second.status == "completed"
    assert second.first_audio_delay == pytest.approx(server.ttfb, abs=0.01)
    kinds = [type(event).__name__ for _, event in events]
    assert kinds.index("RealtimeFunctionCall") < kinds.index("ResponseDone") < kinds.index("ResponseAudio")
    audio = of(events, ResponseAudio)
    assert {a.response_id for a in audio} == {second.response_id} and len({a.item_id for a in audio}) == 1
    assert all(a.frame.sample_rate == 16_000 for a in audio) and all(a.frame.samples_per_channel == 320 for a in audio[:-1])
    assert sum(a.frame.duration for a in audio) == pytest.approx(1.0, abs=0.005)
    middle = np.concatenate([a.frame.data for a in audio[5:-5]])
    assert np.all(np.abs(middle.astype(int) - 300) <= 3)  # the server's samples, resampled
    assert "".join(d.delta for d in of(events, ResponseTranscriptDelta)) == "It is sunny in Paris."
    return server, events, live


async def test_a_whole_exchange_with_a_tool_call_and_its_follow_up(autojump_clock):
    server, events, live = await ask_the_weather(FakeRealtime, make_model, "call_7")
    transcripts = of(events, InputTranscription)
    assert [t.text for t in transcripts if not t.final] == ["What's", "What's the", "What's the weather", "What's the weather in",
                                                             "What's the weather in Paris?"]
    assert of(events, ResponseDone)[1].usage == RealtimeUsage(
        input_tokens=120, output_tokens=180, input_text_tokens=20, input_audio_tokens=100,
        input_cached_tokens=64, output_text_tokens=30, output_audio_tokens=150)

    [connection] = server.connections
    types = connection.types()
    output = sent(connection, "conversation.item.create")[-1]
    assert output["item"]["type"] == "function_call_output"
    assert (output["item"]["call_id"], output["item"]["output"]) == ("call_7", "sunny, 21 C")
    assert types[types.index("conversation.item.create") + 1] == "response.create"
    assert [(item["type"], item.get("role")) for item in live.conversation()] == [
        ("message", "user"), ("function_call", None), ("function_call_output", None), ("message", "assistant"),
    ]
    assert live.conversation()[0]["content"][0]["text"] == "What's the weather in Paris?"
    assert live.conversation()[-1]["content"][0]["text"] == "It is sunny in Paris."


STORY = "Once upon a time there was a small robot who lived by the sea and listened to the waves every night."


async def play_and_interrupt(live, event, state):
    """Play the audio in real time; interrupt when the user speaks during it."""
    now = trio.current_time()
    if isinstance(event, ResponseAudio):
        if event.item_id != state.get("item_id"):
            state["item_id"], state["timeline"] = event.item_id, PlayoutTimeline()
        state["timeline"].write(event.frame.duration, now)
        if state.get("interrupted_at") is not None:
            state.setdefault("late", []).append(event)
    elif isinstance(event, InputSpeechStarted) and "timeline" in state and state.get("interrupted_at") is None:
        played = state["timeline"].position(now)
        if played < state["timeline"].pushed:
            state["played"], state["interrupted_at"], state["cut"] = played, now, state["item_id"]
            await live.interrupt(item_id=state["item_id"], played=played)


def told_a_story(server_class, **options):
    """A server whose first reply, an 8 s story sent at twice real time, the
    user talks over 2 s into the call (1.2 s into the story's audio)."""
    return server_class(
        turns=[Turn(0.2, 0.6, "Tell me a story."), Turn(2.0, 2.6, "Stop.")],
        replies=[Reply((Say(STORY, 8.0),)), Reply((Say("Okay.", 0.5),))],
        speed=2.0,
        **options,
    )


async def test_an_interruption_cancels_the_response_and_truncates_it_where_the_user_stopped_hearing(autojump_clock):
    server = told_a_story(FakeRealtime)
    state = {}
    async with server.running():
        model = make_model(server, turn_detection=openai.ServerVAD(silence_duration_ms=300, interrupt_response=False))
        events, live = await converse(model, 4.0, on_event=lambda live, event: play_and_interrupt(live, event, state))

    # The reply started 0.2 s (the server's ttfb) after the end of the first turn.
    assert state["played"] == pytest.approx(2.0 - 0.6 - server.ttfb, abs=0.05)
    [connection] = server.connections
    [cancel] = sent(connection, "response.cancel")
    assert cancel["response_id"] == of(events, ResponseCreated)[0].response_id
    assert server.truncations == [{
        "connection": 0, "type": "conversation.item.truncate", "item_id": state["cut"], "content_index": 0,
        "audio_end_ms": int(state["played"] * 1000),
    }]
    cancelled, answer = of(events, ResponseDone)
    assert (cancelled.status, cancelled.reason) == ("cancelled", "client_cancelled")
    assert answer.status == "completed"
    assert not [a for a in state.get("late", []) if a.item_id == state["cut"]]  # nothing of it after the cut
    assert not of(events, RealtimeError)
    story = live.conversation()[1]["content"][0]["text"]
    assert STORY.startswith(story) and 0 < len(story.split()) < len(STORY.split())


async def test_when_the_server_cancels_on_its_own_the_session_only_truncates(autojump_clock):
    server = told_a_story(FakeRealtime)
    state = {}
    async with server.running():
        events, _ = await converse(make_model(server), 4.0, on_event=lambda live, event: play_and_interrupt(live, event, state))
    cancelled = of(events, ResponseDone)[0]
    assert (cancelled.status, cancelled.reason) == ("cancelled", "turn_detected")
    assert [t["audio_end_ms"] for t in server.truncations] == [int(state["played"] * 1000)]
    assert not of(events, RealtimeError)  # a cancel that crossed the server's is not an error


async def test_text_only_output_is_text_deltas_for_a_tts(autojump_clock):
    server = FakeRealtime(turns=[Turn(0.2, 0.6, "Hi.")], replies=[Reply((Say("Hello, how can I help?", 1.0),))])
    async with server.running():
        events, live = await converse(make_model(server, modalities="text"), 1.5)
    assert server.connections[0].texts[0]["session"]["output_modalities"] == ["text"]
    assert "".join(d.delta for d in of(events, ResponseTextDelta)) == "Hello, how can I help?"
    assert not of(events, ResponseAudio)
    assert live.conversation()[-1]["content"] == [{"type": "output_text", "text": "Hello, how can I help?"}]


async def test_generate_reply_waits_for_the_running_response(autojump_clock):
    server = FakeRealtime(
        turns=[Turn(0.2, 0.6, "Hi.")],
        replies=[Reply((Say("Hello.", 1.0),)), Reply((Say("Anything else?", 0.5),))],
    )

    async def ask(live, event):
        if isinstance(event, ResponseCreated) and len(server.replies) == 1:
            await live.generate_reply(instructions="Offer more help.")

    async with server.running():
        events, _ = await converse(make_model(server), 2.5, on_event=ask)
    creates = sent(server.connections[0], "response.create")
    assert creates == [{"type": "response.create", "response": {"instructions": "Offer more help."}}]
    assert [done.status for done in of(events, ResponseDone)] == ["completed", "completed"]
    assert not of(events, RealtimeError)  # not "conversation_already_has_active_response"


# -- reconnecting -------------------------------------------------------------------------


async def test_a_dropped_connection_is_restored_with_the_conversation(autojump_clock):
    server = FakeRealtime(
        turns=[Turn(0.3, 0.8, "Hello there."), Turn(1.0, 1.5, "Still there?", connection=1)],
        replies=[Reply((Say("Hi! How can I help?", 1.0),)), Reply((Say("Yes, I am here.", 0.5),))],
        faults=[Fault(kind="drop", after=3.0)],
    )
    async with server.running():
        events, live = await converse(make_model(server), 6.0, tools=[get_weather], instructions="Be brief.")
    first, second = server.connections
    assert second.texts[0]["session"] == first.texts[0]["session"]
    restored = [event["item"] for event in sent(second, "conversation.item.create")]
    assert [(item["role"], item["content"]) for item in restored] == [
        ("user", [{"type": "input_text", "text": "Hello there."}]),
        ("assistant", [{"type": "output_text", "text": "Hi! How can I help?"}]),
    ]
    [reconnected] = of(events, RealtimeReconnected)
    assert isinstance(reconnected.error, voxtrio.APIError) and reconnected.error.retryable
    assert reconnected.lost_audio == pytest.approx(0.1, abs=0.03)  # the first retry waits 0.1 s
    # The new connection's clock starts at its first audio: mapped back onto the session's.
    later = of(events, InputSpeechStarted)[1]
    assert later.audio_time == pytest.approx(3.0 + reconnected.lost_audio + 1.0, abs=0.05)
    assert [done.status for done in of(events, ResponseDone)] == ["completed", "completed"]
    assert [item["content"][0]["text"] for item in live.conversation()] == [
        "Hello there.", "Hi! How can I help?", "Still there?", "Yes, I am here.",
    ]


async def test_a_connection_that_keeps_dropping_ends_the_session_with_its_error(autojump_clock):
    server = FakeRealtime(faults=[Fault(kind="drop", after=0.2)] * 5)
    async with server.running():
        with pytest.raises(voxtrio.APIError) as raised:
            await converse(make_model(server), 3.0, conn_options=APIConnectOptions(max_retry=2, retry_interval=0.1))
    assert not raised.value.retryable
    assert len(server.connections) == 3


# -- errors ------------------------------------------------------------------------------------


async def test_a_refused_key_is_raised_at_once_naming_the_variable(autojump_clock):
    server = FakeRealtime()
    async with server.running():
        with pytest.raises(voxtrio.APIStatusError) as raised:
            await converse(openai.RealtimeModel(api_key="wrong", base_url=f"{server.url}/v1/realtime"), 0.2)
    assert raised.value.status_code == 401 and not raised.value.retryable
    assert "OPENAI_API_KEY" in str(raised.value)
    assert len(server.connections) == 1


async def test_a_refused_configuration_is_raised_at_once(autojump_clock):
    server = FakeRealtime()
    async with server.running():
        with pytest.raises(voxtrio.APIStatusError, match="refused the session configuration") as raised:
            await converse(make_model(server, voice="nobody"), 0.2)
    assert raised.value.status_code == 400 and not raised.value.retryable
    assert len(server.connections) == 1


async def test_rate_limits_and_error_events_are_typed_errors_the_session_survives(autojump_clock):
    server = FakeRealtime(
        turns=[Turn(0.2, 0.5, "Hi."), Turn(1.5, 1.8, "Hello?")],
        replies=[Reply((Fail(),)), Reply((Say("Hello!", 0.5),))],
        errors=[ServerError(after=1.0, code="invalid_value", message="Invalid value for 'audio'.")],
        rate_limits=[{"name": "tokens", "limit": 50000, "remaining": 0, "reset_seconds": 7.5}],
    )
    async with server.running():
        events, _ = await converse(make_model(server), 3.0)
    limited, refused = (event.error for event in of(events, RealtimeError))
    assert isinstance(limited, voxtrio.APIStatusError) and limited.status_code == 429
    assert limited.retryable and limited.retry_after == 7.5 and "rate_limit_exceeded" in str(limited)
    assert refused.status_code == 400 and not refused.retryable and "Invalid value for 'audio'." in str(refused)
    assert [done.status for done in of(events, ResponseDone)] == ["failed", "completed"]


@pytest.mark.parametrize(
    "payload, what",
    [("not json at all", "not JSON"), ('["a list"]', "not an object"), ('{"no": "type"}', "without a type"),
     ('{"type": "response.done"}', "does not follow its documented shape"),
     ('{"type": "response.output_audio.delta", "item_id": "x", "delta": "%%%"}', "not base64")],
)
async def test_junk_from_the_server_is_a_typed_error(autojump_clock, payload, what):
    server = FakeRealtime(faults=[Fault(kind="malformed", payload=payload, after=0.2)])
    async with server.running():
        with pytest.raises(voxtrio.APIError, match=what):
            await converse(make_model(server), 1.0, conn_options=APIConnectOptions(max_retry=0))
        server.connections.clear()
        events, _ = await converse(make_model(server), 1.0)
    [reconnected] = of(events, RealtimeReconnected)
    assert what in str(reconnected.error)


async def test_input_audio_must_be_mono_frames_at_one_rate(autojump_clock):
    server = FakeRealtime()
    async with server.running():
        async with make_model(server).session() as live:
            with pytest.raises(voxtrio.AudioFormatError, match="AudioFrame"):
                await live.push_audio(np.zeros(320, np.int16))
            with pytest.raises(voxtrio.AudioFormatError, match="mono"):
                await live.push_audio(AudioFrame(np.zeros(640, np.int16), 16_000, num_channels=2))
            await live.push_audio(AudioFrame(np.zeros(320, np.int16), 16_000))
            with pytest.raises(voxtrio.AudioFormatError, match="one rate"):
                await live.push_audio(AudioFrame(np.zeros(480, np.int16), 24_000))


# -- the real service ---------------------------------------------------------------------------


async def hello_from(model):
    """Ask the real service to say hello (a message, no audio in); checks the
    reply was spoken and returns its events."""
    events = []
    async with model.session(instructions="Answer in one short sentence.") as live:
        await live.add_message("user", "Say: hello there.")
        await live.generate_reply()
        with trio.fail_after(30):
            async for event in live.events:
                events.append((0.0, event))
                if isinstance(event, ResponseDone):
                    break
    assert of(events, ResponseDone)[0].status == "completed"
    assert sum(a.frame.duration for a in of(events, ResponseAudio)) > 0.3
    return events


@pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"), reason="OPENAI_API_KEY is not set")
async def test_live_openai_realtime_answers_a_message_with_speech():
    model = openai.RealtimeModel(model=os.environ.get("OPENAI_REALTIME_MODEL", "gpt-realtime"), turn_detection=None)
    events = await hello_from(model)
    assert "hello" in "".join(d.delta for d in of(events, ResponseTranscriptDelta)).lower()
    assert of(events, ResponseDone)[0].usage is not None
