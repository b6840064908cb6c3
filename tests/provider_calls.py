"""What the HTTP provider tests do the same way for every vendor: one chat
request read to its end, a text turn through AgentSession, a spoken call that
the user interrupts."""

from __future__ import annotations

import math
from typing import Any

import trio

import voxtrio
from voxtrio.chat import ChatContext
from voxtrio.testing import ScriptedSTT, ScriptedTTS, ScriptedTransport, ScriptedVAD, UserSpeech, running

# The second speech starts at 4.0 s; the VAD hears it 0.05 s in and the
# interruption needs 0.5 s of it.
INTERRUPTED_AT = 4.0 + 0.05 + 0.5


@voxtrio.function_tool
async def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class WeatherAgent(voxtrio.Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You tell the weather.", tools=[get_weather])


async def collect(llm: Any, text: str = "hi", tools: Any = (), tool_choice: Any = None, timeout: float = 10.0) -> list[Any]:
    """Everything one ``chat`` call sends, in order."""
    ctx = ChatContext()
    ctx.add_message(role="user", content=text)
    send, receive = trio.open_memory_channel[Any](math.inf)
    async with send:
        await llm.chat(
            chat_ctx=ctx,
            tools=list(tools),
            tool_choice=tool_choice,
            output=send,
            conn_options=voxtrio.APIConnectOptions(timeout=timeout),
        )
    return [chunk async for chunk in receive]


def text_session(llm: Any, **options: Any) -> voxtrio.AgentSession:
    """A session that hears typed input and speaks through a scripted TTS."""
    return voxtrio.AgentSession(llm=llm, tts=ScriptedTTS([], default_chars_per_second=20.0), **options)


async def text_turn(session: voxtrio.AgentSession, user_input: str = "hi", agent: Any = None) -> Any:
    async with running(session, agent or voxtrio.Agent(), ScriptedTransport(input_audio=False)):
        return await session.run(user_input=user_input)


async def interrupted_call(llm: Any, tts: Any = None) -> list[float]:
    """A spoken call: the user asks, the agent answers at length, the user
    talks over it at 4 s; when the replies were interrupted."""
    speeches = [
        UserSpeech(start=0.5, end=1.5, transcript="Tell me a story."),
        UserSpeech(start=4.0, end=5.5, transcript="Stop."),
    ]
    session = voxtrio.AgentSession(
        vad=ScriptedVAD(speeches),
        stt=ScriptedSTT(speeches),
        llm=llm,
        tts=tts or ScriptedTTS([], default_chars_per_second=15.0),
    )
    interrupted: list[float] = []
    session.on("playback_finished", lambda e: interrupted.append(trio.current_time()) if e.interrupted else None)
    async with running(session, voxtrio.Agent(), ScriptedTransport()):
        await trio.sleep(8.0)
    return interrupted
