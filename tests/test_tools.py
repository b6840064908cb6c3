"""@function_tool, RunContext, toolsets and the tool-step rules of A.13."""

import enum
from typing import Annotated, Literal

import pydantic
import pytest
import trio

import voxtrio
from voxtrio.testing import LLMResponse, ScriptedLLM, ScriptedTTS, ToolCall, running


def calls(*specs):
    return tuple(ToolCall(name=name, arguments=args, call_id=call_id) for name, args, call_id in specs)


class Size(enum.Enum):
    SMALL = "small"
    LARGE = "large"


class Address(pydantic.BaseModel):
    street: str
    number: int


def test_schema_comes_from_the_signature_hints_and_docstring():
    @voxtrio.function_tool
    async def order(
        context: voxtrio.RunContext,
        item: str,
        size: Size,
        quantity: int = 1,
        wrap: Literal["box", "bag"] = "box",
        note: Annotated[str, pydantic.Field(description="for the courier")] = "",
        address: Address | None = None,
    ) -> str:
        """Order an item.

        Args:
            item: what to order
            size: how big
                (it matters)
            quantity (int): how many

        Returns:
            a confirmation
        """

    assert order.name == "order"
    assert order.description == "Order an item."
    assert order.context_parameter == "context"
    schema = order.parameters
    assert schema["required"] == ["item", "size"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert set(props) == {"item", "size", "quantity", "wrap", "note", "address"}
    assert props["item"] == {"type": "string", "description": "what to order"}
    assert props["size"]["description"] == "how big (it matters)"
    assert schema["$defs"]["Size"]["enum"] == ["small", "large"]
    assert props["quantity"] == {"type": "integer", "description": "how many", "default": 1}
    assert props["wrap"]["enum"] == ["box", "bag"]
    assert props["note"]["description"] == "for the courier"
    assert "title" not in str(schema)


@pytest.mark.parametrize(
    "docstring",
    [
        """Look it up.\n\n:param city: the city\n:param int days: how many\n    days ahead\n:returns: text""",
        """Look it up.\n\nParameters\n----------\ncity : str\n    the city\ndays : int\n    how many\n    days ahead\n""",
    ],
    ids=["sphinx", "numpy"],
)
def test_sphinx_and_numpy_docstrings_describe_parameters(docstring):
    async def forecast(city: str, days: int) -> str:
        return ""

    forecast.__doc__ = docstring
    tool = voxtrio.function_tool(forecast)
    assert tool.description == "Look it up."
    assert tool.parameters["properties"]["city"]["description"] == "the city"
    assert tool.parameters["properties"]["days"]["description"] == "how many days ahead"


def test_arguments_are_validated_into_typed_values_and_errors_name_the_field():
    @voxtrio.function_tool
    async def order(item: str, size: Size, address: Address | None = None) -> str:
        """Order."""

    values = order.parse_arguments('{"item": "tea", "size": "large", "address": {"street": "Main", "number": 5}}')
    assert values == {"item": "tea", "size": Size.LARGE, "address": Address(street="Main", number=5)}
    problems = {
        '{"size": "large"}': "field 'item': missing required argument",
        '{"item": "tea", "size": "huge"}': "field 'size': Input should be 'small' or 'large'",
        '{"item": "tea", "size": "small", "colour": 1}': "field 'colour': unexpected argument",
        '{"item": "tea", "size": "small", "address": {"street": "x", "number": "five"}}': (
            "field 'address.number': Input should be a valid integer, unable to parse string as an integer"
        ),
        '{"item": "tea"': "arguments are not valid JSON: Expecting ',' delimiter",
        "[1]": "arguments must be a JSON object, got list",
    }
    for arguments, message in problems.items():
        with pytest.raises(voxtrio.ToolArgumentsError) as error:
            order.parse_arguments(arguments)
        assert str(error.value) == message


def test_a_type_that_cannot_be_described_is_an_error_naming_the_tool_and_parameter():
    class Opaque:
        pass

    with pytest.raises(TypeError, match=r"tool `stash` parameter `thing`: cannot describe it"):

        @voxtrio.function_tool
        async def stash(thing: Opaque) -> None:
            """Keep it."""


def test_tools_are_checked_when_given():
    @voxtrio.function_tool
    async def ping() -> str:
        return "pong"

    with pytest.raises(TypeError, match="@function_tool"):
        voxtrio.Agent(tools=[lambda: None])
    with pytest.raises(ValueError, match="two tools are named `ping`"):
        voxtrio.Agent(tools=[ping, voxtrio.Toolset(id="more", tools=[ping])])


async def test_every_error_kind_gets_one_output_and_the_agent_still_answers(autojump_clock):
    class Failing(voxtrio.Agent):
        @voxtrio.function_tool
        async def crash(self) -> str:
            raise RuntimeError("password=hunter2")

        @voxtrio.function_tool
        async def refuse(self) -> str:
            raise voxtrio.ToolError("not for you")

        @voxtrio.function_tool
        async def count(self, n: int) -> str:
            return f"counted {n}"

        @voxtrio.function_tool
        async def silent(self) -> None:
            pass

    llm = ScriptedLLM(
        [
            LLMResponse(
                input="go",
                tool_calls=calls(
                    ("crash", "{}", "a"),
                    ("refuse", "{}", "b"),
                    ("nope", "{}", "c"),
                    ("count", '{"n": 1', "d"),
                    ("count", '{"n": "one"}', "e"),
                    ("silent", "{}", "f"),
                    ("count", '{"n": 7}', "g"),
                ),
            ),
            LLMResponse(input="counted 7", content="done"),
        ]
    )
    async with running(voxtrio.AgentSession(llm=llm), Failing()) as session:
        result = await session.run(user_input="go")
    outputs = [(e.item.call_id, e.item.output, e.item.is_error) for e in result.events if e.type == "function_call_output"]
    assert outputs == [
        ("a", "An internal error occurred", True),
        ("b", "not for you", True),
        ("c", "Unknown function: nope - available tools: count, crash, refuse, silent", True),
        ("d", "Error parsing arguments for `count`: arguments are not valid JSON: Expecting ',' delimiter", True),
        ("e", "Error parsing arguments for `count`: field 'n': Input should be a valid integer, unable to parse string as an integer", True),
        ("f", "", False),
        ("g", "counted 7", False),
    ]
    assert "hunter2" not in str(session.history.to_dicts())
    result.expect[-1].is_message(role="assistant")
    # one follow-up LLM step answered all of them
    assert len(llm.requests) == 2


async def test_parallel_calls_run_concurrently_with_each_other_and_with_playout(autojump_clock):
    started = []

    @voxtrio.function_tool
    async def slow_lookup(key: str) -> str:
        started.append((key, trio.current_time()))
        await trio.sleep(1.0)
        return f"value of {key}"

    llm = ScriptedLLM(
        [
            LLMResponse(
                input="look",
                content="Looking both up.",
                tool_calls=calls(("slow_lookup", '{"key": "a"}', "1"), ("slow_lookup", '{"key": "b"}', "2")),
            ),
            LLMResponse(input="value of b", content="Both found."),
        ]
    )
    tts = ScriptedTTS([], default_chars_per_second=4.0)  # "Looking both up." plays 4 s
    session = voxtrio.AgentSession(llm=llm, tts=tts, tools=[slow_lookup])
    async with running(session, voxtrio.Agent(), voxtrio.testing.ScriptedTransport(input_audio=False)):
        t0 = trio.current_time()
        result = await session.run(user_input="look")
        elapsed = trio.current_time() - t0
    assert [key for key, _ in started] == ["a", "b"]
    assert started[0][1] == started[1][1] == pytest.approx(t0 + 0.3)  # as soon as parsed
    # the tools finished during the 4 s of playout: the follow-up starts right after it
    outputs = [e for e in result.events if e.type == "function_call_output"]
    assert [o.item.created_at - t0 for o in outputs] == pytest.approx([4.5, 4.5])
    assert elapsed < 10


async def test_max_tool_steps_then_one_final_round_without_tools(autojump_clock):
    @voxtrio.function_tool
    async def again() -> str:
        return "more"

    llm = ScriptedLLM(
        [
            LLMResponse(input="loop", tool_calls=calls(("again", "{}", "x"))),
            LLMResponse(input="more", content="", tool_calls=calls(("again", "{}", "y"))),
        ]
    )
    session = voxtrio.AgentSession(llm=llm, tools=[again], max_tool_steps=2)
    executed = []
    session.on("function_tools_executed", executed.append)
    async with running(session, voxtrio.Agent()):
        result = await session.run(user_input="loop")
    # the first step and two tool-enabled follow-ups call tools; the last may not
    # the first step and two follow-ups may call tools (the reference's count), the last may not
    assert llm.tool_choices == [None, "auto", "auto", "none"]
    assert [e.max_steps_reached for e in executed] == [False, False, True, True]
    outputs = [(e.item.output, e.item.is_error) for e in result.events if e.type == "function_call_output"]
    # a call made anyway in the tool_choice="none" round gets its one output, and no
    # further round (a model that keeps calling cannot loop)
    assert outputs == [
        ("more", False),
        ("more", False),
        ("more", False),
        ("tool calls are not allowed in this step (tool_choice is 'none')", True),
    ]


async def test_an_interrupted_step_still_commits_its_calls_with_their_outputs(autojump_clock):
    @voxtrio.function_tool
    async def book(context: voxtrio.RunContext) -> str:
        await trio.sleep(3.0)
        return "booked"

    llm = ScriptedLLM(
        [LLMResponse(input="book it", content="Booking now, one moment please.", tool_calls=calls(("book", "{}", "b1")))]
    )
    tts = ScriptedTTS([], default_chars_per_second=10.0)
    session = voxtrio.AgentSession(llm=llm, tts=tts, tools=[book])
    executed = []
    session.on("function_tools_executed", executed.append)
    async with running(session, voxtrio.Agent(), voxtrio.testing.ScriptedTransport(input_audio=False)):
        handle = session.generate_reply(user_input="book it")
        await trio.sleep(2.0)  # 1.5 s of the 3.1 s sentence played
        await session.interrupt()
        await handle
        items = [(i.type, getattr(i, "output", None)) for i in session.history.items][-3:]
    assert items == [("message", None), ("function_call", None), ("function_call_output", "booked")]
    assert session.history.items[-3].interrupted
    assert len(llm.requests) == 1  # no reply after an interruption
    assert [e.max_steps_reached for e in executed] == [False]
    # the speech's own items: what it said, and its call with the output
    assert [i.type for i in handle.chat_items] == ["message", "function_call", "function_call_output"]


async def test_the_follow_up_step_sees_what_was_said_and_each_call_with_its_output(autojump_clock):
    @voxtrio.function_tool
    async def weather(city: str) -> str:
        return f"sunny in {city}"

    llm = ScriptedLLM(
        [
            LLMResponse(input="weather?", content="Let me check.", tool_calls=calls(("weather", '{"city": "Oslo"}', "w"))),
            LLMResponse(input="sunny in Oslo", content="It is sunny."),
        ]
    )
    async with running(voxtrio.AgentSession(llm=llm, tools=[weather]), voxtrio.Agent(instructions="Be brief.")) as session:
        await session.run(user_input="weather?")
    follow_up = llm.requests[1].items
    assert [(i.type, getattr(i, "role", None), getattr(i, "content", None) or getattr(i, "output", None)) for i in follow_up] == [
        ("message", "system", "Be brief."),
        ("message", "user", "weather?"),
        ("message", "assistant", "Let me check."),
        ("function_call", None, None),
        ("function_call_output", None, "sunny in Oslo"),
    ]


async def test_run_context_sees_the_call_userdata_and_can_protect_the_speech(autojump_clock):
    seen = {}

    @voxtrio.function_tool
    async def remember(context: voxtrio.RunContext[dict], fact: str) -> None:
        context.userdata["facts"].append(fact)
        context.disallow_interruptions()
        seen["call"] = (context.function_call.name, context.function_call.arguments)
        seen["agent"] = context.agent.id
        seen["ctx"] = [i.content for i in context.chat_ctx.items if i.type == "message"]
        with pytest.raises(RuntimeError, match="interrupt"):
            context.session.interrupt()
        await context.wait_for_playout()
        seen["played_at"] = trio.current_time()

    llm = ScriptedLLM([LLMResponse(input="note it", content="Noted.", tool_calls=calls(("remember", '{"fact": "tea"}', "r")))])
    tts = ScriptedTTS([], default_chars_per_second=3.0)
    session = voxtrio.AgentSession(llm=llm, tts=tts, tools=[remember], userdata={"facts": []})
    async with running(session, voxtrio.Agent(instructions="be kind"), voxtrio.testing.ScriptedTransport(input_audio=False)):
        t0 = trio.current_time()
        await session.run(user_input="note it")
    assert session.userdata == {"facts": ["tea"]}
    assert seen["call"] == ("remember", '{"fact": "tea"}')
    assert seen["agent"] == "default_agent"
    assert seen["ctx"] == ["be kind", "note it"]
    assert seen["played_at"] - t0 == pytest.approx(0.3 + 0.2 + 2.0)  # LLM done, ttfb, "Noted." at 3 cps


async def test_toolsets_group_tools_and_session_tools_survive_hand_offs(autojump_clock):
    @voxtrio.function_tool
    async def hours() -> str:
        return "open 9 to 5"

    @voxtrio.function_tool
    async def refund(order: int) -> str:
        return f"refunded {order}"

    @voxtrio.function_tool(name="hours")
    async def billing_hours() -> str:
        return "billing is open 10 to 4"

    class Support(voxtrio.Agent):
        @voxtrio.function_tool
        async def to_billing(self):
            """Transfer to billing."""
            return voxtrio.Agent(id="billing", tools=[voxtrio.Toolset(id="billing", tools=[refund, billing_hours])])

    llm = ScriptedLLM(
        [
            LLMResponse(input="billing", tool_calls=calls(("to_billing", "{}", "t"))),
            LLMResponse(input="when?", tool_calls=calls(("hours", "{}", "h"))),
        ]
    )
    session = voxtrio.AgentSession(llm=llm, tools=[voxtrio.Toolset(id="common", tools=[hours])])
    async with running(session, Support()):
        await session.run(user_input="billing")
        result = await session.run(user_input="when?")
    offered = [sorted(tool.name for tool in tools) for tools in llm.tool_requests]
    assert offered[:2] == [["hours", "to_billing"], ["hours", "refund"]]
    # the agent's tool of the same name beats the session's
    result.expect.contains_function_call_output(output="billing is open 10 to 4")


async def test_a_tool_cut_off_by_the_close_is_reported_once_with_its_output(autojump_clock):
    @voxtrio.function_tool
    async def stuck() -> str:
        await trio.sleep_forever()

    llm = ScriptedLLM([LLMResponse(input="go", tool_calls=calls(("stuck", "{}", "s")))])
    session = voxtrio.AgentSession(llm=llm, tools=[stuck], close_timeout=1.0)
    executed = []
    session.on("function_tools_executed", executed.append)
    async with running(session, voxtrio.Agent(), voxtrio.testing.ScriptedTransport(input_audio=False)):
        session.generate_reply(user_input="go")
        await trio.sleep(0.5)
    [event] = executed
    assert event.max_steps_reached is False
    assert [(o.call_id, o.is_error) for o in event.function_call_outputs] == [("s", True)]
