"""The session supervisor actor.

It runs hand-offs (drain the old agent, record the hand-off, start the new
one), applies the error policy (unrecoverable provider errors are counted per
provider; past ``max_unrecoverable_errors`` the session closes with reason
``error``) and the close sequence. Every wait on user code here is bounded by
``close_timeout``: when it expires, what was still running is cancelled and
named in the ``close`` event. The supervisor never holds anything while it
waits: a hand-off, a drain and a close are messages, so none can deadlock
another.

It also owns the connections of the current agent's toolsets (MCP servers):
they are opened before the agent starts and closed after it has drained.

It alone writes the session's lifecycle, ``SessionState.phase`` (see
:class:`voxtrio.state.Phase`), and the count of pending hand-offs. What must
change at once, when the public API asks (a close, a hand-off), is done by its
synchronous methods ``request_close`` and ``request_handoff``, which also post
the request to its inbox; ``main()`` reports the start and the end of the
session with ``mark_running`` and ``mark_closed``.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, assert_never

import attrs
import trio

from .._sync import Flag, Future
from ..agent import Agent, CarryHistory
from ..events import CloseReason, ErrorEvent, EventBus
from ..faults import FAULTS
from ..links import PlannerLink, SupervisorLink, TurnLink
from ..messages import (
    CloseRequested,
    CloseUserTurn,
    DrainActivity,
    DrainRequested,
    ErrorCountReset,
    HandoffRequested,
    Interrupt,
    OptionsChanged,
    ProviderFailed,
    SessionMessage,
    StartActivity,
)
from ..options import SessionOptions
from ..state import Phase, SessionState
from ..tools import Toolset, ToolsetLease, open_toolsets, toolsets_of


# At most this much of close_timeout (and at most a quarter of it) is kept to
# cut off the speech still playing when the deadline comes.
CLOSE_GRACE = 0.25
# Hand-offs in a row with no progress (a final transcript, a reply that plays)
# after which the next one is refused: an agent whose on_enter hands off (to
# itself, or around a ring of agents) would otherwise loop for ever.
HANDOFF_LOOP_LIMIT = 16


@attrs.frozen
class CloseInfo:
    reason: CloseReason
    error: BaseException | None
    cancelled: tuple[str, ...]


class SessionSupervisor:
    def __init__(
        self,
        *,
        bus: EventBus,
        state: SessionState,
        options: SessionOptions,
        inbox: trio.MemoryReceiveChannel[SessionMessage],
        to_self: SupervisorLink,
        planner: PlannerLink,
        turn: TurnLink,
    ) -> None:
        self._bus = bus
        self._state = state
        self._options = options
        self._inbox = inbox
        # this actor's own inbox (what the public API asks is posted there too)
        self._to_self = to_self
        self._planner = planner
        self._turn = turn
        # answered with how the session closed, once the close sequence is over
        self.finished: Future[CloseInfo] = Future()
        # unrecoverable provider errors since the last progress, per source
        self._error_counts = {"stt": 0, "llm": 0, "tts": 0, "vad": 0}
        # hand-offs taken in and not started yet, in order (run one at a time)
        self._handoffs: list[HandoffRequested] = []
        # hand-offs in a row with no progress between them (see HANDOFF_LOOP_LIMIT)
        self._handoffs_without_progress = 0
        # true while no hand-off runs
        self._handoff_idle = Flag(True)
        # This actor took in a close request (the phase may say CLOSING earlier:
        # request_close publishes it before the request reaches the inbox).
        self._closing = False
        # It took in a drain request. A drain stops hand-offs as it stops turns:
        # an agent whose on_enter leads straight to another hand-off would
        # otherwise never drain. Invariant: ``_closing`` implies phase CLOSING
        # or CLOSED; ``_draining`` implies phase DRAINING or later.
        self._draining = False
        # where its hand-offs, drains and the close run (set by run())
        self._nursery: trio.Nursery | None = None
        # What a close cuts short at once: a hand-off, connecting toolsets at start.
        self._cut_by_close: set[trio.CancelScope] = set()
        # the open toolset connections of each agent that has them
        self._leases: dict[Agent, ToolsetLease] = {}

    # -- the lifecycle ----------------------------------------------------------------

    def _enter(self, phase: Phase) -> None:
        """Move the phase forward (never back: a close during the start-up stays a close)."""
        order = list(Phase)
        if order.index(phase) > order.index(self._state.phase):
            self._state.phase = phase

    def mark_running(self) -> None:
        """main(): the actors are started; the public API may be used."""
        self._enter(Phase.RUNNING)

    def mark_closed(self) -> None:
        """main(): the actors are gone; the session is over."""
        self._enter(Phase.CLOSED)

    def request_close(self, *, reason: CloseReason, drain: bool) -> None:
        """The public API asks for a close: nothing new is accepted from now on."""
        self._enter(Phase.CLOSING)
        self._to_self.send_nowait(CloseRequested(reason=reason, drain=drain))

    def request_handoff(
        self, agent: Agent, *, reply: Future[None], carry_history: CarryHistory | None
    ) -> None:
        """The public API asks for a hand-off: counted at once, so that a run waits for it."""
        self._state.count_handoff(+1)
        self._to_self.send_nowait(HandoffRequested(agent=agent, reply=reply, carry_history=carry_history))

    def report_toolset_error(self, toolset: Toolset, error: BaseException) -> None:
        self._bus.emit(
            ErrorEvent(
                source="tool",
                message=f"toolset {toolset.id} failed: {type(error).__name__}: {error}",
                recoverable=True,
                error=error,
            )
        )

    async def _connect_toolsets(self, agent: Agent) -> None:
        toolsets = toolsets_of(agent.tool_items)
        if toolsets and agent not in self._leases:
            assert self._nursery is not None
            self._leases[agent] = await open_toolsets(
                self._nursery, toolsets, self.report_toolset_error
            )

    async def _disconnect_toolsets(self, agent: Agent | None, *, deadline: float = math.inf) -> None:
        lease = self._leases.pop(agent, None) if agent is not None else None
        if lease is not None:
            await lease.aclose(deadline=deadline)

    @contextlib.contextmanager
    def until_close(self) -> Iterator[trio.CancelScope]:
        """A scope that a close request cancels (at once if one came already)."""
        scope = trio.CancelScope()
        if self._closing:
            scope.cancel()
        self._cut_by_close.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._cut_by_close.discard(scope)

    def close_deadline(self) -> float:
        """When a close asked for now, or already asked for, must be over."""
        asked = self._state.close_requested_at
        return (trio.current_time() if asked is None else asked) + self._options.close_timeout

    async def start_agent(self, agent: Agent) -> None:
        """Activate the first agent (its on_enter runs in the background)."""
        await self._connect_toolsets(agent)
        started: Future[None] = Future()
        await self._planner.send(StartActivity(agent=agent, reply=started))
        await started

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            async for message in self._inbox:
                self._handle(message)

    def _handle(self, message: SessionMessage) -> None:
        assert self._nursery is not None
        match message:
            case CloseRequested():
                if not self._closing:
                    self._closing = True
                    self._enter(Phase.CLOSING)
                    self._state.close_requested_at = trio.current_time()
                    for scope in self._cut_by_close:
                        scope.cancel()
                    self._nursery.start_soon(self._close, message)
            case ProviderFailed(source=source):
                self._error_counts[source] = self._error_counts.get(source, 0) + 1
                limit = self._options.conn_options.max_unrecoverable_errors
                # Without its VAD or its realtime model the session cannot hear at all.
                if source in ("vad", "realtime") or self._error_counts[source] > limit:
                    self._to_self.send_nowait(CloseRequested(reason="error", drain=False, error=message.error))
            case ErrorCountReset():
                # A transcript or a reply that plays: the conversation moves on.
                for source in message.sources:
                    self._error_counts[source] = 0
                self._handoffs_without_progress = 0
            case HandoffRequested():
                self._take_handoff(message)
            case OptionsChanged():
                self._options = message.options
            case DrainRequested():
                self._draining = True
                self._enter(Phase.DRAINING)
                self._nursery.start_soon(self._drain, message)
            case _:
                assert_never(message)

    def _take_handoff(self, message: HandoffRequested) -> None:
        assert self._nursery is not None
        if self._closing or self._draining:
            self._refuse_handoff(message, f"the session is {'closing' if self._closing else 'draining'}")
            return
        self._handoffs_without_progress += 1
        if self._handoffs_without_progress > HANDOFF_LOOP_LIMIT:
            why = (
                f"hand-off loop: {HANDOFF_LOOP_LIMIT} hand-offs in a row without a user turn "
                f"or a spoken reply; the hand-off to {message.agent.id} is refused"
            )
            if self._handoffs_without_progress == HANDOFF_LOOP_LIMIT + 1:
                self._bus.emit(ErrorEvent(source="session", message=why, recoverable=True))
            self._refuse_handoff(message, why)
            return
        self._handoffs.append(message)
        if self._handoff_idle:
            self._nursery.start_soon(self._run_handoffs)

    def _refuse_handoff(self, request: HandoffRequested, why: str) -> None:
        self._state.count_handoff(-1)
        if request.reply is not None:
            request.reply.set_exception(RuntimeError(why))

    async def _run_handoffs(self) -> None:
        self._handoff_idle.set(False)
        try:
            while self._handoffs and not self._closing and not self._draining:
                request = self._handoffs.pop(0)
                try:
                    with self.until_close() as scope:
                        await self._handoff(request.agent, request.carry_history)
                finally:
                    self._state.count_handoff(-1)
                if request.reply is not None:
                    if scope.cancelled_caught:
                        request.reply.set_exception(RuntimeError("the session closed during the hand-off"))
                    else:
                        request.reply.set_result(None)
        finally:
            self._handoff_idle.set(True)
            for request in self._handoffs:  # left behind by a close or a drain
                self._state.count_handoff(-1)
                if request.reply is not None:
                    what = "closed" if self._closing else "drained"
                    request.reply.set_exception(RuntimeError(f"the session {what} before the hand-off"))
            self._handoffs.clear()

    async def _handoff(self, agent: Agent, carry_history: CarryHistory | None) -> None:
        old = self._state.current_agent
        drained: Future[None] = Future()
        await self._planner.send(DrainActivity(interrupt=False, reply=drained))
        with trio.move_on_after(self._options.close_timeout) as deadline:
            await drained
        if deadline.cancelled_caught:
            # The old agent overran its deadline: cut its speeches off for good.
            await self._planner.send(Interrupt(force=True, reply=Future()))
        await self._connect_toolsets(agent)
        started: Future[None] = Future()
        await self._planner.send(
            StartActivity(agent=agent, reply=started, carry_history=carry_history)
        )
        await started
        if old is not agent:
            await self._disconnect_toolsets(old)

    async def _drain(self, request: DrainRequested) -> None:
        try:
            await self._handoff_idle.wait_value(True)  # the agent it hands to is the one drained
            drained: Future[None] = Future()
            await self._planner.send(DrainActivity(interrupt=False, reply=drained, run_on_exit=True))
            await drained
            request.reply.set_result(None)
        finally:
            # Also when a close overtakes the drain (this task is then cancelled
            # with the supervisor): a closed session has nothing left to play.
            if not request.reply.done() and not FAULTS.leave_drain_unanswered_at_close:
                request.reply.set_result(None)

    async def _close(self, request: CloseRequested) -> None:
        if FAULTS.close_never_finishes:
            await trio.sleep_forever()
        while FAULTS.close_spins:
            await trio.sleep(0)
        cancelled: tuple[str, ...] = ()
        timeout = self._options.close_timeout
        # The end of the deadline is kept for cutting off what still plays, so
        # that what was heard is recorded before the actors are cancelled.
        grace = min(CLOSE_GRACE, timeout / 4)
        drained: Future[None] = Future()
        await self._planner.send(DrainActivity(interrupt=not request.drain, reply=drained))
        with trio.move_on_after(timeout - grace) as deadline:
            await drained
            if request.reason != "error":
                # What the user said last still goes into the history.
                committed: Future[None] = Future()
                await self._turn.send(
                    CloseUserTurn(
                        timeout=self._options.session_close_transcript_timeout, reply=committed
                    )
                )
                await committed
        if deadline.cancelled_caught:
            if not drained.done():
                await self._planner.send(Interrupt(force=True, reply=Future()))
                with trio.move_on_after(grace):
                    await drained
            cancelled = tuple(sorted(set(self._state.running_user_code.values())))
        for agent in list(self._leases):
            await self._disconnect_toolsets(agent, deadline=self.close_deadline())
        self.finished.set_result(CloseInfo(request.reason, request.error, cancelled))
