"""RealtimeLink: a realtime (speech-to-speech) model in place of VAD, STT, LLM and TTS.

The link owns the model's conversation (``async with model.session(...)``,
in its own task: the connection lives and dies inside ``session.main``),
opened when an agent on a realtime model becomes current (``RealtimeOpen``,
with the conversation so far) and closed when one that is not does.
AudioIn feeds it the user's audio as it would feed a recognizer. What the
model does is passed on in the session's own terms, so that the Turn and
the Planner keep their rules:

* the server's turn detection (``InputSpeechStarted``/``Stopped``) reaches
  the Turn as VAD events, and the user's transcription
  (``InputTranscription``) as the recognizer's interim and final events;
* each response reaches the Planner as a :class:`RealtimeResponse` with its
  own stream (audio, transcript or text, function calls, its end), which
  the Planner speaks as one speech;
* the Planner's requests (a reply, an interruption with the position heard,
  tool outputs, what a TTS said) come in on the link's control inbox.

A vendor error the conversation survives is a recoverable ``error`` event; a
conversation that cannot go on (the ``async with`` raises) is a
``ProviderFailed(source="realtime")``: the session has no other way to hear
or speak, so the supervisor closes it.
"""

from __future__ import annotations

import logging
import math
from typing import assert_never

import trio

from .._sync import Flag, Future
from ..errors import describe_error
from ..events import ErrorEvent, EventBus
from ..links import PlannerLink, RealtimeEnds, SupervisorLink, TurnEventLink
from ..messages import (
    ProviderFailed,
    RealtimeAddMessage,
    RealtimeClearAudio,
    RealtimeClose,
    RealtimeCommitAudio,
    RealtimeConfigure,
    RealtimeInterrupt,
    RealtimeOpen,
    RealtimeReplyRequested,
    RealtimeResponse,
    RealtimeToolOutput,
    ResponseOutput,
)
from ..options import APIConnectOptions
from ..providers.base import (
    FunctionCallsCancelled,
    InputSpeechStarted,
    InputSpeechStopped,
    InputTranscription,
    RealtimeError,
    RealtimeEvent,
    RealtimeFunctionCall,
    RealtimeModel,
    RealtimeReconnected,
    RealtimeSession,
    ResponseAudio,
    ResponseCreated,
    ResponseDone,
    ResponseTextDelta,
    ResponseTranscriptDelta,
    STTEvent,
    VADEvent,
)

logger = logging.getLogger("voxtrio.realtime")

# What the Planner asks of a conversation that is open.
Request = (
    RealtimeReplyRequested | RealtimeInterrupt | RealtimeToolOutput | RealtimeAddMessage | RealtimeConfigure
    | RealtimeCommitAudio | RealtimeClearAudio
)


class RealtimeLink:
    def __init__(
        self,
        *,
        bus: EventBus,
        ends: RealtimeEnds,
        turn_events: TurnEventLink,
        planner: PlannerLink,
        supervisor: SupervisorLink,
        conn_options: APIConnectOptions,
    ) -> None:
        self._bus = bus
        self._ends = ends
        self._turn_events = turn_events
        self._planner = planner
        self._supervisor = supervisor
        self._conn_options = conn_options
        # each running response's stream, by response id (closed at its ResponseDone)
        self._responses: dict[str, trio.MemorySendChannel[ResponseOutput]] = {}
        # audio time the user's speech started at (the server's), while they speak
        self._speech_started: float | None = None
        # the conversation running (None: none), and the one being opened
        self._scope: trio.CancelScope | None = None
        self._live: Future[RealtimeSession | None] | None = None
        # set once the conversation running (if any) has closed
        self._closed = Flag(True)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for message in self._ends.inbox:
                match message:
                    case RealtimeOpen():
                        await self._close()
                        self._scope = trio.CancelScope()
                        self._live = Future()
                        self._closed = Flag()
                        nursery.start_soon(self._converse, message, self._scope, self._live, self._closed)
                    case RealtimeClose():
                        await self._close()
                    case _:
                        await self._request(message)

    async def _close(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            await self._closed.wait_value(True)
        self._scope = self._live = None

    async def _converse(
        self, request: RealtimeOpen, scope: trio.CancelScope, live: Future[RealtimeSession | None], closed: Flag
    ) -> None:
        """One conversation: it lives and dies in this task."""
        with scope:
            try:
                model: RealtimeModel = request.model
                async with model.session(
                    instructions=request.instructions,
                    chat_ctx=request.chat_ctx,
                    tools=request.tools,
                    conn_options=self._conn_options,
                ) as session:
                    live.set_result(session)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._push_audio, session)
                        async for event in session.events:
                            await self._route(event)
                        nursery.cancel_scope.cancel()
            except Exception as error:
                self._bus.emit(
                    ErrorEvent(source="realtime", message=describe_error(error), recoverable=False, error=error)
                )
                self._supervisor.send_nowait(ProviderFailed(source="realtime", error=error))
            finally:
                self._end_responses()
                if not live.done():
                    live.set_result(None)
                closed.set()

    async def _push_audio(self, live: RealtimeSession) -> None:
        async for frame in self._ends.audio_out:
            await live.push_audio(frame)

    async def _request(self, message: Request) -> None:
        """A request of the Planner's to the conversation (once it is open; dropped without one)."""
        live = await self._live if self._live is not None else None
        if live is None:
            logger.info("no realtime conversation for %s", type(message).__name__)
            return
        try:
            match message:
                case RealtimeReplyRequested():
                    await live.generate_reply(instructions=message.instructions)
                case RealtimeInterrupt():
                    await live.interrupt(item_id=message.item_id, played=message.played)
                case RealtimeToolOutput():
                    await live.send_tool_output(message.call_id, message.output, reply=message.reply)
                case RealtimeAddMessage():
                    await live.add_message(message.role, message.text)
                case RealtimeConfigure():
                    await live.update_instructions(message.instructions)
                    await live.update_tools(message.tools)
                case RealtimeCommitAudio():
                    await live.commit_audio()
                case RealtimeClearAudio():
                    await live.clear_audio()
                case _:
                    assert_never(message)
        except Exception as error:
            # The conversation is going (its own task reports why): the request is lost, said so.
            self._report(error, f"{type(message).__name__} did not reach the model: {describe_error(error)}")

    async def _route(self, event: RealtimeEvent) -> None:
        match event:
            case InputSpeechStarted():
                self._speech_started = event.audio_time
                await self._turn_events.send(
                    VADEvent(kind="start_of_speech", timestamp=event.audio_time, speech_duration=0.0,
                             silence_duration=0.0, speaking=True)
                )
            case InputSpeechStopped():
                started = self._speech_started if self._speech_started is not None else event.audio_time
                self._speech_started = None
                await self._turn_events.send(
                    VADEvent(kind="end_of_speech", timestamp=event.audio_time,
                             speech_duration=max(0.0, event.audio_time - started),
                             silence_duration=0.0, speaking=False)
                )
            case InputTranscription():
                await self._turn_events.send(STTEvent(kind="final" if event.final else "interim", text=event.text))
            case ResponseCreated():
                send, receive = trio.open_memory_channel[ResponseOutput](math.inf)
                self._responses[event.response_id] = send
                self._planner.send_nowait(RealtimeResponse(response_id=event.response_id, output=receive))
            case ResponseAudio() | ResponseTextDelta() | ResponseTranscriptDelta() | RealtimeFunctionCall():
                self._to_response(event.response_id, event)
            case ResponseDone():
                self._to_response(event.response_id, event)
                stream = self._responses.pop(event.response_id, None)
                if stream is not None:
                    stream.close()
            case FunctionCallsCancelled():
                self._planner.send_nowait(event)
            case RealtimeError():
                self._report(event.error)
            case RealtimeReconnected():
                lost = f"{event.lost_audio:.2f} s of audio lost"
                self._report(event.error, f"reconnected after {describe_error(event.error)}; {lost}")
            case _:
                assert_never(event)

    def _report(self, error: BaseException, message: str | None = None) -> None:
        """An error the conversation survives (a recoverable ``error`` event)."""
        text = message or describe_error(error)
        self._bus.emit(ErrorEvent(source="realtime", message=text, recoverable=True, error=error))

    def _to_response(self, response_id: str, item: ResponseOutput) -> None:
        stream = self._responses.get(response_id)
        if stream is None:
            return
        try:
            stream.send_nowait(item)
        except trio.BrokenResourceError:
            pass  # the Planner dropped the response (the speech is over)

    def _end_responses(self) -> None:
        for stream in self._responses.values():
            stream.close()
        self._responses.clear()
