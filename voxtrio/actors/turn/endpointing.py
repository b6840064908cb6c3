"""Endpointing: when the user's turn is committed, and what the commit reports.

One formula on the audio clock in every mode (the module docstring of
:mod:`voxtrio.actors.turn` gives it): the commit comes ``delay`` after the
last voiced audio, the delay chosen by the end-of-turn detector when there
is one.
"""

from __future__ import annotations

import attrs
import trio

from ..._sync import Future
from ...links import PlannerLink
from ...messages import EndOfTurnPending, UserTurnCompleted
from ...events import UserTurnExceeded
from ...state import SessionState
from .barge_in import BargeIn
from .settings import Tasks, TurnSettings
from .utterance import AudioClock, Utterance

# How long the end-of-turn detector may think before the turn goes on without it.
PREDICTION_TIMEOUT = 1.0


@attrs.define(kw_only=True)
class Endpointing:
    """The pending commit (the "bounce") and the manual commit being answered.

    Invariants: at most one bounce is pending (a new one replaces it), and
    the Planner hears ``EndOfTurnPending(pending=True)`` when one is
    scheduled and exactly one ``pending=False`` when it commits or is called
    off. ``manual`` is the unanswered ``commit_user_turn()``; it is answered
    (with the transcript, or "" when replaced or cleared) exactly once.
    """

    _heard: Utterance
    _clock: AudioClock
    # for the gate that keeps too few words over an interruptible speech
    _barge_in: BargeIn
    _settings: TurnSettings
    # for the history (the end-of-turn detector reads it) and the input delay
    _state: SessionState
    _planner: PlannerLink
    _tasks: Tasks
    # the scheduled commit's scope, None when none is pending
    bounce: trio.CancelScope | None = attrs.field(init=False, default=None)
    # commit_user_turn(): its answer, whether it asked for no reply, and its
    # wait for the final transcript
    manual: Future[str] | None = attrs.field(init=False, default=None)
    manual_skip_reply: bool = attrs.field(init=False, default=False)
    manual_wait: trio.CancelScope | None = attrs.field(init=False, default=None)

    def cancel_bounce(self) -> None:
        if self.bounce is not None:
            self.bounce.cancel()
            self.bounce = None
            self._planner.send_nowait(EndOfTurnPending(pending=False, committed=False))

    def end_of_utterance(self, *, skip_reply: bool = False) -> None:
        """Schedule the commit of the user's turn, replacing any pending one."""
        manual = self.manual is not None
        if self._settings.detection.manual and not manual:
            return
        if self._settings.has_stt and not self._heard.transcript and not manual:
            return  # noise without words is never a turn
        self.cancel_bounce()
        heard = self._heard
        last_voiced = heard.last_voiced if heard.last_voiced is not None else self._clock.now()
        scope = trio.CancelScope()
        self.bounce = scope
        self._planner.send_nowait(EndOfTurnPending(pending=True))
        self._tasks.start(self._commit_after_delay, scope, last_voiced, skip_reply)

    async def _commit_after_delay(self, scope: trio.CancelScope, last_voiced: float, skip_reply: bool) -> None:
        with scope:
            settings, heard = self._settings, self._heard
            # The realtime model's server already decided that the turn ended.
            delay = 0.0 if settings.detection.server_turns else settings.get("min_endpointing_delay")
            probability = None
            detector = settings.detection.detector
            if detector is not None and heard.transcript and detector.supports_language(heard.language):
                with trio.move_on_after(PREDICTION_TIMEOUT):
                    probability = await detector.predict_end_of_turn(self._state.history.copy(), heard.transcript)
                if probability is not None and probability < detector.unlikely_threshold:
                    delay = settings.get("max_endpointing_delay")
            await trio.sleep_until(self._clock.to_trio_time(last_voiced) + delay)
            if self.bounce is scope:
                self.bounce = None
            answered = bool(heard.transcript) and not skip_reply  # a turn without words gets no reply
            committed = self.commit(skip_reply=skip_reply, delay=delay, probability=probability)
            self._planner.send_nowait(EndOfTurnPending(pending=False, committed=committed and answered))

    def commit(
        self,
        *,
        skip_reply: bool,
        delay: float | None = None,
        probability: float | None = None,
        exceeded: UserTurnExceeded | None = None,
    ) -> bool:
        """Send the turn to the Planner (unless too short to cut the agent off)."""
        heard = self._heard
        transcript = heard.transcript
        if self._barge_in.too_few_words_to_cut_in(transcript):
            return False  # keep them for the next turn
        now = self._clock.now()
        metrics: dict[str, float] = {}
        if heard.last_voiced is not None:
            metrics["end_of_utterance_delay"] = max(0.0, now - heard.last_voiced)
            if heard.final_at is not None:
                metrics["transcription_delay"] = max(0.0, heard.final_at - heard.last_voiced)
        if delay is not None:
            metrics["endpointing_delay"] = delay
        if self._settings.has_stt or self._settings.has_vad:
            # Heard this much later than the transport delivered it (resampling).
            metrics["input_delay"] = self._state.input_delay
        if probability is not None:
            metrics["end_of_turn_probability"] = probability
        self._planner.send_nowait(
            UserTurnCompleted(
                transcript=transcript,
                started_speaking_at=heard.speech_started,
                stopped_speaking_at=heard.last_voiced,
                confidence=heard.confidence(),
                skip_reply=skip_reply,
                metrics=metrics,
                exceeded=exceeded,
            )
        )
        heard.committed()
        self.answer_manual(transcript)
        return True

    def answer_manual(self, transcript: str) -> None:
        """Answer the pending commit_user_turn(), if any."""
        if self.manual is not None:
            commit, self.manual = self.manual, None
            commit.set_result(transcript)
