"""AgentSession as an embedded API: start, events, state, errors outside a run."""

import pytest
import trio
import trio.testing

import voxtrio
from voxtrio.testing import (
    LLMResponse,
    ScriptedLLM,
    ScriptedSTT,
    ScriptedTransport,
    ScriptedTTS,
    ScriptedVAD,
    ToolCall,
    UserSpeech,
    running,
)


def make_session(**options):
    return voxtrio.AgentSession(
        llm=ScriptedLLM([LLMResponse(input="hi", content="hello")]),
        tts=ScriptedTTS([], default_chars_per_second=10.0),
        **options,
    )


def calls_that_need_a_running_session(session):
    return (
        lambda: session.say("x"),
        lambda: session.generate_reply(),
        lambda: session.interrupt(),
        lambda: session.update_agent(voxtrio.Agent()),
        lambda: session.commit_user_turn(),
        lambda: session.clear_user_turn(),
    )


def test_calls_that_need_a_running_session_raise_before_start():
    session = make_session()
    for call in calls_that_need_a_running_session(session):
        with pytest.raises(RuntimeError, match="not running"):
            call()
    with pytest.raises(RuntimeError):
        session.current_agent
    with pytest.raises(ValueError, match="userdata"):
        session.userdata
    assert session.agent_state == "initializing"


def test_unknown_options_are_rejected_with_their_names():
    with pytest.raises(TypeError, match="min_endpoint_delay"):
        voxtrio.AgentSession(min_endpoint_delay=0.5)
    with pytest.raises(ValueError, match="max_endpointing_delay"):
        voxtrio.AgentSession(min_endpointing_delay=2.0, max_endpointing_delay=1.0)


def test_defaults_follow_the_older_flat_api():
    options = voxtrio.AgentSession().options
    assert options.preemptive_generation is False
    assert options.user_away_timeout == 15.0
    assert options.max_tool_steps == 3
    assert options.min_consecutive_speech_delay == 0.0
    assert tuple(options.tts_text_transforms) == ("filter_markdown", "filter_emoji")
    assert options.conn_options.max_unrecoverable_errors == 3
    llm = options.conn_options.llm_conn_options
    assert (llm.max_retry, llm.retry_interval, llm.timeout) == (3, 2.0, 10.0)
    assert options.close_timeout == 10.0


def test_trio_run_embeds_the_session():
    class Greeter(voxtrio.Agent):
        async def on_enter(self):
            await self.session.say("hello")
            self.session.shutdown()

    session = make_session()
    closes = []
    session.on("close", closes.append)
    trio.run(session.main, Greeter(), ScriptedTransport(input_audio=False), clock=trio.testing.MockClock(autojump_threshold=0))
    assert [c.reason for c in closes] == ["user_initiated"]
    assert [m.content for m in session.history.items if m.type == "message"] == ["hello"]


async def test_nursery_start_returns_once_listening_and_calls_fail_after_close(autojump_clock):
    session = make_session(userdata={"k": 1})
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(instructions="be brief"))
        assert session.agent_state == "listening"
        assert session.current_agent.id == "default_agent"
        assert session.userdata == {"k": 1}
        await session.aclose()
    assert not session.running
    assert session.agent_state == "initializing"
    with pytest.raises(RuntimeError):
        session.say("too late")
    await session.aclose()  # closing a closed session is a no-op


async def test_calls_after_close_say_the_session_is_closed(autojump_clock):
    session = make_session()
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent())
        await session.aclose()
    for call in calls_that_need_a_running_session(session):
        with pytest.raises(voxtrio.SessionClosedError, match="the session is closed"):
            call()


async def reply_to_hi_and_close(session, after):
    """Run ``session``, ask for a reply to "hi", close it ``after`` seconds later;
    return what ``session.events()`` streamed meanwhile."""
    events = session.events()
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(), ScriptedTransport(input_audio=False))
        session.generate_reply(user_input="hi")
        await trio.sleep(after)
        nursery.start_soon(session.aclose)
        return [event async for event in events]


async def test_events_iterator_and_callbacks_see_one_ordered_log_ending_with_close(autojump_clock):
    session = make_session()
    seen = []
    session.on("*", seen.append)
    streamed = await reply_to_hi_and_close(session, after=2)
    assert [e.seq for e in streamed] == [e.seq for e in seen]
    seqs = [e.seq for e in streamed]
    assert all(a < b for a, b in zip(seqs, seqs[1:]))  # strictly: no number twice
    items = session.history.items
    # One counter numbers events and history items: the first number, 1, went
    # to the first item (the hand-off to the agent), whose event is number 2.
    assert (items[0].type, items[0].seq, seqs[0]) == ("agent_handoff", 1, 2)
    assert not set(seqs) & {i.seq for i in items}
    assert [e.type for e in streamed].count("close") == 1
    assert streamed[-1].type == "close"
    assert {e.type for e in streamed} >= {
        "agent_state_changed",
        "speech_created",
        "conversation_item_added",
        "playback_started",
        "playback_finished",
        "metrics_collected",
        "close",
    }
    item_seqs = [i.seq for i in items]
    assert all(a < b for a, b in zip(item_seqs, item_seqs[1:]))


async def test_an_event_emitted_from_a_callback_comes_after_the_one_being_delivered(autojump_clock):
    session = make_session()
    said = []

    def answer_the_user(event):
        if event.item.type == "message" and event.item.role == "user" and not said:
            said.append(session.say("one moment"))  # emits speech_created right here

    session.on("conversation_item_added", answer_the_user)
    seen = []
    session.on("*", seen.append)  # registered after the callback that emits
    streamed = await reply_to_hi_and_close(session, after=3)
    assert said
    for log in (seen, streamed):
        seqs = [e.seq for e in log]
        assert seqs == sorted(set(seqs))
        added = next(
            i for i, e in enumerate(log) if e.type == "conversation_item_added" and e.item.type == "message"
        )
        assert log[added + 1].type == "speech_created" and log[added + 1].speech_id == said[0].id


async def test_a_session_can_run_again_after_it_closed(autojump_clock):
    session = make_session()
    for _ in range(2):
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, voxtrio.Agent(), ScriptedTransport(input_audio=False))
            await session.say("again")
            await session.aclose()
    assert [e.type for e in session.recorded_events].count("close") == 2


async def test_running_twice_at_once_is_refused(autojump_clock):
    session = make_session()
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent())
        with pytest.raises(RuntimeError, match="already running"):
            await session.main(voxtrio.Agent())
        await session.aclose()


async def test_generate_reply_commits_user_input_and_instructions_stay_out_of_history(autojump_clock):
    llm = ScriptedLLM([LLMResponse(input="be nice", content="Sure!")])
    session = voxtrio.AgentSession(llm=llm, tts=ScriptedTTS([], default_chars_per_second=10.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(instructions="You help."), ScriptedTransport(input_audio=False))
        await session.generate_reply(user_input="question", instructions="be nice")
        await session.aclose()
    assert [(m.role, m.content) for m in session.history.items if m.type == "message"] == [
        ("user", "question"),
        ("assistant", "Sure!"),
    ]
    [request] = llm.requests
    assert [(m.role, m.content) for m in request.items] == [
        ("system", "You help."),
        ("user", "question"),
        ("system", "be nice"),
    ]


async def test_update_options_reaches_the_running_actors(autojump_clock):
    speech = [UserSpeech(start=1.0, end=2.0, transcript="Check it.")]

    @voxtrio.function_tool
    async def check() -> str:
        return "checked"

    llm = ScriptedLLM(
        [
            LLMResponse(input="Check it.", content="**Checking**.", tool_calls=(ToolCall(name="check", arguments="{}", call_id="c"),)),
            LLMResponse(input="checked", content="Done."),
        ]
    )
    tts = ScriptedTTS([], default_chars_per_second=10.0)
    session = voxtrio.AgentSession(vad=ScriptedVAD(speech), stt=ScriptedSTT(speech), llm=llm, tts=tts, tools=[check])
    user_turns = []
    session.on(
        "conversation_item_added",
        lambda e: user_turns.append(round(trio.current_time(), 3)) if getattr(e.item, "role", None) == "user" else None,
    )
    async with running(session, voxtrio.Agent(), ScriptedTransport()):
        session.update_options(min_endpointing_delay=0.8, max_tool_steps=0, tts_text_transforms=[])
        assert session.options.min_endpointing_delay == 0.8
        with pytest.raises(TypeError):
            session.update_options(nonsense=1)
        await trio.sleep(8)
    # the Turn: the turn commits 0.8 s after the speech ended (by default 0.5 s)
    assert user_turns == [2.8]
    # the Planner: no tool step after the first, so the follow-up may call no tool
    assert llm.tool_choices == [None, "none"]
    # the Speaker: no text transforms, so the markdown reaches the TTS
    assert tts.requests == ["**Checking**.", "Done."]
