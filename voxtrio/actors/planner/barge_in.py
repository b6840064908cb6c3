"""The user cutting in: interruptions, and the pause of a possible false interruption."""

from __future__ import annotations

from typing import Any

import attrs
import trio

from ...events import AgentFalseInterruption, AgentState, EventBus
from ...faults import FAULTS
from ...messages import EndOfTurnPending, PausePlayout, ResumePlayout
from ...speech import SpeechHandle
from ...state import SessionState
from .agent_state import AgentStatus
from .speeches import SpeechScheduler
from .stage import Stage
from .workers import Workers


@attrs.define
class _Pause:
    """A speech paused by audio activity that may be a false interruption."""

    handle: SpeechHandle
    # The agent's state when it paused: what it goes back to on resuming.
    state: AgentState


class BargeIn:
    """The user cuts in (path 1 of docs/behaviour.md, "Interruption"; the Turn
    already applied its gates).

    Audio activity alone may be a false alarm (a cough, a backchannel): when
    the output can pause, the speech is paused and resumes if no words come
    within ``false_interruption_timeout`` (docs/behaviour.md, "False
    interruption"). Words end it for good. Invariant: the timer runs only
    while a speech is paused and the user is silent.
    """

    def __init__(
        self,
        *,
        state: SessionState,
        stage: Stage,
        bus: EventBus,
        agent_status: AgentStatus,
        speeches: SpeechScheduler,
        workers: Workers,
        speaker_inbox: trio.MemorySendChannel[Any],
        can_pause: bool,
    ) -> None:
        self._state = state
        self._stage = stage
        self._bus = bus
        self._agent_status = agent_status
        self._speeches = speeches
        self._workers = workers
        self._speaker = speaker_inbox
        # Whether the audio output can pause at all.
        self._can_pause = can_pause
        # The paused speech, if any.
        self._pause: _Pause | None = None
        # The running false-interruption timer (its deadline is the timeout).
        self._timer: trio.CancelScope | None = None
        # The Turn is deciding whether the user's turn ended (EndOfTurnPending).
        self._end_of_turn_pending = False
        # The timer expired while the Turn was deciding: the decision resumes, or not.
        self._resume_deferred = False

    def interrupt(self, reason: str) -> None:
        current = self._state.current_speech
        if current is None or current.done() or current.interrupted or FAULTS.ignore_barge_in:
            return
        if not current.allow_interruptions:
            return
        self._cancel_timer()
        if reason == "transcript":
            current.interrupt()
            self.clear_pause()
            return
        if not self._pause_enabled():
            current.interrupt()
            return
        if self._pause is None:
            self._pause = _Pause(handle=current, state=self._agent_status.current)
            self._speaker.send_nowait(PausePlayout())
            # Paused while speaking or before it (still thinking), the agent
            # listens, as it does when the same cut-in interrupts for good.
            if self._agent_status.current in ("speaking", "thinking"):
                self._agent_status.set("listening")

    def _pause_enabled(self) -> bool:
        options = self._stage.options
        return self._can_pause and options.resume_false_interruption and options.false_interruption_timeout is not None

    def on_user_activity(self, speaking: bool) -> None:
        if speaking:
            self._cancel_timer()  # the pause stays
        elif self._pause is not None:
            self._start_timer()

    def _start_timer(self) -> None:
        self._cancel_timer()
        timeout = self._stage.options.false_interruption_timeout
        assert timeout is not None
        scope = trio.CancelScope(deadline=trio.current_time() + timeout)
        self._timer = scope
        self._workers.start_uncounted(self._timeout, scope)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._resume_deferred = False

    async def _timeout(self, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep_forever()
        if self._timer is not scope or scope.deadline > trio.current_time():
            return  # cancelled, not expired
        self._timer = None
        if self._end_of_turn_pending:
            self._resume_deferred = True  # the turn decides: a committed turn wins
        else:
            self._resume()

    def on_end_of_turn_pending(self, message: EndOfTurnPending) -> None:
        self._end_of_turn_pending = message.pending
        if not message.pending and self._resume_deferred:
            self._resume_deferred = False
            # A committed turn interrupts the paused speech, unless turns are
            # blocked (a drain or hand-off drops it): then nothing would, so resume.
            if not message.committed or not self._speeches.may_start("held_resume"):
                self._resume()

    def _resume(self) -> None:
        pause = self._pause
        if pause is None:
            return
        resumed = not pause.handle.done() and not pause.handle.interrupted
        self.clear_pause()
        if resumed and pause.state in ("speaking", "thinking"):
            # Back to what it was doing: speaking, or preparing a reply that
            # has not played yet ('speaking' then comes with its first frame).
            self._agent_status.set(pause.state)
        self._bus.emit(AgentFalseInterruption(resumed=resumed))

    def clear_pause(self) -> None:
        if self._pause is not None:
            self._pause = None
            self._speaker.send_nowait(ResumePlayout())
        self._cancel_timer()

    def step_played(self, handle: SpeechHandle) -> None:
        """The scheduler's note that a step ended: a pause of it is over."""
        if self._pause is not None and self._pause.handle is handle:
            self.clear_pause()
