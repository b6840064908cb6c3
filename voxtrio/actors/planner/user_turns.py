"""User turns: each goes into the history in the order the turns ended, and gets its reply."""

from __future__ import annotations

import collections
import logging
from typing import Any

import trio

from ...chat import ChatMessage
from ...errors import StopResponse
from ...events import EventBus, MetricsCollected
from ...messages import GenerateReply, UserTurnCompleted, UserTurnExceeded
from ...providers.base import RealtimeModel
from ...speech import SpeechFactory, status_of
from ...state import SessionState
from .agent_tasks import AgentTasks
from .barge_in import BargeIn
from .history import History
from .notes import ScheduleSpeech
from .preemptive import Preemptive
from .speeches import SpeechScheduler
from .stage import Stage
from .workers import Workers

logger = logging.getLogger("voxtrio.planner")


class UserTurns:
    """Handles each finished user turn: commits it, interrupts what it cuts
    off, runs ``on_user_turn_completed`` and asks for the reply.

    A turn waits for the one before it (which may wait for a speech and its
    tools). Invariant: every turn in ``_queue`` has its message in
    ``_unhandled`` until it is handled; a user's words are never lost (turns
    cut off by the close deadline are committed at close, in order).
    """

    def __init__(
        self,
        *,
        state: SessionState,
        stage: Stage,
        bus: EventBus,
        workers: Workers,
        history: History,
        speeches: SpeechScheduler,
        barge_in: BargeIn,
        preemptive: Preemptive,
        agent_tasks: AgentTasks,
        factory: SpeechFactory,
        planner_inbox: trio.MemorySendChannel[Any],
    ) -> None:
        self._state = state
        self._stage = stage
        self._bus = bus
        self._workers = workers
        self._history = history
        self._speeches = speeches
        self._barge_in = barge_in
        self._preemptive = preemptive
        self._agent_tasks = agent_tasks
        self._factory = factory
        self._planner = planner_inbox
        # The turns in the order they ended; the head is the turn being handled.
        self._queue: collections.deque[trio.Event] = collections.deque()
        # The queued turns' messages, until each is handled.
        self._unhandled: dict[trio.Event, ChatMessage] = {}
        # The number of the last turn: a reply to an older one is dropped.
        self._generation = 0

    def completed(self, message: UserTurnCompleted) -> None:
        if not self._speeches.may_start("user_turn"):
            if self._speeches.may_start("late_user_words") and message.transcript:
                self._commit_at_close(ChatMessage(role="user", content=message.transcript))
            return
        self._generation += 1
        place = self._enqueue(ChatMessage(role="user", content=message.transcript, metrics=dict(message.metrics)))
        self._workers.start(self._run(message, self._generation, place), "user_turn")

    def exceeded(self, exceeded: UserTurnExceeded) -> None:
        agent = self._stage.agent
        if agent is not None and self._speeches.may_start("user_turn_hook"):
            self._workers.start(
                self._workers.run_hook(
                    f"{agent.id}.on_user_turn_exceeded", lambda: agent.on_user_turn_exceeded(exceeded)
                ),
                "on_user_turn_exceeded",
            )

    def commit_unhandled(self) -> None:
        """The Planner stops: turns still waiting go in now if the session closes."""
        if self._speeches.may_start("late_user_words"):
            for message in self._unhandled.values():
                if message.content:
                    self._history.commit(message)
        self._unhandled.clear()

    def _enqueue(self, message: ChatMessage) -> trio.Event:
        place = trio.Event()
        if not self._queue:
            place.set()
        self._queue.append(place)
        self._unhandled[place] = message
        return place

    def _leave(self, place: trio.Event) -> None:
        self._queue.remove(place)
        if self._queue:
            self._queue[0].set()

    def _commit_at_close(self, message: ChatMessage) -> None:
        """Commit a turn that ended during the close, after the turns before it."""
        if not self._queue:
            self._history.commit(message)
            return
        place = self._enqueue(message)

        async def commit_in_place() -> None:
            try:
                await place.wait()
                self._history.commit(self._unhandled.pop(place))
            finally:
                self._leave(place)

        self._workers.start(commit_in_place(), "user_turn")

    async def _run(self, turn: UserTurnCompleted, generation: int, place: trio.Event) -> None:
        try:
            await place.wait()
            await self._handle(turn, generation, self._unhandled[place])
            del self._unhandled[place]
        finally:
            self._leave(place)
        if turn.exceeded is not None:
            self.exceeded(turn.exceeded)

    async def _handle(self, turn: UserTurnCompleted, generation: int, message: ChatMessage) -> None:
        speeches, preemptive = self._speeches, self._preemptive
        preemptive.reset_attempts()
        # Speeches that played and wait for their tools: no reply to them any
        # more. Their tools run on; each output joins the history (with its
        # call) when it arrives, and the turn does not wait for it.
        for waiting in list(speeches.background):
            if waiting.allow_interruptions:
                waiting.interrupt()
        # The turn's place in the conversation is when it ended, before anything
        # said in reaction to it (a say() from on_user_turn_completed included).
        message.seq = self._bus.next_seq()
        if turn.skip_reply or not turn.transcript:
            preemptive.drop()
            if turn.transcript:
                self._history.commit(message)
            return
        if self._stage.realtime():
            preemptive.drop()
            await self._realtime_turn(message)
            return
        current = self._state.current_speech
        if current is not None and not current.done():
            if not current.allow_interruptions:
                logger.warning("dropping the user's turn: the current speech cannot be interrupted")
                preemptive.drop()
                return
            current.interrupt()
            self._barge_in.clear_pause()
            # What was heard of it goes in first; its tools are not waited for.
            await status_of(current).step_played.wait_value(True)
        if not speeches.may_start("reply_to_user"):
            if speeches.may_start("late_user_words") and turn.transcript:
                self._history.commit(message)
            return
        # An AgentTask starting or ending decides who this turn belongs to.
        await self._agent_tasks.switching.wait_value(False)
        agent = self._stage.agent
        if agent is None:
            return
        turn_ctx = agent.chat_ctx
        started = trio.current_time()
        try:
            await self._workers.run_user_code(
                f"{agent.id}.on_user_turn_completed", lambda: agent.on_user_turn_completed(turn_ctx, message)
            )
        except StopResponse:
            preemptive.drop()
            return
        message.metrics["on_user_turn_completed_delay"] = trio.current_time() - started
        if self._stage.llm_for() is None or not speeches.may_start("reply_to_user"):
            preemptive.drop()
            if speeches.may_start("late_user_words") and turn.transcript:
                self._history.commit(message)
            return
        handle = preemptive.take(message, turn_ctx)
        if handle is not None:
            # The speculative reply answered this very turn: use it.
            self._planner.send_nowait(ScheduleSpeech(handle))
            preemptive.report_reused()
        else:
            handle = self._factory.create(
                source="generate_reply", allow_interruptions=self._stage.allow_interruptions()
            )
            # Through the inbox, so that speeches the hook asked for are queued first.
            self._planner.send_nowait(GenerateReply(handle=handle, user_message=message, chat_ctx=turn_ctx))
        if generation != self._generation:
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

    async def _realtime_turn(self, message: ChatMessage) -> None:
        """A turn the realtime model heard itself: ``on_user_turn_completed``
        runs (as in a pipeline, once the transcript commits the turn), then
        the turn goes in. A model that finds the turns answers them by itself:
        the hook cannot call that response back (StopResponse) nor change what
        the model heard. Without server turn detection (``commit_user_turn``,
        push-to-talk) the turn asks for its response, as the pipeline's does."""
        await self._agent_tasks.switching.wait_value(False)
        agent = self._stage.agent
        if agent is None:
            return
        stopped = False
        try:
            await self._workers.run_user_code(
                f"{agent.id}.on_user_turn_completed", lambda: agent.on_user_turn_completed(agent.chat_ctx, message)
            )
        except StopResponse:
            stopped = True
        self._history.commit(message)
        model = self._stage.llm_for()
        if stopped or not isinstance(model, RealtimeModel) or model.capabilities.turn_detection:
            return
        current = self._state.current_speech
        if current is not None and not current.done():
            if not current.allow_interruptions:
                logger.warning("no reply to the user's turn: the current speech cannot be interrupted")
                return
            current.interrupt()
        if self._speeches.may_start("reply_to_user"):
            allow = self._stage.allow_interruptions()
            handle = self._factory.create(source="generate_reply", allow_interruptions=allow)
            self._planner.send_nowait(GenerateReply(handle=handle))
