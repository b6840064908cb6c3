"""A local Gemini Live server (``BidiGenerateContent``), from Google's Live API reference.

Sources: the WebSockets reference (the endpoint with ``?key=``; ``setup``
first, answered by ``setupComplete``; client messages with exactly one of
``setup``, ``clientContent``, ``realtimeInput``, ``toolResponse``; server
messages ``serverContent`` with ``modelTurn`` parts, transcriptions,
``interrupted``, ``generationComplete``, ``turnComplete``; ``toolCall``,
``toolCallCancellation``, ``usageMetadata``, ``voiceActivity``, ``goAway``),
the Gen AI SDK's message types for the field names, and the errors as
users see them: a close with 1007 ("Request contains an invalid argument."),
1008 (a refused key) or 1011 (internal, ``RESOURCE_EXHAUSTED``).

Scripted like the OpenAI one (loopback/openai_realtime.py): :class:`Turn`
times the user's speech in seconds of audio received on a connection,
each reply plays the next :class:`Reply`. The model answers a tool's
output by itself, as Gemini does.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .openai_realtime import Call, Reply, Say, Turn
from .server import ConnectionLog, Fault, FakeServer, apply_fault, dumps

__all__ = ["Call", "FakeGemini", "Reply", "Say", "Turn"]

PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
INPUT_RATE = 16_000
OUTPUT_RATE = 24_000
USAGE = {
    "promptTokenCount": 90, "responseTokenCount": 140, "totalTokenCount": 230, "cachedContentTokenCount": 10,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 30}, {"modality": "AUDIO", "tokenCount": 60}],
    "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 140}],
}


class FakeGemini(FakeServer):
    def __init__(
        self,
        *,
        turns: list[Turn] | tuple[Turn, ...] = (),
        replies: list[Reply] | tuple[Reply, ...] = (),
        api_key: str = "test-key",
        faults: list[Fault | None] | tuple[Fault | None, ...] = (),
        voice_activity: bool = True,
        go_away_after: float | None = None,
        cancel_calls_at: float | None = None,
        ttfb: float = 0.2,
        speed: float = 4.0,
        chunk_seconds: float = 0.1,
    ) -> None:
        super().__init__(faults=faults)
        self.turns = list(turns)
        self.replies = list(replies)
        self.api_key = api_key
        self.voice_activity = voice_activity
        self.go_away_after = go_away_after
        self.cancel_calls_at = cancel_calls_at
        self.ttfb = ttfb
        self.speed = speed
        self.chunk_seconds = chunk_seconds
        self.audio_chunks: list[list[tuple[float, int, str]]] = []  # per connection: (trio time, samples, mime type)

    def serves(self, path: str) -> bool:
        return path == PATH

    def authorized(self, log: ConnectionLog) -> bool:
        return True  # Gemini accepts the WebSocket and closes it with 1008 when the key is wrong

    async def serve(self, ws: WebSocketConnection, log: ConnectionLog) -> None:
        index = len(self.audio_chunks)
        self.audio_chunks.append([])
        await _Connection(self, ws, log, index).run()


class _Connection:
    def __init__(self, server: FakeGemini, ws: WebSocketConnection, log: ConnectionLog, index: int) -> None:
        self.server = server
        self.ws = ws
        self.log = log
        self.index = index
        self.setup: dict[str, Any] = {}
        self.t = 0.0
        self.turns = [turn for turn in server.turns if turn.connection == index]
        self.hearing = False
        self.response: trio.CancelScope | None = None
        self.pending_calls: list[str] = []
        self.fault = log.fault

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_message(dumps(message))

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                first = json.loads(await self.ws.get_message())
                self.log.texts.append(first)
                if self.log.param("key") != self.server.api_key:
                    await self.ws.aclose(1008, "API key not valid. Please pass a valid API key.")
                    return
                if set(first) != {"setup"} or not str(first["setup"].get("model", "")).startswith("models/"):
                    await self.ws.aclose(1007, "Request contains an invalid argument.")
                    return
                self.setup = first["setup"]
                await self.send({"setupComplete": {}})
                while True:
                    message = json.loads(await self.ws.get_message())
                    if len(message) != 1:
                        await self.ws.aclose(1007, "Request contains an invalid argument.")
                        return
                    audio = (message.get("realtimeInput") or {}).get("audio")
                    if audio is None:
                        self.log.texts.append(message)
                    if await self.handle(message):
                        nursery.cancel_scope.cancel()
                        return
        except* ConnectionClosed:
            self.log.client_gone_at = trio.current_time()

    async def handle(self, message: dict[str, Any]) -> bool:
        if "realtimeInput" in message:
            audio = message["realtimeInput"].get("audio")
            if audio is not None:
                return await self.hear(audio)
        elif "clientContent" in message:
            if message["clientContent"].get("turnComplete"):
                self.interrupt()
                self.start_response()
        elif "toolResponse" in message:
            answered = {r["id"] for r in message["toolResponse"]["functionResponses"]}
            if not answered <= set(self.pending_calls):
                await self.ws.aclose(1007, "Request contains an invalid argument.")
                return True
            self.pending_calls = [c for c in self.pending_calls if c not in answered]
            if not self.pending_calls:
                self.start_response()  # Gemini answers the outputs by itself
        else:
            await self.ws.aclose(1007, "Request contains an invalid argument.")
            return True
        return False

    async def hear(self, audio: dict[str, Any]) -> bool:
        data = base64.b64decode(audio["data"], validate=True)
        samples = len(data) // 2
        self.server.audio_chunks[self.index].append((trio.current_time(), samples, audio["mimeType"]))
        self.t += samples / INPUT_RATE
        self.log.audio_seconds += samples / INPUT_RATE
        interrupts = self.setup.get("realtimeInputConfig", {}).get("activityHandling") != "NO_INTERRUPTION"
        if self.turns:
            turn = self.turns[0]
            if not self.hearing and self.t >= turn.start - 1e-9:
                self.hearing = True
                if self.server.voice_activity:
                    await self.send({"voiceActivity": {"voiceActivityType": "ACTIVITY_START", "audioOffset": f"{turn.start:.3f}s"}})
                if self.response is not None and interrupts:
                    self.interrupt()
                    await self.send({"serverContent": {"interrupted": True}})
                    await self.send({"serverContent": {"turnComplete": True}})
            if self.hearing and self.t >= turn.stop - 1e-9:
                self.turns.pop(0)
                self.hearing = False
                if self.server.voice_activity:
                    await self.send({"voiceActivity": {"voiceActivityType": "ACTIVITY_END", "audioOffset": f"{turn.stop:.3f}s"}})
                if "inputAudioTranscription" in self.setup:
                    words = turn.transcript.split(" ")
                    for i, word in enumerate(words):
                        await self.send({"serverContent": {"inputTranscription": {"text": (" " if i else "") + word,
                                                                                  **({"finished": True} if i == len(words) - 1 else {})}}})
                if self.response is None:
                    self.start_response()
        if self.server.cancel_calls_at is not None and self.pending_calls and self.t >= self.server.cancel_calls_at:
            self.server.cancel_calls_at = None
            cancelled, self.pending_calls = self.pending_calls, []
            await self.send({"toolCallCancellation": {"ids": cancelled}})
        if self.server.go_away_after is not None and self.t >= self.server.go_away_after:
            self.server.go_away_after = None  # once: the next connection is the one that stays
            await self.send({"goAway": {"timeLeft": "10s"}})
        fault = self.fault
        if fault is not None and fault.kind not in ("reject", "stall_handshake") and self.t >= fault.after - 1e-9:
            self.fault = None
            return await apply_fault(self.ws, fault)
        return False

    def interrupt(self) -> None:
        if self.response is not None:
            self.response.cancel()
            self.response = None

    def start_response(self) -> None:
        reply = self.server.replies.pop(0) if self.server.replies else Reply((Say("Okay.", 0.5),))
        self.response = scope = trio.CancelScope()
        self.nursery.start_soon(self.respond, reply, scope)

    async def respond(self, reply: Reply, scope: trio.CancelScope) -> None:
        text_only = self.setup.get("generationConfig", {}).get("responseModalities") == ["TEXT"]
        transcribes = "outputAudioTranscription" in self.setup
        with scope:
            await trio.sleep(self.server.ttfb)
            for output in reply.outputs:
                if isinstance(output, Call):
                    self.pending_calls.append(output.call_id)
                    await self.send({"toolCall": {"functionCalls": [
                        {"id": output.call_id, "name": output.name, "args": json.loads(output.arguments)}]}})
                    self.response = None
                    return
                if isinstance(output, Say):
                    if text_only:
                        for i, word in enumerate(output.text.split(" ")):
                            await self.send({"serverContent": {"modelTurn": {"role": "model", "parts": [{"text": (" " if i else "") + word}]}}})
                        continue
                    words = output.text.split(" ")
                    total = int(round(output.seconds * OUTPUT_RATE))
                    chunk = int(round(self.server.chunk_seconds * OUTPUT_RATE))
                    said = 0
                    for start in range(0, total, chunk):
                        samples = min(chunk, total - start)
                        pcm = np.full(samples, output.value, "<i2").tobytes()
                        await self.send({"serverContent": {"modelTurn": {"role": "model", "parts": [
                            {"inlineData": {"mimeType": f"audio/pcm;rate={OUTPUT_RATE}", "data": base64.b64encode(pcm).decode()}}]}}})
                        due = int(len(words) * (start + samples) / total)
                        while transcribes and said < due:
                            await self.send({"serverContent": {"outputTranscription": {"text": (" " if said else "") + words[said]}}})
                            said += 1
                        await trio.sleep(samples / OUTPUT_RATE / self.server.speed)
            await self.send({"serverContent": {"generationComplete": True}})
            self.response = None
            await self.send({"serverContent": {"turnComplete": True}, "usageMetadata": USAGE})
