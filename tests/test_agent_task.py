"""AgentTask: an inline sub-agent awaited from a tool or a hook (A.15)."""

import pytest
import trio

import voxtrio
from voxtrio.testing import LLMResponse, ScriptedLLM, ToolCall, running


def call(name, args="{}", call_id="c"):
    return (ToolCall(name=name, arguments=args, call_id=call_id),)


class GetName(voxtrio.AgentTask[str]):
    def __init__(self, question="ask for the name"):
        super().__init__(instructions="Collect the user's name.")
        self.question = question

    async def on_enter(self):
        self.session.generate_reply(instructions=self.question)

    @voxtrio.function_tool
    async def record_name(self, name: str) -> None:
        """Record the user's name."""
        self.complete(name)


class Registrar(voxtrio.Agent):
    def __init__(self):
        super().__init__(instructions="Register users.")

    @voxtrio.function_tool
    async def register(self) -> str:
        """Register the user."""
        name = await GetName()
        return f"registered {name}"


REGISTER_LLM = [
    LLMResponse(input="register me", content="Sure.", tool_calls=call("register", call_id="r")),
    LLMResponse(input="ask for the name", content="What is your name?"),
    LLMResponse(input="I am Ada", tool_calls=call("record_name", '{"name": "Ada"}', "n")),
    LLMResponse(input="registered Ada", content="You are registered, Ada."),
]


async def test_a_task_collects_a_value_over_two_user_turns(autojump_clock):
    llm = ScriptedLLM(REGISTER_LLM)
    async with running(voxtrio.AgentSession(llm=llm), Registrar()) as session:
        first = await session.run(user_input="register me")
        # the run returns while the task waits for the user
        assert isinstance(session.current_agent, GetName)
        second = await session.run(user_input="I am Ada")
        registrar = session.current_agent

    first.expect.next_event().is_message(role="assistant").contains("Sure")
    first.expect.next_event().is_agent_handoff(new_agent_type=GetName)
    first.expect.next_event().is_message(role="assistant").contains("What is your name")
    first.expect.no_more_events()

    second.expect.next_event().is_function_call(name="register")
    second.expect.next_event().is_function_call(name="record_name", arguments={"name": "Ada"})
    second.expect.next_event().is_function_call_output(output="")
    second.expect.next_event().is_agent_handoff(new_agent_type=Registrar)
    second.expect.next_event().is_function_call_output(output="registered Ada")
    second.expect.next_event().is_message(role="assistant").contains("registered, Ada")
    second.expect.no_more_events()

    assert isinstance(registrar, Registrar)
    # the task's conversation was merged back (its tool calls were not: not preserved)
    contents = [(i.type, getattr(i, "content", getattr(i, "name", None))) for i in registrar.chat_ctx.items]
    assert ("message", "What is your name?") in contents and ("message", "I am Ada") in contents
    assert ("function_call", "record_name") not in contents
    # and the parent's follow-up LLM step saw it, under the parent's own instructions only
    follow_up = [(i.role, i.content) for i in llm.requests[-1].items if i.type == "message"]
    assert ("user", "I am Ada") in follow_up
    assert [content for role, content in follow_up if role == "system"] == ["Register users."]


async def test_the_parent_speech_cannot_be_interrupted_while_its_task_runs(autojump_clock):
    llm = ScriptedLLM(REGISTER_LLM)
    async with running(voxtrio.AgentSession(llm=llm), Registrar()) as session:
        await session.run(user_input="register me")
        session.interrupt()  # the user (or the app) cuts in: only the task's speech may be cut
        second = await session.run(user_input="I am Ada")
    second.expect.contains_function_call_output(output="registered Ada")


async def test_closing_while_a_task_waits_for_the_user_unwinds_it_at_once(autojump_clock):
    exits = []

    class Leaving(GetName):
        async def on_exit(self):
            exits.append("task")

    class Parent(Registrar):
        @voxtrio.function_tool
        async def register(self) -> str:
            """Register the user."""
            return f"registered {await Leaving()}"

    session = voxtrio.AgentSession(llm=ScriptedLLM(REGISTER_LLM), close_timeout=5.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, Parent())
        await session.run(user_input="register me")
        t0 = trio.current_time()
        await session.aclose()
        assert trio.current_time() - t0 < 0.1
    assert exits == ["task"]
    assert session.last_close.cancelled == ()
    outputs = [i for i in session.history.items if i.type == "function_call_output"]
    assert [(o.output, o.is_error) for o in outputs] == [
        ("AgentTask leaving is cancelled: the session is closing", True)
    ]
    handoffs = [(i.old_agent, i.new_agent) for i in session.history.items if i.type == "agent_handoff"]
    assert handoffs == [(None, "parent"), ("parent", "leaving"), ("leaving", "parent")]


async def test_closing_while_a_task_hangs_is_bounded_by_close_timeout(autojump_clock):
    class Hanging(voxtrio.AgentTask[None]):
        async def on_enter(self):
            await trio.sleep_forever()

        async def on_exit(self):
            await trio.sleep_forever()

    class Parent(voxtrio.Agent):
        async def on_enter(self):
            await Hanging()

    session = voxtrio.AgentSession(llm=ScriptedLLM([]), close_timeout=3.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, Parent())
        await trio.sleep(1)
        assert isinstance(session.current_agent, Hanging)
        t0 = trio.current_time()
        await session.aclose()
        assert trio.current_time() - t0 == pytest.approx(3.0)
    assert "hanging.on_enter" in session.last_close.cancelled


async def test_nested_tasks_and_parallel_awaits_run_one_at_a_time(autojump_clock):
    order = []

    class Inner(voxtrio.AgentTask[str]):
        async def on_enter(self):
            order.append("inner enter")
            self.complete("inner value")

    class Outer(voxtrio.AgentTask[str]):
        def __init__(self, tag):
            super().__init__(id=f"outer_{tag}")
            self.tag = tag

        async def on_enter(self):
            order.append(f"{self.tag} enter")
            inner = await Inner()
            self.complete(f"{self.tag}+{inner}")

    class Parent(voxtrio.Agent):
        @voxtrio.function_tool
        async def one(self) -> str:
            return await Outer("one")

        @voxtrio.function_tool
        async def two(self) -> str:
            return await Outer("two")

    llm = ScriptedLLM([LLMResponse(input="both", tool_calls=call("one", call_id="1") + call("two", call_id="2"))])
    async with running(voxtrio.AgentSession(llm=llm), Parent()) as session:
        result = await session.run(user_input="both")
        assert session.current_agent.id == "parent"
    assert order == ["one enter", "inner enter", "two enter", "inner enter"]
    outputs = [e.item.output for e in result.events if e.type == "function_call_output"]
    assert outputs == ["one+inner value", "two+inner value"]
    handoffs = [(e.item.old_agent, e.item.new_agent) for e in result.events if e.type == "agent_handoff"]
    assert handoffs == [
        ("parent", "outer_one"), ("outer_one", "inner"), ("inner", "outer_one"), ("outer_one", "parent"),
        ("parent", "outer_two"), ("outer_two", "inner"), ("inner", "outer_two"), ("outer_two", "parent"),
    ]


async def test_a_hand_off_from_inside_a_task_unwinds_it(autojump_clock):
    class Escalating(GetName):
        @voxtrio.function_tool
        async def escalate(self):
            """Hand the caller to a human."""
            return voxtrio.Agent(id="human")

    class Parent(Registrar):
        @voxtrio.function_tool
        async def register(self) -> str:
            """Register the user."""
            return f"registered {await Escalating()}"

    llm = ScriptedLLM(REGISTER_LLM + [LLMResponse(input="a human please", tool_calls=call("escalate", call_id="e"))])
    async with running(voxtrio.AgentSession(llm=llm), Parent()) as session:
        await session.run(user_input="register me")
        result = await session.run(user_input="a human please")
        assert session.current_agent.id == "human"
    outputs = {e.item.call_id: (e.item.output, e.item.is_error) for e in result.events if e.type == "function_call_output"}
    assert outputs == {"e": ("", False), "r": ("AgentTask escalating is cancelled: handing off", True)}
    handoffs = [(e.item.old_agent, e.item.new_agent) for e in result.events if e.type == "agent_handoff"]
    assert handoffs == [("escalating", "parent"), ("parent", "human")]


async def test_a_task_can_only_be_awaited_where_the_session_can_run_it(autojump_clock):
    with pytest.raises(RuntimeError, match="inside a running session"):
        await GetName()

    problems = []

    class Hooked(voxtrio.Agent):
        async def on_user_turn_completed(self, turn_ctx, new_message):
            try:
                await GetName()
            except RuntimeError as error:
                problems.append(str(error))

    session, agents = await run_with(Hooked)
    assert problems == ["an AgentTask can only be awaited from a tool, on_enter or on_exit"]
    # the refused task never became the agent, and the turn went on as usual
    assert agents == ["hooked"]
    assert [(m.role, m.content) for m in session.history.items if m.type == "message"] == [("user", "hello")]


async def run_with(agent_class):
    """A session with ``agent_class`` in which the user says "hello": the session,
    and the ids of the agents it handed the call to."""
    from voxtrio.testing import ScriptedSTT, ScriptedTransport, ScriptedVAD, UserSpeech

    speech = [UserSpeech(start=0.5, end=1.0, transcript="hello")]
    session = voxtrio.AgentSession(vad=ScriptedVAD(speech), stt=ScriptedSTT(speech), llm=ScriptedLLM([]))
    async with running(session, agent_class(), ScriptedTransport()):
        await trio.sleep(3)
    return session, [item.new_agent for item in session.history.items if item.type == "agent_handoff"]
