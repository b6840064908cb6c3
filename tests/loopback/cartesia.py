"""A local Cartesia TTS WebSocket server (``/tts/websocket``), from Cartesia's docs.

Sources: the API reference "Text to Speech (WebSocket)" (generation
requests with ``context_id``, ``continue``, ``add_timestamps``, a raw
``pcm_s16le`` ``output_format``; ``{"context_id", "cancel": true}``; the
``chunk``, ``timestamps``, ``flush_done``, ``done`` and ``error`` messages
and their fields), "API conventions" (``X-API-Key``, ``Cartesia-Version``
or ``?cartesia_version``), and the message models of Cartesia's Python SDK
(``WebsocketResponse``: word timestamps in seconds from the start of the
context's audio; the reference's example times "Hello, world!" as the
words "Hello" and "world").
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .server import ConnectionLog, Fault, FakeServer, SpeechModel, apply_fault, dumps, timed_words

VERSIONS = ("2024-06-10", "2024-11-13", "2025-04-16", "2026-03-01")


class FakeCartesia(FakeServer):
    key_header = "x-api-key"

    def __init__(self, *, api_key: str = "test-key", faults: list[Fault | None] | tuple[Fault | None, ...] = (),
                 model: SpeechModel | None = None) -> None:
        super().__init__(faults=faults)
        self.api_key = api_key
        self.model = model or SpeechModel()
        self.cancelled: list[str] = []  # contexts a client cancelled while they were generating
        self.cancelled_at: list[float] = []  # when each of those cancels arrived

    def serves(self, path: str) -> bool:
        return path == "/tts/websocket"

    def expected_key_value(self) -> str:
        return self.api_key

    async def serve(self, ws: WebSocketConnection, log: ConnectionLog) -> None:
        version = log.param("cartesia_version") or log.headers.get("cartesia-version")
        if version not in VERSIONS:
            await ws.send_message(dumps(_error("Invalid version", f"Unknown Cartesia-Version {version!r}", 400)))
            await ws.aclose(1008)
            return
        contexts: dict[str, trio.MemorySendChannel[Any]] = {}
        scopes: dict[str, trio.CancelScope] = {}
        fault = [log.fault if log.fault is not None and log.fault.kind not in ("reject", "stall_handshake") else None]
        lock = trio.Lock()  # one generation step at a time on the connection
        async with trio.open_nursery() as nursery:
            try:
                while True:
                    message = await ws.get_message()
                    data = json.loads(message)
                    log.texts.append(data)
                    context_id = data.get("context_id")
                    if data.get("cancel"):
                        if context_id in contexts:
                            contexts.pop(context_id).close()
                            scopes.pop(context_id).cancel()
                            self.cancelled.append(context_id)
                            self.cancelled_at.append(trio.current_time())
                        continue
                    problem = _invalid(data)
                    if problem:
                        await ws.send_message(dumps(_error("Invalid request", problem, 400, context_id)))
                        continue
                    if context_id not in contexts:
                        send, receive = trio.open_memory_channel[Any](math.inf)
                        contexts[context_id] = send
                        scopes[context_id] = scope = trio.CancelScope()
                        nursery.start_soon(self._generate, ws, log, context_id, receive, data, lock, fault, contexts, scope)
                    contexts[context_id].send_nowait((data["transcript"], data.get("continue", False)))
            except ConnectionClosed:
                log.client_gone_at = trio.current_time()
                nursery.cancel_scope.cancel()

    async def _generate(self, ws: WebSocketConnection, log: ConnectionLog, context_id: str,
                        requests: trio.MemoryReceiveChannel[Any], first: dict[str, Any], lock: trio.Lock,
                        fault: list[Fault | None], contexts: dict[str, Any], scope: trio.CancelScope) -> None:
        with scope:
            await self._render(ws, log, context_id, requests, first, lock, fault, contexts)

    async def _render(self, ws: WebSocketConnection, log: ConnectionLog, context_id: str,
                      requests: trio.MemoryReceiveChannel[Any], first: dict[str, Any], lock: trio.Lock,
                      fault: list[Fault | None], contexts: dict[str, Any]) -> None:
        model = self.model
        rate = first["output_format"]["sample_rate"]
        char = model.char_duration()
        context_seconds = 0.0  # the context's own clock, what its timestamps count from
        base = {"context_id": context_id, "status_code": 206, "done": False}
        try:
            async for transcript, more in requests:
                if transcript.strip():
                    await trio.sleep(model.ttfb)
                    words = timed_words(transcript, context_seconds, char)
                    log.words.extend((w, log.audio_seconds + s - context_seconds, log.audio_seconds + e - context_seconds)
                                     for w, s, e in words)
                    per_chunk = max(1, int(model.chunk_seconds / char))
                    for offset in range(0, len(transcript), per_chunk):
                        current = fault[0]
                        if current is not None and log.audio_seconds >= current.after - 1e-9:
                            fault[0] = None
                            if await apply_fault(ws, current):
                                return
                        seconds = len(transcript[offset : offset + per_chunk]) * char
                        async with lock:
                            await ws.send_message(dumps({**base, "type": "chunk", "step_time": 12.5,
                                                         "data": base64.b64encode(model.samples(seconds, rate)).decode()}))
                            context_seconds += seconds
                            log.audio_seconds += seconds
                            spoken = [w for w in words if w[2] <= context_seconds + 1e-9]
                            words = words[len(spoken):]
                            if first.get("add_timestamps") and spoken:
                                await ws.send_message(dumps({**base, "type": "timestamps", "word_timestamps": {
                                    # timed words come without their punctuation, as in the docs' example
                                    "words": [w.strip(".,!?;:") for w, _, _ in spoken],
                                    "start": [round(s, 4) for _, s, _ in spoken],
                                    "end": [round(e, 4) for _, _, e in spoken],
                                }}))
                        await trio.sleep(seconds / model.speed)
                if not more:
                    await ws.send_message(dumps({**base, "type": "done", "done": True}))
                    log.finished = True
                    contexts.pop(context_id, None)
                    return
        except ConnectionClosed:
            return


def _invalid(data: dict[str, Any]) -> str | None:
    for name in ("model_id", "transcript", "voice", "output_format", "context_id"):
        if name not in data:
            return f"missing field {name!r}"
    output = data["output_format"]
    if output.get("container") != "raw" or output.get("encoding") != "pcm_s16le":
        return "this server speaks raw pcm_s16le only"
    if data["voice"].get("mode") != "id" or not data["voice"].get("id"):
        return "voice must be {'mode': 'id', 'id': ...}"
    return None


def _error(title: str, message: str, status: int, context_id: str | None = None) -> dict[str, Any]:
    error = {"type": "error", "done": True, "title": title, "message": message,
             "error_code": "invalid_request", "status_code": status}
    if context_id is not None:
        error["context_id"] = context_id
    return error
