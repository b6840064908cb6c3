"""OpenAI's Realtime API (speech to speech): ``RealtimeModel(model="gpt-realtime", voice=...)``.

The protocol, from OpenAI's Realtime API reference (client and server
events) and its guides (WebSocket, voice activity detection, conversations):

- handshake: ``GET /v1/realtime?model=...`` with ``Authorization: Bearer <key>``;
  the server opens with ``session.created``;
- we send ``session.update`` (``session.type: "realtime"``, instructions,
  ``output_modalities``, tools, ``audio.input`` with its format, transcription,
  noise reduction and ``turn_detection`` (``server_vad`` or ``semantic_vad``),
  ``audio.output`` with its format, voice and speed) and wait for
  ``session.updated``; then the conversation so far as
  ``conversation.item.create`` events; then ``input_audio_buffer.append`` every
  20 ms (base64 PCM16 at 24 kHz, the one rate ``audio/pcm`` takes),
  ``input_audio_buffer.commit``/``clear`` when turn detection is off,
  ``response.create`` (with ``response.instructions`` for one reply),
  ``response.cancel``, ``conversation.item.truncate`` (``audio_end_ms``) and
  ``conversation.item.create`` for a tool's ``function_call_output``;
- the server sends ``input_audio_buffer.speech_started``/``speech_stopped``
  (``audio_start_ms``/``audio_end_ms`` on the clock of all audio appended on
  the connection), ``conversation.item.input_audio_transcription.delta``/
  ``completed``/``failed``, ``response.created``, ``response.output_item.added``,
  ``response.output_audio.delta`` (base64 PCM16, 24 kHz), ``.output_audio.done``,
  ``response.output_audio_transcript.delta``/``done``,
  ``response.output_text.delta``/``done``, ``response.function_call_arguments.done``
  (the call's whole arguments), ``response.done`` (``status``, ``status_details`` with a reason or
  an error, ``usage``), ``conversation.item.added``/``done``/``truncated``/
  ``deleted``, ``rate_limits.updated`` and ``error`` (``type``, ``code``,
  ``message``, and the ``event_id`` of the client event it answers; most
  errors leave the session open).

Deliberately ignored (nothing in voxtrio needs them): ``session.created``,
``response.function_call_arguments.delta`` (a tool runs on whole arguments),
``response.output_item.done`` (its parts come in their own events),
``conversation.item.retrieved``, ``input_audio_buffer.committed``/``cleared``/
``timeout_triggered``, ``response.content_part.added``/``done``,
``conversation.item.input_audio_transcription.segment``, the MCP events, the
WebRTC-only ``output_audio_buffer.*``, and any type this module does not know
(the API adds events; an unknown one is no reason to drop a call).

The conversation is mirrored here as the server builds it (user transcripts,
assistant transcripts, tool calls and outputs), so a lost connection is
restored: a new one is configured the same way and given the mirror as
items. Audio cannot be given back (the API does not accept assistant audio
items), so each message comes back as its text; an interrupted reply as the
share of its transcript that matches the share of its audio played.
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import TYPE_CHECKING, Any, AsyncContextManager, Literal, Mapping, Sequence

import attrs
import numpy as np
import trio

from ...audio import PIPELINE_SAMPLE_RATE, AudioFrame
from ...errors import APIError, APIStatusError, APITimeoutError
from ...options import APIConnectOptions
from ...validation import check_number
from .. import base
from ..api_common import api_key as api_key_of
from ..base import (
    DEFAULT_CONN_OPTIONS,
    InputSpeechStarted,
    InputSpeechStopped,
    InputTranscription,
    RealtimeCapabilities,
    RealtimeError,
    RealtimeFunctionCall,
    RealtimeUsage,
    ResponseAudio,
    ResponseCreated,
    ResponseDone,
    ResponseTextDelta,
    ResponseTranscriptDelta,
)
from ..realtime_connection import AudioClock, OutputAudio, ReconnectingSession, given, share_of
from ..vendor_websocket import WebSocketConnection, websocket_url
from ..vendor_websocket import protocol_error as _protocol_error
from .connection import KEY_ENV

if TYPE_CHECKING:
    from ...chat import ChatContext
    from ...tools import FunctionTool

VENDOR = "OpenAI Realtime"
DEFAULT_BASE_URL = "wss://api.openai.com/v1/realtime"
MODEL_RATE = 24_000  # audio/pcm: 16-bit mono at 24 kHz, both ways
TRUNCATABLE_ITEMS = 8  # assistant items whose audio length is remembered

Eagerness = Literal["auto", "low", "medium", "high"]
Role = Literal["user", "assistant", "system"]


@attrs.frozen(kw_only=True)
class ServerVAD:
    """Turn detection by voice activity: the turn ends after
    ``silence_duration_ms`` of silence. None leaves OpenAI's default.
    ``create_response``: answer each turn by itself; ``interrupt_response``:
    cancel a running response when the user starts speaking (the server's
    own barge-in; with it off the session decides, with ``interrupt``).
    ``idle_timeout_ms``: answer by itself after that long of silence."""

    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    idle_timeout_ms: int | None = None
    create_response: bool = True
    interrupt_response: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "server_vad",
            **given(
                threshold=self.threshold,
                prefix_padding_ms=self.prefix_padding_ms,
                silence_duration_ms=self.silence_duration_ms,
                idle_timeout_ms=self.idle_timeout_ms,
            ),
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }


@attrs.frozen(kw_only=True)
class SemanticVAD:
    """Turn detection by a model that judges whether the user is done
    (``eagerness``: ``low`` waits longer, ``high`` answers sooner)."""

    eagerness: Eagerness = attrs.field(
        default="auto", validator=attrs.validators.in_(("auto", "low", "medium", "high"))
    )
    create_response: bool = True
    interrupt_response: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "semantic_vad",
            "eagerness": self.eagerness,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }


TurnDetection = ServerVAD | SemanticVAD


class RealtimeModel(base.RealtimeModel):
    """OpenAI's speech-to-speech model over its Realtime WebSocket.

    ``turn_detection``: ``ServerVAD()`` (the default), ``SemanticVAD()``,
    their names, or None (the session ends turns with ``commit_audio``).
    ``transcription_model`` transcribes the user (None: no transcripts).
    ``modalities="text"`` makes it write instead of speak, for a TTS
    ("half cascade"). ``sample_rate``: the rate of the audio frames it
    hands back (the pipeline's 16 kHz by default; 24000 skips resampling).
    ``generate_reply_timeout``: see :class:`voxtrio.providers.base.RealtimeModel`.
    ``extra_session`` adds documented session fields this class does not name.
    """

    def __init__(
        self,
        *,
        model: str = "gpt-realtime",
        voice: str = "marin",
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        turn_detection: TurnDetection | Literal["server_vad", "semantic_vad"] | None = "server_vad",
        transcription_model: str | None = "gpt-4o-mini-transcribe",
        transcription_language: str | None = None,
        transcription_prompt: str | None = None,
        noise_reduction: Literal["near_field", "far_field"] | None = None,
        modalities: Literal["audio", "text"] = "audio",
        speed: float | None = None,
        max_output_tokens: int | None = None,
        tool_choice: str | None = None,
        sample_rate: int = PIPELINE_SAMPLE_RATE,
        generate_reply_timeout: float | None = None,
        extra_session: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(turn_detection, str):
            if turn_detection not in ("server_vad", "semantic_vad"):
                raise ValueError(f"turn_detection must be 'server_vad', 'semantic_vad', ServerVAD(), SemanticVAD() or None, got {turn_detection!r}")
            turn_detection = ServerVAD() if turn_detection == "server_vad" else SemanticVAD()
        if modalities not in ("audio", "text"):
            raise ValueError(f"modalities must be 'audio' or 'text', got {modalities!r}")
        AudioFrame.silence(0.0, sample_rate=sample_rate)  # a rate that cannot be audio fails here
        self.model = model
        self.voice = voice
        self.sample_rate = sample_rate
        self.generate_reply_timeout = check_number(generate_reply_timeout, "generate_reply_timeout", optional=True)
        self.turn_detection = turn_detection
        self._api_key = api_key_of(api_key, KEY_ENV, "openai.RealtimeModel")
        self._url = websocket_url(base_url, "", {"model": model})
        transcription = None
        if transcription_model is not None:
            transcription = {
                "model": transcription_model,
                **given(language=transcription_language, prompt=transcription_prompt),
            }
        pcm = {"type": "audio/pcm", "rate": MODEL_RATE}
        self._session_config: dict[str, Any] = {
            "type": "realtime",
            "output_modalities": [modalities],
            "audio": {
                "input": {
                    "format": pcm,
                    "transcription": transcription,
                    "noise_reduction": {"type": noise_reduction} if noise_reduction else None,
                    "turn_detection": turn_detection.to_json() if turn_detection is not None else None,
                },
                "output": {"format": pcm, "voice": voice, **given(speed=speed)},
            },
            **given(max_output_tokens=max_output_tokens, tool_choice=tool_choice),
            **(extra_session or {}),
        }
        self.capabilities = RealtimeCapabilities(
            turn_detection=turn_detection is not None,
            user_transcription=transcription is not None,
            audio_output=modalities == "audio",
        )

    def __repr__(self) -> str:
        return f"openai.RealtimeModel({self.model!r}, voice={self.voice!r})"

    def session_update(self, instructions: str, tools: Sequence[FunctionTool]) -> dict[str, Any]:
        """The ``session.update`` event that configures a connection."""
        session = {**self._session_config, "instructions": instructions, "tools": _tools_json(tools)}
        return {"type": "session.update", "session": session}

    def session(
        self,
        *,
        instructions: str = "",
        chat_ctx: ChatContext | None = None,
        tools: Sequence[FunctionTool] = (),
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> AsyncContextManager[RealtimeSession]:
        live = RealtimeSession(self, instructions=instructions, tools=tools, conn_options=conn_options)
        return live.running(chat_ctx)  # type: ignore[return-value]

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}


def _tools_json(tools: Sequence[FunctionTool]) -> list[dict[str, Any]]:
    return [{"type": "function", **tool.schema()} for tool in tools]


@attrs.define(eq=False)
class _Item:
    """A conversation item as it can be given back to a new connection."""

    id: str
    type: str  # message, function_call, function_call_output
    role: str = ""
    text: str = ""
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    output: str = ""
    truncated: bool = False  # its text is what was heard: the server's transcript no longer counts

    def to_json(self) -> dict[str, Any] | None:
        if self.type == "function_call":
            return {"id": self.id, "type": "function_call", "call_id": self.call_id, "name": self.name,
                    "arguments": self.arguments or "{}"}
        if self.type == "function_call_output":
            return {"id": self.id, "type": "function_call_output", "call_id": self.call_id, "output": self.output}
        if not self.text:
            return None  # nothing heard, nothing said: nothing to restore
        part = "output_text" if self.role == "assistant" else "input_text"
        return {"id": self.id, "type": "message", "role": self.role, "content": [{"type": part, "text": self.text}]}


@attrs.define(eq=False)
class _Response:
    """A response the server is generating."""

    id: str
    asked_at: float | None  # when its audio started to be owed (end of speech, or the request)
    first_audio_delay: float | None = None
    silenced: bool = False  # interrupted: what it still sends is not played


def _protocol(what: str, message: Any) -> APIError:
    return _protocol_error(VENDOR, what, message if isinstance(message, (str, bytes)) else json.dumps(message))


class RealtimeSession(ReconnectingSession):
    """One conversation with OpenAI's realtime model (see :class:`RealtimeModel`)."""

    vendor = VENDOR
    key_variable = KEY_ENV

    def __init__(
        self,
        model: RealtimeModel,
        *,
        instructions: str,
        tools: Sequence[FunctionTool],
        conn_options: APIConnectOptions,
    ) -> None:
        super().__init__(url=model._url, headers=model._headers, input_rate=MODEL_RATE, conn_options=conn_options)
        self._model = model
        self._instructions = instructions
        self._tools = list(tools)
        self._event_ids = (f"voxtrio_{n}" for n in itertools.count(1))
        self._items: dict[str, _Item] = {}  # the conversation, in order
        self._audio: dict[str, OutputAudio] = {}  # assistant items' audio, by item id
        self._calls: dict[str, str] = {}  # function call item id -> the function's name
        self._input_transcripts: dict[str, str] = {}
        self._response: _Response | None = None
        self._deferred_reply: dict[str, Any] | None = None  # response.create waiting for the running one
        self._cancels: set[str] = set()  # event ids of our response.cancel events
        self._retry_after: float | None = None  # from rate_limits.updated, for a rate-limit error
        self._speech_stopped_at: float | None = None
        self._clock = AudioClock()  # this connection's: the server counts from its first audio

    # -- the public API ----------------------------------------------------------------

    async def commit_audio(self) -> None:
        for chunk, audio_time in self._input.flush():
            await self._append(chunk, audio_time)
        await self._send({"type": "input_audio_buffer.commit"})

    async def clear_audio(self) -> None:
        self._input.clear()
        await self._send({"type": "input_audio_buffer.clear"})

    async def generate_reply(self, *, instructions: str | None = None) -> None:
        event: dict[str, Any] = {"type": "response.create"}
        if instructions is not None:
            event["response"] = {"instructions": instructions}
        if self._response is not None or self._ws is None:
            self._deferred_reply = event  # after the running response, or once reconnected
            return
        self._speech_stopped_at = trio.current_time()
        await self._send(event)

    async def interrupt(self, *, item_id: str | None = None, played: float = 0.0) -> None:
        response = self._response
        if response is not None and not response.silenced:
            response.silenced = True
            event_id = next(self._event_ids)
            self._cancels.add(event_id)
            await self._send({"type": "response.cancel", "event_id": event_id, "response_id": response.id})
        self._deferred_reply = None
        audio = self._audio.get(item_id) if item_id is not None else None
        if audio is None:
            return
        heard = max(0.0, min(played, audio.seconds))
        item = self._items.get(item_id)  # type: ignore[arg-type]
        if item is not None and audio.seconds > 0:
            item.text = share_of(item.text, heard / audio.seconds)
            item.truncated = True
        await self._send({
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": int(heard * 1000),
        })

    async def send_tool_output(self, call_id: str, output: str, *, reply: bool = True) -> None:
        item = _Item(id=_new_item_id(), type="function_call_output", call_id=call_id, output=output)
        self._items[item.id] = item
        await self._send({"type": "conversation.item.create", "item": item.to_json()})
        if reply:
            await self.generate_reply()

    async def add_message(self, role: Role, text: str) -> None:
        if role not in ("user", "assistant", "system"):
            raise ValueError(f"role must be 'user', 'assistant' or 'system', got {role!r}")
        item = _Item(id=_new_item_id(), type="message", role=role, text=text)
        self._items[item.id] = item
        if item.to_json() is not None:
            await self._send({"type": "conversation.item.create", "item": item.to_json()})

    async def update_instructions(self, instructions: str) -> None:
        self._instructions = instructions
        await self._send({"type": "session.update", "session": {"type": "realtime", "instructions": instructions}})

    async def update_tools(self, tools: Sequence[FunctionTool]) -> None:
        self._tools = list(tools)
        await self._send({"type": "session.update", "session": {"type": "realtime", "tools": _tools_json(tools)}})

    # -- connections ---------------------------------------------------------------------------

    async def _configure(self, ws: WebSocketConnection) -> None:
        """``session.update``, answered by ``session.updated``; then the
        conversation so far."""
        update = self._model.session_update(self._instructions, self._tools)
        update["event_id"] = event_id = next(self._event_ids)
        await ws.send_message(json.dumps(update))
        with trio.move_on_after(self._options.timeout) as waiting:
            while True:
                data = await self._receive(ws)
                kind = data.get("type")
                if kind == "session.updated":
                    break
                if kind == "error":
                    error = data.get("error") if isinstance(data.get("error"), dict) else {}
                    if error.get("event_id") == event_id:
                        raise self._error_of(error, doing="refused the session configuration", final=True)
                    raise self._error_of(error)
        if waiting.cancelled_caught:
            raise APITimeoutError(f"{VENDOR} did not answer session.update within {self._options.timeout:g} s")
        self._clock = AudioClock()
        self._ws = ws
        for payload in self.conversation():  # taken at once: what is added later is sent by its adder
            await self._send({"type": "conversation.item.create", "item": payload})

    async def _connected(self) -> None:
        if self._deferred_reply is not None:
            deferred, self._deferred_reply = self._deferred_reply, None
            await self._send(deferred)

    def _connection_lost(self) -> None:
        """What belonged to the connection: a running response will not
        finish, and its items' audio cannot be truncated on the next one."""
        super()._connection_lost()
        self._response = None
        self._cancels.clear()
        self._audio.clear()
        self._calls.clear()
        self._input_transcripts.clear()

    async def _send(self, event: dict[str, Any]) -> None:
        await self._send_message(json.dumps(event))

    async def _append(self, chunk: np.ndarray, audio_time: float) -> None:
        duration = len(chunk) / MODEL_RATE
        if self._ws is None:
            self._lost_audio += duration
            return
        self._clock.record(duration, audio_time)
        audio = base64.b64encode(chunk.astype("<i2", copy=False).tobytes()).decode("ascii")
        await self._send({"type": "input_audio_buffer.append", "audio": audio})

    def _audio_time(self, ms: Any) -> float:
        """A time of the server's audio clock (ms on this connection) as audio time."""
        return self._clock.audio_time(float(ms) / 1000)

    # -- the server's events ----------------------------------------------------------------

    async def _read(self, ws: WebSocketConnection) -> None:
        while True:
            data = await self._receive(ws)
            kind = data.get("type")
            if not isinstance(kind, str):
                raise _protocol("an event without a type", data)
            handler = _HANDLERS.get(kind)
            if handler is None:
                continue
            try:
                await handler(self, data)
            except (KeyError, TypeError, ValueError, AttributeError):
                raise _protocol(f"a {kind} event that does not follow its documented shape", data) from None

    async def _on_error(self, data: dict[str, Any]) -> None:
        error = data["error"]
        if error.get("event_id") in self._cancels:
            return  # a cancel that crossed the response's end: harmless, as documented
        await self._emit(RealtimeError(self._error_of(error)))

    def _error_of(self, error: Mapping[str, Any], *, doing: str = "reported", final: bool = False) -> APIStatusError:
        """An error object of the protocol as the session's error type, with
        the HTTP status it stands for: a rate limit (429, retried after the
        reset the last ``rate_limits.updated`` gave) and a server error (500)
        may be retried; a refused request (400) or key (401) not."""
        kind = str(error.get("type") or "")
        code = str(error.get("code") or "")
        text = f"{VENDOR} {doing}: {code or kind or 'error'}: {error.get('message') or 'no message'}"
        retry_after = None
        if "rate_limit" in kind or "rate_limit" in code:
            status, retry_after = 429, self._retry_after
        elif kind in ("authentication_error", "permission_error"):
            status, text = 401, text + f". Check {KEY_ENV} or the api_key argument."
        elif kind == "server_error" or code == "server_error":
            status = 500
        else:
            status = 400
        return APIStatusError(
            text, status_code=status, retryable=False if final else None, body=dict(error), retry_after=retry_after
        )

    async def _on_rate_limits(self, data: dict[str, Any]) -> None:
        exhausted = [float(limit["reset_seconds"]) for limit in data["rate_limits"] if float(limit["remaining"]) <= 0]
        self._retry_after = max(exhausted) if exhausted else None

    async def _on_speech_started(self, data: dict[str, Any]) -> None:
        await self._emit(InputSpeechStarted(self._audio_time(data["audio_start_ms"]), str(data.get("item_id") or "")))

    async def _on_speech_stopped(self, data: dict[str, Any]) -> None:
        self._speech_stopped_at = trio.current_time()
        await self._emit(InputSpeechStopped(self._audio_time(data["audio_end_ms"]), str(data.get("item_id") or "")))

    async def _on_transcription_delta(self, data: dict[str, Any]) -> None:
        item_id = str(data["item_id"])
        text = self._input_transcripts.get(item_id, "") + str(data["delta"])
        self._input_transcripts[item_id] = text
        await self._emit(InputTranscription(item_id, text, final=False))

    async def _on_transcription_completed(self, data: dict[str, Any]) -> None:
        item_id = str(data["item_id"])
        text = str(data["transcript"])
        self._input_transcripts.pop(item_id, None)
        item = self._items.get(item_id)
        if item is not None:
            item.text = text
        await self._emit(InputTranscription(item_id, text, final=True))

    async def _on_transcription_failed(self, data: dict[str, Any]) -> None:
        self._input_transcripts.pop(str(data["item_id"]), None)
        await self._emit(RealtimeError(self._error_of(data["error"])))

    async def _on_item_added(self, data: dict[str, Any]) -> None:
        self._mirror_server_item(data["item"])

    async def _on_item_done(self, data: dict[str, Any]) -> None:
        item = data["item"]
        self._mirror_server_item(item)
        known = self._items.get(str(item["id"]))
        if known is not None and known.type == "message" and not known.text and not known.truncated:
            known.text = _text_of(item.get("content") or ())

    async def _on_item_deleted(self, data: dict[str, Any]) -> None:
        self._items.pop(str(data["item_id"]), None)

    async def _on_response_created(self, data: dict[str, Any]) -> None:
        response_id = str(data["response"]["id"])
        self._response = _Response(response_id, asked_at=self._speech_stopped_at)
        await self._emit(ResponseCreated(response_id))

    async def _on_output_item_added(self, data: dict[str, Any]) -> None:
        item = data["item"]
        if item["type"] == "function_call":
            self._calls[str(item["id"])] = str(item["name"])
        self._mirror_server_item(item)

    async def _on_audio_delta(self, data: dict[str, Any]) -> None:
        item_id = str(data["item_id"])
        audio = self._audio.get(item_id)
        if audio is None:
            # Kept after the response is done (its audio plays for long after):
            # the last few items can still be truncated.
            while len(self._audio) >= TRUNCATABLE_ITEMS:
                del self._audio[next(iter(self._audio))]
            audio = self._audio[item_id] = OutputAudio(MODEL_RATE, self._model.sample_rate, vendor=VENDOR)
        frames = audio.push(data["delta"])
        response = self._response
        if response is None or response.silenced:
            return
        if response.first_audio_delay is None and response.asked_at is not None:
            response.first_audio_delay = trio.current_time() - response.asked_at
        for frame in frames:
            await self._emit(ResponseAudio(response.id, item_id, frame))

    async def _on_audio_done(self, data: dict[str, Any]) -> None:
        audio = self._audio.get(str(data["item_id"]))
        response = self._response
        if audio is None or response is None or response.silenced:
            return
        for frame in audio.flush():
            await self._emit(ResponseAudio(response.id, str(data["item_id"]), frame))

    async def _on_transcript_delta(self, data: dict[str, Any]) -> None:
        item = self._items.get(str(data["item_id"]))
        if item is not None and not item.truncated:
            item.text += str(data["delta"])  # so far: what a truncation takes its share of
        if self._response is not None and not self._response.silenced:
            await self._emit(ResponseTranscriptDelta(str(data["response_id"]), str(data["item_id"]), str(data["delta"])))

    async def _on_transcript_done(self, data: dict[str, Any]) -> None:
        item = self._items.get(str(data["item_id"]))
        if item is not None and not item.truncated:
            item.text = str(data["transcript"])

    async def _on_text_delta(self, data: dict[str, Any]) -> None:
        if self._response is not None and not self._response.silenced:
            await self._emit(ResponseTextDelta(str(data["response_id"]), str(data["item_id"]), str(data["delta"])))

    async def _on_text_done(self, data: dict[str, Any]) -> None:
        item = self._items.get(str(data["item_id"]))
        if item is not None:
            item.text = str(data["text"])

    async def _on_arguments_done(self, data: dict[str, Any]) -> None:
        item_id = str(data["item_id"])
        if item_id not in self._calls:
            raise ValueError("arguments of a function call that was never added")
        name = self._calls.pop(item_id)
        arguments = str(data["arguments"])
        item = self._items.get(item_id)
        if item is not None:
            item.arguments = arguments
        if self._response is not None and not self._response.silenced:
            await self._emit(RealtimeFunctionCall(str(data["response_id"]), item_id, str(data["call_id"]), name, arguments))

    async def _on_response_done(self, data: dict[str, Any]) -> None:
        response = data["response"]
        status = str(response["status"])
        if status not in ("completed", "cancelled", "incomplete", "failed"):
            raise ValueError(f"unknown status {status!r}")
        details = response.get("status_details") or {}
        if status == "failed":
            await self._emit(RealtimeError(self._error_of(details.get("error") or {"type": "server_error"})))
        running = self._response
        self._response = None
        self._cancels.clear()
        await self._emit(
            ResponseDone(
                response_id=str(response["id"]),
                status=status,  # type: ignore[arg-type]
                reason=details.get("reason"),
                usage=_usage_of(response.get("usage")),
                first_audio_delay=running.first_audio_delay if running is not None else None,
            )
        )
        if self._deferred_reply is not None:
            deferred, self._deferred_reply = self._deferred_reply, None
            self._speech_stopped_at = trio.current_time()
            await self._send(deferred)

    async def _on_truncated(self, data: dict[str, Any]) -> None:
        self._audio.pop(str(data["item_id"]), None)  # nothing after it can be truncated again

    # -- the mirror ---------------------------------------------------------------------------

    def _mirror_server_item(self, item: Mapping[str, Any]) -> None:
        item_id = str(item["id"])
        if item_id in self._items:
            return
        kind = str(item["type"])
        if kind == "message":
            self._items[item_id] = _Item(
                id=item_id, type="message", role=str(item["role"]), text=_text_of(item.get("content") or ())
            )
        elif kind == "function_call":
            self._items[item_id] = _Item(
                id=item_id, type=kind, call_id=str(item["call_id"]), name=str(item["name"]),
                arguments=str(item.get("arguments") or ""),
            )
        elif kind == "function_call_output":
            self._items[item_id] = _Item(id=item_id, type=kind, call_id=str(item["call_id"]), output=str(item["output"]))

    def _mirror_chat_item(self, item: Any) -> None:
        """An item of the session's ChatContext, to start the conversation with."""
        if item.type == "message":
            role = "system" if item.role in ("system", "developer") else item.role
            self._items[item.id] = _Item(id=item.id, type="message", role=role, text=item.content)
        elif item.type == "function_call":
            self._items[item.id] = _Item(id=item.id, type="function_call", call_id=item.call_id, name=item.name,
                                         arguments=item.arguments)
        elif item.type == "function_call_output":
            self._items[item.id] = _Item(id=item.id, type="function_call_output", call_id=item.call_id,
                                         output=item.output)

    def conversation(self) -> list[dict[str, Any]]:
        """The conversation as a new connection would be given it."""
        return [payload for item in self._items.values() if (payload := item.to_json()) is not None]


_item_ids = itertools.count(1)


def _new_item_id() -> str:
    return f"voxtrio_item_{next(_item_ids)}"


def _text_of(content: Sequence[Mapping[str, Any]]) -> str:
    return "".join(str(part.get("text") or part.get("transcript") or "") for part in content)


def _usage_of(usage: Mapping[str, Any] | None) -> RealtimeUsage | None:
    if not usage:
        return None
    inputs = usage.get("input_token_details") or {}
    outputs = usage.get("output_token_details") or {}
    return RealtimeUsage(
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        input_text_tokens=int(inputs.get("text_tokens") or 0),
        input_audio_tokens=int(inputs.get("audio_tokens") or 0),
        input_cached_tokens=int(inputs.get("cached_tokens") or 0),
        output_text_tokens=int(outputs.get("text_tokens") or 0),
        output_audio_tokens=int(outputs.get("audio_tokens") or 0),
    )


_HANDLERS: dict[str, Any] = {
    "error": RealtimeSession._on_error,
    "rate_limits.updated": RealtimeSession._on_rate_limits,
    "input_audio_buffer.speech_started": RealtimeSession._on_speech_started,
    "input_audio_buffer.speech_stopped": RealtimeSession._on_speech_stopped,
    "conversation.item.input_audio_transcription.delta": RealtimeSession._on_transcription_delta,
    "conversation.item.input_audio_transcription.completed": RealtimeSession._on_transcription_completed,
    "conversation.item.input_audio_transcription.failed": RealtimeSession._on_transcription_failed,
    "conversation.item.added": RealtimeSession._on_item_added,
    "conversation.item.created": RealtimeSession._on_item_added,  # the beta's name for it
    "conversation.item.done": RealtimeSession._on_item_done,
    "conversation.item.deleted": RealtimeSession._on_item_deleted,
    "conversation.item.truncated": RealtimeSession._on_truncated,
    "response.created": RealtimeSession._on_response_created,
    "response.output_item.added": RealtimeSession._on_output_item_added,
    "response.output_audio.delta": RealtimeSession._on_audio_delta,
    "response.output_audio.done": RealtimeSession._on_audio_done,
    "response.output_audio_transcript.delta": RealtimeSession._on_transcript_delta,
    "response.output_audio_transcript.done": RealtimeSession._on_transcript_done,
    "response.output_text.delta": RealtimeSession._on_text_delta,
    "response.output_text.done": RealtimeSession._on_text_done,
    "response.function_call_arguments.done": RealtimeSession._on_arguments_done,
    "response.done": RealtimeSession._on_response_done,
}
