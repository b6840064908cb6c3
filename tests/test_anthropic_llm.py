"""anthropic.LLM against a loopback server that speaks the Messages API's
streaming events. MockClock throughout (see test_openai_llm.py)."""

import pytest
import trio

pytest.importorskip("httpx2")
pytest.importorskip("h11")

import fake_anthropic  # noqa: E402
import voxtrio  # noqa: E402
from loopback_http import Reply, Stream, sse  # noqa: E402
from voxtrio.chat import ChatContext, FunctionCall, FunctionCallOutput  # noqa: E402
from voxtrio.providers import anthropic  # noqa: E402
from voxtrio.providers.base import ToolCallChunk, UsageChunk  # noqa: E402
from provider_calls import INTERRUPTED_AT, WeatherAgent, collect, get_weather, interrupted_call, text_session, text_turn  # noqa: E402

PATH = "/v1/messages"
event = fake_anthropic.event


@pytest.fixture
async def server():
    async with fake_anthropic.server() as server:
        yield server


def llm_for(server, **options):
    return anthropic.LLM(model="claude-test", api_key=fake_anthropic.KEY, base_url=server.url, **options)


def test_a_missing_key_is_a_typed_error_naming_the_variable(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(voxtrio.MissingAPIKeyError, match="ANTHROPIC_API_KEY"):
        anthropic.LLM()


def test_system_prompt_tool_turns_and_tool_choice_in_the_request():
    llm = anthropic.LLM(api_key="k", max_tokens=300, temperature=0.2, parallel_tool_calls=False)
    ctx = ChatContext()
    ctx.add_message(role="system", content="You are terse.")
    ctx.add_message(role="user", content="Weather in Paris?")
    ctx.add_message(role="assistant", content="Let me look.")
    ctx.insert(FunctionCall(name="get_weather", arguments='{"city": "Paris"}', call_id="toolu_1"))
    ctx.insert(FunctionCall(name="get_weather", arguments='{"city": "Par', call_id="toolu_2"))  # bad JSON
    ctx.insert(FunctionCallOutput(call_id="toolu_1", name="get_weather", output="sunny", is_error=False))
    ctx.insert(FunctionCallOutput(call_id="toolu_2", name="get_weather", output="bad JSON", is_error=True))
    ctx.add_message(role="system", content="Answer in French.")  # mid-conversation: a user turn
    body = llm.request_body(ctx, [get_weather], "required")
    assert body["system"] == "You are terse."
    assert (body["max_tokens"], body["temperature"], body["stream"]) == (300, 0.2, True)
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": False, "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True, "content": "bad JSON"},
                {"type": "text", "text": "Answer in French."},
            ],
        },
    ]
    assert body["tools"] == [
        {"name": "get_weather", "description": "The weather in a city.", "input_schema": get_weather.parameters}
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert llm.request_body(ctx, [get_weather], "get_weather")["tool_choice"]["type"] == "tool"
    assert llm.request_body(ctx, [get_weather], "none")["tool_choice"] == {"type": "none"}
    only_instructions = ChatContext()
    only_instructions.add_message(role="system", content="Greet the caller.")
    assert anthropic.anthropic_messages(only_instructions) == (
        "Greet the caller.",
        [{"role": "user", "content": [{"type": "text", "text": "."}]}],
    )


async def test_text_and_two_tool_uses_with_fragmented_input_and_usage(autojump_clock, server):
    frames = fake_anthropic.message(
        ["Checking ", "both."],
        tool_uses=[
            ("toolu_a", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}']),
            ("toolu_b", "get_weather", ["", '{"city": "Rome"}']),
        ],
        usage=(10, 30, 100, 5),
    )
    server.script(PATH, Stream(frames, interval=0.03))
    assert await collect(llm_for(server), tools=[get_weather]) == [
        "Checking ",
        "both.",
        ToolCallChunk(name="get_weather", arguments='{"city": "Paris"}', call_id="toolu_a"),
        ToolCallChunk(name="get_weather", arguments='{"city": "Rome"}', call_id="toolu_b"),
        UsageChunk(prompt_tokens=115, completion_tokens=30, prompt_cached_tokens=100),
    ]
    request = server.requests[0]
    assert request.headers["x-api-key"] == fake_anthropic.KEY
    assert request.headers["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize(
    "reply, retryable, retry_after",
    [
        (Reply.json(fake_anthropic.error_body("rate_limit_error", "slow"), 429, [("retry-after", "3")]), True, 3.0),
        (Reply.json(fake_anthropic.error_body("overloaded_error", "Overloaded"), 529), True, None),
        (Reply.json(fake_anthropic.error_body("api_error", "oops"), 500), True, None),
        (Reply(status=503, body=b"<html>unavailable</html>", content_type="text/html"), True, None),
        (Reply.json(fake_anthropic.error_body("invalid_request_error", "max_tokens: too big"), 400), False, None),
    ],
)
async def test_error_statuses_map_to_typed_errors(autojump_clock, server, reply, retryable, retry_after):
    server.script(PATH, reply)
    with pytest.raises(voxtrio.APIStatusError) as caught:
        await collect(llm_for(server))
    assert (caught.value.status_code, caught.value.retryable, caught.value.retry_after) == (
        reply.status, retryable, retry_after,
    )
    assert "req_test" in str(caught.value) or reply.status == 503


async def test_a_rejected_key_is_not_retryable_and_names_the_variable(autojump_clock, server):
    with pytest.raises(voxtrio.APIStatusError, match="ANTHROPIC_API_KEY") as caught:
        await collect(anthropic.LLM(api_key="wrong", base_url=server.url))
    assert (caught.value.status_code, caught.value.retryable) == (401, False)


START = fake_anthropic.message(["Hi"], stop=False)[:4]  # message_start, ping, the block's start and a delta


@pytest.mark.parametrize(
    "stream, error_type, message",
    [
        (Stream(START + (event("error", error={"type": "overloaded_error", "message": "Overloaded"}),)),
         voxtrio.APIStatusError, "529 overloaded_error"),
        (Stream(START + (b"event: content_block_delta\ndata: {oops\n\n",)), voxtrio.APIError, "malformed"),
        (Stream(START + (sse({"type": "content_block_delta", "index": 0}, event="content_block_delta"),)),
         voxtrio.APIError, "malformed content_block_delta"),
        (Stream(START, then="drop"), voxtrio.APIConnectionError, "Anthropic"),
        (Stream(START), voxtrio.APIError, "before message_stop"),
    ],
)
async def test_broken_streams_are_typed_errors(autojump_clock, server, stream, error_type, message):
    server.script(PATH, stream)
    with pytest.raises(error_type, match=message) as caught:
        await collect(llm_for(server))
    assert caught.value.retryable


async def test_an_overloaded_error_event_is_retried_by_the_session(autojump_clock, server):
    server.script(
        PATH,
        Stream(fake_anthropic.message()[:2] + (event("error", error={"type": "overloaded_error", "message": "Overloaded"}),)),
        Stream(fake_anthropic.message(["Hello!"])),
    )
    session = text_session(llm_for(server))
    errors = []
    session.on("error", errors.append)
    result = await text_turn(session)
    result.expect.next_event().is_message(role="assistant").contains("Hello!")
    assert [(e.source, e.recoverable, e.error.status_code) for e in errors] == [("llm", True, 529)]


async def test_a_stalled_stream_ends_on_the_progress_deadline(autojump_clock, server):
    server.script(PATH, Stream(START, then="stall"))
    started = trio.current_time()
    with pytest.raises(voxtrio.APITimeoutError):
        await collect(llm_for(server), timeout=2.5)
    assert trio.current_time() - started == pytest.approx(2.5)


async def test_a_whole_tool_call_turn_through_the_session(autojump_clock, server):
    server.script(
        PATH,
        Stream(fake_anthropic.message(["Let me check."], tool_uses=[("toolu_1", "get_weather", ['{"ci', 'ty": "Paris"}'])]), interval=0.02),
        Stream(fake_anthropic.message(["It is sunny in Paris."], usage=(50, 8, 40, 0)), interval=0.02),
    )
    session = text_session(llm_for(server))
    metrics = []
    session.on("metrics_collected", lambda e: metrics.append(e.metrics) if e.kind == "llm" else None)
    result = await text_turn(session, "Weather in Paris?", WeatherAgent())
    result.expect.next_event().is_message(role="assistant").contains("Let me check.")
    result.expect.next_event().is_function_call(name="get_weather", arguments={"city": "Paris"})
    result.expect.next_event().is_function_call_output(output="sunny in Paris")
    result.expect.next_event().is_message(role="assistant").contains("sunny in Paris")
    second = server.requests_to(PATH)[1].json()
    assert second["system"] == "You tell the weather."
    assert second["messages"][-1]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": False, "content": "sunny in Paris"}
    ]
    assert second["messages"][-2]["content"][-1]["type"] == "tool_use"
    assert metrics[-1]["prompt_tokens"] == 90 and metrics[-1]["prompt_cached_tokens"] == 40
    assert [r.connection for r in server.requests_to(PATH)] == [1, 1]  # kept alive between the steps


async def test_barge_in_closes_the_streaming_request_at_once(autojump_clock, server):
    pieces = [f"Sentence number {i}. " for i in range(200)]
    server.script(PATH, Stream(fake_anthropic.message(pieces), interval=0.05))
    await interrupted_call(llm_for(server))  # the reply is still being written: no audio yet
    disconnect = server.disconnects[0]
    assert disconnect.chunks_sent < len(pieces)
    assert disconnect.at == pytest.approx(INTERRUPTED_AT)  # the same instant
