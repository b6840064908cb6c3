"""The console: piped text on a scripted pipeline, and in a real terminal (tmux
runs it, send-keys types, capture-pane reads) with the offline models."""

import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import trio

import voxtrio
from voxtrio.demo import find_example_agent, load_module
from voxtrio.testing import LLMResponse, ScriptedLLM, ToolCall
from voxtrio.transports.console import ConsoleTransport

ROOT = Path(__file__).resolve().parent.parent


class SlowToConnect(voxtrio.Toolset):
    """A session toolset that takes a second to connect (an MCP server, say):
    the agent starts only after it, while the transport already reads."""

    @contextlib.asynccontextmanager
    async def connect(self):
        await trio.sleep(1.0)
        yield


async def test_piped_lines_wait_for_the_agent_and_the_end_of_input_closes_the_call(autojump_clock):
    # The whole input is there before the session starts, as with
    # `printf '...\n' | voxtrio console`: the transport reads it before the
    # agent has started, and must hold the line (and the end of input) until then.
    example = load_module(find_example_agent(None))
    llm = ScriptedLLM(
        [
            LLMResponse(
                input="What is the weather in Paris?",
                tool_calls=(ToolCall(name="get_weather", arguments='{"city": "Paris"}', call_id="w1"),),
            ),
            LLMResponse(input=example.WEATHER["Paris"], content=example.WEATHER["Paris"]),
        ]
    )
    read_end, write_end = os.pipe()
    os.write(write_end, b"What is the weather in Paris?\n")
    os.close(write_end)
    out = io.StringIO()
    session = voxtrio.AgentSession(llm=llm, tools=[SlowToConnect(id="slow")])
    closes = []
    session.on("close", closes.append)
    with os.fdopen(read_end) as stdin:
        await session.main(example.WeatherDesk(), ConsoleTransport(audio=False, stdin=stdin, stdout=out))
    assert [(c.reason, c.error) for c in closes] == [("user_initiated", None)]
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("(no audio output device: text only")
    assert any(line.startswith("agent> Hello, this is the weather desk.") for line in lines)
    assert lines[-1] == "agent> In Paris it is 16 degrees and cloudy, with rain in the evening."
    said = [(m.role, m.content) for m in session.history.items if m.type == "message"]
    assert ("user", "What is the weather in Paris?") in said


@pytest.mark.slow
def test_piped_text_into_the_console_command_answers_and_exits_0():
    result = subprocess.run(
        [sys.executable, "-m", "voxtrio", "console", "--no-audio"],
        input="What is the weather in Paris?\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,  # a hang fails the test instead of stalling the suite
    )
    assert result.returncode == 0, result.stderr
    assert "agent> In Paris it is 16 degrees and cloudy, with rain in the evening." in result.stdout


def wait_for(session, text, timeout=60.0):
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session, "-S", "-200"], capture_output=True, text=True
        ).stdout
        if text in screen:
            return screen
        time.sleep(0.2)  # polling a terminal screen: there is no event to wait on
    raise AssertionError(f"{text!r} did not appear; the screen was:\n{screen}")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_typing_in_the_console_gets_answers_and_ctrl_d_ends_the_call():
    session = f"voxtrio-console-{uuid.uuid4().hex[:8]}"
    command = f"{sys.executable} -m voxtrio console --no-audio; echo CONSOLE-EXITED-$?; sleep 60"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50", "-c", str(ROOT), command], check=True
    )
    try:
        wait_for(session, "agent> Hello, this is the weather desk.")
        assert "text only" in wait_for(session, "Ctrl-D ends")
        subprocess.run(["tmux", "send-keys", "-t", session, "What is the weather like in Tokyo?", "Enter"], check=True)
        screen = wait_for(session, "agent> In Tokyo it is 27 degrees, humid and sunny.")
        assert "What is the weather like in Tokyo?" in screen  # the terminal echoes what was typed
        subprocess.run(["tmux", "send-keys", "-t", session, "Can you help me pack my suitcase?", "Enter"], check=True)
        wait_for(session, "(handed over to packing_adviser)")
        subprocess.run(["tmux", "send-keys", "-t", session, "C-d"], check=True)
        wait_for(session, "CONSOLE-EXITED-0")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
