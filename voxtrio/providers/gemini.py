"""Google's Gemini Live API (speech to speech): ``RealtimeModel(model=..., voice="Puck")``.

The protocol, from Google's Live API reference (``BidiGenerateContent`` over
WebSocket) and the message types of its Gen AI SDK:

- handshake: ``wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=<key>``;
- the first message is ``setup`` (``model``, ``generationConfig`` with
  ``responseModalities`` and ``speechConfig``, ``systemInstruction``,
  ``tools`` as ``functionDeclarations``, ``realtimeInputConfig`` with
  ``automaticActivityDetection`` and ``activityHandling``,
  ``inputAudioTranscription``/``outputAudioTranscription``), answered by
  ``setupComplete``; the configuration cannot change while the connection
  is open;
- we send ``realtimeInput`` (``audio``: base64 PCM16 at 16 kHz,
  ``audio/pcm;rate=16000``; ``activityStart``/``activityEnd`` when activity
  detection is the client's; ``audioStreamEnd``), ``clientContent`` (``turns``
  appended to the conversation; ``turnComplete: true`` asks for a reply) and
  ``toolResponse`` (``functionResponses`` matched to the calls by ``id``);
- the server sends ``serverContent`` (``modelTurn.parts`` with ``inlineData``
  audio at 24 kHz or ``text``, ``inputTranscription``/``outputTranscription``
  pieces, ``interrupted`` when the user's activity cut the model off,
  ``generationComplete``, ``turnComplete``), ``toolCall`` (``functionCalls``
  with ``id``, ``name``, ``args``), ``toolCallCancellation`` (``ids``),
  ``usageMetadata``, ``voiceActivity`` (``ACTIVITY_START``/``ACTIVITY_END`` at
  an ``audioOffset`` of the stream) and ``goAway`` (``timeLeft`` before the
  server ends the connection). Errors are not messages: the server closes the
  connection with a code and a reason (1007 invalid argument, 1008 policy,
  such as a refused key, 1011 internal, ``RESOURCE_EXHAUSTED`` for quotas).

Deliberately ignored: ``sessionResumptionUpdate`` (a lost connection is
restored from the conversation mirrored here, as for OpenAI), grounding and
URL-context metadata, ``waitingForInput``, ``turnCompleteReason``, the
allowlisted ``voiceActivityDetectionSignal``, and fields this module does not
know.

What differs from OpenAI's model, and how the protocol of
:mod:`voxtrio.providers.base` absorbs it: no response or item ids (this
module numbers them: one assistant message per response); no truncation
(``message_truncation`` is False: ``interrupt`` stops the reply's events and
cuts the mirrored text, the server keeps its own idea of what was said); the
barge-in is the server's (``interrupted``); a tool's output is answered by
the model itself (``auto_tool_reply_generation``: outputs sent with
``reply=False`` wait for the one that replies, and go out together); new
instructions or tools need a new connection, which is opened and given the
conversation; calls can be withdrawn (:class:`FunctionCallsCancelled`).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
from typing import TYPE_CHECKING, Any, AsyncContextManager, Literal, Mapping, Sequence

import attrs
import numpy as np
import trio

from ..audio import PIPELINE_SAMPLE_RATE, AudioFrame
from ..errors import APIError, APIStatusError, APITimeoutError
from ..options import APIConnectOptions
from ..validation import check_number
from . import base
from .api_common import api_key as api_key_of
from .base import (
    DEFAULT_CONN_OPTIONS,
    FunctionCallsCancelled,
    InputSpeechStarted,
    InputSpeechStopped,
    InputTranscription,
    RealtimeCapabilities,
    RealtimeFunctionCall,
    RealtimeUsage,
    ResponseAudio,
    ResponseCreated,
    ResponseDone,
    ResponseTextDelta,
    ResponseTranscriptDelta,
)
from .realtime_connection import AudioClock, OutputAudio, ReconnectingSession, given, share_of
from .vendor_websocket import WebSocketConnection, protocol_error, websocket_url

if TYPE_CHECKING:
    from ..chat import ChatContext
    from ..tools import FunctionTool

VENDOR = "Gemini Live"
KEY_VARIABLE = "GOOGLE_API_KEY"
DEFAULT_BASE_URL = (
    "wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
)
INPUT_RATE = 16_000
OUTPUT_RATE = 24_000
INPUT_MIME = f"audio/pcm;rate={INPUT_RATE}"

Sensitivity = Literal["high", "low"]


class RealtimeModel(base.RealtimeModel):
    """Gemini's native-audio model over the Live API.

    ``automatic_activity_detection``: the server finds the user's turns (its
    ``start_``/``end_of_speech_sensitivity``, ``prefix_padding_ms`` and
    ``silence_duration_ms``); off, the session marks them (``commit_audio``
    ends one). ``interrupt_response``: the user's speech cuts the model off.
    The key is ``api_key``, else ``GOOGLE_API_KEY``, else ``GEMINI_API_KEY``.
    ``extra_setup`` adds documented ``setup`` fields this class does not name;
    ``generate_reply_timeout``: see :class:`voxtrio.providers.base.RealtimeModel`.
    """

    def __init__(
        self,
        *,
        model: str = "gemini-2.5-flash-native-audio-preview-09-2025",
        voice: str = "Puck",
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        language: str | None = None,
        modalities: Literal["audio", "text"] = "audio",
        automatic_activity_detection: bool = True,
        start_of_speech_sensitivity: Sensitivity | None = None,
        end_of_speech_sensitivity: Sensitivity | None = None,
        prefix_padding_ms: int | None = None,
        silence_duration_ms: int | None = None,
        interrupt_response: bool = True,
        input_transcription: bool = True,
        output_transcription: bool = True,
        temperature: float | None = None,
        max_output_tokens: int | None = None,
        sample_rate: int = PIPELINE_SAMPLE_RATE,
        generate_reply_timeout: float | None = None,
        extra_setup: Mapping[str, Any] | None = None,
    ) -> None:
        if modalities not in ("audio", "text"):
            raise ValueError(f"modalities must be 'audio' or 'text', got {modalities!r}")
        for name, value in (("start_of_speech_sensitivity", start_of_speech_sensitivity),
                            ("end_of_speech_sensitivity", end_of_speech_sensitivity)):
            if value not in (None, "high", "low"):
                raise ValueError(f"{name} must be 'high', 'low' or None, got {value!r}")
        AudioFrame.silence(0.0, sample_rate=sample_rate)  # a rate that cannot be audio fails here
        self.model = model
        self.voice = voice
        self.sample_rate = sample_rate
        self.generate_reply_timeout = check_number(generate_reply_timeout, "generate_reply_timeout", optional=True)
        self.automatic_activity_detection = automatic_activity_detection
        key = api_key if api_key is not None else (os.environ.get(KEY_VARIABLE) or os.environ.get("GEMINI_API_KEY"))
        self._url = websocket_url(base_url, "", {"key": api_key_of(key, KEY_VARIABLE, "gemini.RealtimeModel")})
        detection = given(
            disabled=not automatic_activity_detection,
            startOfSpeechSensitivity=f"START_SENSITIVITY_{start_of_speech_sensitivity.upper()}" if start_of_speech_sensitivity else None,
            endOfSpeechSensitivity=f"END_SENSITIVITY_{end_of_speech_sensitivity.upper()}" if end_of_speech_sensitivity else None,
            prefixPaddingMs=prefix_padding_ms,
            silenceDurationMs=silence_duration_ms,
        )
        speech = {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": voice}}, **given(languageCode=language)}
        self._setup: dict[str, Any] = {
            "model": model if model.startswith("models/") else f"models/{model}",
            "generationConfig": {
                "responseModalities": [modalities.upper()],
                "speechConfig": speech,
                **given(temperature=temperature, maxOutputTokens=max_output_tokens),
            },
            "realtimeInputConfig": {
                "automaticActivityDetection": detection,
                "activityHandling": "START_OF_ACTIVITY_INTERRUPTS" if interrupt_response else "NO_INTERRUPTION",
            },
            **({"inputAudioTranscription": {}} if input_transcription else {}),
            **({"outputAudioTranscription": {}} if output_transcription else {}),
            **(extra_setup or {}),
        }
        self.capabilities = RealtimeCapabilities(
            turn_detection=automatic_activity_detection,
            user_transcription=input_transcription,
            audio_output=modalities == "audio",
            auto_tool_reply_generation=True,
            message_truncation=False,
        )

    def __repr__(self) -> str:
        return f"gemini.RealtimeModel({self.model!r}, voice={self.voice!r})"

    def setup_message(self, instructions: str, tools: Sequence[FunctionTool]) -> dict[str, Any]:
        """The ``setup`` message that configures a connection."""
        setup = dict(self._setup)
        if instructions:
            setup["systemInstruction"] = {"parts": [{"text": instructions}]}
        if tools:
            setup["tools"] = [{"functionDeclarations": [
                {"name": tool.name, "description": tool.description, "parametersJsonSchema": tool.parameters}
                for tool in tools
            ]}]
        return {"setup": setup}

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


@attrs.define(eq=False)
class _Turn:
    """A turn of the conversation as it can be given back to a new connection."""

    role: str  # user, model
    text: str = ""
    call: dict[str, Any] | None = None  # a functionCall part
    output: dict[str, Any] | None = None  # a functionResponse part

    def to_json(self) -> dict[str, Any] | None:
        if self.call is not None:
            return {"role": "model", "parts": [{"functionCall": self.call}]}
        if self.output is not None:
            return {"role": "user", "parts": [{"functionResponse": self.output}]}
        return {"role": self.role, "parts": [{"text": self.text}]} if self.text else None


@attrs.define(eq=False)
class _Response:
    """A reply the server is generating (Gemini gives it no id: we do)."""

    id: str
    turn_id: str  # the assistant message it is
    asked_at: float | None
    audio: OutputAudio
    turn: _Turn
    first_audio_delay: float | None = None
    silenced: bool = False  # interrupted: what it still sends is not played
    interrupted: bool = False  # the server cut it off


def _seconds(duration: Any) -> float:
    """A protobuf Duration in JSON (``"1.500s"``) in seconds."""
    text = str(duration)
    if not text.endswith("s"):
        raise ValueError(f"not a duration: {text!r}")
    return float(text[:-1])


class RealtimeSession(ReconnectingSession):
    """One conversation with a Gemini Live model (see :class:`RealtimeModel`)."""

    vendor = VENDOR
    key_variable = KEY_VARIABLE

    def __init__(
        self, model: RealtimeModel, *, instructions: str, tools: Sequence[FunctionTool], conn_options: APIConnectOptions
    ) -> None:
        super().__init__(url=model._url, headers={}, input_rate=INPUT_RATE, conn_options=conn_options)
        self._model = model
        self._instructions = instructions
        self._tools = list(tools)
        self._turns: list[_Turn] = []  # the conversation, in order
        self._ids = itertools.count(1)
        self._response: _Response | None = None
        self._last_response: _Response | None = None  # interrupt() may come after it is done
        self._deferred_reply: dict[str, Any] | None = None
        self._call_names: dict[str, str] = {}
        self._outputs: list[dict[str, Any]] = []  # tool outputs waiting for the one that replies
        self._user: tuple[str, _Turn] | None = None  # the user's turn being heard: item id, turn
        self._user_text = ""
        self._speaking = False
        self._usage: RealtimeUsage | None = None
        self._asked_at: float | None = None
        self._move_when_idle = False  # goAway: open the next connection between replies
        self._active = False  # manual activity detection: an activityStart went out
        self._clock = AudioClock()

    # -- the public API ----------------------------------------------------------------

    async def commit_audio(self) -> None:
        for chunk, audio_time in self._input.flush():
            await self._append(chunk, audio_time)
        if self._model.automatic_activity_detection:
            await self._send({"realtimeInput": {"audioStreamEnd": True}})
        elif self._active:
            self._active = False
            await self._send({"realtimeInput": {"activityEnd": {}}})

    async def clear_audio(self) -> None:
        self._input.clear()  # what went out is the server's: the protocol cannot take it back

    async def generate_reply(self, *, instructions: str | None = None) -> None:
        content: dict[str, Any] = {"turnComplete": True}
        if instructions is not None:
            content["turns"] = [{"role": "user", "parts": [{"text": instructions}]}]
        if self._response is not None or self._ws is None:
            self._deferred_reply = content  # a clientContent would cut the running reply off
            return
        self._asked_at = trio.current_time()
        await self._send({"clientContent": content})

    async def interrupt(self, *, item_id: str | None = None, played: float = 0.0) -> None:
        self._deferred_reply = None
        response = self._response or self._last_response
        if response is None or (item_id is not None and item_id != response.turn_id):
            return
        response.silenced = True
        if response.audio.seconds > 0:
            response.turn.text = share_of(response.turn.text, min(1.0, max(0.0, played) / response.audio.seconds))

    async def send_tool_output(self, call_id: str, output: str, *, reply: bool = True) -> None:
        answer = {"id": call_id, "name": self._call_names.get(call_id, ""), "response": {"output": output}}
        self._turns.append(_Turn(role="user", output=answer))
        self._outputs.append(answer)
        if reply:
            outputs, self._outputs = self._outputs, []
            self._asked_at = trio.current_time()
            await self._send({"toolResponse": {"functionResponses": outputs}})

    async def add_message(self, role: Literal["user", "assistant", "system"], text: str) -> None:
        if role == "system":
            await self.update_instructions(f"{self._instructions}\n\n{text}".strip())
            return
        if role not in ("user", "assistant"):
            raise ValueError(f"role must be 'user', 'assistant' or 'system', got {role!r}")
        turn = _Turn(role="user" if role == "user" else "model", text=text)
        self._turns.append(turn)
        if turn.to_json() is not None:
            await self._send({"clientContent": {"turns": [turn.to_json()], "turnComplete": False}})

    async def update_instructions(self, instructions: str) -> None:
        self._instructions = instructions
        await self._reconfigure()

    async def update_tools(self, tools: Sequence[FunctionTool]) -> None:
        self._tools = list(tools)
        await self._reconfigure()

    def conversation(self) -> list[dict[str, Any]]:
        """The conversation as a new connection would be given it."""
        return [turn for item in self._turns if (turn := item.to_json()) is not None]

    # -- connections ---------------------------------------------------------------------------

    async def _configure(self, ws: WebSocketConnection) -> None:
        await ws.send_message(json.dumps(self._model.setup_message(self._instructions, self._tools)))
        with trio.move_on_after(self._options.timeout) as waiting:
            while "setupComplete" not in await self._receive(ws):
                pass
        if waiting.cancelled_caught:
            raise APITimeoutError(f"{VENDOR} did not answer its setup within {self._options.timeout:g} s")
        self._clock = AudioClock()
        self._active = False
        self._ws = ws
        turns = self.conversation()
        if turns:
            await self._send({"clientContent": {"turns": turns, "turnComplete": False}})

    async def _connected(self) -> None:
        if self._deferred_reply is not None and self._response is None:
            deferred, self._deferred_reply = self._deferred_reply, None
            await self._send({"clientContent": deferred})

    def _close_error(self, reason: Any) -> APIError:
        """Gemini's errors are closes: a quota is a rate limit (429, retried),
        a refused key names the variable."""
        error = super()._close_error(reason)
        why = (reason.reason or "") if reason is not None else ""
        if "RESOURCE_EXHAUSTED" in why or "quota" in why.lower():
            return APIStatusError(str(error), status_code=429)
        if "api key" in why.lower():
            return APIStatusError(f"{error}. Check {KEY_VARIABLE} or the api_key argument.", status_code=401)
        return error

    def _connection_lost(self) -> None:
        super()._connection_lost()
        self._response = None
        self._user, self._user_text, self._speaking = None, "", False

    async def _send(self, message: dict[str, Any]) -> None:
        await self._send_message(json.dumps(message))

    async def _append(self, chunk: np.ndarray, audio_time: float) -> None:
        duration = len(chunk) / INPUT_RATE
        if self._ws is None:
            self._lost_audio += duration
            return
        if not self._model.automatic_activity_detection and not self._active:
            self._active = True
            await self._send({"realtimeInput": {"activityStart": {}}})
        self._clock.record(duration, audio_time)
        data = base64.b64encode(chunk.astype("<i2", copy=False).tobytes()).decode("ascii")
        await self._send({"realtimeInput": {"audio": {"data": data, "mimeType": INPUT_MIME}}})

    # -- the server's messages --------------------------------------------------------------------

    async def _read(self, ws: WebSocketConnection) -> None:
        while True:
            data = await self._receive(ws)
            try:
                await self._handle(data)
            except (KeyError, TypeError, ValueError, AttributeError):
                raise protocol_error(VENDOR, "a message that does not follow its documented shape", json.dumps(data)) from None

    async def _handle(self, data: dict[str, Any]) -> None:
        if "usageMetadata" in data:
            self._usage = _usage_of(data["usageMetadata"])
        if "voiceActivity" in data:
            activity = data["voiceActivity"]
            at = self._clock.audio_time(_seconds(activity.get("audioOffset", f"{self._clock.sent}s")))
            if activity["voiceActivityType"] == "ACTIVITY_START":
                await self._speech_started(at)
            elif activity["voiceActivityType"] == "ACTIVITY_END":
                await self._speech_stopped(at)
        if "serverContent" in data:
            await self._server_content(data["serverContent"])
        if "toolCall" in data:
            await self._tool_call(data["toolCall"])
        if "toolCallCancellation" in data:
            await self._emit(FunctionCallsCancelled(tuple(str(i) for i in data["toolCallCancellation"]["ids"])))
        if "goAway" in data:
            self._move_when_idle = True
            if self._response is None:
                await self._move()

    async def _move(self) -> None:
        """The server is about to end this connection: open the next one now."""
        self._move_when_idle = False
        await self._reconfigure()

    def _user_turn(self) -> tuple[str, _Turn]:
        if self._user is None:
            turn = _Turn(role="user")
            self._turns.append(turn)
            self._user = (f"gemini_user_{next(self._ids)}", turn)
        return self._user

    async def _speech_started(self, at: float) -> None:
        if not self._speaking:
            self._speaking = True
            await self._emit(InputSpeechStarted(at, self._user_turn()[0]))

    async def _speech_stopped(self, at: float) -> None:
        if self._speaking:
            self._speaking = False
            self._asked_at = trio.current_time()
            await self._emit(InputSpeechStopped(at, self._user_turn()[0]))

    async def _finish_user_turn(self) -> None:
        if self._user is not None and self._user_text:
            item_id, turn = self._user
            turn.text = self._user_text.strip()
            await self._emit(InputTranscription(item_id, turn.text, final=True))
        self._user, self._user_text = None, ""

    async def _server_content(self, content: dict[str, Any]) -> None:
        transcription = content.get("inputTranscription")
        if transcription is not None:
            item_id, _ = self._user_turn()
            self._user_text += str(transcription.get("text") or "")
            if transcription.get("finished"):
                await self._finish_user_turn()
            else:
                await self._emit(InputTranscription(item_id, self._user_text.strip(), final=False))
        if content.get("interrupted"):
            if not self._speaking:  # no voiceActivity: the cut-off is the first sign of speech
                await self._speech_started(self._clock.audio_time(self._clock.sent))
            if self._response is not None:
                self._response.interrupted = self._response.silenced = True
        turn = content.get("modelTurn")
        if turn is not None:
            response = await self._responding()
            for part in turn["parts"]:
                if part.get("thought"):
                    continue
                if "inlineData" in part:
                    await self._audio(response, part["inlineData"])
                elif "text" in part and not response.silenced:
                    response.turn.text += str(part["text"])
                    await self._emit(ResponseTextDelta(response.id, response.turn_id, str(part["text"])))
        transcript = content.get("outputTranscription")
        if transcript is not None and transcript.get("text"):
            response = await self._responding()
            if not response.silenced:
                response.turn.text += str(transcript["text"])
                await self._emit(ResponseTranscriptDelta(response.id, response.turn_id, str(transcript["text"])))
        if content.get("generationComplete") and self._response is not None:
            await self._flush(self._response)
        if content.get("turnComplete"):
            await self._done()

    async def _responding(self) -> _Response:
        if self._response is None:
            if self._speaking:  # the model took its turn: the user's ended
                await self._speech_stopped(self._clock.audio_time(self._clock.sent))
            await self._finish_user_turn()
            number = next(self._ids)
            turn = _Turn(role="model")
            self._turns.append(turn)
            self._response = _Response(
                f"gemini_response_{number}", f"gemini_item_{number}", asked_at=self._asked_at,
                audio=OutputAudio(OUTPUT_RATE, self._model.sample_rate, vendor=VENDOR), turn=turn,
            )
            self._usage = None
            await self._emit(ResponseCreated(self._response.id))
        return self._response

    async def _audio(self, response: _Response, blob: Mapping[str, Any]) -> None:
        mime = str(blob.get("mimeType") or "")
        if not mime.startswith("audio/pcm"):
            raise ValueError(f"audio of type {mime!r}")
        if f"rate={OUTPUT_RATE}" not in mime and "rate=" in mime:
            raise ValueError(f"audio at another rate: {mime!r}")
        frames = response.audio.push(blob["data"])
        if response.silenced:
            return
        if response.first_audio_delay is None and response.asked_at is not None:
            response.first_audio_delay = trio.current_time() - response.asked_at
        for frame in frames:
            await self._emit(ResponseAudio(response.id, response.turn_id, frame))

    async def _flush(self, response: _Response) -> None:
        frames = response.audio.flush()
        if not response.silenced:
            for frame in frames:
                await self._emit(ResponseAudio(response.id, response.turn_id, frame))

    async def _tool_call(self, call: dict[str, Any]) -> None:
        response = await self._responding()
        for function in call["functionCalls"]:
            call_id, name = str(function["id"]), str(function["name"])
            arguments = json.dumps(function.get("args") or {})
            self._call_names[call_id] = name
            self._turns.append(_Turn(role="model", call={"id": call_id, "name": name, "args": function.get("args") or {}}))
            await self._emit(RealtimeFunctionCall(response.id, call_id, call_id, name, arguments))
        await self._done()  # the model waits for the outputs: this reply is over

    async def _done(self) -> None:
        response, self._response = self._response, None
        if response is None:
            return  # the end of a turn already over (after a tool call, or a cut-off)
        await self._flush(response)
        self._last_response = response
        if response.interrupted:
            status, reason = "cancelled", "turn_detected"
        else:
            status, reason = "completed", None
        await self._emit(ResponseDone(
            response_id=response.id, status=status, reason=reason, usage=self._usage,  # type: ignore[arg-type]
            first_audio_delay=response.first_audio_delay,
        ))
        self._usage = None
        if self._move_when_idle:
            await self._move()
        elif self._deferred_reply is not None:
            deferred, self._deferred_reply = self._deferred_reply, None
            self._asked_at = trio.current_time()
            await self._send({"clientContent": deferred})

    def _mirror_chat_item(self, item: Any) -> None:
        """An item of the session's ChatContext, to start the conversation with."""
        if item.type == "message":
            if item.role in ("system", "developer"):
                self._instructions = f"{self._instructions}\n\n{item.content}".strip()
            else:
                self._turns.append(_Turn(role="user" if item.role == "user" else "model", text=item.content))
        elif item.type == "function_call":
            self._call_names[item.call_id] = item.name
            self._turns.append(_Turn(role="model", call={"id": item.call_id, "name": item.name,
                                                         "args": json.loads(item.arguments or "{}")}))
        elif item.type == "function_call_output":
            self._turns.append(_Turn(role="user", output={"id": item.call_id, "name": item.name,
                                                          "response": {"output": item.output}}))


def _usage_of(usage: Mapping[str, Any]) -> RealtimeUsage:
    def by_modality(details: Any) -> dict[str, int]:
        return {str(d.get("modality")): int(d.get("tokenCount") or 0) for d in details or ()}

    prompt = by_modality(usage.get("promptTokensDetails"))
    reply = by_modality(usage.get("responseTokensDetails"))
    return RealtimeUsage(
        input_tokens=int(usage.get("promptTokenCount") or 0),
        output_tokens=int(usage.get("responseTokenCount") or 0),
        input_text_tokens=prompt.get("TEXT", 0),
        input_audio_tokens=prompt.get("AUDIO", 0),
        input_cached_tokens=int(usage.get("cachedContentTokenCount") or 0),
        output_text_tokens=reply.get("TEXT", 0),
        output_audio_tokens=reply.get("AUDIO", 0),
    )
