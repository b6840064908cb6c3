"""Planner: owns the conversation and decides what the agent says and when.

It holds the chat history, the current agent, the speech queue and the agent
state. One scheduling loop authorizes one speech step at a time (priority,
then FIFO; ``min_consecutive_speech_delay`` between them). Every speech runs
in a task of the Planner's nursery:

* a reply step starts its LLM at once, commits the user message when the
  speech is scheduled, starts synthesis, waits for authorization (and, when it
  may be interrupted, for the user to be silent), runs tool calls as soon as
  they are parsed, plays its audio through the Speaker and commits what was
  heard;
* tool outputs are committed with their calls in one step, whatever happens
  to the speech (played, interrupted, handed off); a follow-up step runs on the
  same handle when an output needs a reply, ``max_tool_steps`` times, then
  once more with ``tool_choice="none"`` so the agent never goes silent;
* an AgentTask awaited by a tool or hook becomes the current agent until it
  completes (a stack: tasks may nest); the awaiting speech is protected from
  the user meanwhile, and is not counted as work a run waits for.

Items go into the context of the agent they belong to (the one a speech was
made for), not whichever agent is current when they are committed: a tool
that finishes after a hand-off still answers in its own agent's context.

User code (hooks and tools) runs here, never while anything is held that
another actor needs; the Session bounds it with the close deadline.
"""

from __future__ import annotations

import collections
import contextvars
import itertools
import logging
import math
import re
from typing import TYPE_CHECKING, Any, AsyncIterable, Awaitable, Callable, Sequence

import attrs
import trio

from .._sync import Flag, Future
from ..agent import INSTRUCTIONS_ID, Agent, AgentTask, AgentTaskCancelled, CarryHistory, carry_over
from ..chat import AgentHandoff, ChatContext, ChatItem, ChatMessage, FunctionCall
from ..errors import StopResponse, describe_error
from ..events import (
    AgentFalseInterruption,
    AgentState,
    AgentStateChanged,
    ConversationItemAdded,
    ErrorEvent,
    EventBus,
    FunctionToolsExecuted,
    MetricsCollected,
)
from ..faults import FAULTS
from ..messages import (
    ActivityChanged,
    AgentSpeech,
    EndOfTurnPending,
    PausePlayout,
    ResumePlayout,
    UserTurnExceeded,
    DiscardSegment,
    DrainActivity,
    ErrorCountReset,
    GenerateReply,
    HandoffRequested,
    Interrupt,
    OptionsChanged,
    PlannerMessage,
    PlayoutResult,
    PlayoutStalled,
    PlaySegment,
    PreemptiveTranscript,
    ProviderFailed,
    RunAgentTask,
    Say,
    StartActivity,
    SynthesizeSegment,
    UserActivity,
    UserInterrupted,
    UserTurnCompleted,
)
from ..options import SessionOptions
from ..providers.base import LLM, LLMChunk, ToolCallChunk, UsageChunk, check_llm_chunk
from ..retry import retrying, stream_attempt
from ..speech import SpeechHandle, SpeechQueue, current_tool_speech
from ..state import SessionState
from ..tools import (
    FunctionTool,
    RunContext,
    ToolOutcome,
    flatten_tools,
    interrupted_outcome,
    outcome_from_error,
    outcome_from_result,
    rejected_outcome,
    unknown_function_outcome,
)

if TYPE_CHECKING:
    from ..session import AgentSession

logger = logging.getLogger("voxtrio.planner")

TOOL_CANCELLED_OUTPUT = "the tool was cancelled: the session closed before it returned"
TOOL_CHOICE_NONE_OUTPUT = "tool calls are not allowed in this step (tool_choice is 'none')"
# Preemptive generation gives up on very long user turns and after a few tries.
PREEMPTIVE_MAX_SPEECH = 10.0
PREEMPTIVE_MAX_RETRIES = 3

# The agent on whose behalf user code runs (set for tools, on_enter and
# on_exit: the places an AgentTask may be awaited from), and the Planner task
# it runs in.
current_caller: contextvars.ContextVar[Agent | None] = contextvars.ContextVar(
    "voxtrio_current_caller", default=None
)
current_worker: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "voxtrio_current_worker", default=None
)


@attrs.define(eq=False)
class _TaskFrame:
    task: AgentTask[Any]
    parent: Agent
    finished: Flag = attrs.Factory(Flag)


class Planner:
    def __init__(
        self,
        *,
        session: AgentSession,
        bus: EventBus,
        state: SessionState,
        options: SessionOptions,
        llm: LLM | None,
        speaker_inbox: trio.MemorySendChannel[Any],
        turn_inbox: trio.MemorySendChannel[Any] | None,
        session_inbox: trio.MemorySendChannel[Any],
        session_tools: Sequence[FunctionTool] = (),
        can_pause: bool = False,
    ) -> None:
        self._session = session
        self._bus = bus
        self._state = state
        self._options = options
        self._llm = llm
        self._speaker = speaker_inbox
        self._turn = turn_inbox
        self._session_inbox = session_inbox
        self._session_tools = list(session_tools)
        self.inbox, self._inbox = trio.open_memory_channel[PlannerMessage](math.inf)
        self._queue = SpeechQueue()
        self._agent: Agent | None = None
        self._nursery: trio.Nursery | None = None
        self._segment_ids = itertools.count(1)
        self._speech_tasks: dict[SpeechHandle, int] = {}
        self._background: set[SpeechHandle] = set()
        self._tasks_running = 0
        self._tasks_idle = Flag(True)
        # User turns take their place in the history in the order they ended:
        # each waits for the one before it (which may wait for a speech and its
        # tools). The head of the queue is the turn being handled.
        self._turn_queue: collections.deque[trio.Event] = collections.deque()
        # The queued turns' messages, in the order the turns ended, until each
        # is handled. If the close deadline cancels turns still waiting, the
        # session is closing and they are committed then, in that order: a
        # user's words are never lost.
        self._unhandled_turns: dict[trio.Event, ChatMessage] = {}
        self._turn_generation = 0
        self._running_tools = 0
        self._can_pause = can_pause
        self._pause: _Pause | None = None
        self._false_interruption_timer: trio.CancelScope | None = None
        self._end_of_turn_pending = False
        self._resume_deferred = False
        self._preemptive: _Preemptive | None = None
        self._preemptive_attempts = 0
        self._turns_blocked = False
        self._exits: dict[Agent, Flag] = {}  # on_exit started (true once it returned)
        self._user_code_ids = itertools.count(1)
        self._worker_ids = itertools.count(1)
        self._parked: dict[int, int] = {}
        self._task_stack: list[_TaskFrame] = []
        self._task_requests: list[RunAgentTask] = []
        self._switching = Flag(False)

    # -- public-facing helpers used by AgentSession (called from the same thread) --

    @property
    def agent(self) -> Agent | None:
        return self._agent

    def resolved_allow_interruptions(self) -> bool:
        if self._agent is None:
            return self._options.allow_interruptions
        return bool(self._agent.override("allow_interruptions", self._options.allow_interruptions))

    def llm_available(self) -> bool:
        return self._resolved_llm() is not None

    # -- the actor ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._run(task_status)
        finally:
            if self._state.closing:
                for message in self._unhandled_turns.values():
                    if message.content:
                        self._commit(message)
            self._unhandled_turns.clear()

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._schedule)
            task_status.started()
            while True:
                self._handle(await self._inbox.receive())
                # Messages posted together (say, an API call followed by another at
                # the same instant) are handled together, before any other task
                # runs: what they mean does not depend on task scheduling.
                while True:
                    try:
                        message = self._inbox.receive_nowait()
                    except trio.WouldBlock:
                        break
                    self._handle(message)

    def _handle(self, message: PlannerMessage) -> None:
        if isinstance(message, PlayoutStalled):
            self._on_playout_stalled(message)
            return
        if isinstance(message, (Say, GenerateReply)):
            # Spawned below, the speech counts as planner work from here on.
            self._state.count_posted_speech(-1)
        if isinstance(message, Say):
            # Synthesis is requested now, so TTS requests keep the order of the calls.
            handle = message.handle
            handle._owner = self._agent
            text_send, text_receive = trio.open_memory_channel[str](math.inf)
            segment_id = f"{handle.id}/{next(self._segment_ids)}"
            self._speaker.send_nowait(
                SynthesizeSegment(
                    segment_id=segment_id,
                    speech_id=handle.id,
                    text=text_receive,
                    audio=message.audio,
                    tts=self._resolved_tts(handle),
                )
            )
            self._spawn(handle, self._say(message, segment_id, text_send))
            self._schedule_speech(handle)
        elif isinstance(message, GenerateReply):
            self._start_reply(message)
        elif isinstance(message, Interrupt):
            self._interrupt_all(force=message.force, reply=message.reply)
        elif isinstance(message, UserTurnCompleted):
            if self._turns_blocked:
                if self._state.closing and message.transcript:
                    self._commit_at_close(ChatMessage(role="user", content=message.transcript))
                return
            self._turn_generation += 1
            place = self._queue_turn(
                ChatMessage(role="user", content=message.transcript, metrics=dict(message.metrics))
            )
            self._start_task(self._user_turn(message, self._turn_generation, place), "user_turn")
        elif isinstance(message, UserInterrupted):
            self._interrupt_by_user(message.reason)
        elif isinstance(message, UserActivity):
            self._on_user_activity(message.speaking)
        elif isinstance(message, EndOfTurnPending):
            self._on_end_of_turn_pending(message)
        elif isinstance(message, PreemptiveTranscript):
            self._preempt(message)
        elif isinstance(message, UserTurnExceeded):
            self._on_user_turn_exceeded(message)
        elif isinstance(message, StartActivity):
            self._start_activity(message)
        elif isinstance(message, DrainActivity):
            assert self._nursery is not None
            self._nursery.start_soon(self._drain, message)
        elif isinstance(message, OptionsChanged):
            self._options = message.options
        elif isinstance(message, RunAgentTask):
            self._request_agent_task(message)
        elif isinstance(message, _StopAccepting):
            self._state.accepting_speech = False
            message.reply.set_result(None)
        elif isinstance(message, _ScheduleSpeech):
            self._schedule_speech(message.handle)

    # -- tasks and handles ----------------------------------------------------------

    def _start_task(self, coroutine: Awaitable[None], name: str) -> None:
        assert self._nursery is not None
        self._tasks_running += 1
        self._tasks_idle.clear()
        self._update_busy()
        worker = next(self._worker_ids)

        async def wrapper() -> None:
            current_worker.set(worker)
            try:
                await coroutine
            finally:
                self._tasks_running -= 1
                self._parked.pop(worker, None)
                if self._tasks_running == 0:
                    self._tasks_idle.set()
                self._update_busy()

        self._nursery.start_soon(wrapper, name=name)

    def _park(self, worker: int | None, delta: int) -> None:
        """A task waits for (or stops waiting for) an AgentTask that waits for the user."""
        if worker is None:
            return
        self._parked[worker] = self._parked.get(worker, 0) + delta
        self._update_busy()

    def _update_busy(self) -> None:
        parked = sum(1 for count in self._parked.values() if count > 0)
        self._state.planner_busy = self._tasks_running - parked
        self._state.update_idle()

    def _spawn(self, handle: SpeechHandle, coroutine: Awaitable[None]) -> None:
        """Run one task of a speech; the handle is done when its last task ends."""
        if handle._owner is None:
            handle._owner = self._agent
        self._speech_tasks[handle] = self._speech_tasks.get(handle, 0) + 1

        async def speech_task() -> None:
            error: BaseException | None = None
            try:
                await coroutine
            except Exception as exc:  # a bug in a step must not take the session down
                logger.exception("speech %s failed", handle.id)
                error = exc
                self._bus.emit(
                    ErrorEvent(
                        source="session",
                        message=f"speech {handle.id} failed: {describe_error(exc)}",
                        recoverable=True,
                        error=exc,
                    )
                )
            finally:
                remaining = self._speech_tasks[handle] - 1
                if remaining:
                    self._speech_tasks[handle] = remaining
                else:
                    del self._speech_tasks[handle]
                    handle._mark_done(error)
                    self._on_speech_task_done()

        self._start_task(speech_task(), f"speech {handle.id}")

    def _schedule_speech(self, handle: SpeechHandle, *, force: bool = False) -> None:
        if not self._state.accepting_speech and not force:
            handle.interrupt(force=True)
            return
        self._queue.push(handle)
        handle._mark_scheduled()

    async def _schedule(self) -> None:
        last_playout_end = -math.inf
        while True:
            await self._queue.wait_nonempty()
            handle = self._queue.pop()
            if handle.done():
                continue
            self._set_current(handle)
            delay = self._min_consecutive_speech_delay() - (trio.current_time() - last_playout_end)
            if delay > 0:
                with trio.CancelScope() as waiting:
                    handle._bind_scope(waiting)
                    await trio.sleep(delay)
                handle._unbind_scope(waiting)
                if handle.done() or handle.interrupted:
                    self._set_current(None)
                    await handle._wait_for_generation()
                    continue
            handle._authorize()
            await handle._wait_for_generation()
            if self._pause is not None and self._pause.handle is handle:
                self._clear_pause()
            self._set_current(None)
            last_playout_end = trio.current_time()

    def _set_current(self, handle: SpeechHandle | None) -> None:
        self._state.current_speech = handle
        self._notify_turn()

    def _min_consecutive_speech_delay(self) -> float:
        value = self._options.min_consecutive_speech_delay
        return float(self._agent.override("min_consecutive_speech_delay", value)) if self._agent else value

    # -- agent state -------------------------------------------------------------------

    def _set_agent_state(self, new: AgentState) -> None:
        old = self._state.agent_state
        if old == new:
            return
        self._state.agent_state = new
        if FAULTS.think_silently and new == "thinking":
            return
        self._bus.emit(AgentStateChanged(old_state=old, new_state=new))
        if new == "speaking":
            self._session_inbox.send_nowait(ErrorCountReset(sources=("llm", "tts")))
        self._notify_turn()

    def _notify_turn(self) -> None:
        if self._turn is None:
            return
        current = self._state.current_speech
        self._turn.send_nowait(
            AgentSpeech(
                state=self._state.agent_state,
                interruptible=current.allow_interruptions if current is not None else True,
                has_current_speech=current is not None and not current.done(),
                interrupted=current is not None and current.interrupted,
                tools_running=self._running_tools > 0,
            )
        )

    def _no_pending_speech(self) -> bool:
        current = self._state.current_speech
        return not self._queue and (current is None or current.done())

    def _on_speech_task_done(self) -> None:
        if self._no_pending_speech() and self._state.agent_state in ("thinking", "speaking"):
            self._set_agent_state("thinking" if self._tools_to_answer() else "listening")

    def _tools_to_answer(self) -> bool:
        """A tool runs whose speech will go on when it returns (not an
        interrupted one's: its output only joins the history)."""
        return any(not handle.interrupted for handle in self._background)

    # -- activity lifecycle ------------------------------------------------------------

    def _start_activity(self, message: StartActivity) -> None:
        agent = message.agent
        self._exits.pop(agent, None)  # an agent handed back to exits again later
        self._become(agent, carry_history=message.carry_history)
        self._state.accepting_speech = True
        self._turns_blocked = False
        if self._state.agent_state == "initializing":
            self._set_agent_state("listening")
        message.reply.set_result(None)
        self._start_task(self._run_hook(f"{agent.id}.on_enter", agent.on_enter, agent), "on_enter")

    def _become(self, agent: Agent, *, carry_history: CarryHistory | None = None) -> None:
        """Make ``agent`` current: its instructions, what it carries over, the hand-off item."""
        old = self._agent
        self._agent = agent
        self.commit_handoff(old, agent)
        agent._bind(self._session)
        agent._chat_ctx.remove(INSTRUCTIONS_ID)
        if agent.instructions:
            agent._chat_ctx.insert(
                ChatMessage(
                    role="system", content=agent.instructions, id=INSTRUCTIONS_ID, seq=-math.inf
                )
            )
        if old is not None:
            carry_over(old._chat_ctx, agent._chat_ctx, carry_history or agent.carry_history)
        self._state.current_agent = agent
        if self._turn is not None:
            # Its turn-taking overrides apply from now on (an AgentTask's too).
            self._turn.send_nowait(ActivityChanged(agent))

    async def _drain(self, message: DrainActivity) -> None:
        """Finish the activity: on_exit, then every speech and tool step ends.

        The drain task itself is not counted in ``_tasks_running``; the Session
        bounds the whole wait with its close deadline.
        """
        self._turns_blocked = True
        # No turn will use a reply prepared ahead any more: a drain cancels it.
        self._drop_preemptive()
        if message.interrupt:
            self._interrupt_all(force=True, reply=None)
        await self._unwind_agent_tasks("the session is closing" if self._state.closing else "handing off")
        agent = self._agent
        if message.run_on_exit and agent is not None:
            exited = self._exits.get(agent)
            if exited is None:
                exited = self._exits[agent] = Flag()
                try:
                    await self._run_hook(f"{agent.id}.on_exit", agent.on_exit, agent)
                finally:
                    exited.set()
            else:
                # A close during a hand-off: the hand-off's on_exit is already
                # running; the close waits for it too (under its own deadline).
                await exited.wait_value(True)
        # Through the inbox: speeches on_exit asked for are queued before the door closes.
        closed: Future[None] = Future()
        self.inbox.send_nowait(_StopAccepting(closed))
        await closed
        await self._tasks_idle.wait_value(True)
        message.reply.set_result(None)

    # -- agent tasks: inline sub-agents ----------------------------------------------

    def _request_agent_task(self, request: RunAgentTask) -> None:
        if request.handle is not None:
            request.handle._hold_interruptions()
        # The caller waits for the user from now on: a run need not wait for it.
        self._park(request.worker, +1)
        if self._turns_blocked or not self._state.accepting_speech:
            # A task cannot start on an agent that is leaving (the reference's PR #7268).
            self._answer_task_request(
                request,
                error=AgentTaskCancelled(
                    f"AgentTask {request.task.id} cannot start: the agent is handing off "
                    "or the session is closing",
                    by_session=True,
                ),
            )
            return
        self._task_requests.append(request)
        self._start_next_task()

    def _answer_task_request(
        self, request: RunAgentTask, *, result: Any = None, error: BaseException | None = None
    ) -> None:
        if request.handle is not None:
            request.handle._release_interruptions()
        self._park(request.worker, -1)
        if error is not None:
            request.reply.set_exception(error)
        else:
            request.reply.set_result(result)

    def _set_switching(self, switching: bool) -> None:
        self._switching.set(switching)
        self._state.agent_switching = switching
        self._state.update_idle()

    def _start_next_task(self) -> None:
        """Start the first waiting task whose caller is the current agent.

        A task awaited by the current agent starts at once (so a task may nest
        one of its own); one awaited by a paused agent waits until that agent
        is current again (parallel awaits run one after the other).
        """
        assert self._nursery is not None
        if self._switching:
            return
        for request in self._task_requests:
            if request.caller is self._agent:
                self._task_requests.remove(request)
                self._set_switching(True)
                self._nursery.start_soon(self._run_agent_task, request, name=f"agent task {request.task.id}")
                return

    async def _run_agent_task(self, request: RunAgentTask) -> None:
        task, parent = request.task, request.caller
        frame = _TaskFrame(task=task, parent=parent)
        self._task_stack.append(frame)
        try:
            self._become(task)
            self._set_switching(False)
            # From the instant it completes the task is being switched away from,
            # before this task gets to run again: a run must not see an idle gap.
            task._outcome.add_done_callback(lambda _: self._set_switching(True))
            self._start_task(self._run_hook(f"{task.id}.on_enter", task.on_enter, task), "on_enter")
            await task._outcome.settled()
            # What the task still says (the reply to the tool that completed it) is its own.
            await self._wait_for_speeches_of(task)
            with trio.move_on_after(self._options.close_timeout) as deadline:
                await self._run_hook(f"{task.id}.on_exit", task.on_exit, task)
            if deadline.cancelled_caught:
                self._bus.emit(
                    ErrorEvent(
                        source="agent",
                        message=f"{task.id}.on_exit did not return within close_timeout; cancelled",
                        recoverable=True,
                    )
                )
            parent._chat_ctx.merge(
                task._chat_ctx, exclude_function_calls=not task.preserve_function_call_history
            )
            self._task_stack.remove(frame)
            self._become(parent)
        finally:
            if frame in self._task_stack:
                self._task_stack.remove(frame)
            error = task._outcome.exception() if task._outcome.done() else AgentTaskCancelled(
                f"AgentTask {task.id} ended without a result", by_session=True
            )
            result = None if error is not None else task._outcome.result()
            self._answer_task_request(request, result=result, error=error)
            # Tasks its own tools asked for and never got to run end with it.
            for orphan in [r for r in self._task_requests if r.caller is task]:
                self._task_requests.remove(orphan)
                self._answer_task_request(
                    orphan,
                    error=AgentTaskCancelled(
                        f"AgentTask {orphan.task.id} cannot start: {task.id} has finished",
                        by_session=True,
                    ),
                )
            frame.finished.set()
            self._set_switching(False)
            self._start_next_task()

    async def _wait_for_speeches_of(self, agent: Agent) -> None:
        while True:
            pending = [handle for handle in self._speech_tasks if handle._owner is agent]
            if not pending:
                return
            await pending[0]._done.wait_value(True)

    async def _unwind_agent_tasks(self, why: str) -> None:
        """End every running AgentTask, innermost first, and every waiting one."""
        for request in list(self._task_requests):
            self._task_requests.remove(request)
            self._answer_task_request(
                request,
                error=AgentTaskCancelled(f"AgentTask {request.task.id} is cancelled: {why}", by_session=True),
            )
        while self._task_stack:
            frame = self._task_stack[-1]
            frame.task._cancel_by_session(why)
            await frame.finished.wait_value(True)

    async def _run_hook(
        self, name: str, hook: Callable[[], Awaitable[None]], agent: Agent | None = None
    ) -> None:
        """Run on_enter or on_exit: user code that may await an AgentTask."""
        token = current_caller.set(agent)
        try:
            await self._run_user_code(name, hook)
        finally:
            current_caller.reset(token)

    async def _run_user_code(self, name: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run user code, publishing that it runs (the close deadline names it)."""
        key = next(self._user_code_ids)
        self._state.running_user_code[key] = name
        try:
            return await fn()
        except StopResponse:
            raise
        except Exception as error:
            logger.exception("%s raised", name)
            self._bus.emit(
                ErrorEvent(source="agent", message=f"{name} raised {error!r}", recoverable=True, error=error)
            )
            return None
        finally:
            del self._state.running_user_code[key]

    # -- history -------------------------------------------------------------------------

    def _commit(
        self,
        item: ChatItem,
        *,
        seq: int | None = None,
        emit: bool = True,
        owner: Agent | None = None,
        speech: SpeechHandle | None = None,
    ) -> None:
        """Put an item in its agent's context and the session history, in its place.

        Its place is ``seq`` if given, else the place it already reserved, else
        now. Its agent is ``owner`` (the agent a speech was made for) if given,
        else the current one. ``speech`` is the handle that produced the item
        (its ``chat_items``).
        """
        if speech is not None and item not in speech.chat_items:
            speech.chat_items.append(item)
        if FAULTS.flip_interrupted_on_assistant_messages and item.type == "message" and item.role == "assistant":
            item.interrupted = not item.interrupted
        if seq is not None:
            item.seq = seq
        elif item.seq == math.inf:
            item.seq = self._bus.next_seq()
        item.created_at = trio.current_time()
        agent = owner if owner is not None else self._agent
        if agent is not None:
            agent._chat_ctx.insert(item)
        self._state.history.insert(item)
        self._state.notify_committed(item)
        if emit:
            self._bus.emit(ConversationItemAdded(item=item))
        if FAULTS.commit_user_turns_twice and item.type == "message" and item.role == "user":
            again = ChatMessage(role="user", content=item.content)
            again.seq = self._bus.next_seq()
            self._state.history.insert(again)

    def commit_handoff(self, old: Agent | None, new: Agent) -> None:
        item = AgentHandoff(old_agent=old.id if old is not None else None, new_agent=new.id)
        item.seq = self._bus.next_seq()
        item.created_at = trio.current_time()
        self._state.history.insert(item)
        self._state.notify_committed(item, old, new)
        self._bus.emit(ConversationItemAdded(item=item))

    # -- interruptions -----------------------------------------------------------------------

    def _interrupt_all(self, *, force: bool, reply: Future[None] | None) -> None:
        interrupted: list[SpeechHandle] = []
        for handle in list(self._background):
            if force or handle.allow_interruptions:
                interrupted.append(handle.interrupt(force=True))
        current = self._state.current_speech
        if current is not None and not current.done():
            if force or current.allow_interruptions:
                interrupted.append(current.interrupt(force=True))
        for handle in self._queue.in_playout_order():
            if handle.done() or handle.interrupted:
                continue
            if not force and not handle.allow_interruptions:
                logger.warning(
                    "speech %s does not allow interruptions and will play; "
                    "use interrupt(force=True) to drop it too",
                    handle.id,
                )
                break
            interrupted.append(handle.interrupt(force=True))
        if reply is not None:
            self._start_task(self._resolve_when_done(interrupted, reply), "interrupt")

    async def _resolve_when_done(self, handles: list[SpeechHandle], reply: Future[None]) -> None:
        try:
            for handle in handles:
                await handle._done.wait_value(True)
        finally:
            # Also when the session closes first: its speeches are over then.
            if not reply.done():
                reply.set_result(None)

    def _interrupt_by_user(self, reason: str) -> None:
        """The user cuts in (path 1 of docs/behaviour.md, "Interruption"; Turn
        already applied its gates).

        Audio activity alone may be a false alarm (a cough, a backchannel): when
        the output can pause, the speech is paused and resumes if no words come
        within ``false_interruption_timeout`` (docs/behaviour.md, "False
        interruption"). Words end it for good.
        """
        current = self._state.current_speech
        if current is None or current.done() or current.interrupted or FAULTS.ignore_barge_in:
            return
        if not current.allow_interruptions:
            return
        self._cancel_false_interruption_timer()
        if reason == "transcript":
            current.interrupt()
            self._clear_pause()
            return
        if not self._pause_enabled():
            current.interrupt()
            return
        if self._pause is None:
            self._pause = _Pause(handle=current, state=self._state.agent_state)
            self._speaker.send_nowait(PausePlayout())
            # Paused while speaking or before it (still thinking), the agent
            # listens, as it does when the same cut-in interrupts for good.
            if self._state.agent_state in ("speaking", "thinking"):
                self._set_agent_state("listening")

    # -- false interruptions: one state machine, owned here ----------------------------

    def _pause_enabled(self) -> bool:
        return (
            self._can_pause
            and self._options.resume_false_interruption
            and self._options.false_interruption_timeout is not None
        )

    def _on_user_activity(self, speaking: bool) -> None:
        if speaking:
            self._cancel_false_interruption_timer()  # the pause stays
        elif self._pause is not None:
            self._start_false_interruption_timer()

    def _start_false_interruption_timer(self) -> None:
        self._cancel_false_interruption_timer()
        timeout = self._options.false_interruption_timeout
        assert timeout is not None and self._nursery is not None
        scope = trio.CancelScope(deadline=trio.current_time() + timeout)
        self._false_interruption_timer = scope
        self._nursery.start_soon(self._false_interruption_timeout, scope)

    def _cancel_false_interruption_timer(self) -> None:
        if self._false_interruption_timer is not None:
            self._false_interruption_timer.cancel()
            self._false_interruption_timer = None
        self._resume_deferred = False

    async def _false_interruption_timeout(self, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep_forever()
        if self._false_interruption_timer is not scope or scope.deadline > trio.current_time():
            return  # cancelled, not expired
        self._false_interruption_timer = None
        if self._end_of_turn_pending:
            self._resume_deferred = True  # the turn decides: a committed turn wins
        else:
            self._resume_after_false_interruption()

    def _on_end_of_turn_pending(self, message: EndOfTurnPending) -> None:
        self._end_of_turn_pending = message.pending
        if not message.pending and self._resume_deferred:
            self._resume_deferred = False
            # A committed turn interrupts the paused speech, unless turns are
            # blocked (a drain or hand-off drops it): then nothing would, so resume.
            if not message.committed or self._turns_blocked:
                self._resume_after_false_interruption()

    def _resume_after_false_interruption(self) -> None:
        pause = self._pause
        if pause is None:
            return
        resumed = not pause.handle.done() and not pause.handle.interrupted
        self._clear_pause()
        if resumed and pause.state in ("speaking", "thinking"):
            # Back to what it was doing: speaking, or preparing a reply that
            # has not played yet ('speaking' then comes with its first frame).
            self._set_agent_state(pause.state)
        self._bus.emit(AgentFalseInterruption(resumed=resumed))

    def _clear_pause(self) -> None:
        if self._pause is not None:
            self._pause = None
            self._speaker.send_nowait(ResumePlayout())
        self._cancel_false_interruption_timer()

    # -- say ---------------------------------------------------------------------------------

    async def _say(
        self, message: Say, segment_id: str, text_send: trio.MemorySendChannel[str]
    ) -> None:
        handle = message.handle
        result: PlayoutResult | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._feed_text, handle, message.text, text_send)
            if await self._wait_authorized(handle):
                reply_seq = self._bus.next_seq()
                result = await self._play(handle, segment_id)
            else:
                nursery.cancel_scope.cancel()
        if result is None:
            self._speaker.send_nowait(DiscardSegment(segment_id))
            return
        if result.text and message.add_to_chat_ctx:
            self._commit(
                ChatMessage(role="assistant", content=result.text, interrupted=result.interrupted),
                seq=reply_seq,
                owner=handle._owner,
                speech=handle,
            )
        self._after_playout(handle, tools_pending=False, had_output=False)
        handle._mark_generation_done()

    async def _feed_text(
        self, handle: SpeechHandle, text: str | AsyncIterable[str], send: trio.MemorySendChannel[str]
    ) -> None:
        """Pass say()'s text on. An application's iterable that fails, or yields
        something else than text, ends the text there, with an error event."""
        async with send:
            if isinstance(text, str):
                send.send_nowait(text)
                return
            try:
                async for chunk in text:
                    if not isinstance(chunk, str):
                        raise TypeError(f"it yielded {type(chunk).__name__} {chunk!r:.40}, not a string")
                    send.send_nowait(chunk)
            except Exception as error:
                self._bus.emit(
                    ErrorEvent(
                        source="agent",
                        message=f"say(): the text of {handle.id} failed: {describe_error(error)}",
                        recoverable=True,
                        error=error,
                    )
                )

    async def _wait_authorized(self, handle: SpeechHandle) -> bool:
        """Wait until the scheduler authorizes this step and, for an interruptible
        speech, the user is silent. False when the speech was interrupted first."""
        with trio.CancelScope() as waiting:
            handle._bind_scope(waiting)
            while True:
                await handle._wait_for_authorization()
                if not handle.allow_interruptions or self._state.user_silent:
                    break
                await self._state.user_silent.wait_value(True)
        handle._unbind_scope(waiting)
        if handle.interrupted:
            return False
        handle._clear_authorization()
        return True

    async def _play(self, handle: SpeechHandle, segment_id: str) -> PlayoutResult:
        started: Future[float | None] = Future()
        reply: Future[PlayoutResult] = Future()
        await self._speaker.send(
            PlaySegment(
                segment_id=segment_id,
                handle=handle,
                started=started,
                reply=reply,
                hold_while_user_speaks=self._state.user_silent if handle.allow_interruptions else None,
                on_stall=lambda stalled: self.inbox.send_nowait(PlayoutStalled(handle, stalled)),
            )
        )
        if await started is not None:
            self._set_agent_state("speaking")
        return await reply

    def _on_playout_stalled(self, message: PlayoutStalled) -> None:
        """The agent is 'speaking' only while its audio plays: while the speech's
        audio has run out (a stuck TTS) it is 'thinking' (the reference's #3418)."""
        if FAULTS.ignore_playout_stalls:
            return
        if self._state.current_speech is not message.handle or message.handle.done():
            return
        if message.stalled and self._state.agent_state == "speaking":
            self._set_agent_state("thinking")
        elif not message.stalled and self._state.agent_state == "thinking":
            self._set_agent_state("speaking")

    def _after_playout(self, handle: SpeechHandle, *, tools_pending: bool, had_output: bool) -> None:
        if had_output and not handle.interrupted:
            self._set_agent_state("thinking")
        elif self._state.agent_state == "speaking":
            # Another speech's tool still running keeps the agent thinking too
            # (a filler said from inside a slow tool).
            busy = tools_pending or self._tools_to_answer()
            self._set_agent_state("thinking" if busy else "listening")

    # -- generate_reply --------------------------------------------------------------------------

    def _tools(self) -> list[FunctionTool]:
        """The current agent's tools, then the session's (an agent's tool wins a name)."""
        agent_tools = self._agent.tool_items if self._agent else []
        return flatten_tools([*agent_tools, *self._session_tools])

    def _resolved_llm(self, handle: SpeechHandle | None = None) -> LLM | None:
        agent = handle._owner if handle is not None and handle._owner is not None else self._agent
        return agent.override("llm", self._llm) if agent else self._llm

    def _resolved_tts(self, handle: SpeechHandle) -> Any:
        agent = handle._owner if handle._owner is not None else self._agent
        return agent.override("tts", self._session.tts) if agent else self._session.tts

    def _start_reply(self, message: GenerateReply) -> None:
        tools = self._tools()
        if message.tools is not None:
            tools = [tool for tool in tools if tool.name in set(message.tools)]
        base = message.chat_ctx if message.chat_ctx is not None else self._agent_ctx()
        current = self._state.current_speech
        cut_off = None
        if current is not None and current.interrupted and not current._generation_done:
            cut_off = current
            if self._state.accepting_speech:
                self._set_agent_state("thinking")  # straight from speaking to the new reply
        self._spawn(
            message.handle,
            self._reply(
                message.handle,
                chat_ctx=base,
                tools=tools,
                tool_choice=message.tool_choice,
                new_message=message.user_message,
                instructions=message.instructions,
                cut_off=cut_off,
            ),
        )
        self._schedule_speech(message.handle)

    def _agent_ctx(self) -> ChatContext:
        return self._agent._chat_ctx if self._agent else ChatContext()

    async def _reply(
        self,
        handle: SpeechHandle,
        *,
        chat_ctx: ChatContext,
        tools: list[FunctionTool],
        tool_choice: str | None,
        new_message: ChatMessage | None = None,
        instructions: str | None = None,
        cut_off: SpeechHandle | None = None,
    ) -> None:
        """One LLM step of a speech (docs/behaviour.md, "Replies and tool outputs").

        ``cut_off`` is a speech interrupted just before this reply was asked for:
        it records what was heard before this reply's user message goes in.
        """
        ctx = chat_ctx.copy()
        step_started = self._bus.last_seq
        if new_message is not None:
            ctx.insert(new_message)
        # Instructions are for this step only: a tool follow-up step reads the
        # context without them, so it ends with the tool outputs it answers.
        step_ctx = ctx
        if instructions:
            step_ctx = ctx.copy()
            step_ctx.add_message(role="system", content=instructions)
        llm_send, llm_receive = trio.open_memory_channel[LLMChunk](math.inf)
        tool_send, tool_receive = trio.open_memory_channel[ToolCallChunk](math.inf)
        segment: Future[str | None] = Future()
        outcomes: list[ToolOutcome | None] = []
        tools_done = Flag()
        played: list[str] = []
        generation: list[trio.CancelScope] = []
        try:
            async with trio.open_nursery() as step:
                # The LLM and the routing of its output stop at once on interruption;
                # tool calls already running are awaited, never abandoned.
                generation = [trio.CancelScope(), trio.CancelScope()]
                for scope in generation:
                    handle._bind_scope(scope)
                step.start_soon(
                    _within,
                    generation[0],
                    self._run_llm,
                    handle,
                    self._resolved_llm(handle),
                    step_ctx,
                    tools,
                    tool_choice,
                    llm_send,
                )
                with trio.CancelScope() as waiting:
                    handle._bind_scope(waiting)
                    await handle._scheduled.wait_value(True)
                    # A speech cut off just before this reply was asked for records
                    # what was heard first, so the history and its events agree.
                    if cut_off is not None:
                        await cut_off._wait_for_generation()
                handle._unbind_scope(waiting)
                if new_message is not None and handle.scheduled:
                    self._commit(new_message, owner=handle._owner)
                if handle.interrupted:
                    step.cancel_scope.cancel()
                    return
                step.start_soon(self._produce, generation[1], handle, llm_receive, tool_send, segment)
                self._set_agent_state("thinking")
                if not await self._wait_authorized(handle):
                    step.cancel_scope.cancel()
                    return
                reply_seq = self._bus.next_seq()
                step.start_soon(
                    self._execute_tools, handle, tool_receive, tools, tool_choice, outcomes, tools_done
                )
                result = await self._play_reply(handle, segment, played)
                if result is not None and result.text:
                    self._commit(
                        ChatMessage(
                            role="assistant", content=result.text, interrupted=result.interrupted
                        ),
                        seq=reply_seq,
                        owner=handle._owner,
                        speech=handle,
                    )
                self._after_playout(
                    handle,
                    tools_pending=not tools_done and not handle.interrupted,
                    had_output=bool(tools_done and outcomes),
                )
                handle._mark_generation_done()
                if not tools_done:
                    await self._wait_for_tools(handle, tools_done)
        except BaseException:
            # Cancelled with the session (its close deadline): the tools that
            # began still get their call and an output in the history.
            abandoned = [outcome for outcome in outcomes if outcome is not None]
            if abandoned:
                self._record_abandoned_tools(handle, abandoned)
            raise
        finally:
            for scope in generation:
                handle._unbind_scope(scope)
            if segment.done() and segment.result() is not None and not played:
                self._speaker.send_nowait(DiscardSegment(segment.result()))
        done = [outcome for outcome in outcomes if outcome is not None]
        if done:
            self._finish_tool_step(handle, ctx, tools, tool_choice, done, step_started)

    async def _wait_for_tools(self, handle: SpeechHandle, tools_done: Flag) -> None:
        """The speech played; its tools still run (the agent stays 'thinking')."""
        self._background.add(handle)
        self._running_tools += 1
        self._notify_turn()
        try:
            await tools_done.wait_value(True)
        finally:
            self._background.discard(handle)
            self._running_tools -= 1
            self._notify_turn()

    async def _run_llm(
        self,
        handle: SpeechHandle,
        llm: LLM | None,
        ctx: ChatContext,
        tools: list[FunctionTool],
        tool_choice: str | None,
        send: trio.MemorySendChannel[LLMChunk],
    ) -> None:
        async with send:
            if llm is None:
                return
            conn_options = self._options.conn_options.llm_conn_options
            started = trio.current_time()
            first: list[float] = []
            delivered = False
            usage = UsageChunk()

            async def deliver(chunk: LLMChunk) -> None:
                nonlocal delivered, usage
                check_llm_chunk(chunk)
                if not first:
                    first.append(trio.current_time())
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
                            chat_ctx=ctx,
                            tools=tools,
                            tool_choice=tool_choice,
                            output=out,
                            conn_options=conn_options,
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
                handle._error = error
                await self._session_inbox.send(ProviderFailed(source="llm", error=error))
                return
            if first:
                metrics: dict[str, Any] = {
                    "ttft": first[0] - started,
                    "duration": trio.current_time() - started,
                }
                if usage.prompt_tokens or usage.completion_tokens:
                    metrics["prompt_tokens"] = usage.prompt_tokens
                    metrics["completion_tokens"] = usage.completion_tokens
                    metrics["prompt_cached_tokens"] = usage.prompt_cached_tokens
                self._bus.emit(MetricsCollected(kind="llm", metrics=metrics, speech_id=handle.id, provider=llm))

    async def _produce(
        self,
        scope: trio.CancelScope,
        handle: SpeechHandle,
        llm_receive: trio.MemoryReceiveChannel[LLMChunk],
        tool_send: trio.MemorySendChannel[ToolCallChunk],
        segment: Future[str | None],
    ) -> None:
        """Route the LLM stream: text to the Speaker's segment, calls to the tool executor."""
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
                            segment_id = f"{handle.id}/{next(self._segment_ids)}"
                            await self._speaker.send(
                                SynthesizeSegment(
                                    segment_id=segment_id,
                                    speech_id=handle.id,
                                    text=text_receive,
                                    tts=self._resolved_tts(handle),
                                )
                            )
                            segment.set_result(segment_id)
                        text_send.send_nowait(chunk)
                finally:
                    if text_send is not None:
                        text_send.close()
        if not segment.done():
            segment.set_result(None)

    async def _play_reply(
        self, handle: SpeechHandle, segment: Future[str | None], played: list[str]
    ) -> PlayoutResult | None:
        with trio.CancelScope() as waiting:
            handle._bind_scope(waiting)
            await segment.wait()
        handle._unbind_scope(waiting)
        segment_id = segment.result() if segment.done() else None
        if segment_id is None:
            return None
        played.append(segment_id)
        return await self._play(handle, segment_id)

    # -- tools ---------------------------------------------------------------------------------

    async def _execute_tools(
        self,
        handle: SpeechHandle,
        calls: trio.MemoryReceiveChannel[ToolCallChunk],
        tools: list[FunctionTool],
        tool_choice: str | None,
        outcomes: list[ToolOutcome | None],
        done: Flag,
    ) -> None:
        by_name = {tool.name: tool for tool in tools}
        try:
            async with trio.open_nursery() as nursery, calls:
                async for chunk in calls:
                    call = FunctionCall(name=chunk.name, arguments=chunk.arguments, call_id=chunk.call_id)
                    call.seq = self._bus.next_seq()
                    call.created_at = trio.current_time()
                    index = len(outcomes)
                    outcomes.append(None)
                    if tool_choice == "none":
                        # Answered, never run, and no reply asked for: this was the last round.
                        outcomes[index] = rejected_outcome(call, TOOL_CHOICE_NONE_OUTPUT)
                    elif chunk.name not in by_name:
                        outcomes[index] = unknown_function_outcome(call, list(by_name))
                    else:
                        nursery.start_soon(self._run_tool, handle, by_name[chunk.name], call, outcomes, index)
        finally:
            done.set()

    async def _run_tool(
        self,
        handle: SpeechHandle,
        tool: FunctionTool,
        call: FunctionCall,
        outcomes: list[ToolOutcome | None],
        index: int,
    ) -> None:
        context = RunContext(
            session=self._session, speech_handle=handle, function_call=call, agent=handle._owner
        )
        token = current_tool_speech.set(handle)
        caller_token = current_caller.set(handle._owner)
        key = next(self._user_code_ids)
        self._state.running_user_code[key] = f"tool {tool.name}"
        try:
            arguments = tool.parse_arguments(call.arguments)
            result = await tool.call(arguments, context)
        except Exception as error:
            if not isinstance(error, (StopResponse,)) and not _is_expected_tool_error(error):
                logger.exception("tool %s raised", tool.name)
            outcomes[index] = outcome_from_error(call, error)
        except BaseException:
            outcomes[index] = rejected_outcome(call, TOOL_CANCELLED_OUTPUT)
            raise
        else:
            outcomes[index] = outcome_from_result(call, result)
        finally:
            del self._state.running_user_code[key]
            current_tool_speech.reset(token)
            current_caller.reset(caller_token)

    def _finish_tool_step(
        self,
        handle: SpeechHandle,
        ctx: ChatContext,
        tools: list[FunctionTool],
        tool_choice: str | None,
        outcomes: list[ToolOutcome],
        step_started: int,
    ) -> None:
        if handle.interrupted:
            outcomes = [interrupted_outcome(outcome) for outcome in outcomes]
            self._emit_tools_executed(outcomes, handle, max_steps_reached=False)
            self._commit_tool_items(outcomes, handle)
            return
        max_steps_reached = handle.num_steps >= self._options.max_tool_steps + 1
        handle._next_step()
        self._emit_tools_executed(outcomes, handle, max_steps_reached=max_steps_reached)
        agents = [outcome.agent for outcome in outcomes if outcome.agent is not None]
        draining = not self._state.accepting_speech
        if len(agents) == 1:
            try:
                agents[0]._bind(self._session)
            except RuntimeError as error:
                self._bus.emit(ErrorEvent(source="agent", message=str(error), recoverable=True, error=error))
                agents = []
        if len(agents) == 1:
            self._state.count_handoff(+1)
            self._session_inbox.send_nowait(HandoffRequested(agent=agents[0]))
            draining = True
        elif len(agents) > 1:
            logger.error("more than one tool returned an agent; no hand-off")
        self._commit_tool_items(outcomes, handle)
        if any(outcome.reply_required for outcome in outcomes):
            follow_up = ctx.copy()
            # What the agent's context gained during this step: what it said, and
            # the conversation of an AgentTask a tool awaited (merged back into it).
            owner = handle._owner
            gained = owner._chat_ctx.items if owner is not None else []
            for item in gained:
                is_system = item.type == "message" and item.role == "system"
                if item.seq > step_started and not is_system and follow_up.get(item.id) is None:
                    follow_up.insert(item)
            for outcome in outcomes:
                for item in (outcome.call, outcome.output):
                    if follow_up.get(item.id) is None:
                        follow_up.insert(item)
            self._spawn(
                handle,
                self._reply(
                    handle,
                    chat_ctx=follow_up,
                    tools=tools,
                    tool_choice="none"
                    if max_steps_reached or draining or tool_choice == "none"
                    else "auto",
                ),
            )
            self._schedule_speech(handle, force=True)

    def _record_abandoned_tools(self, handle: SpeechHandle, outcomes: list[ToolOutcome]) -> None:
        if FAULTS.forget_tools_abandoned_at_close:
            return
        outcomes = [interrupted_outcome(outcome) for outcome in outcomes]
        self._emit_tools_executed(outcomes, handle, max_steps_reached=False)
        self._commit_tool_items(outcomes, handle)

    def _emit_tools_executed(
        self, outcomes: list[ToolOutcome], handle: SpeechHandle, *, max_steps_reached: bool
    ) -> None:
        self._bus.emit(
            FunctionToolsExecuted(
                function_calls=tuple(outcome.call for outcome in outcomes),
                function_call_outputs=tuple(outcome.output for outcome in outcomes),
                max_steps_reached=max_steps_reached,
                speech_id=handle.id,
            )
        )

    def _commit_tool_items(self, outcomes: list[ToolOutcome], handle: SpeechHandle) -> None:
        for outcome in outcomes:
            self._commit(outcome.call, emit=False, owner=handle._owner, speech=handle)
            if FAULTS.drop_outputs_of_interrupted_tools and handle.interrupted:
                continue
            seq = outcome.call.seq if FAULTS.number_tool_outputs_as_their_calls else None
            self._commit(outcome.output, emit=False, owner=handle._owner, speech=handle, seq=seq)

    # -- user turns ------------------------------------------------------------------------------

    def _queue_turn(self, message: ChatMessage) -> trio.Event:
        place = trio.Event()
        if not self._turn_queue:
            place.set()
        self._turn_queue.append(place)
        self._unhandled_turns[place] = message
        return place

    def _leave_turn_queue(self, place: trio.Event) -> None:
        self._turn_queue.remove(place)
        if self._turn_queue:
            self._turn_queue[0].set()

    def _commit_at_close(self, message: ChatMessage) -> None:
        """Commit a turn that ended during the close, after the turns before it."""
        if not self._turn_queue:
            self._commit(message)
            return
        place = self._queue_turn(message)

        async def commit_in_place() -> None:
            try:
                await place.wait()
                self._commit(self._unhandled_turns.pop(place))
            finally:
                self._leave_turn_queue(place)

        self._start_task(commit_in_place(), "user_turn")

    async def _user_turn(self, turn: UserTurnCompleted, generation: int, place: trio.Event) -> None:
        try:
            await place.wait()
            await self._handle_user_turn(turn, generation, self._unhandled_turns[place])
            del self._unhandled_turns[place]
        finally:
            self._leave_turn_queue(place)
        if turn.exceeded is not None:
            self._on_user_turn_exceeded(turn.exceeded)

    def _on_user_turn_exceeded(self, exceeded: UserTurnExceeded) -> None:
        agent = self._agent
        if agent is not None and not self._turns_blocked:
            self._start_task(
                self._run_hook(
                    f"{agent.id}.on_user_turn_exceeded",
                    lambda: agent.on_user_turn_exceeded(exceeded),
                ),
                "on_user_turn_exceeded",
            )

    async def _handle_user_turn(self, turn: UserTurnCompleted, generation: int, message: ChatMessage) -> None:
        self._preemptive_attempts = 0
        # Speeches that played and wait for their tools: no reply to them any
        # more. Their tools run on; each output joins the history (with its
        # call) when it arrives, and the turn does not wait for it.
        for handle in list(self._background):
            if handle.allow_interruptions:
                handle.interrupt()
        # The turn's place in the conversation is when it ended, before anything
        # said in reaction to it (a say() from on_user_turn_completed included).
        message.seq = self._bus.next_seq()
        if turn.skip_reply or not turn.transcript:
            self._drop_preemptive()
            if turn.transcript:
                self._commit(message)
            return
        current = self._state.current_speech
        if current is not None and not current.done():
            if not current.allow_interruptions:
                logger.warning("dropping the user's turn: the current speech cannot be interrupted")
                self._drop_preemptive()
                return
            current.interrupt()
            self._clear_pause()
            # What was heard of it goes in first; its tools are not waited for.
            await current._wait_for_generation()
        if not self._state.accepting_speech:
            if self._state.closing and turn.transcript:
                self._commit(message)
            return
        # An AgentTask starting or ending decides who this turn belongs to.
        await self._switching.wait_value(False)
        agent = self._agent
        if agent is None:
            return
        turn_ctx = agent.chat_ctx
        started = trio.current_time()
        try:
            await self._run_user_code(
                f"{agent.id}.on_user_turn_completed",
                lambda: agent.on_user_turn_completed(turn_ctx, message),
            )
        except StopResponse:
            self._drop_preemptive()
            return
        message.metrics["on_user_turn_completed_delay"] = trio.current_time() - started
        if self._resolved_llm() is None or not self._state.accepting_speech:
            self._drop_preemptive()
            if self._state.closing and turn.transcript:
                self._commit(message)
            return
        preemptive = self._preemptive
        self._preemptive = None
        if preemptive is not None and _same_words(preemptive.transcript, message.content) and (
            preemptive.context == _context_key(turn_ctx)
        ):
            # The speculative reply answered this very turn: use it.
            handle = preemptive.handle
            preemptive.message.content = message.content
            preemptive.message.metrics = message.metrics
            preemptive.message.seq = message.seq
            self.inbox.send_nowait(_ScheduleSpeech(handle))
            self._bus.emit(MetricsCollected(kind="preemptive", metrics={"reused": True, "wasted_llm_calls": 0}))
        else:
            if preemptive is not None:
                self._cancel_preemptive(preemptive)
            handle = self._session._create_handle(source="generate_reply", user_initiated=True)
            # Through the inbox, so that speeches the hook asked for are queued first.
            self.inbox.send_nowait(GenerateReply(handle=handle, user_message=message, chat_ctx=turn_ctx))
        if generation != self._turn_generation:
            handle.interrupt(force=True)
        self._bus.emit(
            MetricsCollected(
                kind="eou",
                metrics={
                    "end_of_utterance_delay": 0.0,
                    "transcription_delay": 0.0,
                    **turn.metrics,
                    "on_user_turn_completed_delay": message.metrics["on_user_turn_completed_delay"],
                },
            )
        )

    # -- preemptive generation (docs/behaviour.md) -------------------------------------------------

    def _preempt(self, message: PreemptiveTranscript) -> None:
        """Start the reply to a final transcript before the turn commits.

        Speculative work is side-effect free: it is never scheduled (so no tool
        runs, no audio plays) until the committed turn turns out to be the same;
        then it is used, else cancelled and counted as wasted.
        """
        if not self._options.preemptive_generation or self._turns_blocked:
            return
        if not self._state.accepting_speech or self._resolved_llm() is None or self._agent is None:
            return
        current = self._state.current_speech
        if current is not None and not current.done() and not current.interrupted:
            return
        if message.speech_duration > PREEMPTIVE_MAX_SPEECH or self._preemptive_attempts >= PREEMPTIVE_MAX_RETRIES:
            return
        self._drop_preemptive()
        self._preemptive_attempts += 1
        context = self._agent.chat_ctx
        user_message = ChatMessage(role="user", content=message.transcript)
        handle = self._session._create_handle(source="generate_reply", user_initiated=True)
        self._preemptive = _Preemptive(
            handle=handle,
            transcript=message.transcript,
            context=_context_key(context),
            message=user_message,
        )
        self._spawn(
            handle,
            self._reply(
                handle,
                chat_ctx=context,
                tools=self._tools(),
                tool_choice=None,
                new_message=user_message,
            ),
        )

    def _drop_preemptive(self) -> None:
        if self._preemptive is not None:
            preemptive, self._preemptive = self._preemptive, None
            self._cancel_preemptive(preemptive)

    def _cancel_preemptive(self, preemptive: _Preemptive) -> None:
        preemptive.handle.interrupt(force=True)
        self._bus.emit(MetricsCollected(kind="preemptive", metrics={"reused": False, "wasted_llm_calls": 1}))


@attrs.define
class _Pause:
    """A speech paused by audio activity that may be a false interruption."""

    handle: SpeechHandle
    state: AgentState


@attrs.define
class _Preemptive:
    """A reply generated speculatively from a final transcript."""

    handle: SpeechHandle
    transcript: str
    context: list[tuple[str, str]]
    message: ChatMessage


@attrs.frozen
class _ScheduleSpeech:
    """The Planner's note to itself: schedule a speech made earlier (preemptive)."""

    handle: SpeechHandle


def _same_words(a: str, b: str) -> bool:
    def words(text: str) -> list[str]:
        return re.findall(r"\w+", text.casefold())

    return words(a) == words(b)


def _context_key(context: ChatContext) -> list[tuple[str, str]]:
    return [(item.id, str(item.to_dict())) for item in context.items]


@attrs.frozen
class _StopAccepting:
    """The Planner's note to itself: no new speech after the messages before this."""

    reply: Future[None]


def _is_expected_tool_error(error: BaseException) -> bool:
    from ..errors import ToolError
    from ..tools import ToolArgumentsError

    return isinstance(error, (ToolError, ToolArgumentsError))


async def _within(scope: trio.CancelScope, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
    with scope:
        await fn(*args)
