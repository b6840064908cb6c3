"""SmolLM: rule-routed tool calls, constrained slot filling, sentence-capped replies."""

import json

import pytest
import trio

import voxtrio
from voxtrio.chat import ChatContext, FunctionCallOutput
from voxtrio.errors import APIError
from voxtrio.providers.base import ToolCallChunk, UsageChunk

pytest.importorskip("ctranslate2")  # the routing needs no weights, but the provider needs its engine

from voxtrio.providers.smollm_llm import SmolLM, ToolRoute, _SentenceGate  # noqa: E402


@voxtrio.function_tool
async def get_weather(city: str, unit: str = "celsius") -> str:
    """Look up today's weather in a city.

    Args:
        city: the city asked about
    """
    return f"It is sunny in {city}."


@voxtrio.function_tool
async def book_table(people: int, time: str) -> str:
    """Book a table."""
    return "booked"


@voxtrio.function_tool
async def list_tables(times: list[str]) -> str:
    """Tables at several times."""
    return ""


ROUTES = [
    ToolRoute(tool="get_weather", keywords=("weather", "forecast")),
    ToolRoute(tool="book_table", pattern=r"\bbook\b.*\btable\b", arguments={"time": "8 pm"}),
]


def context(*user_lines, instructions="You are a helpful assistant on a phone call."):
    ctx = ChatContext()
    ctx.add_message(role="system", content=instructions)
    for line in user_lines:
        ctx.add_message(role="user", content=line)
    return ctx


@pytest.fixture
def router(tmp_path):
    """A SmolLM for its decisions only (no model is loaded until a chat needs it)."""
    weights = tmp_path / "unused.gguf"
    weights.write_bytes(b"")
    return SmolLM(routes=ROUTES, gguf_path=weights)


def test_keywords_match_whole_words_only():
    route = ToolRoute(tool="get_weather", keywords=("weather", "rain"))
    assert route.matches("What's the WEATHER like?") and route.matches("the weather's fine")
    assert route.matches("will it rain tomorrow")
    assert not route.matches("the weatherman said") and not route.matches("a rainbow")
    with pytest.raises(ValueError):
        ToolRoute(tool="x")


def test_rules_choose_the_tool_and_the_choice_options_apply(router):
    tools = [get_weather, book_table]
    decision = router.decide(context("How is the weather in Paris?"), tools, "auto")
    assert decision.tool.name == "get_weather" and decision.utterance == "How is the weather in Paris?"
    decision = router.decide(context("Could you book us a table for four?"), tools, None)
    assert decision.tool.name == "book_table" and decision.fixed == {"time": "8 pm"}
    # no rule matches: the model answers in text
    assert router.decide(context("Tell me a joke."), tools, "auto") is None
    # a matching rule for a tool that is not offered does nothing
    assert router.decide(context("How is the weather?"), [book_table], "auto") is None
    assert router.decide(context("How is the weather?"), tools, "none") is None
    # a named tool is called whatever was said
    assert router.decide(context("Tell me a joke."), tools, "book_table").tool.name == "book_table"
    with pytest.raises(APIError, match="not offered"):
        router.decide(context("hi"), tools, "nope")
    # required: one tool offered is the one; among several, the model must pick
    assert router.decide(context("Tell me a joke."), [get_weather], "required").tool.name == "get_weather"
    assert router.decide(context("Tell me a joke."), tools, "required").tool is None


def test_after_a_tool_output_the_model_replies_instead_of_calling_again(router):
    ctx = context("How is the weather in Paris?")
    ctx.insert(FunctionCallOutput(call_id="c1", name="get_weather", output="It is sunny in Paris.", is_error=False))
    assert router.decide(ctx, [get_weather], "auto") is None
    # an instruction added for this reply does not hide the user's words
    ctx = context("How is the weather in Paris?")
    ctx.add_message(role="system", content="Be brief.")
    assert router.decide(ctx, [get_weather], "auto").tool.name == "get_weather"


def test_the_prompt_keeps_the_instructions_and_the_recent_turns(router):
    ctx = context(*[f"line {i}" for i in range(10)])
    prompt = router.prompt(ctx)
    assert prompt[0] == {"role": "system", "content": "You are a helpful assistant on a phone call."}
    assert [m["content"] for m in prompt[1:]] == [f"line {i}" for i in range(4, 10)]


def test_sentence_gate_passes_whole_sentences_up_to_the_limit():
    gate = _SentenceGate(2)
    out = []
    for piece in ["It", " is", " 3", ".", "5", " degrees", ".", " Take", " a", " coat", ".", " And", " more", "."]:
        out += gate.push(piece)
    assert out == ["It is 3.5 degrees. ", "Take a coat. "] and gate.full
    gate = _SentenceGate(2)
    assert gate.push("One. Two") == ["One. "]
    assert gate.finish(complete=False) == ""  # cut by the token limit: the fragment is dropped
    gate = _SentenceGate(2)
    assert gate.push("No stop yet") == [] and gate.finish(complete=True) == "No stop yet"


async def collect(llm, ctx, tools, tool_choice="auto"):
    send, receive = trio.open_memory_channel(1000)
    async with send:
        await llm.chat(chat_ctx=ctx, tools=tools, tool_choice=tool_choice, output=send)
    return [chunk async for chunk in receive]


@pytest.fixture(scope="module")
def smollm():
    llm = SmolLM(routes=ROUTES, max_sentences=2)
    llm.load()
    yield llm
    llm.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "said,city",
    [
        ("What's the weather like in Paris today?", "Paris"),
        ("Can you tell me the weather for San Francisco please", "San Francisco"),
        ("how's the weather in new york", "new york"),
        ("I'd like the forecast in Berlin tomorrow", "Berlin"),
    ],
)
async def test_the_model_fills_the_city_from_the_users_words(smollm, said, city):
    chunks = await collect(smollm, context(said), [get_weather, book_table])
    [call] = chunks
    assert isinstance(call, ToolCallChunk) and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": city}  # the optional unit is left to its default
    get_weather.parse_arguments(call.arguments)


@pytest.mark.slow
async def test_integer_slots_are_filled_and_fixed_arguments_kept(smollm):
    [call] = await collect(smollm, context("Please book a table for 4 people."), [book_table])
    assert json.loads(call.arguments) == {"time": "8 pm", "people": 4}


@pytest.mark.slow
async def test_arguments_the_engine_cannot_constrain_are_a_clear_error(smollm):
    with pytest.raises(APIError, match="cannot fill argument 'times'"):
        await collect(smollm, context("which tables"), [list_tables], "list_tables")


@pytest.mark.slow
async def test_a_text_reply_is_whole_sentences_and_usage(smollm):
    chunks = await collect(smollm, context("Hello, who are you?"), [get_weather])
    text = "".join(c for c in chunks if isinstance(c, str))
    [usage] = [c for c in chunks if isinstance(c, UsageChunk)]
    assert text.strip() and text.rstrip()[-1] in ".!?"
    assert text.count(". ") + text.count("? ") + text.count("! ") <= 2
    assert usage.prompt_tokens > 10 and 0 < usage.completion_tokens <= 48


@pytest.mark.slow
async def test_a_tool_output_is_spoken_as_the_reply(smollm):
    ctx = context("How is the weather in Oslo?")
    ctx.insert(FunctionCallOutput(call_id="c", name="get_weather", output="In Oslo it is 3 degrees.", is_error=False))
    assert await collect(smollm, ctx, [get_weather]) == ["In Oslo it is 3 degrees."]


@pytest.mark.slow
async def test_cancelling_a_reply_stops_the_worker_and_the_model_stays_usable(smollm):
    sent = []
    send, receive = trio.open_memory_channel(1000)

    async def chat():
        await smollm.chat(chat_ctx=context("Tell me a very long story about the sea."), tools=[], tool_choice=None, output=send)

    with trio.move_on_after(0.05) as scope:
        await chat()
    assert scope.cancelled_caught
    while True:
        try:
            sent.append(receive.receive_nowait())
        except trio.WouldBlock:
            break
    assert not any(isinstance(c, UsageChunk) for c in sent)  # it did not run to the end
    chunks = await collect(smollm, context("How is the weather in Rome?"), [get_weather])
    assert json.loads(chunks[0].arguments) == {"city": "Rome"}
