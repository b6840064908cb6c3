"""Client events and the WebSocket transport in virtual time (trio's MockClock).

The transport runs on an in-memory connection; a simulated client sends 20 ms
frames, plays the agent's audio ``lag`` seconds after it arrives and reports
its play head as the page does. The scripted providers fix every moment, so
the events' order and times can be checked exactly: the agent's words appear
when the *client* has played them (word timings of the tone TTS), an
interruption records the words the client played, not the ones the server
sent, and the events of a turn come in the order the protocol promises.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

import voxtrio
from voxtrio.testing import LLMResponse, ScriptedLLM, ScriptedSTT, ScriptedVAD, ToolCall, UserSpeech
from voxtrio.testing.model_free import ToneTTS
from voxtrio.transports.base import TransportDisconnected
from voxtrio.transports.client_events import ClientCommandError, ClientEvents
from voxtrio.transports.websocket import WebSocketTransport

REPLY = "It is sunny in Lisbon today, with a light breeze."


class MemoryConnection:
    """Both ends of a WebSocket in memory; the server's side is this object."""

    def __init__(self) -> None:
        self.to_server, self._from_client = trio.open_memory_channel[Any](1000)
        self.to_client, self.from_server = trio.open_memory_channel[Any](1000)
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> bytes | str:
        try:
            return await self._from_client.receive()
        except trio.EndOfChannel:
            raise TransportDisconnected("the client closed") from None

    async def send(self, message: bytes | str) -> None:
        if self.closed is None:
            await self.to_client.send((trio.current_time(), message))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.to_client.close()


class PlayingClient:
    """Sends silence frames, plays agent audio ``lag`` after it arrives (at
    24 kHz, back to back) and reports ``played`` every 100 ms and on clear."""

    def __init__(self, connection: MemoryConnection, *, lag: float) -> None:
        self.connection = connection
        self.lag = lag
        self.events: list[dict[str, Any]] = []
        self.epoch = 0
        self.play_from: float | None = None  # when this epoch's audio started playing
        self.received = 0.0  # seconds of audio of this epoch
        self.paused_at: float | None = None
        self.origin = 0.0

    def played(self, now: float) -> float:
        if self.play_from is None:
            return 0.0
        until = now if self.paused_at is None else self.paused_at
        return max(0.0, min(self.received, until - self.play_from))

    async def send_frames(self) -> None:
        start = trio.current_time()
        for index in range(100_000):
            await trio.sleep_until(start + index * 0.02)
            await self.connection.to_server.send(bytes(640))

    async def report(self) -> None:
        await trio.sleep(0.05)  # off the server's 20 ms grid: a report never races a chunk
        while True:
            await trio.sleep(0.1)
            now = trio.current_time()
            state = "paused" if self.paused_at is not None else "playing" if self.played(now) < self.received else "idle"
            if self.play_from is not None and now >= self.play_from:
                await self.send(type="playback", epoch=self.epoch, played=self.played(now), state=state)

    async def send(self, **message: Any) -> None:
        await self.connection.to_server.send(json.dumps(message))

    async def read(self) -> None:
        async for at, message in self.connection.from_server:
            if isinstance(message, bytes):
                if self.play_from is None:  # as the page does: say at once that nothing has played yet
                    self.play_from = at + self.lag
                    await self.send(type="playback", epoch=self.epoch, played=0.0, state="idle")
                self.received += len(message) / 2 / 24_000
                continue
            event = json.loads(message)
            event["at"] = at - self.origin
            self.events.append(event)
            if event["type"] == "clear":
                self.epoch, self.play_from, self.received = event["epoch"], None, 0.0
                await self.send(type="playback", epoch=self.epoch, played=0.0, state="idle")
            elif event["type"] == "pause":
                self.paused_at = at
            elif event["type"] == "resume" and self.paused_at is not None:
                if self.play_from is not None:
                    self.play_from += at - self.paused_at
                self.paused_at = None


async def call(
    speeches: list[UserSpeech],
    responses: list[LLMResponse],
    *,
    lag: float,
    until: float,
    agent: voxtrio.Agent | None = None,
    commands: list[tuple[float, dict[str, Any]]] = (),  # type: ignore[assignment]
) -> tuple[PlayingClient, voxtrio.AgentSession]:
    connection = MemoryConnection()
    transport = WebSocketTransport(connection)
    session = voxtrio.AgentSession(
        vad=ScriptedVAD(speeches), stt=ScriptedSTT(speeches), llm=ScriptedLLM(responses), tts=ToneTTS(),
        min_endpointing_delay=0.5,
    )
    client = PlayingClient(connection, lag=lag)
    client.origin = trio.current_time()

    async def script() -> None:
        for at, command in commands:
            await trio.sleep_until(client.origin + at)
            await client.send(**command)
        await trio.sleep_until(client.origin + until)
        await session.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.read)  # until the server closes the connection
        async with trio.open_nursery() as sending:
            for task in (client.send_frames, client.report, script):
                sending.start_soon(task)
            await transport.run(session, agent or voxtrio.Agent(instructions="Answer."))
            sending.cancel_scope.cancel()
    assert connection.closed == (1000, session.last_close.reason)
    return client, session


def words_of(text: str) -> list[tuple[str, float]]:
    """(word, end in seconds of the audio) of ToneTTS speaking ``text``."""
    _, words = ToneTTS().render(text)
    return [(w.text, w.end) for w in words]


@pytest.mark.parametrize("lag", [0.0, 0.35])
async def test_the_agents_words_appear_as_the_client_plays_them(autojump_clock, lag):
    speeches = [UserSpeech(start=0.5, end=1.5, transcript="Weather in Lisbon?")]
    client, session = await call(speeches, [LLMResponse(input="Weather in Lisbon?", content=REPLY)], lag=lag, until=12.0)
    shown = [e for e in client.events if e["type"] == "agent_transcript"]
    assert [e["text"] for e in shown][-1] == REPLY and shown[-1]["final"]
    interim = [e for e in shown if not e["final"]]
    words = words_of(REPLY)
    assert [e["text"] for e in interim] == [" ".join(w for w, _ in words[: i + 1]) for i in range(len(words))]
    first_audio = next(e["at"] for e in client.events if e["type"] == "agent_state" and e["state"] == "speaking")
    for event, (_, end) in zip(interim, words):
        # The word is shown when the client has played it: its end, after the client's lag.
        assert event["at"] == pytest.approx(first_audio + lag + end, abs=0.002)
    assert session.history.items[-1].content == REPLY


async def test_without_word_timings_the_words_follow_the_pacing_estimate(autojump_clock):
    import re

    from voxtrio.testing import ScriptedTTS, TTSResponse

    speeches = [UserSpeech(start=0.5, end=1.5, transcript="Weather in Lisbon?")]
    connection = MemoryConnection()
    transport = WebSocketTransport(connection)
    session = voxtrio.AgentSession(
        vad=ScriptedVAD(speeches), stt=ScriptedSTT(speeches),
        llm=ScriptedLLM([LLMResponse(input="Weather in Lisbon?", content=REPLY)]),
        tts=ScriptedTTS([TTSResponse(input=REPLY, audio_duration=4.0)]), min_endpointing_delay=0.5,
    )
    client = PlayingClient(connection, lag=0.0)
    client.origin = trio.current_time()

    async def hang_up() -> None:
        await trio.sleep(10.0)
        await session.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.read)
        async with trio.open_nursery() as sending:
            for task in (client.send_frames, client.report, hang_up):
                sending.start_soon(task)
            await transport.run(session, voxtrio.Agent(instructions="Answer."))
            sending.cancel_scope.cancel()
    shown = [e for e in client.events if e["type"] == "agent_transcript"]
    first_audio = next(e["at"] for e in client.events if e["type"] == "agent_state" and e["state"] == "speaking")
    ends = [m.end() for m in re.finditer(r"\S+", REPLY)]
    # The last word ends with the audio: the final event says it.
    assert [e["text"] for e in shown if not e["final"]] == [REPLY[:end] for end in ends[:-1]]
    for event, end in zip(shown, ends):
        # Speech time taken as proportional to characters, over the 4 s of audio.
        assert event["at"] == pytest.approx(first_audio + 4.0 * end / len(REPLY), abs=0.002)
    assert shown[-1]["final"] and shown[-1]["text"] == REPLY


async def test_an_interruption_records_the_words_the_client_played(autojump_clock):
    speeches = [
        UserSpeech(start=0.5, end=1.5, transcript="Weather in Lisbon?"),
        UserSpeech(start=4.0, end=4.8, transcript="Stop."),
    ]
    lag = 0.6
    client, session = await call(
        speeches,
        [LLMResponse(input="Weather in Lisbon?", content=REPLY), LLMResponse(input="Stop.", content="Sure.")],
        lag=lag,
        until=10.0,
    )
    types = [e["type"] for e in client.events]
    pause, clear = types.index("pause"), types.index("clear")
    assert pause < clear  # paused at the first sound, cleared once the words came
    first_audio = next(e["at"] for e in client.events if e["type"] == "agent_state" and e["state"] == "speaking")
    paused_at = client.events[pause]["at"]
    played = paused_at - (first_audio + lag)  # what the client had played when it paused
    heard = " ".join(w for w, end in words_of(REPLY) if end <= played + 1e-6)
    sent = " ".join(w for w, end in words_of(REPLY) if end <= paused_at - first_audio + 1e-6)
    assert heard and heard != sent  # the lag matters here
    cut = [m for m in session.history.items if m.type == "message" and m.role == "assistant"][0]
    assert cut.interrupted and cut.content == heard
    final = [e for e in client.events if e["type"] == "agent_transcript" and e["final"]][0]
    assert final["text"] == heard and final["at"] == pytest.approx(client.events[clear]["at"])


async def test_the_events_of_a_turn_in_order(autojump_clock):
    class Desk(voxtrio.Agent):
        def __init__(self) -> None:
            super().__init__(instructions="Weather desk.")

        @voxtrio.function_tool
        async def get_weather(self, city: str) -> str:
            """Look up the weather.

            Args:
                city: the city
            """
            return f"Sunny in {city}."

    speeches = [UserSpeech(start=0.5, end=1.5, transcript="Weather in Lisbon?", stt_delay=0.2)]
    responses = [
        LLMResponse(input="Weather in Lisbon?", tool_calls=(ToolCall(name="get_weather", arguments='{"city": "Lisbon"}', call_id="c1"),)),
        LLMResponse(input="Sunny in Lisbon.", content="Sunny in Lisbon."),
    ]
    client, session = await call(
        speeches, responses, lag=0.0, until=8.0, agent=Desk(),
        commands=[(6.0, {"type": "mute"}), (6.5, {"type": "interrupt"}), (7.0, {"type": "bogus"})],
    )
    lines = []
    for event in client.events:
        if event["type"] in ("agent_state", "user_state"):
            lines.append((event["t"], event["type"], event["state"]))
        elif event["type"] in ("user_transcript", "agent_transcript"):
            if event["final"]:
                lines.append((event["t"], event["type"], event["text"]))
        elif event["type"] == "tool_calls":
            lines.append((event["t"], "tool_calls", [(c["name"], c["arguments"], c["output"]) for c in event["calls"]]))
        elif event["type"] in ("error", "close"):
            lines.append((event["t"], event["type"], event.get("code") or event.get("reason")))
        else:
            lines.append((event["t"], event["type"], None))
    speech_end = 1.5
    committed = speech_end + 0.5  # min_endpointing_delay after the last voiced audio
    spoken = words_of("Sunny in Lisbon.")[-1][1] + 0.08  # the tone TTS's trailing gap
    assert [line[1:] for line in lines] == [
        ("ready", None),
        ("handoff", None),
        ("agent_state", "listening"),
        ("user_state", "speaking"),
        ("user_transcript", "Weather in Lisbon?"),
        ("user_state", "listening"),
        ("agent_state", "thinking"),
        ("tool_calls", [("get_weather", {"city": "Lisbon"}, "Sunny in Lisbon.")]),
        ("agent_state", "speaking"),
        ("metrics", None),
        ("agent_transcript", "Sunny in Lisbon."),
        ("agent_state", "listening"),
        ("error", "unknown_type"),
        ("close", "user_initiated"),
    ]
    by_kind = {line[1:2] + (str(line[2]),): line[0] for line in lines}
    assert by_kind[("user_transcript", "Weather in Lisbon?")] == pytest.approx(speech_end + 0.2)
    assert by_kind[("user_state", "listening")] == pytest.approx(committed)
    speaking = by_kind[("agent_state", "speaking")]
    assert by_kind[("agent_transcript", "Sunny in Lisbon.")] == pytest.approx(speaking + spoken, abs=0.002)
    metrics = next(e for e in client.events if e["type"] == "metrics")
    assert metrics["turn"] == 1 and metrics["tool_calls"] == ["get_weather"]
    assert metrics["first_audio"] == pytest.approx(speaking - speech_end, abs=0.002)


def test_commands_are_checked_before_anything_happens():
    events = ClientEvents(lambda event: None)
    for message, code in [
        ("text", "bad_message"),
        ({"type": 3}, "bad_message"),
        ({"type": "fly"}, "unknown_type"),
        ({"type": "interrupt"}, "not_allowed"),  # no session yet
    ]:
        with pytest.raises(ClientCommandError) as error:
            events.handle(message)
        assert error.value.code == code
