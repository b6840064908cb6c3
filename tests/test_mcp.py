"""MCP servers as tool sources, end to end against a real server process.

The server (tests/mcp_server.py) is a separate process, so the tool calls take
real time while the session runs on MockClock. With the autojumping clock a
virtual-time deadline around a wait for the process would be reached at once,
so these servers are given no timeouts and the initialize handshake
(``protocol="legacy"``: the version probe of ``"auto"`` has its own 10 s
deadline); the timeout itself is tested with a tool that never answers.
"""

import pathlib
import subprocess
import sys

import pytest
import trio

import voxtrio
from voxtrio.testing import LLMResponse, ScriptedLLM, ToolCall

pytest.importorskip("mcp")
# The servers are other processes: real waits, seconds of them.
pytestmark = [pytest.mark.real_io, pytest.mark.thorough]
from voxtrio.mcp import MCPServerHTTP, MCPServerStdio  # noqa: E402

SERVER = str(pathlib.Path(__file__).parent / "mcp_server.py")


def stdio_server(**options):
    options.setdefault("timeout", None)
    return MCPServerStdio(sys.executable, [SERVER, "stdio"], protocol="legacy", connect_timeout=None, **options)


@pytest.fixture
def http_url():
    process = subprocess.Popen(
        [sys.executable, SERVER, "http"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


WEATHER_LLM = [
    LLMResponse(
        input="What's the weather in Paris?",
        tool_calls=(ToolCall(name="get_weather", arguments='{"city": "Paris"}', call_id="w1"),),
    ),
    LLMResponse(input="It is sunny in Paris.", content="Sunny in Paris today."),
]


async def ask_weather(session, agent):
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, agent)
        result = await session.run(user_input="What's the weather in Paris?")
        await session.aclose()
    return result


async def test_session_tools_from_a_stdio_server_are_called_end_to_end(autojump_clock):
    server = stdio_server()
    llm = ScriptedLLM(WEATHER_LLM)
    session = voxtrio.AgentSession(llm=llm, tools=[server])
    result = await ask_weather(session, voxtrio.Agent(instructions="help"))

    result.expect.next_event().is_function_call(name="get_weather", arguments={"city": "Paris"})
    result.expect.next_event().is_function_call_output(output="It is sunny in Paris.", is_error=False)
    result.expect.next_event().is_message(role="assistant").contains("sunny")
    result.expect.no_more_events()
    # The LLM saw the server's tools with the schemas the server gave.
    offered = {tool.name: tool for tool in llm.tool_requests[0]}
    assert set(offered) == {"get_weather", "add", "refuse", "slow"}
    assert offered["add"].parameters["properties"]["a"]["type"] == "integer"
    assert not server.connected  # the process ended with the session


async def test_agent_tools_from_a_streamable_http_server(autojump_clock, http_url):
    session = voxtrio.AgentSession(llm=ScriptedLLM(WEATHER_LLM))
    result = await ask_weather(session, voxtrio.Agent(tools=[MCPServerHTTP(http_url, timeout=None, connect_timeout=None, protocol="legacy")]))
    result.expect.contains_function_call_output(output="It is sunny in Paris.")
    result.expect[-1].is_message(role="assistant")


async def test_server_errors_and_bad_arguments_reach_the_llm_as_tool_errors(autojump_clock):
    llm = ScriptedLLM(
        [
            LLMResponse(
                input="go",
                tool_calls=(
                    ToolCall(name="refuse", arguments='{"reason": "no"}', call_id="r"),
                    ToolCall(name="add", arguments='{"a": 1}', call_id="b"),
                    ToolCall(name="add", arguments='{"a": 1, "b": 2}', call_id="c"),
                ),
            )
        ]
    )
    session = voxtrio.AgentSession(llm=llm, tools=[stdio_server()])
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent())
        result = await session.run(user_input="go")
        await session.aclose()
    outputs = {e.item.call_id: e.item for e in result.events if e.type == "function_call_output"}
    assert outputs["r"].is_error and "refuse" in outputs["r"].output
    assert outputs["b"].is_error
    assert outputs["b"].output == "Error parsing arguments for `add`: field 'b': missing required argument"
    assert (outputs["c"].output, outputs["c"].is_error) == ("3", False)


async def test_a_server_that_does_not_answer_is_bounded_by_its_timeout(autojump_clock):
    llm = ScriptedLLM([LLMResponse(input="wait", tool_calls=(ToolCall(name="slow", arguments="{}", call_id="s"),))])
    session = voxtrio.AgentSession(llm=llm, tools=[stdio_server(timeout=5.0)])
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent())
        result = await session.run(user_input="wait")
        await session.aclose()
    result.expect.next_event().is_function_call(name="slow")
    output = result.expect.next_event().is_function_call_output(is_error=True).event().item.output
    assert output == "the MCP server mcp:" + sys.executable + " did not answer within 5.0 s (calling slow)"


async def test_an_unreachable_server_is_reported_and_the_session_goes_on(autojump_clock):
    broken = MCPServerStdio("/nonexistent/mcp-server", id="broken", connect_timeout=None)
    session = voxtrio.AgentSession(llm=ScriptedLLM([LLMResponse(input="hi", content="hello")]), tools=[broken])
    errors = []
    session.on("error", errors.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent())
        result = await session.run(user_input="hi")
        await session.aclose()
    result.expect.next_event().is_message(role="assistant")
    assert [(e.source, e.message.startswith("toolset broken failed")) for e in errors] == [("tool", True)]


async def test_an_agents_server_is_connected_while_it_is_active(autojump_clock):
    server = stdio_server(id="weather")
    seen = []

    class Forecaster(voxtrio.Agent):
        def __init__(self):
            super().__init__(tools=[server])

        async def on_enter(self):
            seen.append(("enter", server.connected, [t.name for t in self.tools]))

    session = voxtrio.AgentSession(llm=ScriptedLLM([]))
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent())
        assert not server.connected
        await session.update_agent(Forecaster())
        await session.update_agent(voxtrio.Agent(id="after"))
        seen.append(("after", server.connected))
        await session.aclose()
    assert seen == [("enter", True, ["get_weather", "add", "refuse", "slow"]), ("after", False)]


# -- the default timeouts, and servers that do not answer ---------------------------------------
# These run on the real clock: the defaults are real deadlines around a real process.


async def test_a_stdio_server_with_the_default_timeouts_connects_and_answers():
    # The connect deadline used to be a cancel scope exited while the mcp
    # client's task groups, entered inside it, were still open: "Cancel scope
    # stack corrupted", and the server offered no tools.
    server = MCPServerStdio(sys.executable, [SERVER, "stdio"])
    session = voxtrio.AgentSession(llm=ScriptedLLM(WEATHER_LLM), tools=[server])
    errors = []
    session.on("error", errors.append)
    result = await ask_weather(session, voxtrio.Agent())
    result.expect.contains_function_call_output(output="It is sunny in Paris.", is_error=False)
    assert errors == []


async def test_a_streamable_http_server_with_the_default_timeouts_connects_and_answers(http_url):
    session = voxtrio.AgentSession(llm=ScriptedLLM(WEATHER_LLM))
    errors = []
    session.on("error", errors.append)
    result = await ask_weather(session, voxtrio.Agent(tools=[MCPServerHTTP(http_url)]))
    result.expect.contains_function_call_output(output="It is sunny in Paris.", is_error=False)
    assert errors == []


@pytest.fixture
def mute_http_url():
    """An HTTP endpoint that accepts connections and never answers."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"
    finally:
        listener.close()


MUTE_STDIO = [sys.executable, ["-c", "import time; time.sleep(600)"]]


@pytest.mark.parametrize("whose", ["session", "agent"])
async def test_aclose_while_an_http_server_does_not_answer_returns_within_the_close_timeout(
    autojump_clock, mute_http_url, whose
):
    server = MCPServerHTTP(mute_http_url, connect_timeout=None, protocol="legacy")
    session = voxtrio.AgentSession(tools=[server] if whose == "session" else [], close_timeout=1.0)
    agent = voxtrio.Agent(tools=[server] if whose == "agent" else [])
    async with trio.open_nursery() as nursery:
        # A virtual deadline far ahead: while the close waits for real I/O,
        # the autojumping clock jumps to it, so a real wait shows as virtual time.
        nursery.start_soon(trio.sleep, 100)
        if whose == "session":
            nursery.start_soon(session.main, agent)  # it starts once its tools connect
        else:
            await nursery.start(session.main, voxtrio.Agent())
            session.update_agent(agent)
        await trio.sleep(0.5)
        asked = trio.current_time()
        await session.aclose()
        assert trio.current_time() - asked <= 1.0 + 1e-6
        nursery.cancel_scope.cancel()
    assert not server.connected


async def test_aclose_while_a_stdio_server_does_not_answer_returns():
    # On the real clock: the mcp package's own cleanup of the process (close its
    # input, give it PROCESS_TERMINATION_TIMEOUT to exit, then kill it) waits
    # for the real process. It used to wait for ever: the start-up, stuck
    # connecting, was not cut short by the close. (The guard only stops a hang.)
    server = MCPServerStdio(*MUTE_STDIO, connect_timeout=None, protocol="legacy")
    session = voxtrio.AgentSession(tools=[server], close_timeout=0.5)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.main, voxtrio.Agent())
            await trio.sleep(0.5)
            await session.aclose()
    assert session.last_close.reason == "user_initiated"
