"""examples/realtime_agent.py: the weather desk on a realtime model, against the local
OpenAI Realtime server (and OpenAI itself when OPENAI_API_KEY is set)."""

import os
import sys
from pathlib import Path

import pytest
import trio

import voxtrio
from voxtrio.demo import load_module
from voxtrio.providers import openai
from voxtrio.server.command import load_agent
from voxtrio.testing import ScriptedTransport

from loopback.openai_realtime import Call, FakeRealtime, Reply, Say, Turn

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "realtime_agent.py"


@pytest.fixture
def example():
    module = load_module(EXAMPLE)
    yield module
    sys.modules.pop("weather_agent", None)


def test_the_example_serves_its_realtime_desk(example, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    agent, module = load_agent(str(EXAMPLE))
    assert agent.__name__ == "RealtimeWeatherDesk"
    providers = module.pipeline()
    assert set(providers) == {"llm"} and isinstance(providers["llm"], openai.RealtimeModel)


async def test_the_desk_greets_answers_with_its_tool_and_hands_off(example, autojump_clock):
    server = FakeRealtime(
        turns=[Turn(2.0, 2.5, "what is the weather in Lisbon"), Turn(5.0, 5.5, "what should I pack")],
        replies=[
            Reply((Say("Hello, this is the weather desk.", 1.0),)),
            Reply((Call("get_weather", '{"city": "Lisbon"}'),)),
            Reply((Say("It is sunny in Lisbon.", 1.0),)),
            Reply((Call("transfer_to_packing", "{}", call_id="call_2"),)),
            Reply((Say("Hi, I am the packing adviser: bring a hat.", 1.0),)),
        ],
    )
    async with server.running():
        model = openai.RealtimeModel(api_key="test-key", base_url=f"{server.url}/v1/realtime")
        session = voxtrio.AgentSession(llm=model)
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, example.RealtimeWeatherDesk(), ScriptedTransport())
            await trio.sleep(9.0)
            current = session.current_agent
            await session.aclose()
    assert isinstance(current, example.PackingAdviser)
    said = [item.text_content for item in session.history.items if item.type == "message" and item.role == "assistant"]
    assert said == ["Hello, this is the weather desk.", "It is sunny in Lisbon.", "Hi, I am the packing adviser: bring a hat."]
    outputs = [item for item in session.history.items if item.type == "function_call_output"]
    assert "Lisbon" in outputs[0].output


@pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"), reason="OPENAI_API_KEY is not set")
async def test_the_desk_greets_the_caller_on_openai(example):
    session = voxtrio.AgentSession(**example.pipeline())
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, example.RealtimeWeatherDesk(), ScriptedTransport())
        with trio.move_on_after(20):
            while not any(item.type == "message" for item in session.history.items):
                await trio.sleep(0.1)
        await session.aclose()
    assert any(item.type == "message" and item.role == "assistant" for item in session.history.items)
