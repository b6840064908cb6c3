"""Drain, shutdown, aclose and the error policy (A.16, A.17): bounded, exactly one close."""

import pytest
import trio

import voxtrio
from voxtrio.providers.base import LLM
from voxtrio.testing import LLMResponse, ScriptedLLM, ScriptedTransport, ScriptedTTS, ToolCall


def tts():
    return ScriptedTTS([], default_chars_per_second=10.0)


class FlakyLLM(LLM):
    """Fails ``failures`` times with the given error, then answers 'fine'."""

    def __init__(self, failures, error):
        self.failures = failures
        self.error = error
        self.calls = 0

    async def chat(self, *, chat_ctx, tools, tool_choice, output, conn_options):
        self.calls += 1
        await trio.sleep(0.05)
        if self.calls <= self.failures:
            raise self.error
        await output.send("fine")


async def run(session, agent, body, transport=None):
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, agent, transport or ScriptedTransport(input_audio=False))
        await body()


def close_events(session):
    return [e for e in session.recorded_events if e.type == "close"]


async def test_shutdown_with_drain_lets_queued_speech_play(autojump_clock):
    session = voxtrio.AgentSession(tts=tts())

    async def body():
        session.say("first one")
        last = session.say("second one", allow_interruptions=False)
        session.shutdown(drain=True)
        with pytest.raises(RuntimeError, match="draining or closing"):
            session.say("too late")
        await last

    await run(session, voxtrio.Agent(), body)
    assert [m.content for m in session.history.items if m.type == "message"] == ["first one", "second one"]
    assert [(c.reason, c.cancelled) for c in close_events(session)] == [("user_initiated", ())]


async def test_aclose_interrupts_even_protected_speech(autojump_clock):
    session = voxtrio.AgentSession(tts=tts())
    finished = []
    session.on("playback_finished", finished.append)

    async def body():
        session.say("a long protected sentence that goes on", allow_interruptions=False)
        await trio.sleep(1.0)
        t0 = trio.current_time()
        await session.aclose()
        assert trio.current_time() - t0 < 0.05

    await run(session, voxtrio.Agent(), body)
    assert [(round(f.position, 3), f.interrupted) for f in finished] == [(0.8, True)]


async def test_drain_runs_on_exit_and_waits_for_speech(autojump_clock):
    exits = []

    class Leaving(voxtrio.Agent):
        async def on_exit(self):
            exits.append(trio.current_time())
            self.session.say("bye now")

    session = voxtrio.AgentSession(tts=tts())

    async def body():
        t0 = trio.current_time()
        session.say("hello")
        await session.drain()
        assert round(trio.current_time() - t0, 3) == 1.4  # hello 0.2-0.7, bye now 0.7-1.4
        assert session.running
        with pytest.raises(RuntimeError):
            session.say("after drain")
        await session.aclose()

    await run(session, Leaving(), body)
    assert len(exits) == 1
    assert [m.content for m in session.history.items if m.type == "message"] == ["hello", "bye now"]


async def test_close_is_bounded_when_a_tool_never_returns(autojump_clock):
    async def stuck():
        await trio.sleep_forever()

    tool = voxtrio.FunctionTool.raw(name="stuck", description="never ends", parameters={}, function=stuck)
    llm = ScriptedLLM(
        [LLMResponse(input="go", content="working", tool_calls=(ToolCall(name="stuck", arguments="{}", call_id="c1"),))]
    )
    session = voxtrio.AgentSession(llm=llm, tts=tts(), close_timeout=3.0)

    async def body():
        session.generate_reply(user_input="go")
        await trio.sleep(5)
        t0 = trio.current_time()
        await session.aclose()
        assert trio.current_time() - t0 == pytest.approx(3.0)

    await run(session, voxtrio.Agent(tools=[tool]), body)
    [close] = close_events(session)
    assert close.reason == "user_initiated"
    assert close.cancelled == ("tool stuck",)


async def test_close_is_bounded_when_on_exit_never_returns(autojump_clock):
    class Stubborn(voxtrio.Agent):
        async def on_exit(self):
            await trio.sleep_forever()

    session = voxtrio.AgentSession(tts=tts(), close_timeout=2.0)

    async def body():
        t0 = trio.current_time()
        await session.aclose()
        assert trio.current_time() - t0 == pytest.approx(2.0)

    await run(session, Stubborn(), body)
    assert close_events(session)[0].cancelled == ("stubborn.on_exit",)


async def test_retryable_llm_errors_are_retried_and_reported_recoverable(autojump_clock):
    llm = FlakyLLM(2, voxtrio.APIConnectionError("connection reset"))
    session = voxtrio.AgentSession(llm=llm, tts=tts())
    errors = []
    session.on("error", errors.append)

    async def body():
        t0 = trio.current_time()
        handle = session.generate_reply(user_input="hi")
        await handle
        assert handle.exception() is None
        # two failed attempts (0.05 s each), retry waits 0.1 then 2.0, then success
        assert session.history.items[-1].content == "fine"
        assert trio.current_time() - t0 > 2.1
        await session.aclose()

    await run(session, voxtrio.Agent(), body)
    assert [(e.source, e.recoverable) for e in errors] == [("llm", True), ("llm", True)]
    assert llm.calls == 3


async def test_unrecoverable_errors_past_the_budget_close_the_session_with_error(autojump_clock):
    llm = FlakyLLM(100, voxtrio.APIStatusError("bad request", status_code=400))
    session = voxtrio.AgentSession(
        llm=llm, tts=tts(), conn_options=voxtrio.SessionConnectOptions(max_unrecoverable_errors=1)
    )
    errors = []
    session.on("error", errors.append)

    async def body():
        first = session.generate_reply(user_input="one")
        await first
        assert isinstance(first.exception(), voxtrio.APIStatusError)
        assert session.running  # one unrecoverable error is tolerated
        session.generate_reply(user_input="two")
        await trio.sleep_forever()  # the session closes itself

    with trio.move_on_after(60):
        await run(session, voxtrio.Agent(), body)
    assert [(e.source, e.recoverable) for e in errors] == [("llm", False), ("llm", False)]
    [close] = close_events(session)
    assert close.reason == "error" and "bad request" in close.error


async def test_speaking_resets_the_llm_error_count(autojump_clock):
    llm = FlakyLLM(0, None)
    session = voxtrio.AgentSession(
        llm=llm, tts=tts(), conn_options=voxtrio.SessionConnectOptions(max_unrecoverable_errors=1)
    )

    async def body():
        for _ in range(3):
            llm.failures, llm.calls, llm.error = 1, 0, voxtrio.APIStatusError("nope", status_code=400)
            await session.generate_reply(user_input="x")  # fails for good
            await session.generate_reply(user_input="y")  # speaks: the count resets
        assert session.running
        await session.aclose()

    await run(session, voxtrio.Agent(), body)
    assert close_events(session)[0].reason == "user_initiated"


async def test_update_agent_runs_exit_then_enter_and_records_the_handoff(autojump_clock):
    calls = []

    class First(voxtrio.Agent):
        async def on_exit(self):
            calls.append("first.exit")

    class Second(voxtrio.Agent):
        async def on_enter(self):
            calls.append("second.enter")
            self.session.say("second here")

    session = voxtrio.AgentSession(tts=tts())

    async def body():
        await session.update_agent(Second())
        assert session.current_agent.id == "second"
        await trio.sleep(3)
        await session.aclose()

    await run(session, First(), body)
    assert calls == ["first.exit", "second.enter"]
    handoffs = [(i.old_agent, i.new_agent) for i in session.history.items if i.type == "agent_handoff"]
    assert handoffs == [(None, "first"), ("first", "second")]


async def test_a_drain_past_close_timeout_cuts_even_protected_speech_and_records_what_was_heard(autojump_clock):
    session = voxtrio.AgentSession(tts=tts(), close_timeout=2.0)
    finished = []
    session.on("playback_finished", finished.append)

    async def body():
        session.say("a protected announcement that takes far longer than the close timeout", allow_interruptions=False)
        await trio.sleep(0.5)
        t0 = trio.current_time()
        session.shutdown(drain=True)
        await trio.sleep(3.0)
        # the drain is cut off at the deadline less the grace kept for it (2.0 - 0.25)
        assert close_events(session)[0].created_at - t0 == pytest.approx(1.75)

    await run(session, voxtrio.Agent(), body)
    # cut then, and recorded as heard so far
    assert [(round(f.position, 3), f.interrupted) for f in finished] == [(2.05, True)]
    [said] = [m for m in session.history.items if m.type == "message"]
    assert said.interrupted and said.content == "a protected"
    assert session.last_close.cancelled == ()


async def test_an_error_close_does_not_wait_for_the_users_last_words(autojump_clock):
    from helpers import history, of, timeline

    lines = await timeline(
        user=[{"start": 0.5, "end": 2.5, "transcript": "Are you still there?"}],
        faults={"vad": {"at": 1.5}},
    )
    [close] = of(lines, "close")
    assert (close["t"], close["reason"]) == (1.5, "error")
    assert [item for item in history(lines) if item["type"] == "message"] == []
