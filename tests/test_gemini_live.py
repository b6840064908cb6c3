"""Gemini Live behind the same realtime protocol, against a local server that speaks its protocol.

The same conversations as test_openai_realtime.py where the two vendors
agree; where they differ (no truncation, the server's barge-in, tool
outputs answered by the model itself, a configuration fixed for a
connection's life, errors as close codes), what the protocol promises.
"""

import os

import numpy as np
import pytest
import trio

import voxtrio
from voxtrio.chat import ChatContext
from voxtrio.options import APIConnectOptions
from voxtrio.providers import gemini
from voxtrio.providers.base import (
    FunctionCallsCancelled,
    InputSpeechStarted,
    RealtimeError,
    RealtimeReconnected,
    RealtimeUsage,
    ResponseAudio,
    ResponseCreated,
    ResponseDone,
    ResponseTextDelta,
)

from loopback.gemini_live import Call, FakeGemini, Reply, Say, Turn
from loopback.server import Fault
from test_openai_realtime import STORY, ask_the_weather, converse, get_weather, hello_from, of, play_and_interrupt, told_a_story


def make_model(server, **options):
    return gemini.RealtimeModel(
        api_key="test-key",
        base_url=f"{server.url}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
        **options,
    )


def client_contents(connection):
    return [message["clientContent"] for message in connection.texts if "clientContent" in message]


def test_the_key_comes_from_the_argument_or_either_variable(monkeypatch):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with pytest.raises(voxtrio.MissingAPIKeyError, match="GOOGLE_API_KEY"):
        gemini.RealtimeModel()
    monkeypatch.setenv("GEMINI_API_KEY", "from-gemini")
    assert "key=from-gemini" in gemini.RealtimeModel()._url
    monkeypatch.setenv("GOOGLE_API_KEY", "from-google")
    assert "key=from-google" in gemini.RealtimeModel()._url
    with pytest.raises(ValueError, match="sensitivity"):
        gemini.RealtimeModel(api_key="k", start_of_speech_sensitivity="medium")
    capabilities = gemini.RealtimeModel(api_key="k").capabilities
    assert capabilities.auto_tool_reply_generation and not capabilities.message_truncation


async def test_setup_comes_first_then_the_conversation(autojump_clock):
    server = FakeGemini()
    chat_ctx = ChatContext()
    chat_ctx.add_message(role="system", content="The user is Ada.")
    chat_ctx.add_message(role="user", content="Hello.")
    chat_ctx.add_message(role="assistant", content="Hello Ada.")
    async with server.running():
        model = make_model(server, voice="Kore", language="en-US", end_of_speech_sensitivity="low",
                           silence_duration_ms=400, interrupt_response=False, temperature=0.6)
        await converse(model, 0.2, instructions="Be brief.", chat_ctx=chat_ctx, tools=[get_weather])
    [connection] = server.connections
    assert connection.param("key") == "test-key"
    assert connection.texts[0] == {"setup": {
        "model": "models/gemini-2.5-flash-native-audio-preview-09-2025",
        "generationConfig": {
            "responseModalities": ["AUDIO"],
            "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}, "languageCode": "en-US"},
            "temperature": 0.6,
        },
        "systemInstruction": {"parts": [{"text": "Be brief.\n\nThe user is Ada."}]},
        "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "The weather in a city.",
                                             "parametersJsonSchema": get_weather.parameters}]}],
        "realtimeInputConfig": {
            "automaticActivityDetection": {"disabled": False, "endOfSpeechSensitivity": "END_SENSITIVITY_LOW",
                                           "silenceDurationMs": 400},
            "activityHandling": "NO_INTERRUPTION",
        },
        "inputAudioTranscription": {},
        "outputAudioTranscription": {},
    }}
    assert client_contents(connection) == [{"turns": [
        {"role": "user", "parts": [{"text": "Hello."}]}, {"role": "model", "parts": [{"text": "Hello Ada."}]},
    ], "turnComplete": False}]


async def test_audio_goes_out_every_20_ms_at_16_khz(autojump_clock):
    server = FakeGemini()
    async with server.running():
        await converse(make_model(server), 1.0)
    [chunks] = server.audio_chunks
    assert {(samples, mime) for _, samples, mime in chunks} == {(320, "audio/pcm;rate=16000")}
    assert len(chunks) == 50  # the pipeline's rate: nothing to resample, nothing held back
    assert np.allclose(np.diff([at for at, _, _ in chunks]), 0.02, atol=1e-6)


async def test_a_whole_exchange_with_a_tool_call_answered_by_the_model(autojump_clock):
    server, events, live = await ask_the_weather(FakeGemini, make_model, "fc_1")
    [connection] = server.connections
    [response] = [m["toolResponse"] for m in connection.texts if "toolResponse" in m]
    assert response == {"functionResponses": [{"id": "fc_1", "name": "get_weather", "response": {"output": "sunny, 21 C"}}]}
    assert of(events, ResponseDone)[1].usage == RealtimeUsage(
        input_tokens=90, output_tokens=140, input_text_tokens=30, input_audio_tokens=60,
        input_cached_tokens=10, output_audio_tokens=140)
    assert len(of(events, ResponseCreated)) == 2
    assert live.conversation() == [
        {"role": "user", "parts": [{"text": "What's the weather in Paris?"}]},
        {"role": "model", "parts": [{"functionCall": {"id": "fc_1", "name": "get_weather", "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "fc_1", "name": "get_weather", "response": {"output": "sunny, 21 C"}}}]},
        {"role": "model", "parts": [{"text": "It is sunny in Paris."}]},
    ]


async def test_the_servers_barge_in_ends_the_reply_and_nothing_of_it_is_played_after(autojump_clock):
    server = told_a_story(FakeGemini, voice_activity=False)
    state = {}
    async with server.running():
        events, live = await converse(make_model(server), 4.0, on_event=lambda live, event: play_and_interrupt(live, event, state))
    cancelled, answer = of(events, ResponseDone)
    assert (cancelled.status, cancelled.reason) == ("cancelled", "turn_detected")
    assert answer.status == "completed"
    # Without voiceActivity, the cut-off is the first sign of the user's speech.
    assert of(events, InputSpeechStarted)[0].audio_time == pytest.approx(2.0, abs=0.03)
    assert state["played"] == pytest.approx(2.0 - 0.6 - server.ttfb, abs=0.05)
    assert not [a for a in state.get("late", []) if a.item_id == state["cut"]]
    story = live.conversation()[1]["parts"][0]["text"]
    assert STORY.startswith(story) and 0 < len(story.split()) < len(STORY.split())
    assert not of(events, RealtimeError)


async def test_text_only_output_and_withdrawn_calls(autojump_clock):
    server = FakeGemini(turns=[Turn(0.2, 0.6, "Hi.")], replies=[Reply((Call("get_weather", "{}", call_id="fc_9"),))],
                        cancel_calls_at=1.0)
    async with server.running():
        events, _ = await converse(make_model(server, modalities="text"), 1.5)
    assert server.connections[0].texts[0]["setup"]["generationConfig"]["responseModalities"] == ["TEXT"]
    assert of(events, FunctionCallsCancelled) == [FunctionCallsCancelled(("fc_9",))]

    server = FakeGemini(turns=[Turn(0.2, 0.6, "Hi.")], replies=[Reply((Say("Hello, how can I help?", 1.0),))])
    async with server.running():
        events, _ = await converse(make_model(server, modalities="text"), 1.5)
    assert "".join(d.delta for d in of(events, ResponseTextDelta)) == "Hello, how can I help?"
    assert not of(events, ResponseAudio)


async def test_new_instructions_open_a_new_connection_given_the_conversation(autojump_clock):
    server = FakeGemini(turns=[Turn(0.2, 0.6, "Hello there.")], replies=[Reply((Say("Hi! How can I help?", 1.0),))])

    async def switch(live, event):
        if isinstance(event, ResponseDone):
            await live.update_instructions("Speak French.")

    async with server.running():
        events, _ = await converse(make_model(server), 2.5, on_event=switch, instructions="Be brief.")
    first, second = server.connections
    assert first.texts[0]["setup"]["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert second.texts[0]["setup"]["systemInstruction"] == {"parts": [{"text": "Speak French."}]}
    assert client_contents(second) == [{"turns": [
        {"role": "user", "parts": [{"text": "Hello there."}]},
        {"role": "model", "parts": [{"text": "Hi! How can I help?"}]},
    ], "turnComplete": False}]
    assert not of(events, RealtimeReconnected) and not of(events, RealtimeError)  # asked for: not a failure
    assert server.audio_chunks[1]  # the audio went on, on the new connection


async def test_go_away_moves_to_a_new_connection_between_replies(autojump_clock):
    server = FakeGemini(turns=[Turn(0.2, 0.6, "Hello there.")], replies=[Reply((Say("Hi!", 1.0),))], go_away_after=0.8)
    async with server.running():
        events, _ = await converse(make_model(server), 3.0)
    first, second = server.connections
    # goAway came at 0.8 s, during the reply (0.8 to 1.05 s): the move waited for its end.
    assert first.client_gone_at is not None and first.client_gone_at >= 1.0
    assert client_contents(second)[0]["turns"][1] == {"role": "model", "parts": [{"text": "Hi!"}]}
    assert [done.status for done in of(events, ResponseDone)] == ["completed"]  # the reply was not cut


async def test_a_dropped_connection_is_restored_and_closes_are_typed_errors(autojump_clock):
    server = FakeGemini(
        turns=[Turn(0.3, 0.8, "Hello there."), Turn(1.0, 1.5, "Still there?", connection=1)],
        replies=[Reply((Say("Hi!", 0.5),)), Reply((Say("Yes.", 0.5),))],
        faults=[Fault(kind="close", code=1011, reason="RESOURCE_EXHAUSTED: quota exceeded", after=2.0)],
    )
    async with server.running():
        events, live = await converse(make_model(server), 4.5)
    [reconnected] = of(events, RealtimeReconnected)
    assert isinstance(reconnected.error, voxtrio.APIStatusError) and reconnected.error.status_code == 429
    assert "RESOURCE_EXHAUSTED" in str(reconnected.error) and reconnected.error.retryable
    assert client_contents(server.connections[1])[0]["turns"] == [
        {"role": "user", "parts": [{"text": "Hello there."}]}, {"role": "model", "parts": [{"text": "Hi!"}]},
    ]
    later = of(events, InputSpeechStarted)[1]
    assert later.audio_time == pytest.approx(2.0 + reconnected.lost_audio + 1.0, abs=0.05)
    assert [t["parts"][0]["text"] for t in live.conversation()] == ["Hello there.", "Hi!", "Still there?", "Yes."]


async def test_a_refused_key_or_setup_is_raised_at_once(autojump_clock):
    server = FakeGemini()
    async with server.running():
        with pytest.raises(voxtrio.APIStatusError) as raised:
            await converse(gemini.RealtimeModel(api_key="wrong", base_url=make_model(server)._url.split("?")[0]), 0.2)
        assert raised.value.status_code == 401 and not raised.value.retryable and "GOOGLE_API_KEY" in str(raised.value)
        with pytest.raises(voxtrio.APIStatusError, match="invalid argument") as raised:
            await converse(make_model(server, extra_setup={"model": "gemini-without-prefix"}), 0.2)
        assert raised.value.status_code == 1007 and not raised.value.retryable
    assert len(server.connections) == 2


@pytest.mark.parametrize(
    "payload, what",
    [("not json", "not JSON"), ('{"serverContent": {"modelTurn": {"parts": "nope"}}}', "documented shape"),
     ('{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/mp3", "data": ""}}]}}}', "documented shape"),
     ('{"voiceActivity": {"voiceActivityType": "ACTIVITY_START", "audioOffset": "soon"}}', "documented shape")],
)
async def test_junk_from_the_server_is_a_typed_error(autojump_clock, payload, what):
    server = FakeGemini(faults=[Fault(kind="malformed", payload=payload, after=0.2)])
    async with server.running():
        with pytest.raises(voxtrio.APIError, match=what):
            await converse(make_model(server), 1.0, conn_options=APIConnectOptions(max_retry=0))


async def test_manual_activity_marks_the_users_turn(autojump_clock):
    server = FakeGemini()
    async with server.running():
        async with make_model(server, automatic_activity_detection=False).session() as live:
            for _ in range(10):
                await live.push_audio(voxtrio.audio.AudioFrame(np.zeros(320, np.int16), 16_000))
            await live.commit_audio()
            await trio.sleep(0.1)
    inputs = [m["realtimeInput"] for m in server.connections[0].texts if "realtimeInput" in m]
    assert inputs == [{"activityStart": {}}, {"activityEnd": {}}]
    assert server.connections[0].texts[0]["setup"]["realtimeInputConfig"]["automaticActivityDetection"] == {"disabled": True}


@pytest.mark.skipif(not (os.environ.get("GOOGLE_API_KEY") or os.environ.get("GEMINI_API_KEY")),
                    reason="GOOGLE_API_KEY is not set")
async def test_live_gemini_answers_a_message_with_speech():
    model = gemini.RealtimeModel(model=os.environ.get("GEMINI_LIVE_MODEL", "gemini-2.5-flash-native-audio-preview-09-2025"))
    events = await hello_from(model)
    assert of(events, ResponseDone)[0].usage is not None
