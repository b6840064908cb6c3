"""The HTTP providers against the real services: skipped unless the key is set.

    OPENAI_API_KEY=... ANTHROPIC_API_KEY=... .venv/bin/pytest tests/test_live_providers.py

Real network and the real clock: these tests never run in CI (no key there).
"""

import math
import os

import pytest
import trio

pytest.importorskip("httpx2")

import voxtrio  # noqa: E402
from voxtrio.chat import ChatContext  # noqa: E402

needs_openai = pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"), reason="OPENAI_API_KEY is not set")
needs_anthropic = pytest.mark.skipif(not os.environ.get("ANTHROPIC_API_KEY"), reason="ANTHROPIC_API_KEY is not set")


@voxtrio.function_tool
async def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny in {city}"


async def chat(llm, text, tools=()):
    ctx = ChatContext()
    ctx.add_message(role="user", content=text)
    send, receive = trio.open_memory_channel(math.inf)
    async with send:
        with trio.fail_after(60):
            await llm.chat(chat_ctx=ctx, tools=list(tools), tool_choice=None, output=send)
    return [chunk async for chunk in receive]


def calls_and_usage(chunks):
    from voxtrio.providers.base import ToolCallChunk, UsageChunk

    calls = [c for c in chunks if isinstance(c, ToolCallChunk)]
    usage = [c for c in chunks if isinstance(c, UsageChunk)]
    return calls, usage


@needs_openai
async def test_openai_llm_calls_a_tool_and_reports_usage():
    from voxtrio.providers import openai

    chunks = await chat(openai.LLM(), "What's the weather in Paris? Use the tool.", [get_weather])
    calls, usage = calls_and_usage(chunks)
    assert calls and calls[0].name == "get_weather" and "Paris" in calls[0].arguments
    assert usage and usage[0].prompt_tokens > 0


@needs_openai
async def test_openai_tts_then_stt_round_trip():
    from voxtrio.providers import openai

    send, receive = trio.open_memory_channel(math.inf)
    async with send:
        with trio.fail_after(60):
            await openai.TTS().synthesize("Hello from voxtrio.", send)
    import numpy as np
    import soxr

    audio = np.concatenate([item.frame.data async for item in receive])
    assert len(audio) > 24_000 * 0.5
    pcm16k = soxr.resample(audio, 24_000, 16_000).astype(np.int16)
    with trio.fail_after(60):
        event = await openai.STT().recognize(voxtrio.AudioFrame(pcm16k, 16_000), language="en")
    assert "hello" in event.text.lower()


@needs_anthropic
async def test_anthropic_llm_calls_a_tool_and_reports_usage():
    from voxtrio.providers import anthropic

    chunks = await chat(anthropic.LLM(), "What's the weather in Paris? Use the tool.", [get_weather])
    calls, usage = calls_and_usage(chunks)
    assert calls and calls[0].name == "get_weather" and "Paris" in calls[0].arguments
    assert usage and usage[0].completion_tokens > 0
