"""A realtime model's responses as speeches: played, committed, their tools run."""

from __future__ import annotations

import collections
import math
from typing import Any

import attrs
import trio

from ..._sync import Future
from ...chat import ChatMessage
from ...errors import APITimeoutError
from ...events import ErrorEvent, EventBus, MetricsCollected
from ...links import RealtimeControl
from ...messages import (
    DiscardSegment,
    GenerateReply,
    HandoffRequested,
    RealtimeAddMessage,
    RealtimeInterrupt,
    RealtimeReplyRequested,
    RealtimeResponse,
    RealtimeToolOutput,
    ResponseOutput,
)
from ...providers.base import (
    RealtimeFunctionCall,
    RealtimeModel,
    ResponseAudio,
    ResponseDone,
    ResponseTextDelta,
    ResponseTranscriptDelta,
    ToolCallChunk,
)
from ...speech import SpeechFactory
from ...state import SessionState
from ...tools import ToolOutcome
from .agent_state import AgentStatus
from .history import History
from .playout import Playout
from .reply import wait_for_tools
from .speeches import SpeechRun, SpeechScheduler
from .stage import Stage
from .tool_runner import ToolCalls, ToolRunner


@attrs.define
class _Heard:
    """The audio items of one response, in the order they played, with their lengths."""

    items: list[tuple[str, float]] = attrs.Factory(list)

    def add(self, item_id: str, seconds: float) -> None:
        if self.items and self.items[-1][0] == item_id:
            self.items[-1] = (item_id, self.items[-1][1] + seconds)
        else:
            self.items.append((item_id, seconds))

    def at(self, position: float) -> tuple[str | None, float]:
        """The item playing at ``position`` seconds of the response, and how much of it played."""
        for item_id, seconds in self.items:
            if position <= seconds + 1e-9:
                return item_id, max(0.0, position)
            position -= seconds
        return (self.items[-1][0], self.items[-1][1]) if self.items else (None, 0.0)


class RealtimeReplies:
    """Speaks each response of the model (docs/architecture.md, "Realtime models").

    A response is one speech step: asked for (``generate_reply``, a tool's
    output), it takes the handle that asked, in the order asked; the model's
    own answer to a turn gets a new handle. Its audio plays as a ``say()``'s
    pre-rendered audio does, with its transcript as the text heard; a
    text-only model's text goes to the agent's TTS. On interruption the model
    is told the position the user actually heard. Invariant: ``_pending``
    holds, in order, the requests the model has yet to answer.
    """

    def __init__(
        self,
        *,
        state: SessionState,
        bus: EventBus,
        stage: Stage,
        speeches: SpeechScheduler,
        playout: Playout,
        history: History,
        tools: ToolRunner,
        agent_status: AgentStatus,
        factory: SpeechFactory,
        link: RealtimeControl,
        speaker_inbox: trio.MemorySendChannel[Any],
        session_inbox: trio.MemorySendChannel[Any],
    ) -> None:
        self._state = state
        self._bus = bus
        self._stage = stage
        self._speeches = speeches
        self._playout = playout
        self._history = history
        self._tools = tools
        self._agent_status = agent_status
        self._factory = factory
        self._link = link
        self._speaker = speaker_inbox
        self._session_inbox = session_inbox
        self._pending: collections.deque[Future[RealtimeResponse]] = collections.deque()
        # the tool calls of each response being spoken (the model may withdraw some)
        self._calls: list[ToolCalls] = []

    def requested(self, message: GenerateReply) -> None:
        run = self._speeches.adopt(message.handle)
        if message.user_message is not None:
            text = message.user_message.text_content or ""
            self._history.commit(message.user_message, owner=run.owner)
            self._link.send_nowait(RealtimeAddMessage(role="user", text=text))
        self._speeches.spawn(run, self._speak(run, self._ask(message.instructions)))
        self._speeches.schedule(message.handle)

    def created(self, response: RealtimeResponse) -> None:
        if self._pending:
            self._pending.popleft().set_result(response)
            return
        handle = self._factory.create(source="generate_reply", allow_interruptions=self._stage.allow_interruptions())
        run = self._speeches.adopt(handle)
        answered: Future[RealtimeResponse] = Future()
        answered.set_result(response)
        self._speeches.spawn(run, self._speak(run, answered))
        self._speeches.schedule(handle)

    def withdrawn(self, call_ids: tuple[str, ...]) -> None:
        """The model withdrew calls (the user spoke over them): those still
        running are cancelled, and none of their outputs goes back."""
        for calls in self._calls:
            calls.withdraw(call_ids)

    def spoken(self, text: str) -> None:
        """A say() the TTS spoke: the model hears that the agent said it."""
        self._link.send_nowait(RealtimeAddMessage(role="assistant", text=text))

    def _ask(self, instructions: str | None) -> Future[RealtimeResponse]:
        answer: Future[RealtimeResponse] = Future()
        self._pending.append(answer)
        self._link.send_nowait(RealtimeReplyRequested(instructions=instructions))
        return answer

    async def _speak(self, run: SpeechRun, answer: Future[RealtimeResponse]) -> None:
        await run.status.scheduled.wait_value(True)
        response = await self._answered(run, answer)
        if response is None:
            return
        calls = ToolCalls()
        self._calls.append(calls)
        try:
            played = await self._step(run, response, calls)
        finally:
            self._calls.remove(calls)
        outcomes = calls.finished()
        if played and outcomes:
            self._answer_tools(run, outcomes, calls.withdrawn)

    async def _step(self, run: SpeechRun, response: RealtimeResponse, calls: ToolCalls) -> bool:
        """The response played (False: the speech ended before it could play)."""
        handle = run.handle
        heard = _Heard()
        segment: Future[str | None] = Future()
        async with response.output, trio.open_nursery() as step:
            tool_send, tool_receive = trio.open_memory_channel[ToolCallChunk](math.inf)
            step.start_soon(self._tools.execute, run, tool_receive, self._stage.tools(), None, calls)
            step.start_soon(self._route, run, response.output, tool_send, segment, heard)
            if not handle.interrupted:
                self._agent_status.set("thinking")
            if handle.interrupted or not await self._speeches.wait_authorized(run):
                self._link.send_nowait(RealtimeInterrupt(item_id=None, played=0.0))
                await segment.wait()
                if segment.result() is not None:
                    self._speaker.send_nowait(DiscardSegment(segment.result()))
                return False
            await segment.wait()
            # Its place: when it began to exist (the user's transcript, which
            # the server sends with its turn, goes in before it).
            reply_seq = self._bus.next_seq()
            played = segment.result()
            result = await self._playout.play(run, played) if played is not None else None
            if result is not None and result.text:
                self._history.commit(
                    ChatMessage(role="assistant", content=result.text, interrupted=result.interrupted),
                    seq=reply_seq,
                    owner=run.owner,
                    speech=handle,
                )
            if handle.interrupted:
                item_id, position = heard.at(result.position if result is not None else 0.0)
                self._link.send_nowait(RealtimeInterrupt(item_id=item_id, played=position))
            self._playout.after(
                run,
                tools_pending=not calls.done and not handle.interrupted,
                had_output=bool(calls.done and calls.outcomes),
            )
            run.step_played()
            if not calls.done:
                await wait_for_tools(run, calls, self._speeches, self._agent_status)
        return True

    async def _answered(self, run: SpeechRun, answer: Future[RealtimeResponse]) -> RealtimeResponse | None:
        """The response that answers a request, or None when the model never
        started one within its ``generate_reply_timeout``: the request is
        dropped (a response that starts later is the model's own) and the
        speech ends with a recoverable error."""
        model = self._stage.llm_for(run.owner)
        timeout = model.generate_reply_timeout if isinstance(model, RealtimeModel) else None
        if timeout is None:
            timeout = self._stage.options.conn_options.llm_conn_options.timeout
        with trio.move_on_after(timeout):
            return await answer
        if answer.done():
            return answer.result()
        self._pending.remove(answer)
        error = APITimeoutError(f"the realtime model started no response within {timeout:g} s")
        self._bus.emit(ErrorEvent(source="realtime", message=str(error), recoverable=True, error=error))
        return None

    async def _route(
        self,
        run: SpeechRun,
        output: trio.MemoryReceiveChannel[ResponseOutput],
        tool_send: trio.MemorySendChannel[ToolCallChunk],
        segment: Future[str | None],
        heard: _Heard,
    ) -> None:
        """The response's stream: audio and its transcript (or text) to one
        segment, function calls to the tool runner, its end to the metrics."""
        text_send: trio.MemorySendChannel[str] | None = None
        audio_send: trio.MemorySendChannel[Any] | None = None

        def open_segment(with_audio: bool) -> None:
            nonlocal text_send, audio_send
            text_send, text_receive = trio.open_memory_channel[str](math.inf)
            audio_receive = None
            if with_audio:
                audio_send, audio_receive = trio.open_memory_channel[Any](math.inf)
            segment.set_result(self._playout.synthesize_now(run, text_receive, audio_receive))

        try:
            async with tool_send:
                async for item in output:
                    match item:
                        case ResponseAudio():
                            if text_send is None:
                                open_segment(with_audio=True)
                            heard.add(item.item_id, item.frame.duration)
                            if audio_send is not None:
                                audio_send.send_nowait(item.frame)
                        case ResponseTranscriptDelta() | ResponseTextDelta():
                            if text_send is None:
                                open_segment(with_audio=isinstance(item, ResponseTranscriptDelta))
                            assert text_send is not None
                            text_send.send_nowait(item.delta)
                        case RealtimeFunctionCall():
                            tool_send.send_nowait(
                                ToolCallChunk(name=item.name, arguments=item.arguments, call_id=item.call_id)
                            )
                        case ResponseDone():
                            self._report(run, item)
        finally:
            for channel in (text_send, audio_send):
                if channel is not None:
                    channel.close()
            if not segment.done():
                segment.set_result(None)

    def _report(self, run: SpeechRun, done: ResponseDone) -> None:
        usage = done.usage
        metrics: dict[str, Any] = {}
        if done.first_audio_delay is not None:
            metrics["ttft"] = done.first_audio_delay
        if usage is not None:
            metrics.update(
                prompt_tokens=usage.input_tokens,
                completion_tokens=usage.output_tokens,
                prompt_cached_tokens=usage.input_cached_tokens,
                input_audio_tokens=usage.input_audio_tokens,
                output_audio_tokens=usage.output_audio_tokens,
            )
        self._bus.emit(
            MetricsCollected(
                kind="realtime", metrics=metrics, speech_id=run.handle.id, provider=self._stage.llm_for(run.owner)
            )
        )

    def _answer_tools(self, run: SpeechRun, outcomes: list[ToolOutcome], withdrawn: set[str]) -> None:
        """The outputs go in the history and back to the model (not those of
        calls it withdrew); the model's reply to them is the same speech's
        next step (as a pipeline's is)."""
        handle = run.handle
        wanted = [outcome for outcome in outcomes if outcome.call.call_id not in withdrawn]
        if handle.interrupted:
            self._history.commit_interrupted_tools(outcomes, handle, run.owner)
            for outcome in wanted:
                self._link.send_nowait(
                    RealtimeToolOutput(call_id=outcome.call.call_id, output=outcome.output.output, reply=False)
                )
            return
        end = self._tools.settle(run, outcomes, None, accepting=self._speeches.may_start("tool_step"))
        if end.handoff is not None:
            self._state.count_handoff(+1)
            self._session_inbox.send_nowait(HandoffRequested(agent=end.handoff))
        self._history.commit_tool_items(outcomes, handle, run.owner)
        reply = any(outcome.reply_required for outcome in wanted)
        for index, outcome in enumerate(wanted):
            last = index == len(wanted) - 1
            self._link.send_nowait(
                RealtimeToolOutput(call_id=outcome.call.call_id, output=outcome.output.output, reply=reply and last)
            )
        if reply:
            answer: Future[RealtimeResponse] = Future()
            self._pending.append(answer)
            self._speeches.spawn(run, self._speak(run, answer))
            self._speeches.schedule(handle, force=True)
