"""The speech scheduler: the queue, one step authorized at a time, and who may start what."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Awaitable, Callable, Literal, assert_never

import attrs
import trio

from ..._sync import Flag, Future
from ...errors import describe_error
from ...events import ErrorEvent, EventBus
from ...speech import SpeechHandle, SpeechQueue, SpeechStatus, status_of
from ...state import Phase, SessionState
from .agent_state import AgentStatus
from .stage import Stage
from .workers import Workers

if TYPE_CHECKING:
    from ...agent import Agent

logger = logging.getLogger("voxtrio.planner")

# Every "may this start now?" the Planner asks (see SpeechScheduler.may_start).
Start = Literal[
    "speech",  # a new speech joins the queue (else it is dropped, interrupted)
    "tool_step",  # a speech's tool outputs may get a reply that calls tools again
    "user_turn",  # a finished user turn is handled (answered, or at least recorded)
    "reply_to_user",  # a handled user turn gets a reply
    "agent_task",  # an AgentTask a tool or hook awaits becomes the current agent
    "preemptive_reply",  # a reply is prepared before the user's turn is committed
    "user_turn_hook",  # on_user_turn_exceeded runs
    "held_resume",  # a paused speech resumes although a turn committed meanwhile
    "late_user_words",  # a user turn nothing will answer goes into the history
]


@attrs.define(eq=False)
class SpeechRun:
    """The Planner's half of one speech, from its first task to its last.

    Invariant: ``authorized`` is set only between the scheduler authorizing a
    step and the step starting to play (or the step being interrupted).
    """

    handle: SpeechHandle
    # The handle's side shared with the public API and the Speaker.
    status: SpeechStatus
    # The agent it speaks for: its items go into that agent's context, its
    # LLM and TTS are that agent's (an AgentTask's stay its own after it ends).
    owner: Agent | None
    # Set by the scheduler: this step may play now.
    authorized: Flag = attrs.Factory(Flag)
    # Its tasks still running (a step, a follow-up step): done when none is left.
    tasks: int = 0

    def authorize(self) -> None:
        self.status.step_played.clear()
        self.authorized.set()

    def step_played(self) -> None:
        self.authorized.clear()
        self.status.step_played.set()


class SpeechScheduler:
    """Owns the speech queue and the current speech; runs each speech's tasks.

    One loop (:meth:`run_queue`) authorizes one step at a time, highest
    priority first, ``min_consecutive_speech_delay`` after the last one
    ended. ``SessionState.current_speech`` is the speech being authorized or
    playing; ``accepting_speech`` says whether new speech is taken at all.
    """

    def __init__(
        self,
        *,
        state: SessionState,
        stage: Stage,
        bus: EventBus,
        workers: Workers,
        agent_status: AgentStatus,
    ) -> None:
        self._state = state
        self._stage = stage
        self._bus = bus
        self._workers = workers
        self._agent_status = agent_status
        # Speeches waiting for their next step to be authorized.
        self._queue = SpeechQueue()
        # Speeches with tasks running, in the order their first task started.
        self._runs: dict[SpeechHandle, SpeechRun] = {}
        # Speeches that played and wait for their tools (a reply may follow).
        self.background: set[SpeechHandle] = set()
        # True from a drain until the next activity starts: no user turn,
        # AgentTask or preemptive reply is taken.
        self._turns_blocked = False

    # -- who may start what ------------------------------------------------

    def may_start(self, what: Start) -> bool:
        """The one answer to "may this start now?" for every part of the Planner.

        The session's lifecycle is read from ``state.phase`` (the supervisor's);
        ``accepting_speech`` and the turn block are the Planner's own, per agent
        activity: a hand-off or a drain closes them while the session runs on.
        """
        match what:
            case "speech" | "tool_step" | "reply_to_user":
                return self._state.accepting_speech
            case "user_turn" | "user_turn_hook" | "held_resume":
                return not self._turns_blocked
            case "agent_task" | "preemptive_reply":
                return not self._turns_blocked and self._state.accepting_speech
            case "late_user_words":
                return self._state.phase in (Phase.CLOSING, Phase.CLOSED)
            case _:
                assert_never(what)

    def open(self) -> None:
        """A new activity starts: speech and turns are taken again."""
        self._state.accepting_speech = True
        self._turns_blocked = False

    def block_turns(self) -> None:
        self._turns_blocked = True

    def stop_accepting(self) -> None:
        self._state.accepting_speech = False

    # -- speeches and their tasks -------------------------------------------

    def adopt(self, handle: SpeechHandle) -> SpeechRun:
        """The Planner's half of ``handle``, made for the current agent if new."""
        run = self._runs.get(handle)
        if run is None:
            run = SpeechRun(handle=handle, status=status_of(handle), owner=self._stage.agent)
            self._runs[handle] = run
        return run

    def spawn(self, run: SpeechRun, coroutine: Awaitable[object]) -> None:
        """Run one task of a speech; the handle is done when its last task ends."""
        handle = run.handle
        if run.owner is None:
            run.owner = self._stage.agent
        self._runs.setdefault(handle, run)
        run.tasks += 1

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
                run.tasks -= 1
                if not run.tasks:
                    del self._runs[handle]
                    run.status.finish(handle, error)
                    self._on_speech_task_done()

        self._workers.start(speech_task(), f"speech {handle.id}")

    def schedule(self, handle: SpeechHandle, *, force: bool = False) -> None:
        if not self.may_start("speech") and not force:
            handle.interrupt(force=True)
            return
        self._queue.push(handle)
        status_of(handle).scheduled.set()

    async def run_queue(self, on_played: Callable[[SpeechHandle], None]) -> None:
        """Authorize one step at a time; ``on_played`` hears of each step that ended."""
        last_playout_end = -math.inf
        while True:
            await self._queue.wait_nonempty()
            handle = self._queue.pop()
            if handle.done():
                continue
            status = status_of(handle)
            self._set_current(handle)
            delay = self._stage.min_consecutive_speech_delay() - (trio.current_time() - last_playout_end)
            if delay > 0:
                with trio.CancelScope() as waiting:
                    status.bind(waiting, "spacing")
                    await trio.sleep(delay)
                status.unbind(waiting)
                if handle.done() or handle.interrupted:
                    self._set_current(None)
                    await status.step_played.wait_value(True)
                    continue
            self._runs[handle].authorize()
            await status.step_played.wait_value(True)
            on_played(handle)
            self._set_current(None)
            last_playout_end = trio.current_time()

    def _set_current(self, handle: SpeechHandle | None) -> None:
        self._state.current_speech = handle
        self._agent_status.notify_turn()

    async def wait_authorized(self, run: SpeechRun) -> bool:
        """Wait until this step is authorized and, for an interruptible speech,
        the user is silent. False when the speech was interrupted first."""
        handle = run.handle
        with trio.CancelScope() as waiting:
            run.status.bind(waiting, "authorization")
            while True:
                await run.authorized.wait_value(True)
                if not handle.allow_interruptions or self._state.user_silent:
                    break
                await self._state.user_silent.wait_value(True)
        run.status.unbind(waiting)
        if handle.interrupted:
            return False
        run.authorized.clear()
        return True

    async def wait_for_speeches_of(self, agent: Agent) -> None:
        while True:
            pending = [run for run in self._runs.values() if run.owner is agent]
            if not pending:
                return
            await pending[0].status.done.wait_value(True)

    # -- what the agent is doing --------------------------------------------

    def current(self) -> SpeechHandle | None:
        """The speech being authorized or playing, if it is not done."""
        current = self._state.current_speech
        return current if current is not None and not current.done() else None

    def _no_pending_speech(self) -> bool:
        return not self._queue and self.current() is None

    def _on_speech_task_done(self) -> None:
        if self._no_pending_speech() and self._agent_status.current in ("thinking", "speaking"):
            self._agent_status.set("thinking" if self.tools_to_answer() else "listening")

    def tools_to_answer(self) -> bool:
        """A tool runs whose speech will go on when it returns (not an
        interrupted one's: its output only joins the history)."""
        return any(not handle.interrupted for handle in self.background)

    # -- interruptions -------------------------------------------------------

    def interrupt_all(self, *, force: bool, reply: Future[None] | None) -> None:
        """Interrupt the speeches waiting for tools, the current one and the
        queued ones, up to the first protected one (unless ``force``)."""
        interrupted: list[SpeechHandle] = []
        for handle in list(self.background):
            if force or handle.allow_interruptions:
                interrupted.append(handle.interrupt(force=True))
        current = self.current()
        if current is not None:
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
            self._workers.start(_resolve_when_done(interrupted, reply), "interrupt")


async def _resolve_when_done(handles: list[SpeechHandle], reply: Future[None]) -> None:
    try:
        for handle in handles:
            await status_of(handle).done.wait_value(True)
    finally:
        # Also when the session closes first: its speeches are over then.
        if not reply.done():
            reply.set_result(None)
