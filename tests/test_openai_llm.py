"""openai.LLM against a loopback server that speaks Chat Completions streaming.

Everything runs on MockClock (autojump): the server lives in the test's trio
run, on 127.0.0.1, so its scripted pauses, stalls and Retry-After waits are
virtual time, and real loopback I/O completes within the scheduler's pass.
"""

import pytest
import trio

pytest.importorskip("httpx2")
pytest.importorskip("h11")

import fake_openai  # noqa: E402
import voxtrio  # noqa: E402
from loopback_http import Reply, Stream, sse  # noqa: E402
from voxtrio.chat import AgentHandoff, ChatContext, FunctionCall, FunctionCallOutput  # noqa: E402
from voxtrio.providers import openai  # noqa: E402
from voxtrio.providers.base import ToolCallChunk, UsageChunk  # noqa: E402
from provider_calls import WeatherAgent, collect, get_weather, interrupted_call, text_session, text_turn  # noqa: E402
from voxtrio.testing import ScriptedTransport  # noqa: E402

PATH = "/chat/completions"


@pytest.fixture
async def server():
    async with fake_openai.server() as server:
        yield server


def llm_for(server, **options):
    return openai.LLM(model="gpt-test", api_key=fake_openai.KEY, base_url=server.url, **options)


@voxtrio.function_tool
async def get_time(city: str) -> str:
    """The time in a city."""
    return f"noon in {city}"


def test_a_missing_key_is_a_typed_error_naming_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(voxtrio.MissingAPIKeyError, match="OPENAI_API_KEY"):
        openai.LLM()
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    assert openai.LLM()._http._headers["Authorization"] == "Bearer from-env"


def test_connections_are_kept_within_a_run_and_new_in_the_next(monkeypatch):
    llm = openai.LLM(api_key=fake_openai.KEY, base_url="http://127.0.0.1:1")

    async def two_requests():
        async with fake_openai.server() as server:
            server.script(PATH, Stream(fake_openai.completion(["Hi."])))
            llm._http.base_url = server.url
            llm._http._client = None  # the port changed; the run is what this test is about
            assert await collect(llm) == await collect(llm)
            return [r.connection for r in server.requests]

    assert trio.run(two_requests) == [1, 1]  # the second request reused the connection
    pool = llm._http._client
    assert trio.run(two_requests) == [1, 1] and llm._http._client is not pool


def test_the_request_carries_the_conversation_tools_and_only_the_options_set():
    llm = openai.LLM(api_key="k", temperature=0.3, max_completion_tokens=50, extra_body={"top_k": 5})
    ctx = ChatContext()
    ctx.add_message(role="system", content="Be brief.")
    ctx.add_message(role="user", content="Weather and time in Paris?")
    ctx.add_message(role="assistant", content="")  # interrupted before a word: not sent
    for call_id, name in (("a", "get_weather"), ("b", "get_time")):
        ctx.insert(FunctionCall(name=name, arguments='{"city": "Paris"}', call_id=call_id))
    ctx.insert(AgentHandoff(old_agent=None, new_agent="Other"))
    ctx.insert(FunctionCallOutput(call_id="a", name="get_weather", output="sunny", is_error=False))
    ctx.insert(FunctionCallOutput(call_id="b", name="get_time", output="noon", is_error=False))
    body = llm.request_body(ctx, [get_weather, get_time], "get_time")
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["max_completion_tokens"], body["top_k"]) == (0.3, 50, 5)
    assert "top_p" not in body and "seed" not in body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
                {"id": "b", "type": "function", "function": {"name": "get_time", "arguments": '{"city": "Paris"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "b", "content": "noon"},
    ]
    assert body["tools"][0] == {"type": "function", "function": get_weather.schema()}
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    for choice in ("auto", "required", "none"):
        assert llm.request_body(ctx, [get_weather], choice)["tool_choice"] == choice
    assert "tools" not in llm.request_body(ctx, [], "auto")  # no tools: no tool_choice either


async def test_text_then_interleaved_fragmented_calls_and_usage_with_cached_tokens(autojump_clock, server):
    frames = fake_openai.completion(
        ["It is ", "sunny."],
        tool_calls=[("c1", "get_weather", ['{"ci', 'ty": ', '"Paris"}']), ("c2", "get_time", ['{"city"', ': "Rome"}'])],
        usage=(40, 9, 32),
        interleave=True,
    )
    server.script(PATH, Stream(frames, interval=0.05))
    chunks = await collect(llm_for(server), tools=[get_weather, get_time])
    assert chunks == [
        "It is ",
        "sunny.",
        ToolCallChunk(name="get_weather", arguments='{"city": "Paris"}', call_id="c1"),
        ToolCallChunk(name="get_time", arguments='{"city": "Rome"}', call_id="c2"),
        UsageChunk(prompt_tokens=40, completion_tokens=9, prompt_cached_tokens=32),
    ]
    assert server.requests[0].headers["authorization"] == f"Bearer {fake_openai.KEY}"


@pytest.mark.parametrize(
    "reply, error_type, retryable, retry_after",
    [
        (Reply.json(fake_openai.error_body("Slow down", "rate_limit_error"), 429, [("retry-after", "2")]), voxtrio.APIStatusError, True, 2.0),
        (Reply.json(fake_openai.error_body("boom", "server_error"), 500), voxtrio.APIStatusError, True, None),
        (Reply(status=503, body=b"upstream unavailable", content_type="text/plain"), voxtrio.APIStatusError, True, None),
        (Reply.json(fake_openai.error_body("bad model"), 400), voxtrio.APIStatusError, False, None),
        (Reply.json(fake_openai.error_body("busy"), 429, [("retry-after-ms", "250")]), voxtrio.APIStatusError, True, 0.25),
        (Reply.json(fake_openai.error_body("quota"), 429, [("retry-after", "3600")]), voxtrio.APIStatusError, False, 3600.0),
    ],
)
async def test_error_statuses_map_to_typed_errors(autojump_clock, server, reply, error_type, retryable, retry_after):
    server.script(PATH, reply)
    with pytest.raises(error_type) as caught:
        await collect(llm_for(server))
    assert caught.value.status_code == reply.status
    assert caught.value.retryable is retryable
    assert caught.value.retry_after == retry_after


async def test_a_rejected_key_is_not_retryable_and_names_the_variable(autojump_clock, server):
    llm = openai.LLM(api_key="wrong", base_url=server.url)
    with pytest.raises(voxtrio.APIStatusError, match="OPENAI_API_KEY") as caught:
        await collect(llm)
    assert (caught.value.status_code, caught.value.retryable) == (401, False)
    assert "Incorrect API key" in str(caught.value)


@pytest.mark.parametrize(
    "stream, error_type, message",
    [
        (Stream((sse(fake_openai.chunk({"content": "Hi"})), b"data: {not json\n\n")), voxtrio.APIError, "malformed"),
        (Stream((sse(fake_openai.chunk({"tool_calls": [{"function": {}}]})),)), voxtrio.APIError, "malformed message event"),
        (Stream((sse(fake_openai.chunk({"content": "Hi"})),), then="drop"), voxtrio.APIConnectionError, "OpenAI"),
        (Stream((sse(fake_openai.chunk({"content": "Hi"})),)), voxtrio.APIError, "ended before its last chunk"),
        (Stream((sse({"error": {"message": "model overloaded", "type": "server_error"}}),)), voxtrio.APIError, "overloaded"),
        (Reply.json({"id": "x", "choices": []}), voxtrio.APIError, "text/event-stream"),
    ],
)
async def test_broken_streams_are_typed_errors(autojump_clock, server, stream, error_type, message):
    server.script(PATH, stream)
    with pytest.raises(error_type, match=message):
        await collect(llm_for(server))


async def test_a_stalled_stream_times_out_on_the_progress_deadline(autojump_clock, server):
    server.script(PATH, Stream((sse(fake_openai.chunk({"content": "Hi"})),), then="stall"))
    started = trio.current_time()
    with pytest.raises(voxtrio.APITimeoutError):
        await collect(llm_for(server), timeout=3.0)
    assert trio.current_time() - started == pytest.approx(3.0)


# -- through AgentSession -------------------------------------------------------------


async def test_a_whole_tool_call_turn_through_the_session(autojump_clock, server):
    server.script(
        PATH,
        Stream(fake_openai.completion(tool_calls=[("call_1", "get_weather", ['{"ci', 'ty":', ' "Par', 'is"}'])]), interval=0.02),
        Stream(fake_openai.completion(["It is sunny ", "in Paris."], usage=(80, 6, 64)), interval=0.02),
    )
    session = text_session(llm_for(server))
    metrics = []
    session.on("metrics_collected", lambda e: metrics.append(e.metrics) if e.kind == "llm" else None)
    result = await text_turn(session, "Weather in Paris?", WeatherAgent())
    result.expect.next_event().is_function_call(name="get_weather", arguments={"city": "Paris"})
    result.expect.next_event().is_function_call_output(output="sunny in Paris")
    result.expect.next_event().is_message(role="assistant").contains("sunny in Paris")
    first, second = (r.json() for r in server.requests_to(PATH))
    assert first["messages"][0] == {"role": "system", "content": "You tell the weather."}
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny in Paris"}
    assert second["messages"][-2]["tool_calls"][0]["id"] == "call_1"
    assert metrics[-1]["prompt_tokens"] == 80 and metrics[-1]["prompt_cached_tokens"] == 64
    assert metrics[-1]["ttft"] > 0


async def test_bad_json_in_tool_arguments_reaches_the_model_as_a_tool_error(autojump_clock, server):
    server.script(
        PATH,
        Stream(fake_openai.completion(tool_calls=[("call_1", "get_weather", ['{"city": "Par'])])),
        Stream(fake_openai.completion(["Sorry, let me retry."])),
    )
    result = await text_turn(text_session(llm_for(server)), "Weather in Paris?", WeatherAgent())
    result.expect.next_event().is_function_call(name="get_weather")
    output = result.expect.next_event().is_function_call_output().event().item
    assert output.is_error and "not valid JSON" in output.output
    second = server.requests_to(PATH)[1].json()
    assert second["messages"][-1]["role"] == "tool" and "not valid JSON" in second["messages"][-1]["content"]


async def test_429_retry_after_is_honoured_by_the_session_retry(autojump_clock, server):
    server.script(
        PATH,
        Reply.json(fake_openai.error_body("Rate limit reached", "rate_limit_error"), 429, [("retry-after", "2")]),
        Stream(fake_openai.completion(["Hello there."])),
    )
    session = text_session(llm_for(server))
    errors = []
    session.on("error", errors.append)
    result = await text_turn(session)
    result.expect.next_event().is_message(role="assistant").contains("Hello there")
    first, second = server.requests_to(PATH)
    assert second.received_at - first.received_at == pytest.approx(2.0)  # not the 0.1 s first retry
    assert [(e.source, e.recoverable) for e in errors] == [("llm", True)]


async def test_a_rejected_key_is_unrecoverable_and_closes_the_session_past_the_limit(autojump_clock, server):
    session = text_session(
        openai.LLM(api_key="wrong", base_url=server.url),
        conn_options=voxtrio.SessionConnectOptions(max_unrecoverable_errors=0),
    )
    errors = []
    session.on("error", errors.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(), ScriptedTransport(input_audio=False))
        session.generate_reply(user_input="hi")
    assert len(server.requests_to(PATH)) == 1  # not retried
    assert [(e.source, e.recoverable) for e in errors] == [("llm", False)]
    assert "OPENAI_API_KEY" in errors[0].message
    assert session.last_close.reason == "error"


async def test_a_stall_and_a_dropped_connection_are_retried_within_the_budget(autojump_clock, server):
    server.script(
        PATH,
        Stream((), then="stall"),
        Stream((sse(fake_openai.chunk({"role": "assistant", "content": ""})),), then="drop"),
        Stream(fake_openai.completion(["Back again."])),
    )
    options = voxtrio.APIConnectOptions(max_retry=2, retry_interval=0.5, timeout=2.0)
    session = text_session(llm_for(server), conn_options=voxtrio.SessionConnectOptions(llm_conn_options=options))
    errors = []
    session.on("error", errors.append)
    result = await text_turn(session)
    result.expect.next_event().is_message(role="assistant").contains("Back again")
    assert [type(e.error) for e in errors] == [voxtrio.APITimeoutError, voxtrio.APIConnectionError]
    assert len(server.disconnects) == 1  # the stalled stream's connection was closed by the client


async def test_barge_in_closes_the_streaming_request_at_once(autojump_clock, server):
    pieces = [f"Sentence number {i}. " for i in range(200)]
    server.script(PATH, Stream(fake_openai.completion(pieces), interval=0.05))  # 10 s of streaming
    server.script("/audio/speech", fake_openai.speech(1.0))
    interrupted = await interrupted_call(llm_for(server), openai.TTS(api_key=fake_openai.KEY, base_url=server.url))
    assert interrupted, "the user's second speech interrupted the reply"
    disconnect = server.disconnects[0]  # the reply to "Stop." is cut by the close
    assert disconnect.path == PATH
    assert disconnect.chunks_sent < len(pieces)  # the stream was cut, not finished
    # Virtual time: the cancel and the close are the same instant (real time: bench/providers_http.py).
    assert disconnect.at == pytest.approx(interrupted[0], abs=0.02)
