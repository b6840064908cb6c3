"""A reply step: one LLM request of a speech, played, with its tools run as they are parsed."""

from __future__ import annotations

import math
from typing import Any, Awaitable, Callable

import attrs
import trio

from ..._sync import Future
from ...chat import ChatContext, ChatMessage
from ...errors import describe_error
from ...events import ErrorEvent, EventBus, MetricsCollected
from ...faults import FAULTS
from ...messages import DiscardSegment, ProviderFailed
from ...providers.base import LLM, LLMChunk, ToolCallChunk, UsageChunk, check_llm_chunk
from ...retry import retrying, stream_attempt
from ...speech import SpeechHandle, status_of
from ...state import SessionState
from ...tools import FunctionTool, ToolOutcome
from .agent_state import AgentStatus
from .history import History
from .playout import Playout
from .speeches import SpeechRun, SpeechScheduler
from .stage import Stage
from .tool_runner import ToolCalls, ToolRunner


@attrs.frozen
class ReplyRequest:
    """What one reply step reads and may do."""

    chat_ctx: ChatContext
    tools: list[FunctionTool]
    tool_choice: str | None
    # The user's message this replies to: committed when the speech is scheduled.
    new_message: ChatMessage | None = None
    # For this step only (a follow-up step reads the context without them).
    instructions: str | None = None
    # A speech interrupted just before this reply was asked for: what was
    # heard of it is recorded before this reply's user message goes in.
    cut_off: SpeechHandle | None = None


@attrs.frozen
class ReplyResult:
    """A step whose LLM called tools: their outcomes, for the step that follows."""

    request: ReplyRequest
    # The step's context (the user message included, the instructions not).
    ctx: ChatContext
    outcomes: list[ToolOutcome]
    # The last event number before the step: what the context gained since.
    step_started: int


class ReplyStep:
    """Runs one reply step (docs/behaviour.md, "Replies and tool outputs").

    :meth:`run` returns the tool outcomes of the step, or None when it
    called no tool (or never got to): the actor decides what follows.
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
        self._speaker = speaker_inbox
        self._session_inbox = session_inbox

    async def run(self, run: SpeechRun, request: ReplyRequest) -> ReplyResult | None:
        handle, status = run.handle, run.status
        ctx = request.chat_ctx.copy()
        step_started = self._bus.last_seq
        new_message = request.new_message
        if new_message is not None:
            ctx.insert(new_message)
        step_ctx = ctx
        if request.instructions:
            step_ctx = ctx.copy()
            step_ctx.add_message(role="system", content=request.instructions)
        llm_send, llm_receive = trio.open_memory_channel[LLMChunk](math.inf)
        tool_send, tool_receive = trio.open_memory_channel[ToolCallChunk](math.inf)
        segment: Future[str | None] = Future()
        calls = ToolCalls()
        played: str | None = None
        # The LLM and the routing of its output stop at once on interruption;
        # tool calls already running are awaited, never abandoned.
        generation = (trio.CancelScope(), trio.CancelScope())
        try:
            async with trio.open_nursery() as step:
                status.bind(generation[0], "llm")
                status.bind(generation[1], "routing")
                step.start_soon(
                    _within,
                    generation[0],
                    self._run_llm,
                    run,
                    self._stage.llm_for(run.owner),
                    step_ctx,
                    request.tools,
                    request.tool_choice,
                    llm_send,
                )
                with trio.CancelScope() as waiting:
                    status.bind(waiting, "scheduling")
                    await status.scheduled.wait_value(True)
                    # A speech cut off just before this reply was asked for records
                    # what was heard first, so the history and its events agree.
                    if request.cut_off is not None:
                        await status_of(request.cut_off).step_played.wait_value(True)
                status.unbind(waiting)
                if new_message is not None and handle.scheduled:
                    self._history.commit(new_message, owner=run.owner)
                if handle.interrupted:
                    step.cancel_scope.cancel()
                    return None
                step.start_soon(self._produce, generation[1], run, llm_receive, tool_send, segment)
                self._agent_status.set("thinking")
                if not await self._speeches.wait_authorized(run):
                    step.cancel_scope.cancel()
                    return None
                reply_seq = self._bus.next_seq()
                step.start_soon(self._tools.execute, run, tool_receive, request.tools, request.tool_choice, calls)
                with trio.CancelScope() as waiting:
                    status.bind(waiting, "first_text")
                    await segment.wait()
                status.unbind(waiting)
                played = segment.result() if segment.done() else None
                result = await self._playout.play(run, played) if played is not None else None
                if result is not None and result.text:
                    self._history.commit(
                        ChatMessage(role="assistant", content=result.text, interrupted=result.interrupted),
                        seq=reply_seq,
                        owner=run.owner,
                        speech=handle,
                    )
                self._playout.after(
                    run,
                    tools_pending=not calls.done and not handle.interrupted,
                    had_output=bool(calls.done and calls.outcomes),
                )
                run.step_played()
                if not calls.done:
                    await self._wait_for_tools(run, calls)
        except BaseException:
            # Cancelled with the session (its close deadline): the tools that
            # began still get their call and an output in the history.
            abandoned = calls.finished()
            if abandoned and not FAULTS.forget_tools_abandoned_at_close:
                self._history.commit_interrupted_tools(abandoned, handle, run.owner)
            raise
        finally:
            for scope in generation:
                status.unbind(scope)
            if segment.done() and segment.result() is not None and played is None:
                self._speaker.send_nowait(DiscardSegment(segment.result()))
        done = calls.finished()
        if not done:
            return None
        return ReplyResult(request=request, ctx=ctx, outcomes=done, step_started=step_started)

    async def _wait_for_tools(self, run: SpeechRun, calls: ToolCalls) -> None:
        await wait_for_tools(run, calls, self._speeches, self._agent_status)

    async def _run_llm(
        self,
        run: SpeechRun,
        llm: LLM | None,
        ctx: ChatContext,
        tools: list[FunctionTool],
        tool_choice: str | None,
        send: trio.MemorySendChannel[LLMChunk],
    ) -> None:
        async with send:
            if llm is None:
                return
            conn_options = self._stage.options.conn_options.llm_conn_options
            started = trio.current_time()
            first: float | None = None
            delivered = False
            usage = UsageChunk()

            async def deliver(chunk: LLMChunk) -> None:
                nonlocal delivered, usage, first
                check_llm_chunk(chunk)
                if first is None:
                    first = trio.current_time()
                if isinstance(chunk, UsageChunk):
                    usage = chunk
                    return
                delivered = True
                await send.send(chunk)

            def on_error(error: BaseException, recoverable: bool) -> None:
                self._bus.emit(
                    ErrorEvent(source="llm", message=describe_error(error), recoverable=recoverable, error=error)
                )

            try:
                await retrying(
                    lambda: stream_attempt(
                        lambda out: llm.chat(
                            chat_ctx=ctx, tools=tools, tool_choice=tool_choice, output=out, conn_options=conn_options
                        ),
                        deliver,
                        timeout=conn_options.timeout,
                        what="the LLM",
                    ),
                    conn_options=conn_options,
                    on_error=on_error,
                    delivered=lambda: delivered,
                )
            except Exception as error:
                run.status.error = error
                await self._session_inbox.send(ProviderFailed(source="llm", error=error))
                return
            if first is not None:
                metrics: dict[str, Any] = {"ttft": first - started, "duration": trio.current_time() - started}
                if usage.prompt_tokens or usage.completion_tokens:
                    metrics["prompt_tokens"] = usage.prompt_tokens
                    metrics["completion_tokens"] = usage.completion_tokens
                    metrics["prompt_cached_tokens"] = usage.prompt_cached_tokens
                self._bus.emit(MetricsCollected(kind="llm", metrics=metrics, speech_id=run.handle.id, provider=llm))

    async def _produce(
        self,
        scope: trio.CancelScope,
        run: SpeechRun,
        llm_receive: trio.MemoryReceiveChannel[LLMChunk],
        tool_send: trio.MemorySendChannel[ToolCallChunk],
        segment: Future[str | None],
    ) -> None:
        """Route the LLM stream: text to the Speaker's segment, calls to the tool runner."""
        text_send: trio.MemorySendChannel[str] | None = None
        with scope:
            async with llm_receive, tool_send:
                try:
                    async for chunk in llm_receive:
                        if isinstance(chunk, ToolCallChunk):
                            tool_send.send_nowait(chunk)
                            continue
                        if not chunk:
                            continue
                        if text_send is None:
                            text_send, text_receive = trio.open_memory_channel[str](math.inf)
                            segment.set_result(await self._playout.synthesize(run, text_receive))
                        text_send.send_nowait(chunk)
                finally:
                    if text_send is not None:
                        text_send.close()
        if not segment.done():
            segment.set_result(None)


async def wait_for_tools(
    run: SpeechRun, calls: ToolCalls, speeches: SpeechScheduler, agent_status: AgentStatus
) -> None:
    """The speech played; its tools still run (the agent stays 'thinking')."""
    background = speeches.background
    background.add(run.handle)
    agent_status.tools_running(+1)
    try:
        await calls.done.wait_value(True)
    finally:
        background.discard(run.handle)
        agent_status.tools_running(-1)


async def _within(scope: trio.CancelScope, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
    with scope:
        await fn(*args)
