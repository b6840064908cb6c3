"""A local ElevenLabs stream-input server, from ElevenLabs' docs.

Sources: the AsyncAPI description of ``/v1/text-to-speech/{voice_id}/stream-input``
(query parameters, ``xi-api-key``; the first message's text is one space;
``flush``; ``{"text": ""}`` ends the input; audio messages with base64
``audio`` and ``alignment``/``normalizedAlignment`` of ``chars``,
``charStartTimesMs``, ``charsDurationsMs``, times relative to that chunk;
``isFinal``), the guide "Generate audio in real-time" (the
``chunk_length_schedule`` buffer, 120 characters before the first audio by
default; 20 s without text closes the stream) and the error frames ElevenLabs
sends before closing (``{"message", "error": "input_timeout_exceeded",
"code": 1008}``, as reported in elevenlabs-docs#426 and livekit/agents#218).
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .server import ConnectionLog, Fault, FakeServer, SpeechModel, apply_fault, dumps, timed_words

INACTIVITY_TIMEOUT = 20.0
DEFAULT_SCHEDULE = (120, 160, 250, 290)


class FakeElevenLabs(FakeServer):
    key_header = "xi-api-key"

    def __init__(self, *, api_key: str = "test-key", faults: list[Fault | None] | tuple[Fault | None, ...] = (),
                 model: SpeechModel | None = None) -> None:
        super().__init__(faults=faults)
        self.api_key = api_key
        self.model = model or SpeechModel()

    def serves(self, path: str) -> bool:
        return re.fullmatch(r"/v1/text-to-speech/[^/]+/stream-input", path) is not None

    def expected_key_value(self) -> str:
        return self.api_key

    async def serve(self, ws: WebSocketConnection, log: ConnectionLog) -> None:
        rate = int((log.param("output_format") or "pcm_16000").removeprefix("pcm_"))
        jobs_send, jobs_receive = trio.open_memory_channel[Any](math.inf)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, ws, log, jobs_send)
            try:
                await self._generate(ws, log, jobs_receive, rate)
            except ConnectionClosed:
                pass
            nursery.cancel_scope.cancel()

    async def _read(self, ws: WebSocketConnection, log: ConnectionLog, jobs: trio.MemorySendChannel[Any]) -> None:
        buffer = ""
        schedule = list(DEFAULT_SCHEDULE)
        first = True
        ended = False
        try:
            while True:
                with trio.move_on_after(math.inf if ended else INACTIVITY_TIMEOUT) as waiting:
                    message = await ws.get_message()
                if waiting.cancelled_caught:
                    await ws.send_message(dumps({
                        "message": "Have not received a new text input within the timeout of 20 seconds. "
                        "Streaming input terminated.", "error": "input_timeout_exceeded", "code": 1008,
                    }))
                    await ws.aclose(1008, "input_timeout_exceeded")
                    return
                data = json.loads(message)
                log.texts.append(data)
                if first:
                    first = False
                    if data.get("text") != " ":
                        await ws.send_message(dumps({"message": "The first message must have the text ' '.",
                                                     "error": "invalid_request", "code": 1008}))
                        await ws.aclose(1008, "invalid_request")
                        return
                    schedule = list((data.get("generation_config") or {}).get("chunk_length_schedule") or schedule)
                    continue
                text = data.get("text")
                if ended:
                    continue
                if text == "":
                    ended = True
                    await jobs.send(buffer)
                    await jobs.send(None)  # end of input
                    continue
                buffer += text
                if data.get("flush") or len(buffer) >= schedule[0]:
                    await jobs.send(buffer)
                    buffer = ""
                    if len(schedule) > 1:
                        schedule.pop(0)
        except ConnectionClosed:
            log.client_gone_at = trio.current_time()
            await jobs.send(None)

    async def _generate(self, ws: WebSocketConnection, log: ConnectionLog,
                        jobs: trio.MemoryReceiveChannel[Any], rate: int) -> None:
        model = self.model
        fault = log.fault if log.fault is not None and log.fault.kind not in ("reject", "stall_handshake") else None
        async for text in jobs:
            if text is None:
                break
            if not text.strip():
                continue
            await trio.sleep(model.ttfb)
            char = model.char_duration()
            start = log.audio_seconds
            log.words.extend(timed_words(text, start, char))
            per_chunk = max(1, int(model.chunk_seconds / char))
            for offset in range(0, len(text), per_chunk):
                if fault is not None and log.audio_seconds >= fault.after - 1e-9:
                    current, fault = fault, None
                    if await apply_fault(ws, current):
                        return
                piece = text[offset : offset + per_chunk]
                seconds = len(piece) * char
                alignment = {
                    "chars": list(piece),
                    "charStartTimesMs": [round(i * char * 1000) for i in range(len(piece))],
                    "charsDurationsMs": [round(char * 1000)] * len(piece),
                }
                await ws.send_message(dumps({
                    "audio": base64.b64encode(model.samples(seconds, rate)).decode(),
                    "isFinal": None,
                    "alignment": alignment,
                    "normalizedAlignment": alignment,
                }))
                log.audio_seconds += seconds
                await trio.sleep(seconds / model.speed)
        await ws.send_message(dumps({"isFinal": True}))
        log.finished = True
        await ws.aclose(1000)
