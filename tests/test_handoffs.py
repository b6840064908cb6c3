"""Hand-offs (A.15): carry-over policy, per-agent providers, and no deadlocks
between hand-off, drain and close."""

import pytest
import trio

import voxtrio
from voxtrio.testing import LLMResponse, ScriptedLLM, ScriptedTransport, ScriptedTTS, ToolCall, running

from helpers import messages, of, timeline


def call(name, args="{}", call_id="c"):
    return (ToolCall(name=name, arguments=args, call_id=call_id),)


class Billing(voxtrio.Agent):
    def __init__(self, **kwargs):
        super().__init__(instructions="You do billing.", **kwargs)

    async def on_enter(self):
        self.session.generate_reply(instructions="greet as billing")


class Front(voxtrio.Agent):
    def __init__(self, carry="none"):
        super().__init__(instructions="You are the front desk.")
        self.carry = carry

    @voxtrio.function_tool
    async def check(self) -> str:
        return "checked"

    @voxtrio.function_tool
    async def transfer(self):
        """Transfer to billing."""
        return Billing(carry_history=self.carry), "transferring"


FRONT_LLM = [
    LLMResponse(input="check", content="Checking.", tool_calls=call("check", call_id="k")),
    LLMResponse(input="checked", content="All good."),
    LLMResponse(input="billing", tool_calls=call("transfer", call_id="t")),
    LLMResponse(input="transferring", content="Transferring you."),
    LLMResponse(input="greet as billing", content="Billing here."),
]


@pytest.mark.parametrize(
    "carry, expected",
    [
        ("none", ["You do billing.", "Billing here."]),
        (
            "messages",
            ["You do billing.", "check", "Checking.", "All good.", "billing", "Transferring you.", "Billing here."],
        ),
        (
            "full",
            ["You do billing.", "check", "Checking.", "check()", "checked", "All good.", "billing",
             "transfer()", "transferring", "Transferring you.", "Billing here."],
        ),
    ],
)
async def test_carry_history_policy_decides_what_the_new_agent_knows(autojump_clock, carry, expected):
    llm = ScriptedLLM(FRONT_LLM)
    async with running(voxtrio.AgentSession(llm=llm), Front(carry)) as session:
        await session.run(user_input="check")
        result = await session.run(user_input="billing")
        billing = session.current_agent

    # (agent, x): the old agent answers x, then the hand-off, then the new agent
    result.expect.next_event().is_function_call(name="transfer")
    result.expect.next_event().is_function_call_output(output="transferring")
    result.expect.next_event().is_message(role="assistant").contains("Transferring")
    result.expect.next_event().is_agent_handoff(new_agent_type=Billing)
    result.expect.next_event().is_message(role="assistant").contains("Billing here")
    result.expect.no_more_events()

    def text(item):
        if item.type == "message":
            return item.content
        if item.type == "agent_handoff":
            return f"{item.old_agent} -> {item.new_agent}"
        return f"{item.name}()" if item.type == "function_call" else item.output

    assert [text(item) for item in billing.chat_ctx.items] == expected
    # the old agent answers "transferring" with no tools: it is handing off
    assert llm.tool_choices == [None, "auto", None, "none", None]
    # the session history keeps everything, whatever the policy
    assert [text(item) for item in session.history.items] == [
        "None -> front", "check", "Checking.", "check()", "checked", "All good.", "billing",
        "transfer()", "transferring", "Transferring you.", "front -> billing", "Billing here.",
    ]


async def test_update_agent_can_override_the_policy(autojump_clock):
    llm = ScriptedLLM([LLMResponse(input="hi", content="hello")])
    async with running(voxtrio.AgentSession(llm=llm), voxtrio.Agent()) as session:
        await session.run(user_input="hi")
        await session.update_agent(voxtrio.Agent(id="next"), carry_history="messages")
        assert [i.content for i in session.current_agent.chat_ctx.items] == ["hi", "hello"]
        with pytest.raises(ValueError, match="carry_history"):
            session.update_agent(voxtrio.Agent(), carry_history="summary")


async def test_the_agents_own_llm_and_tts_beat_the_sessions(autojump_clock):
    session_llm = ScriptedLLM([LLMResponse(input="hi", content="from the session llm")])
    agent_llm = ScriptedLLM([LLMResponse(input="hi", content="from the agent llm")])
    session_tts = ScriptedTTS([], default_chars_per_second=20.0)
    agent_tts = ScriptedTTS([], default_chars_per_second=20.0)
    session = voxtrio.AgentSession(llm=session_llm, tts=session_tts)
    async with running(session, voxtrio.Agent(), ScriptedTransport(input_audio=False)):
        first = await session.run(user_input="hi")
        await session.update_agent(voxtrio.Agent(id="special", llm=agent_llm, tts=agent_tts))
        second = await session.run(user_input="hi")
    first.expect.next_event().is_message().contains("session llm")
    second.expect.next_event().is_message().contains("agent llm")
    assert session_tts.requests == ["from the session llm"]
    assert agent_tts.requests == ["from the agent llm"]


async def test_hand_off_during_a_tool_reply_lets_the_reply_finish_first(autojump_clock):
    order = []

    class Leaving(voxtrio.Agent):
        async def on_exit(self):
            order.append(("exit", trio.current_time()))

        @voxtrio.function_tool
        async def lookup(self) -> str:
            # the hand-off is asked for while this tool's speech is still playing
            self.session.update_agent(Arriving())
            return "found it"

    class Arriving(voxtrio.Agent):
        async def on_enter(self):
            order.append(("enter", trio.current_time()))
            self.session.say("new agent here")

    llm = ScriptedLLM(
        [
            LLMResponse(input="look", content="Looking that up for you.", tool_calls=call("lookup")),
            LLMResponse(input="found it", content="Here it is."),
        ]
    )
    tts = ScriptedTTS([], default_chars_per_second=10.0)
    session = voxtrio.AgentSession(llm=llm, tts=tts)
    async with running(session, Leaving(), ScriptedTransport(input_audio=False)):
        result = await session.run(user_input="look")
    texts = [e.item.content for e in result.events if e.type == "message"]
    assert texts == ["Looking that up for you.", "Here it is.", "new agent here"]
    result.expect.contains_agent_handoff(new_agent_type=Arriving)
    # the old agent finished its tool reply (tool_choice none while draining) before it exited
    assert llm.tool_choices == [None, "none"]
    assert [what for what, _ in order] == ["exit", "enter"]


async def test_hand_off_while_the_user_speaks_gives_the_turn_to_the_new_agent(autojump_clock):
    lines = await timeline(
        vad={"min_speech_duration": 0.05, "min_silence_duration": 0.5},
        agents={"main": {"instructions": "main"}, "other": {"instructions": "other"}},
        user=[{"start": 1.0, "end": 3.0, "transcript": "Who am I talking to?"}],
        llm=[{"input": "Who am I talking to?", "content": "You reached the other agent."}],
        tts_default_chars_per_second=10.0,
        actions=[{"at": 2.0, "call": "update_agent", "args": {"agent": "other"}}],
        end={"drain_after_last_user": 5.0},
    )
    handoffs = [line["item"] for line in of(lines, "conversation_item_added") if line["item"]["type"] == "agent_handoff"]
    assert [(h["old_agent"], h["new_agent"]) for h in handoffs] == [(None, "main"), ("main", "other")]
    assert [line["t"] for line in of(lines, "conversation_item_added") if line["item"]["type"] == "agent_handoff"][1] == 2.0
    # (the new agent's instructions are its context, not the session history)
    assert messages(lines) == [
        ("user", "Who am I talking to?", False),
        ("assistant", "You reached the other agent.", False),
    ]
    assert of(lines, "close")[0]["reason"] == "user_initiated"


async def test_close_during_a_hand_off_is_bounded_by_close_timeout(autojump_clock):
    class Stuck(voxtrio.Agent):
        async def on_exit(self):
            await trio.sleep_forever()

    session = voxtrio.AgentSession(llm=ScriptedLLM([]), close_timeout=2.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, Stuck())
        handoff = session.update_agent(voxtrio.Agent(id="never"))
        await trio.sleep(0.5)  # the hand-off is waiting for on_exit
        t0 = trio.current_time()
        await session.aclose()
        assert trio.current_time() - t0 == pytest.approx(2.0)
    assert isinstance(handoff.exception(), RuntimeError)
    assert session.last_close.cancelled == ("stuck.on_exit",)
    assert [i.new_agent for i in session.history.items if i.type == "agent_handoff"] == ["stuck"]


async def test_a_tool_returning_two_agents_hands_off_to_neither(autojump_clock):
    @voxtrio.function_tool
    async def confused():
        return voxtrio.Agent(id="a"), voxtrio.Agent(id="b")

    llm = ScriptedLLM([LLMResponse(input="go", tool_calls=call("confused"))])
    async with running(voxtrio.AgentSession(llm=llm, tools=[confused]), voxtrio.Agent()) as session:
        result = await session.run(user_input="go")
        assert session.current_agent.id == "default_agent"
    result.expect.contains_function_call_output(output="the tool returned more than one agent", is_error=True)
