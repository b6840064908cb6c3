"""Barge-in: when the user's audio cuts the agent off, and when the agent's
speech keeps the user's audio from the recognizer (docs/behaviour.md, "Interruption")."""

from __future__ import annotations

from typing import Literal

import attrs
import trio

from ..._sync import Flag
from ...links import AudioInLink, PlannerLink
from ...messages import AgentSpeech, SetRecognizerMuted, UserInterrupted
from .settings import Tasks, TurnSettings
from .utterance import Utterance, count_words


@attrs.define(kw_only=True)
class BargeIn:
    """Knows what the agent is doing (the Planner's last ``AgentSpeech``) and
    decides, for each sign of the user's voice, whether it interrupts.

    The gates of an interruption by audio activity: a mode that lets audio
    interrupt, a current speech not already interrupted, the echo canceller's
    warm-up over, and (with a recognizer) ``min_interruption_words`` heard.
    It also publishes the reply hold-off (``SessionState.user_silent``) and
    mutes the recognizer's input while a protected speech plays or the echo
    canceller warms up. Invariants: ``_muted`` is what AudioIn was last told;
    ``_holding`` is ``not user_silent``.
    """

    _settings: TurnSettings
    _planner: PlannerLink
    # AudioIn's control inbox, to mute the recognizer (None: no audio input)
    _audio_in: AudioInLink | None
    # SessionState.user_silent, which this part alone writes (the reply hold-off)
    _user_silent: Flag
    _tasks: Tasks
    # what the agent is doing, as the Planner last said
    agent: AgentSpeech = attrs.field(
        init=False, factory=lambda: AgentSpeech(state="initializing", interruptible=True, has_current_speech=False)
    )
    # trio time the echo canceller's warm-up ends; None until the agent first speaks
    _aec_until: float | None = attrs.field(init=False, default=None)
    # the recognizer hears silence instead of the user (what AudioIn was last told)
    _muted: bool = attrs.field(init=False, default=False)
    # replies must wait: published as user_silent false
    _holding: bool = attrs.field(init=False, default=False)

    def agent_changed(self, agent: AgentSpeech) -> None:
        first_speech = agent.speaking and not self.agent.speaking and self._aec_until is None
        self.agent = agent
        warmup = self._settings.options.aec_warmup_duration
        if first_speech and warmup:
            self._aec_until = trio.current_time() + warmup
            self._tasks.start(self._end_of_warmup, self._aec_until)
        self._update_mute()

    async def _end_of_warmup(self, until: float) -> None:
        await trio.sleep_until(until)
        self._update_mute()

    def _aec_warming_up(self) -> bool:
        return self._aec_until is not None and trio.current_time() < self._aec_until

    def _update_mute(self) -> None:
        agent = self.agent
        protected = (
            self._settings.options.discard_audio_if_uninterruptible
            and agent.has_current_speech
            and not agent.interruptible
            and not agent.interrupted
        )
        muted = protected or (self._aec_warming_up() and agent.speaking)
        if muted != self._muted:
            self._muted = muted
            if self._audio_in is not None:
                self._audio_in.send_nowait(SetRecognizerMuted(muted))

    def hold(self, holding: bool) -> None:
        """The reply hold-off: replies wait while ``holding``."""
        if holding != self._holding:
            self._holding = holding
            self._user_silent.set(not holding)

    def interrupt(self, reason: Literal["vad", "transcript"], heard: Utterance, transcript: str = "") -> None:
        """The user's voice (``reason``) cuts the agent off, if every gate lets it."""
        if self._settings.detection.manual:
            return
        if not self.agent.has_current_speech or self.agent.interrupted:
            return
        if self._aec_warming_up():
            return
        min_words = self._settings.options.min_interruption_words
        if min_words > 0 and self._settings.has_stt and heard.words() < min_words:
            return
        self._planner.send_nowait(UserInterrupted(reason=reason, transcript=transcript))

    def too_few_words_to_cut_in(self, transcript: str) -> bool:
        """A turn of fewer than ``min_interruption_words`` over an interruptible
        speech is not committed: its words wait for the next turn."""
        agent = self.agent
        min_words = self._settings.options.min_interruption_words
        return (
            self._settings.has_stt
            and not self._settings.detection.manual
            and min_words > 0
            and agent.has_current_speech
            and agent.interruptible
            and not agent.interrupted
            and count_words(transcript) < min_words
        )
