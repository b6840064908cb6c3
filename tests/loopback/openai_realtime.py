"""A local OpenAI Realtime server (``/v1/realtime``), from OpenAI's Realtime API reference.

Sources: the client and server events of the reference (``session.update``
answered by ``session.updated``; ``input_audio_buffer.append`` unanswered;
``input_audio_buffer.speech_started``/``speech_stopped`` with
``audio_start_ms``/``audio_end_ms`` on the clock of the audio appended;
``committed``, the user item, its transcription deltas and ``completed``;
a response as ``response.created``, ``output_item.added``,
``conversation.item.added``, ``content_part.added``, audio and transcript
deltas, their ``done`` events, ``output_item.done``, ``conversation.item.done``,
``response.done`` with ``status``, ``status_details`` and ``usage``;
``response.cancel`` of no response is an error, the session stays open;
``conversation.item.truncate`` past the audio's end is an error;
``rate_limits.updated`` at each response's start) and the WebSocket guide
(``?model=``, ``Authorization: Bearer``).

What it "hears" is scripted: :class:`Turn` says when, in seconds of audio
appended on a connection, the user speaks and what the transcription says;
each response (its own after a turn, or one asked for) plays the next
:class:`Reply`: spoken text (constant samples, ``seconds`` long, sent
``speed`` times faster than real time after ``ttfb``, the words' transcript
deltas spread over it), function calls, or a failure.
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import attrs
import numpy as np
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .server import ConnectionLog, Fault, FakeServer, apply_fault, dumps

RATE = 24_000


@attrs.frozen
class Say:
    """An assistant message spoken for ``seconds``."""

    text: str
    seconds: float
    value: int = 300  # the sample value, so a test recognizes the audio


@attrs.frozen
class Call:
    name: str
    arguments: str
    call_id: str = "call_1"


@attrs.frozen
class Fail:
    """The response fails, as ``response.done`` with status ``failed`` says."""

    code: str = "rate_limit_exceeded"
    type: str = "rate_limit_exceeded"
    message: str = "Rate limit reached for tokens."


@attrs.frozen
class Reply:
    outputs: tuple[Say | Call | Fail, ...]
    delay: float = 0.0  # seconds before response.created (a model slow to start it)


@attrs.frozen
class Turn:
    """The user speaks from ``start`` to ``stop`` (seconds of audio appended
    on connection number ``connection``) and is transcribed as ``transcript``."""

    start: float
    stop: float
    transcript: str
    connection: int = 0


@attrs.frozen
class ServerError:
    """An ``error`` event sent once ``after`` seconds of audio came in."""

    after: float
    type: str = "invalid_request_error"
    code: str = "invalid_value"
    message: str = "Invalid value."
    connection: int = 0


USAGE = {
    "total_tokens": 300, "input_tokens": 120, "output_tokens": 180,
    "input_token_details": {"cached_tokens": 64, "text_tokens": 20, "audio_tokens": 100,
                            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 64}},
    "output_token_details": {"text_tokens": 30, "audio_tokens": 150},
}


class FakeRealtime(FakeServer):
    def __init__(
        self,
        *,
        turns: list[Turn] | tuple[Turn, ...] = (),
        replies: list[Reply] | tuple[Reply, ...] = (),
        errors: list[ServerError] | tuple[ServerError, ...] = (),
        api_key: str = "test-key",
        faults: list[Fault | None] | tuple[Fault | None, ...] = (),
        ttfb: float = 0.2,
        speed: float = 4.0,
        chunk_seconds: float = 0.1,
        rate_limits: list[dict[str, Any]] | None = None,
        valid_voices: tuple[str, ...] = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"),
    ) -> None:
        super().__init__(faults=faults)
        self.turns = list(turns)
        self.replies = list(replies)
        self.errors = list(errors)
        self.api_key = api_key
        self.ttfb = ttfb
        self.speed = speed
        self.chunk_seconds = chunk_seconds
        self.rate_limits = rate_limits or [
            {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 60},
            {"name": "tokens", "limit": 50000, "remaining": 49000, "reset_seconds": 60},
        ]
        self.valid_voices = valid_voices
        self.appends: list[list[tuple[float, int]]] = []  # per connection: (trio time, samples) of each append
        self.conversations: list[list[dict[str, Any]]] = []  # per connection: the items, in order
        self.truncations: list[dict[str, Any]] = []
        self.ids = itertools.count(1)

    def serves(self, path: str) -> bool:
        return path == "/v1/realtime"

    def expected_key_value(self) -> str:
        return f"Bearer {self.api_key}"

    def reject_key(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        body = {"error": {"type": "invalid_request_error", "code": "invalid_api_key", "message": "Incorrect API key provided."}}
        return 401, [], json.dumps(body).encode()

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self.ids)}"

    async def serve(self, ws: WebSocketConnection, log: ConnectionLog) -> None:
        index = len(self.appends)
        self.appends.append([])
        self.conversations.append([])
        await _Connection(self, ws, log, index).run()


class _Connection:
    def __init__(self, server: FakeRealtime, ws: WebSocketConnection, log: ConnectionLog, index: int) -> None:
        self.server = server
        self.ws = ws
        self.log = log
        self.index = index
        self.session: dict[str, Any] = {
            "type": "realtime", "object": "realtime.session", "id": server.new_id("sess"),
            "model": log.param("model"), "output_modalities": ["audio"], "instructions": "", "tools": [],
            "tool_choice": "auto", "max_output_tokens": "inf",
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": RATE}, "transcription": None, "noise_reduction": None,
                          "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                             "silence_duration_ms": 200, "create_response": True, "interrupt_response": True}},
                "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "marin", "speed": 1.0},
            },
        }
        self.items = server.conversations[index]
        self.audio_ms: dict[str, int] = {}  # assistant item id -> ms of audio sent
        self.t = 0.0  # seconds of audio appended
        self.turns = [turn for turn in server.turns if turn.connection == index]
        self.errors = [error for error in server.errors if error.connection == index]
        self.user_item: str | None = None  # the item of the speech being heard
        self.buffered = 0.0  # seconds of audio appended since the last commit or clear
        self.response: trio.CancelScope | None = None
        self.cancel_reason = ""
        self.fault = log.fault

    async def send(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", self.server.new_id("event"))
        await self.ws.send_message(dumps(event))

    async def error(self, code: str, message: str, event_id: str | None = None, kind: str = "invalid_request_error") -> None:
        await self.send({"type": "error", "error": {"type": kind, "code": code, "message": message, "param": None,
                                                    "event_id": event_id}})

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                await self.send({"type": "session.created", "session": self.session})
                while True:
                    message = await self.ws.get_message()
                    event = json.loads(message)
                    if event.get("type") != "input_audio_buffer.append":
                        self.log.texts.append(event)
                    if await self.handle(event):
                        nursery.cancel_scope.cancel()
                        return
        except* ConnectionClosed:
            self.log.client_gone_at = trio.current_time()

    async def handle(self, event: dict[str, Any]) -> bool:
        kind = event.get("type")
        event_id = event.get("event_id")
        if kind == "session.update":
            session = event.get("session") or {}
            if session.get("type") != "realtime":
                await self.error("invalid_value", "session.type must be 'realtime'", event_id)
                return False
            voice = ((session.get("audio") or {}).get("output") or {}).get("voice")
            if voice is not None and voice not in self.server.valid_voices:
                await self.error("invalid_value", f"Invalid value: '{voice}'. Supported values are: ...", event_id)
                return False
            _merge(self.session, session)
            await self.send({"type": "session.updated", "session": self.session})
        elif kind == "input_audio_buffer.append":
            return await self.append(event["audio"])
        elif kind == "conversation.item.create":
            await self.create_item(event["item"], event_id)
        elif kind == "conversation.item.truncate":
            await self.truncate(event, event_id)
        elif kind == "response.create":
            if self.response is not None:
                await self.error("conversation_already_has_active_response",
                                 "Conversation already has an active response in progress.", event_id)
            else:
                self.start_response()
        elif kind == "response.cancel":
            if self.response is None or self.response.cancel_called:
                await self.error("response_cancel_not_active", "Cancellation failed: no active response found", event_id)
            else:
                self.cancel_reason = "client_cancelled"
                self.response.cancel()
        elif kind == "input_audio_buffer.commit":
            await self.commit(event_id)
        elif kind == "input_audio_buffer.clear":
            # What the user said in the audio not committed yet is gone.
            self.turns = [turn for turn in self.turns if turn.start > self.t]
            self.buffered = 0.0
            await self.send({"type": "input_audio_buffer.cleared"})
        else:
            await self.error("invalid_event", f"Invalid event type: {kind!r}", event_id)
        return False

    # -- what it hears -----------------------------------------------------------------

    async def append(self, encoded: str) -> bool:
        data = base64.b64decode(encoded, validate=True)
        samples = len(data) // 2
        self.server.appends[self.index].append((trio.current_time(), samples))
        self.t += samples / RATE
        self.buffered += samples / RATE
        self.log.audio_seconds += samples / RATE
        detection = self.session["audio"]["input"]["turn_detection"] or {}
        for turn in list(self.turns) if detection else ():
            if self.user_item is None and self.t >= turn.start - 1e-9:
                self.user_item = self.server.new_id("item")
                await self.send({"type": "input_audio_buffer.speech_started", "audio_start_ms": int(round(turn.start * 1000)),
                                 "item_id": self.user_item})
                if self.response is not None and detection.get("interrupt_response", True):
                    self.cancel_reason = "turn_detected"
                    self.response.cancel()
            if self.user_item is not None and self.t >= turn.stop - 1e-9:
                self.turns.remove(turn)
                await self.end_turn(turn, detection)
            break
        for error in list(self.errors):
            if self.t >= error.after - 1e-9:
                self.errors.remove(error)
                await self.error(error.code, error.message, kind=error.type)
        fault = self.fault
        if fault is not None and fault.kind not in ("reject", "stall_handshake") and self.t >= fault.after - 1e-9:
            self.fault = None
            return await apply_fault(self.ws, fault)
        return False

    async def commit(self, event_id: str | None) -> None:
        """A manual commit (turn detection off): the user item of what was said
        in the audio buffered (the scripted turns that started in it), no response."""
        if self.buffered < 0.1:
            await self.error("input_audio_buffer_commit_empty",
                             f"Error committing input audio buffer: buffer too small ({self.buffered * 1000:.0f} ms).",
                             event_id)
            return
        said = [turn for turn in self.turns if turn.start <= self.t]
        self.turns = [turn for turn in self.turns if turn not in said]
        self.buffered = 0.0
        transcript = " ".join(turn.transcript for turn in said)
        await self.add_user_item(self.server.new_id("item"), transcript)

    async def end_turn(self, turn: Turn, detection: dict[str, Any]) -> None:
        item_id, self.user_item = self.user_item, None
        self.buffered = 0.0
        await self.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": int(round(turn.stop * 1000)),
                         "item_id": item_id})
        await self.add_user_item(item_id, turn.transcript)
        if detection.get("create_response", True) and self.response is None:
            self.start_response()

    async def add_user_item(self, item_id: str, transcript: str) -> None:
        """The buffer committed as user message ``item_id``, and its transcription."""
        previous = self.items[-1]["id"] if self.items else None
        await self.send({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id})
        item = {"id": item_id, "object": "realtime.item", "type": "message", "status": "completed", "role": "user",
                "content": [{"type": "input_audio", "transcript": None}]}
        self.items.append(item)
        await self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        await self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})
        if self.session["audio"]["input"]["transcription"]:
            words = transcript.split(" ")
            for i, word in enumerate(words):
                await self.send({"type": "conversation.item.input_audio_transcription.delta", "item_id": item_id,
                                 "content_index": 0, "delta": word if i == 0 else " " + word})
            await self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                             "content_index": 0, "transcript": transcript,
                             "usage": {"type": "tokens", "total_tokens": 10, "input_tokens": 8, "output_tokens": 2}})
            item["content"][0]["transcript"] = transcript

    # -- conversation items ---------------------------------------------------------------------

    async def create_item(self, item: dict[str, Any], event_id: str | None) -> None:
        kind = item.get("type")
        if kind == "function_call_output":
            calls = {i.get("call_id") for i in self.items if i.get("type") == "function_call"}
            if item.get("call_id") not in calls:
                await self.error("invalid_value", f"No tool call found with call_id {item.get('call_id')!r}.", event_id)
                return
        elif kind == "message":
            role = item.get("role")
            allowed = {"user": "input_text", "system": "input_text", "assistant": "output_text"}
            parts = item.get("content") or []
            if role not in allowed or not parts or any(part.get("type") != allowed[role] for part in parts):
                await self.error("invalid_value", f"Invalid content for a {role} message.", event_id)
                return
        elif kind != "function_call":
            await self.error("invalid_value", f"Invalid item type {kind!r}.", event_id)
            return
        stored = {"object": "realtime.item", "status": "completed", **item}
        stored.setdefault("id", self.server.new_id("item"))
        previous = self.items[-1]["id"] if self.items else None
        self.items.append(stored)
        await self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": stored})
        await self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": stored})

    async def truncate(self, event: dict[str, Any], event_id: str | None) -> None:
        item_id = event.get("item_id")
        end = event.get("audio_end_ms")
        if item_id not in self.audio_ms:
            await self.error("invalid_value", f"Item {item_id!r} has no audio to truncate.", event_id)
            return
        if not isinstance(end, int) or end < 0 or end > self.audio_ms[item_id]:
            await self.error("invalid_value", f"audio_end_ms {end} is past the audio's end ({self.audio_ms[item_id]} ms).", event_id)
            return
        self.server.truncations.append({"connection": self.index, **event})
        await self.send({"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0, "audio_end_ms": end})

    # -- responses -------------------------------------------------------------------------------

    def start_response(self) -> None:
        reply = self.server.replies.pop(0) if self.server.replies else Reply((Say("Okay.", 0.5),))
        self.response = trio.CancelScope()
        self.cancel_reason = ""
        self.nursery.start_soon(self.respond, reply, self.response)

    async def respond(self, reply: Reply, scope: trio.CancelScope) -> None:
        await trio.sleep(reply.delay)
        response_id = self.server.new_id("resp")
        base = {"object": "realtime.response", "id": response_id, "conversation_id": "conv_1",
                "output_modalities": self.session["output_modalities"], "metadata": None}
        await self.send({"type": "response.created", "response": {**base, "status": "in_progress", "status_details": None,
                                                                  "output": [], "usage": None}})
        await self.send({"type": "rate_limits.updated", "rate_limits": self.server.rate_limits})
        outputs: list[dict[str, Any]] = []
        failure: Fail | None = None
        in_flight: list[dict[str, Any]] = []
        with scope:
            for index, output in enumerate(reply.outputs):
                if isinstance(output, Fail):
                    failure = output
                    break
                if isinstance(output, Say):
                    await self.say(output, response_id, index, outputs, in_flight)
                else:
                    await self.call(output, response_id, index, outputs)
        if scope.cancelled_caught:
            for item in in_flight:
                await self.finish_message(item, response_id, len(outputs), status="incomplete")
                outputs.append(item)
            status, details = "cancelled", {"type": "cancelled", "reason": self.cancel_reason}
        elif failure is not None:
            status, details = "failed", {"type": "failed", "error": {"type": failure.type, "code": failure.code,
                                                                     "message": failure.message}}
        else:
            status, details = "completed", None
        self.response = None
        await self.send({"type": "response.done", "response": {**base, "status": status, "status_details": details,
                                                               "output": outputs, "usage": USAGE}})

    async def add_output(self, item: dict[str, Any], response_id: str, index: int) -> None:
        previous = self.items[-1]["id"] if self.items else None
        self.items.append(item)
        await self.send({"type": "response.output_item.added", "response_id": response_id, "output_index": index, "item": item})
        await self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})

    async def say(self, say: Say, response_id: str, index: int, outputs: list[dict[str, Any]],
                  in_flight: list[dict[str, Any]]) -> None:
        item = {"id": self.server.new_id("item"), "object": "realtime.item", "type": "message", "status": "in_progress",
                "role": "assistant", "content": []}
        in_flight.append(item)
        await self.add_output(item, response_id, index)
        ids = {"response_id": response_id, "item_id": item["id"], "output_index": index, "content_index": 0}
        if self.session["output_modalities"] == ["text"]:
            await trio.sleep(self.server.ttfb)
            for i, word in enumerate(say.text.split(" ")):
                await self.send({"type": "response.output_text.delta", **ids, "delta": word if i == 0 else " " + word})
            await self.send({"type": "response.output_text.done", **ids, "text": say.text})
            in_flight.remove(item)
            item.update(status="completed", content=[{"type": "output_text", "text": say.text}])
            await self.send({"type": "response.output_item.done", "response_id": response_id, "output_index": index, "item": item})
            await self.send({"type": "conversation.item.done", "item": item})
            outputs.append(item)
            return
        await self.send({"type": "response.content_part.added", **ids, "part": {"type": "audio", "transcript": ""}})
        item["heard"] = ""
        self.audio_ms[item["id"]] = 0
        await trio.sleep(self.server.ttfb)
        words = say.text.split(" ")
        total = int(round(say.seconds * RATE))
        chunk = int(round(self.server.chunk_seconds * RATE))
        said = 0
        for start in range(0, total, chunk):
            samples = min(chunk, total - start)
            pcm = np.full(samples, say.value, "<i2").tobytes()
            await self.send({"type": "response.output_audio.delta", **ids, "delta": base64.b64encode(pcm).decode()})
            self.audio_ms[item["id"]] = int((start + samples) * 1000 / RATE)
            due = int(len(words) * (start + samples) / total)
            while said < due:
                delta = words[said] if said == 0 else " " + words[said]
                item["heard"] += delta
                said += 1
                await self.send({"type": "response.output_audio_transcript.delta", **ids, "delta": delta})
            await trio.sleep(samples / RATE / self.server.speed)
        in_flight.remove(item)
        item.pop("heard")
        item["content"] = [{"type": "output_audio", "transcript": say.text}]
        await self.finish_message(item, response_id, index, status="completed")
        outputs.append(item)

    async def finish_message(self, item: dict[str, Any], response_id: str, index: int, *, status: str) -> None:
        transcript = item.pop("heard", None)
        if transcript is not None:
            item["content"] = [{"type": "output_audio", "transcript": transcript}]
        transcript = item["content"][0]["transcript"]
        ids = {"response_id": response_id, "item_id": item["id"], "output_index": index, "content_index": 0}
        item["status"] = status
        await self.send({"type": "response.output_audio.done", **ids})
        await self.send({"type": "response.output_audio_transcript.done", **ids, "transcript": transcript})
        await self.send({"type": "response.content_part.done", **ids, "part": {"type": "audio", "transcript": transcript}})
        await self.send({"type": "response.output_item.done", "response_id": response_id, "output_index": index, "item": item})
        await self.send({"type": "conversation.item.done", "item": item})

    async def call(self, call: Call, response_id: str, index: int, outputs: list[dict[str, Any]]) -> None:
        item = {"id": self.server.new_id("item"), "object": "realtime.item", "type": "function_call",
                "status": "in_progress", "name": call.name, "call_id": call.call_id, "arguments": ""}
        await self.add_output(item, response_id, index)
        ids = {"response_id": response_id, "item_id": item["id"], "output_index": index, "call_id": call.call_id}
        await trio.sleep(self.server.ttfb)
        half = len(call.arguments) // 2
        for piece in (call.arguments[:half], call.arguments[half:]):
            await self.send({"type": "response.function_call_arguments.delta", **ids, "delta": piece})
        await self.send({"type": "response.function_call_arguments.done", **ids, "arguments": call.arguments})
        item.update(status="completed", arguments=call.arguments)
        await self.send({"type": "response.output_item.done", "response_id": response_id, "output_index": index, "item": item})
        await self.send({"type": "conversation.item.done", "item": item})
        outputs.append(item)


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    """A session.update: only the fields present change (objects field by field)."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
