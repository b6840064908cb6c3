"""A realtime model played from a script, in-process (no socket): the realtime path's
counterpart of ScriptedVAD + ScriptedSTT + ScriptedLLM, for scenarios and the
property harness.

It hears the user's :class:`~voxtrio.testing.scripted.UserSpeech` on the audio
clock of the frames pushed to it (the server's turn detection), transcribes each
speech at its end, and answers what ScriptedLLM would answer: the user's
transcript, the instructions of ``generate_reply``, a tool's output, a text the
application added. A response speaks its content (``chars_per_second``) in 20 ms
frames sent ``speed`` times faster than real time, after ``ttft``, and ends with
its tool calls; the user starting to speak cancels it (``interrupt_response``),
as ``interrupt()`` does.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
from typing import Any, AsyncIterator, Literal, Sequence

import numpy as np
import trio

from ..audio import AudioFrame
from ..chat import ChatContext
from ..options import APIConnectOptions
from ..providers.base import (
    DEFAULT_CONN_OPTIONS,
    InputSpeechStarted,
    InputSpeechStopped,
    InputTranscription,
    RealtimeCapabilities,
    RealtimeEvent,
    RealtimeFunctionCall,
    RealtimeModel,
    RealtimeSession,
    RealtimeUsage,
    ResponseAudio,
    ResponseCreated,
    ResponseDone,
    ResponseTranscriptDelta,
)
from .scripted import LLMResponse, UserSpeech, _next_response, _sorted_speeches

RATE = 16_000
FRAME = 0.02


class ScriptedRealtimeModel(RealtimeModel):
    capabilities = RealtimeCapabilities(turn_detection=True, user_transcription=True)
    sample_rate = RATE
    model = "scripted-realtime"

    def __init__(
        self,
        user: Sequence[UserSpeech],
        responses: Sequence[LLMResponse],
        *,
        chars_per_second: float = 15.0,
        speed: float = 4.0,
    ) -> None:
        self.user = _sorted_speeches(user)
        self.responses: dict[str, collections.deque[LLMResponse]] = collections.defaultdict(collections.deque)
        for response in responses:
            self.responses[response.input].append(response)
        self.chars_per_second = chars_per_second
        self.speed = speed
        # What each conversation was asked, in order (for tests): (kind, details).
        self.requests: list[tuple[str, Any]] = []

    @contextlib.asynccontextmanager
    async def session(
        self,
        *,
        instructions: str = "",
        chat_ctx: ChatContext | None = None,
        tools: Sequence[Any] = (),
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> AsyncIterator[RealtimeSession]:
        async with trio.open_nursery() as nursery:
            live = ScriptedRealtimeSession(self, nursery)
            self.requests.append(("session", instructions))
            try:
                yield live
            finally:
                nursery.cancel_scope.cancel()


class ScriptedRealtimeSession(RealtimeSession):
    def __init__(self, model: ScriptedRealtimeModel, nursery: trio.Nursery) -> None:
        self._model = model
        self._nursery = nursery
        self._send, self.events = trio.open_memory_channel[RealtimeEvent](64)
        # The user's speeches not heard to their end yet, and whether the current one started.
        self._pending = collections.deque(model.user)
        self._hearing = False
        # The response running (its cancel scope) and what is queued after it.
        self._response: trio.CancelScope | None = None
        self._queued: collections.deque[str | None] = collections.deque()
        self._ids = itertools.count(1)

    async def push_audio(self, frame: AudioFrame) -> None:
        now = frame.timestamp + frame.duration
        while self._pending:
            speech = self._pending[0]
            if not self._hearing and now >= speech.start - 1e-9:
                self._hearing = True
                await self._send.send(InputSpeechStarted(audio_time=speech.start, item_id=f"user_{speech.start}"))
                if self._response is not None:
                    self._response.cancel()
            if not (self._hearing and now >= speech.end - 1e-9):
                return
            self._pending.popleft()
            self._hearing = False
            item_id = f"user_{speech.start}"
            await self._send.send(InputSpeechStopped(audio_time=speech.end, item_id=item_id))
            if speech.transcript:
                await self._send.send(InputTranscription(item_id=item_id, text=speech.transcript, final=True))
            self._respond(speech.transcript or None)

    async def commit_audio(self) -> None:
        self._model.requests.append(("commit_audio", None))

    async def clear_audio(self) -> None:
        self._model.requests.append(("clear_audio", None))

    async def generate_reply(self, *, instructions: str | None = None) -> None:
        self._model.requests.append(("generate_reply", instructions))
        self._respond(instructions)

    async def interrupt(self, *, item_id: str | None = None, played: float = 0.0) -> None:
        self._model.requests.append(("interrupt", (item_id, round(played, 3))))
        if self._response is not None:
            self._response.cancel()

    async def send_tool_output(self, call_id: str, output: str, *, reply: bool = True) -> None:
        self._model.requests.append(("tool_output", (call_id, output, reply)))
        if reply:
            self._respond(output)

    async def add_message(self, role: Literal["user", "assistant", "system"], text: str) -> None:
        self._model.requests.append(("add_message", (role, text)))
        if role == "user":
            self._last_user = text

    async def update_instructions(self, instructions: str) -> None:
        self._model.requests.append(("update_instructions", instructions))

    async def update_tools(self, tools: Sequence[Any]) -> None:
        self._model.requests.append(("update_tools", [tool.name for tool in tools]))

    def _respond(self, key: str | None) -> None:
        """A response to ``key`` (what ScriptedLLM would match), after the running one."""
        if key is None and getattr(self, "_last_user", None) is not None:
            key, self._last_user = self._last_user, None
        self._queued.append(key)
        if self._response is None:
            self._nursery.start_soon(self._run_responses)

    async def _run_responses(self) -> None:
        while self._queued:
            key = self._queued.popleft()
            self._response = scope = trio.CancelScope()
            try:
                await self._play(key, scope)
            finally:
                self._response = None

    async def _play(self, key: str | None, scope: trio.CancelScope) -> None:
        model = self._model
        queue = model.responses.get(key) if key is not None else None
        response = _next_response(queue) if queue else None
        response_id = f"resp_{next(self._ids)}"
        await self._send.send(ResponseCreated(response_id=response_id))
        status: Literal["completed", "cancelled"] = "completed"
        with scope:
            if response is not None:
                await trio.sleep(response.ttft)
                item_id = f"item_{response_id}"
                content = response.content
                words = content.split(" ") if content else []
                total = len(content) / model.chars_per_second
                frames = max(1, round(total / FRAME)) if content else 0
                said = 0
                for index in range(frames):
                    samples = np.full(int(RATE * FRAME), 300, np.int16)
                    due = len(words) * (index + 1) // frames
                    while said < due:
                        delta = words[said] if said == 0 else " " + words[said]
                        said += 1
                        await self._send.send(ResponseTranscriptDelta(response_id, item_id, delta))
                    await self._send.send(ResponseAudio(response_id, item_id, AudioFrame(samples, RATE)))
                    await trio.sleep(FRAME / model.speed)
                for call in response.tool_calls:
                    await self._send.send(
                        RealtimeFunctionCall(response_id, f"call_item_{call.call_id}", call.call_id, call.name, call.arguments)
                    )
        if scope.cancelled_caught:
            status = "cancelled"
        await self._send.send(
            ResponseDone(response_id=response_id, status=status, usage=RealtimeUsage(input_tokens=10, output_tokens=20))
        )
