"""Hardening: no bad argument, provider or transport crashes a session or makes an error vanish.

Each test here reproduces one way a new user broke a session on purpose
(wrong arguments, providers that raise or send junk, transports that fail,
resources that hang) and pins what must happen instead: a typed error at
the call, or exactly one ``error`` event naming its source while the
session carries on (or closes with reason ``error`` and the root cause).
"""

import math

import pytest
import trio

import voxtrio
from voxtrio.errors import SessionClosedError
from voxtrio.testing import LLMResponse, ScriptedLLM, ScriptedTransport, ScriptedTTS


def scripted_session(llm=(), **options):
    return voxtrio.AgentSession(
        llm=ScriptedLLM(list(llm)),
        tts=ScriptedTTS([], default_chars_per_second=10.0),
        **options,
    )


async def run_until_closed(session, agent, transport=None, *, body=None):
    """Run ``session.main`` and ``body(session)``; return the close event."""
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, agent, transport)
        if body is not None:
            await body(session)
        await session.aclose()
    return session.last_close


# -- 1. public API arguments are checked at the call ------------------------------------------


WRONG_CALLS = [
    ("commit_user_turn(transcript_timeout=-1)", lambda s: s.commit_user_turn(transcript_timeout=-1), ValueError, "transcript_timeout"),
    ("commit_user_turn(transcript_timeout=nan)", lambda s: s.commit_user_turn(transcript_timeout=math.nan), ValueError, "transcript_timeout"),
    ("commit_user_turn(skip_reply='yes')", lambda s: s.commit_user_turn(skip_reply="yes"), TypeError, "skip_reply"),
    ("update_agent('main')", lambda s: s.update_agent("main"), TypeError, "agent"),
    ("update_agent(None)", lambda s: s.update_agent(None), TypeError, "agent"),
    ("update_agent(carry_history='all')", lambda s: s.update_agent(voxtrio.Agent(), carry_history="all"), ValueError, "carry_history"),
    ("update_options(user_turn_max_words='x')", lambda s: s.update_options(user_turn_max_words="x"), TypeError, "user_turn_max_words"),
    ("update_options(close_timeout='x')", lambda s: s.update_options(close_timeout="x"), TypeError, "close_timeout"),
    ("update_options(min_endpointing_delay=nan)", lambda s: s.update_options(min_endpointing_delay=math.nan), ValueError, "min_endpointing_delay"),
    ("update_options(allow_interruptions='no')", lambda s: s.update_options(allow_interruptions="no"), TypeError, "allow_interruptions"),
    ("update_options(max_tool_steps=1.5)", lambda s: s.update_options(max_tool_steps=1.5), TypeError, "max_tool_steps"),
    ("update_options(turn_detection='sometimes')", lambda s: s.update_options(turn_detection="sometimes"), ValueError, "turn_detection"),
    ("say(123)", lambda s: s.say(123), TypeError, "text"),
    ("say(None)", lambda s: s.say(None), TypeError, "text"),
    ("say('x', allow_interruptions='no')", lambda s: s.say("x", allow_interruptions="no"), TypeError, "allow_interruptions"),
    ("say('x', add_to_chat_ctx=None)", lambda s: s.say("x", add_to_chat_ctx=None), TypeError, "add_to_chat_ctx"),
    ("say('x', audio=b'..')", lambda s: s.say("x", audio=b"\0\0"), TypeError, "audio"),
    ("generate_reply(user_input=5)", lambda s: s.generate_reply(user_input=5), TypeError, "user_input"),
    ("generate_reply(instructions=['a'])", lambda s: s.generate_reply(instructions=["a"]), TypeError, "instructions"),
    ("generate_reply(tool_choice='banana')", lambda s: s.generate_reply(tool_choice="banana"), ValueError, "tool_choice"),
    ("generate_reply(tool_choice=3)", lambda s: s.generate_reply(tool_choice=3), TypeError, "tool_choice"),
    ("generate_reply(tools='abc')", lambda s: s.generate_reply(tools="abc"), TypeError, "tools"),
    ("generate_reply(tools=[1])", lambda s: s.generate_reply(tools=[1]), TypeError, "tools"),
    ("generate_reply(chat_ctx={})", lambda s: s.generate_reply(chat_ctx={}), TypeError, "chat_ctx"),
    ("interrupt(force='yes')", lambda s: s.interrupt(force="yes"), TypeError, "force"),
    ("set_audio_input_enabled(1)", lambda s: s.set_audio_input_enabled(1), TypeError, "enabled"),
    ("shutdown(drain='no')", lambda s: s.shutdown(drain="no"), TypeError, "drain"),
]


@pytest.mark.parametrize("call, error, name", [c[1:] for c in WRONG_CALLS], ids=[c[0] for c in WRONG_CALLS])
async def test_a_wrong_argument_is_refused_at_the_call_and_the_session_goes_on(autojump_clock, call, error, name):
    session = scripted_session([LLMResponse(input="hi", content="hello")])
    errors = []
    session.on("error", errors.append)

    async def body(session):
        options = session.options
        with pytest.raises(error, match=name):
            call(session)
        assert session.options == options  # nothing changed
        await trio.sleep(1.0)
        assert session.running
        await session.generate_reply(user_input="hi")

    close = await run_until_closed(session, voxtrio.Agent(), ScriptedTransport(input_audio=False), body=body)
    assert (close.reason, close.error, errors) == ("user_initiated", None, [])
    assert [m.content for m in session.history.items if m.type == "message"] == ["hi", "hello"]


async def test_a_tool_name_is_a_valid_tool_choice(autojump_clock):
    @voxtrio.function_tool
    async def lookup(city: str) -> str:
        """Look it up."""
        return city

    session = scripted_session()

    async def body(session):
        session.generate_reply(tool_choice="lookup")
        session.generate_reply(tool_choice="required", tools=["lookup"])

    await run_until_closed(session, voxtrio.Agent(tools=[lookup]), body=body)
    assert sorted(session.llm.tool_choices) == ["lookup", "required"]


def test_a_wrong_option_is_named_at_construction():
    with pytest.raises(TypeError, match="close_timeout"):
        voxtrio.AgentSession(close_timeout="x")
    with pytest.raises(TypeError, match="user_turn_max_words"):
        voxtrio.AgentSession(user_turn_max_words="x")
    with pytest.raises(ValueError, match="false_interruption_timeout"):
        voxtrio.AgentSession(false_interruption_timeout=-1)


async def test_calls_after_close_say_the_session_is_closed(autojump_clock):
    session = scripted_session()
    await run_until_closed(session, voxtrio.Agent())
    for call in (
        lambda: session.say("x"),
        lambda: session.generate_reply(),
        lambda: session.interrupt(),
        lambda: session.update_agent(voxtrio.Agent()),
        lambda: session.commit_user_turn(),
        lambda: session.clear_user_turn(),
    ):
        with pytest.raises(SessionClosedError, match="the session is closed"):
            call()
