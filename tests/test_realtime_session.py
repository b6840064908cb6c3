"""A realtime agent's whole call: AgentSession over openai.RealtimeModel against
the local Realtime server (tests/loopback/openai_realtime.py).

The clock: trio's MockClock with autojump, real sockets on loopback (as in
test_openai_realtime.py). The transport sends 20 ms of silence every 20 ms;
what the server "hears" is scripted in seconds of that audio.
"""

import pytest
import trio

import voxtrio
from voxtrio.providers import openai
from voxtrio.testing import ScriptedTransport, ScriptedTTS
from voxtrio.tools import function_tool

from loopback.openai_realtime import Call, Fail, FakeRealtime, Reply, Say, Turn
from loopback.server import Fault

weather_calls = []


@function_tool
async def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: The city's name.
    """
    weather_calls.append(city)
    return f"sunny in {city}"


def make_model(server, **options):
    return openai.RealtimeModel(api_key="test-key", base_url=f"{server.url}/v1/realtime", **options)


async def call(server, seconds, *, agent=None, during=None, tts=None, model_options=None, **options):
    """Run a session for ``seconds`` against ``server``; ``during(session)``
    runs alongside. Returns (session, transport, events)."""
    async with server.running():
        model = make_model(server, **(model_options or {}))
        agent = agent or voxtrio.Agent(instructions="You are helpful.", llm=model, tools=[get_weather])
        session = voxtrio.AgentSession(tts=tts, **options)
        transport = ScriptedTransport()
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, agent, transport)
            if during is not None:
                nursery.start_soon(during, session)
            await trio.sleep(seconds)
            await session.aclose()
            nursery.cancel_scope.cancel()
    return session, transport, session.recorded_events


def of_type(events, name):
    return [event for event in events if event.type == name]


def messages(session):
    return [(item.role, item.text_content, item.interrupted) for item in session.history.items if item.type == "message"]


def sent(server, kind, connection=0):
    return [event for event in server.connections[connection].texts if event.get("type") == kind]


async def test_a_turn_is_heard_transcribed_and_answered_with_the_models_audio(autojump_clock):
    server = FakeRealtime(
        turns=[Turn(0.5, 1.5, "hello there")],
        replies=[Reply((Say("Hi, how can I help?", 1.0),))],
    )
    session, transport, events = await call(server, 5.0)
    assert messages(session) == [("user", "hello there", False), ("assistant", "Hi, how can I help?", False)]
    played = sum(seconds for _, seconds in transport.audio_output.writes)
    assert played == pytest.approx(1.0, abs=0.03)
    names = [event.type for event in events]
    for name in ("speech_created", "playback_started", "playback_finished", "conversation_item_added", "close"):
        assert name in names
    states = [event.new_state for event in of_type(events, "agent_state_changed")]
    assert states[:4] == ["listening", "thinking", "speaking", "listening"]
    users = [event.new_state for event in of_type(events, "user_state_changed")]
    assert users[:2] == ["speaking", "listening"]
    realtime = [event for event in of_type(events, "metrics_collected") if event.kind == "realtime"]
    assert realtime and realtime[0].metrics["prompt_tokens"] == 120
    assert of_type(events, "close")[0].reason == "user_initiated"


async def test_a_tool_call_runs_and_its_output_goes_back_for_the_follow_up(autojump_clock):
    weather_calls.clear()
    server = FakeRealtime(
        turns=[Turn(0.5, 1.5, "weather in Paris")],
        replies=[Reply((Call("get_weather", '{"city": "Paris"}'),)), Reply((Say("It is sunny in Paris.", 1.0),))],
    )
    session, transport, events = await call(server, 6.0)
    assert weather_calls == ["Paris"]
    kinds = [item.type for item in session.history.items if item.type != "agent_handoff"]
    assert kinds == ["message", "function_call", "function_call_output", "message"]
    assert messages(session)[-1] == ("assistant", "It is sunny in Paris.", False)
    outputs = [e["item"] for e in sent(server, "conversation.item.create") if e["item"]["type"] == "function_call_output"]
    assert [(o["call_id"], o["output"]) for o in outputs] == [("call_1", "sunny in Paris")]
    assert len(sent(server, "response.create")) == 1  # the follow-up, asked with the output
    executed = of_type(events, "function_tools_executed")
    assert len(executed) == 1
    # The follow-up is the same speech's next step, as in a pipeline.
    assert len(of_type(events, "speech_created")) == 1


async def test_a_barge_in_truncates_the_reply_where_the_user_stopped_hearing_it(autojump_clock):
    server = FakeRealtime(
        turns=[Turn(0.5, 1.0, "tell me a story"), Turn(3.0, 3.5, "stop")],
        replies=[Reply((Say("Once upon a time there was a very long story to tell.", 5.0),)),
                 Reply((Say("Okay.", 0.5),))],
    )
    session, transport, events = await call(server, 8.0)
    finished = of_type(events, "playback_finished")
    assert finished[0].interrupted
    position = finished[0].position
    (truncate,) = server.truncations
    assert truncate["audio_end_ms"] == int(position * 1000)
    # What the device played of the first reply is that position.
    first_interval = transport.audio_output.playing_intervals()[0]
    assert first_interval[1] - first_interval[0] == pytest.approx(position, abs=0.03)
    assert 1.0 < position < 2.5
    said = messages(session)
    assert said[0] == ("user", "tell me a story", False)
    assert said[1][0] == "assistant" and said[1][2] is True
    assert "Once upon a time there was a very long story to tell.".startswith(said[1][1])
    assert said[2:] == [("user", "stop", False), ("assistant", "Okay.", False)]


def greeter(handles):
    """A ``during`` that asks for a greeting at 0.2 s: ``handles`` gets its
    handle, then what the history held once the handle was done."""

    async def greet(session):
        await trio.sleep(0.2)
        handle = session.generate_reply(instructions="Greet the user.")
        handles.append(handle)
        await handle
        handles.append(session.history.items[:])

    return greet


async def test_generate_reply_asks_the_model_with_its_instructions(autojump_clock):
    server = FakeRealtime(replies=[Reply((Say("Welcome!", 0.6),))])
    handles = []
    session, transport, events = await call(server, 3.0, during=greeter(handles))
    (create,) = sent(server, "response.create")
    assert create["response"]["instructions"] == "Greet the user."
    assert handles[0].done() and not handles[0].interrupted
    assert messages(session) == [("assistant", "Welcome!", False)]
    assert [e.speech_id for e in of_type(events, "speech_created")] == [handles[0].id]


async def test_a_request_the_model_never_starts_ends_its_speech_and_a_late_response_is_its_own(autojump_clock):
    # The model starts its response 6 s after it was asked, past the 2 s bound.
    server = FakeRealtime(replies=[Reply((Say("Late.", 0.5),), delay=6.0)])
    handles = []
    session, transport, events = await call(
        server, 9.0, during=greeter(handles), model_options={"generate_reply_timeout": 2.0}
    )
    handle, history_then = handles
    assert handle.done() and [i for i in history_then if i.type == "message"] == []
    (error,) = of_type(events, "error")
    assert error.source == "realtime" and error.recoverable and "no response within 2 s" in error.message
    # The late response is a speech of its own, created after the error.
    created = of_type(events, "speech_created")
    assert [e.speech_id for e in created][0] == handle.id and len(created) == 2
    assert events.index(error) < events.index(created[1])
    assert messages(session) == [("assistant", "Late.", False)]
    assert of_type(events, "close")[0].reason == "user_initiated"


async def test_a_follow_up_the_model_never_starts_ends_the_tool_speech(autojump_clock):
    weather_calls.clear()
    server = FakeRealtime(
        turns=[Turn(0.5, 1.5, "weather in Paris")],
        replies=[Reply((Call("get_weather", '{"city": "Paris"}'),)), Reply((Say("Sunny.", 0.5),), delay=6.0)],
    )
    session, transport, events = await call(server, 10.0, model_options={"generate_reply_timeout": 2.0})
    assert weather_calls == ["Paris"]
    (error,) = of_type(events, "error")
    assert error.source == "realtime" and error.recoverable
    first, late = of_type(events, "speech_created")
    assert events.index(error) < events.index(late)
    # The tool's speech ended at the bound; the late answer played as a speech of its own.
    assert first.speech_handle.done() and late.speech_handle.done()
    assert messages(session)[-1] == ("assistant", "Sunny.", False)


def test_generate_reply_timeout_is_checked():
    with pytest.raises(ValueError):
        openai.RealtimeModel(api_key="k", generate_reply_timeout=-1.0)


async def test_say_speaks_through_the_tts_and_the_model_hears_it(autojump_clock):
    server = FakeRealtime()

    async def say(session):
        await trio.sleep(0.2)
        await session.say("Hello from the TTS.")

    session, transport, events = await call(server, 4.0, during=say, tts=ScriptedTTS([], default_chars_per_second=20.0))
    assert messages(session) == [("assistant", "Hello from the TTS.", False)]
    added = [e["item"] for e in sent(server, "conversation.item.create") if e["item"]["type"] == "message"]
    assert [(a["role"], a["content"][0]["text"]) for a in added] == [("assistant", "Hello from the TTS.")]
    assert sum(seconds for _, seconds in transport.audio_output.writes) > 0.5


async def test_interrupt_cancels_the_response_and_truncates_it(autojump_clock):
    server = FakeRealtime(turns=[Turn(0.5, 1.0, "talk")], replies=[Reply((Say("A long answer goes here.", 6.0),))])

    async def cut(session):
        await trio.sleep(2.5)
        await session.interrupt()

    session, transport, events = await call(server, 5.0, during=cut)
    (finished,) = of_type(events, "playback_finished")
    assert finished.interrupted
    assert len(sent(server, "response.cancel")) == 1
    (truncate,) = server.truncations
    assert truncate["audio_end_ms"] == int(finished.position * 1000)
    assert messages(session)[1][2] is True


async def test_a_connection_that_cannot_be_restored_closes_the_session_with_an_error(autojump_clock):
    server = FakeRealtime(faults=[Fault(kind="reject", status=401)])
    session, transport, events = await call(server, 3.0)
    errors = of_type(events, "error")
    assert errors and errors[0].source == "realtime" and not errors[0].recoverable
    assert of_type(events, "close")[0].reason == "error"


async def test_a_refused_request_is_a_recoverable_error_and_the_call_goes_on(autojump_clock):
    server = FakeRealtime(
        turns=[Turn(0.5, 1.0, "hi"), Turn(2.5, 3.0, "hello?")],
        replies=[Reply((Fail(),)), Reply((Say("Hello!", 0.5),))],
    )
    session, transport, events = await call(server, 5.0)
    errors = of_type(events, "error")
    assert errors and all(e.source == "realtime" and e.recoverable for e in errors)
    assert messages(session)[-1] == ("assistant", "Hello!", False)
    assert of_type(events, "close")[0].reason == "user_initiated"


async def test_nothing_of_the_realtime_path_outlives_main(autojump_clock):
    server = FakeRealtime(turns=[Turn(0.5, 1.0, "hi")], replies=[Reply((Say("A reply that is still playing.", 5.0),))])
    async with server.running():
        agent = voxtrio.Agent(instructions="x", llm=make_model(server))
        session = voxtrio.AgentSession()
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, agent, ScriptedTransport())
            await trio.sleep(2.0)
            session.shutdown(drain=False)
            while session.running:
                await trio.sleep(0.01)
            # main has returned: its connection to the model is closed.
            assert server.connections[0].client_gone_at is not None
            assert len(nursery.child_tasks) == 0
    assert session.last_close.reason == "user_initiated"


async def test_drain_lets_the_response_play_out(autojump_clock):
    server = FakeRealtime(turns=[Turn(0.5, 1.0, "hi")], replies=[Reply((Say("A reply that plays to its end.", 2.0),))])

    async def drain(session):
        await trio.sleep(1.6)
        await session.drain()

    session, transport, events = await call(server, 5.0, during=drain)
    (finished,) = of_type(events, "playback_finished")
    assert not finished.interrupted and finished.position == pytest.approx(2.0, abs=0.03)


async def test_a_text_only_model_is_spoken_by_the_agents_tts(autojump_clock):
    server = FakeRealtime(turns=[Turn(0.5, 1.0, "hi")], replies=[Reply((Say("Hello from the text model.", 1.0),))])
    async with server.running():
        agent = voxtrio.Agent(instructions="x", llm=make_model(server, modalities="text"))
        session = voxtrio.AgentSession(tts=ScriptedTTS([], default_chars_per_second=20.0))
        transport = ScriptedTransport()
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, agent, transport)
            await trio.sleep(4.0)
            await session.aclose()
    assert messages(session) == [("user", "hi", False), ("assistant", "Hello from the text model.", False)]
    tts = [e for e in session.recorded_events if e.type == "metrics_collected" and e.kind == "tts"]
    assert tts and tts[0].metrics["characters"] == len("Hello from the text model.")
    # 26 characters at 20 per second: the TTS's audio, not the model's (the model sent none).
    assert sum(seconds for _, seconds in transport.audio_output.writes) == pytest.approx(1.3, abs=0.05)


# -- the user's turn, by hand and hooked ----------------------------------------------------


async def test_commit_user_turn_ends_a_push_to_talk_turn_and_asks_for_the_response(autojump_clock):
    server = FakeRealtime(turns=[Turn(0.5, 1.5, "what time is it")], replies=[Reply((Say("It is noon.", 0.5),))])
    committed = []

    async def push_to_talk(session):
        await trio.sleep(2.0)
        committed.append(await session.commit_user_turn())

    session, transport, events = await call(
        server, 5.0, during=push_to_talk, turn_detection="manual", model_options={"turn_detection": None}
    )
    assert committed == ["what time is it"]
    assert len(sent(server, "input_audio_buffer.commit")) == 1
    assert len(sent(server, "response.create")) == 1  # the server finds no turns: the session asks
    assert messages(session) == [("user", "what time is it", False), ("assistant", "It is noon.", False)]


async def test_clear_user_turn_makes_the_model_forget_the_audio_not_committed(autojump_clock):
    server = FakeRealtime(turns=[Turn(0.5, 1.0, "never mind"), Turn(2.0, 2.5, "hello")],
                          replies=[Reply((Say("Hi.", 0.5),))])
    committed = []

    async def push_to_talk(session):
        await trio.sleep(1.5)
        session.clear_user_turn()
        await trio.sleep(1.5)
        committed.append(await session.commit_user_turn())

    session, transport, events = await call(
        server, 5.0, during=push_to_talk, turn_detection="manual", model_options={"turn_detection": None}
    )
    assert len(sent(server, "input_audio_buffer.clear")) == 1
    assert committed == ["hello"]
    assert messages(session) == [("user", "hello", False), ("assistant", "Hi.", False)]


class Hooked(voxtrio.Agent):
    def __init__(self, model, stop=False):
        super().__init__(instructions="x", llm=model)
        self.turns = []
        self.stop = stop

    async def on_user_turn_completed(self, turn_ctx, new_message):
        self.turns.append((new_message.text_content, [i.text_content for i in turn_ctx.items if i.type == "message" and i.role != "system"]))
        if self.stop:
            raise voxtrio.StopResponse()


@pytest.mark.parametrize("stop", [False, True])
async def test_on_user_turn_completed_runs_when_the_transcript_commits_the_turn(autojump_clock, stop):
    server = FakeRealtime(turns=[Turn(0.5, 1.5, "hello there"), Turn(3.5, 4.0, "and again")],
                          replies=[Reply((Say("Hi.", 0.5),)), Reply((Say("Hi again.", 0.5),))])
    async with server.running():
        agent = Hooked(make_model(server), stop=stop)
        session = voxtrio.AgentSession()
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, agent, ScriptedTransport())
            await trio.sleep(6.0)
            await session.aclose()
    # Each turn's hook sees the conversation before it.
    assert agent.turns == [("hello there", []), ("and again", ["hello there", "Hi."])]
    # The server answers its own turns: a StopResponse cannot call that back, and the turn goes in.
    assert messages(session) == [("user", "hello there", False), ("assistant", "Hi.", False),
                                 ("user", "and again", False), ("assistant", "Hi again.", False)]


booking = []


@function_tool
async def book_table(time: str) -> str:
    """Book a table.

    Args:
        time: When.
    """
    try:
        await trio.sleep(10.0)
    except trio.Cancelled:
        booking.append("cancelled")
        raise
    booking.append("booked")
    return "booked"


async def test_calls_the_model_withdraws_are_cancelled_and_not_answered(autojump_clock):
    from voxtrio.providers import gemini
    from loopback.gemini_live import FakeGemini

    booking.clear()
    server = FakeGemini(turns=[Turn(0.2, 0.6, "book a table")],
                        replies=[Reply((Call("book_table", '{"time": "8pm"}', call_id="fc_9"),))], cancel_calls_at=1.5)
    async with server.running():
        model = gemini.RealtimeModel(
            api_key="test-key",
            base_url=f"{server.url}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
        )
        session = voxtrio.AgentSession()
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, voxtrio.Agent(instructions="x", llm=model, tools=[book_table]),
                                ScriptedTransport())
            await trio.sleep(13.0)
            await session.aclose()
    assert booking == ["cancelled"]
    # No output goes back for a withdrawn call (the server would refuse it), and the call goes on.
    assert not [m for m in server.connections[0].texts if "toolResponse" in m]
    assert len(server.connections) == 1 and session.last_close.reason == "user_initiated"
    (output,) = [i for i in session.history.items if i.type == "function_call_output"]
    assert output.call_id == "fc_9" and "withdrew" in output.output


# -- hand-offs ---------------------------------------------------------------------------


class Concierge(voxtrio.Agent):
    def __init__(self):
        super().__init__(instructions="You are the concierge.")

    @voxtrio.function_tool
    async def transfer_to_billing(self) -> voxtrio.Agent:
        """Transfer the user to billing."""
        return Billing()


class Billing(voxtrio.Agent):
    def __init__(self):
        super().__init__(instructions="You are billing.", tools=[get_weather])


async def test_a_hand_off_on_the_same_model_goes_on_with_the_conversation(autojump_clock):
    server = FakeRealtime(
        turns=[Turn(0.5, 1.0, "billing please"), Turn(4.0, 4.5, "my bill")],
        replies=[Reply((Call("transfer_to_billing", "{}", call_id="t"),)), Reply((Say("Your bill is paid.", 0.6),))],
    )
    async with server.running():
        session = voxtrio.AgentSession(llm=make_model(server))
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, Concierge(), ScriptedTransport())
            await trio.sleep(6.0)
            assert isinstance(session.current_agent, Billing)
            await session.aclose()
    updates = [e["session"] for e in sent(server, "session.update")]
    assert any(u.get("instructions") == "You are billing." for u in updates)
    assert any([t["name"] for t in u["tools"]] == ["get_weather"] for u in updates if "tools" in u)
    assert len(server.connections) == 1  # one conversation throughout
    said = [m for m in messages(session) if m[0] == "assistant"]
    assert said == [("assistant", "Your bill is paid.", False)]
    handoffs = [i.new_agent for i in session.history.items if i.type == "agent_handoff"]
    assert handoffs == ["concierge", "billing"]


# The AgentTask of test_agent_task.py, on the realtime path.
from test_agent_task import Registrar  # noqa: E402


async def test_an_agent_task_runs_on_the_realtime_path(autojump_clock):
    server = FakeRealtime(
        turns=[Turn(0.5, 1.0, "register me"), Turn(3.0, 3.5, "I am Ada")],
        replies=[Reply((Call("register", "{}", call_id="r"),)), Reply((Say("What is your name?", 0.6),)),
                 Reply((Call("record_name", '{"name": "Ada"}', call_id="n"),)),
                 Reply((Say("You are registered, Ada.", 0.6),))],
    )
    async with server.running():
        session = voxtrio.AgentSession(llm=make_model(server))
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, Registrar(), ScriptedTransport())
            await trio.sleep(6.0)
            assert isinstance(session.current_agent, Registrar)
            await session.aclose()
    updates = [e["session"] for e in sent(server, "session.update")]
    instructions = [u["instructions"] for u in updates if "instructions" in u]
    assert instructions == ["Register users.", "Collect the user's name.", "Register users."]
    assert "Collect the user's name." in instructions and instructions[-1] == "Register users."
    outputs = {e["item"]["call_id"]: e["item"]["output"] for e in sent(server, "conversation.item.create")
               if e["item"]["type"] == "function_call_output"}
    assert outputs["r"] == "registered Ada"
    said = [m[1] for m in messages(session) if m[0] == "assistant"]
    assert said == ["What is your name?", "You are registered, Ada."]


from voxtrio.testing import LLMResponse, ScriptedLLM, ScriptedSTT, ScriptedVAD, ToolCall, UserSpeech  # noqa: E402


class PipelineDesk(voxtrio.Agent):
    def __init__(self):
        super().__init__(instructions="You are the pipeline desk.", carry_history="messages")

    @voxtrio.function_tool
    async def back_to_realtime(self) -> voxtrio.Agent:
        """Hand the user back."""
        return RealtimeDesk(self.session.userdata)


class RealtimeDesk(voxtrio.Agent):
    def __init__(self, model):
        super().__init__(instructions="You are the realtime desk.", llm=model, carry_history="messages")
        self.model = model

    @voxtrio.function_tool
    async def to_pipeline(self) -> voxtrio.Agent:
        """Hand the user to the pipeline desk."""
        return PipelineDesk()


async def test_a_hand_off_to_a_pipeline_agent_and_back_carries_the_conversation(autojump_clock):
    server = FakeRealtime(
        turns=[Turn(0.5, 1.0, "pipeline please"), Turn(0.5, 1.0, "hello again", connection=1)],
        replies=[Reply((Call("to_pipeline", "{}", call_id="p"),)), Reply((Say("Welcome back.", 0.5),))],
    )
    # The scripted recognizer keeps the session's clock: the user speaks to the
    # pipeline once the realtime model has handed them over (at about 1.3 s).
    pipeline_speech = [UserSpeech(start=3.0, end=3.5, transcript="realtime please")]
    async with server.running():
        model = make_model(server)
        session = voxtrio.AgentSession(
            vad=ScriptedVAD(pipeline_speech),
            stt=ScriptedSTT(pipeline_speech),
            llm=ScriptedLLM([LLMResponse(input="realtime please", tool_calls=(ToolCall(name="back_to_realtime", arguments="{}", call_id="b"),))]),
            tts=ScriptedTTS([], default_chars_per_second=20.0),
            userdata=model,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, RealtimeDesk(model), ScriptedTransport())
            await trio.sleep(9.0)
            current = session.current_agent
            await session.aclose()
    assert isinstance(current, RealtimeDesk)
    handoffs = [i.new_agent for i in session.history.items if i.type == "agent_handoff"]
    assert handoffs == ["realtime_desk", "pipeline_desk", "realtime_desk"]
    users = [m[1] for m in messages(session) if m[0] == "user"]
    assert users == ["pipeline please", "realtime please", "hello again"]
    assert messages(session)[-1] == ("assistant", "Welcome back.", False)
    # Two conversations: the first closed at the hand-off; the second started
    # from the conversation so far.
    assert len(server.connections) == 2
    assert server.connections[0].client_gone_at is not None
    restored = [e["item"] for e in sent(server, "conversation.item.create", connection=1)]
    texts = [part.get("text") for item in restored if item["type"] == "message" for part in item["content"]]
    assert "pipeline please" in texts and "realtime please" in texts


# -- the scripted realtime model (the property harness's) -------------------------------


def test_a_scenario_on_the_scripted_realtime_model_keeps_the_invariants_and_truncates_where_heard():
    from voxtrio.testing.invariants import check_invariants, observe

    scenario = {
        "realtime": True,
        "user": [{"start": 0.5, "end": 1.0, "transcript": "Tell me a story."},
                 {"start": 3.0, "end": 3.4, "transcript": "Stop!"}],
        "llm": [{"input": "Tell me a story.", "content": "Here is a long story about a fox who walked all the way to the sea."},
                {"input": "Stop!", "content": "Sure."}],
        "end": {"at": 6.0},
    }
    observation = observe(scenario)
    assert [str(v) for v in check_invariants(observation)] == []
    finished = [e for e in observation.events if e.type == "playback_finished"]
    assert finished[0].interrupted and not finished[1].interrupted
    interrupts = [details for kind, details in observation.session.llm.requests if kind == "interrupt"]
    assert interrupts[0] == ("item_resp_1", round(finished[0].position, 3))
    said = [(i.role, i.text_content) for i in observation.session.history.items if i.type == "message"]
    assert said[0] == ("user", "Tell me a story.") and said[-2:] == [("user", "Stop!"), ("assistant", "Sure.")]
