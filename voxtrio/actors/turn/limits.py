"""The transcription timeout and the user-turn limit (docs/behaviour.md)."""

from __future__ import annotations

import attrs
import trio

from ...events import EventBus, UserTranscriptionTimeout, UserTurnExceeded
from ...messages import VADEvent
from .settings import Tasks, TurnSettings
from .utterance import count_words


@attrs.define(kw_only=True)
class TurnLimits:
    """Two watches over a turn.

    The transcription timeout: the VAD heard speech but no final transcript
    came within ``transcription_timeout`` of its end (an event, nothing more).
    The user-turn limit: the user has talked past ``user_turn_max_words`` or
    ``user_turn_max_duration``, counted over the turns since the agent last
    spoke; crossing it fires once until the count is reset. Invariant:
    ``_timer`` is the armed timeout's scope, None when none is armed.
    """

    _bus: EventBus
    _settings: TurnSettings
    _tasks: Tasks
    # the VAD's speech since the last final (seconds), and when it began (audio time)
    vad_speech: float = attrs.field(init=False, default=0.0)
    vad_turn_started: float | None = attrs.field(init=False, default=None)
    # the armed transcription timeout
    _timer: trio.CancelScope | None = attrs.field(init=False, default=None)
    # the user-turn limit's count: words, their text, and when it began (audio time)
    _words: int = attrs.field(init=False, default=0)
    _transcript: str = attrs.field(init=False, default="")
    started: float | None = attrs.field(init=False, default=None)
    # the limit was crossed since the count was reset
    _fired: bool = attrs.field(init=False, default=False)

    # -- transcription timeout --------------------------------------------------------------

    def forget_speech(self) -> None:
        """A final came (or the turn was cleared): the timeout is called off
        and the speech it counts starts again."""
        self.cancel_timeout()
        self.vad_speech = 0.0
        self.vad_turn_started = None

    def cancel_timeout(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def arm_timeout(self, event: VADEvent) -> None:
        timeout = self._settings.options.transcription_timeout
        if timeout is None or not self._settings.has_stt or not self._settings.has_vad:
            return
        self.cancel_timeout()
        scope = trio.CancelScope()
        self._timer = scope
        deadline = trio.current_time() + timeout - (event.silence_duration + event.inference_duration)
        self._tasks.start(self._timed_out, scope, deadline)

    async def _timed_out(self, scope: trio.CancelScope, deadline: float) -> None:
        with scope:
            await trio.sleep_until(deadline)
            self._timer = None
            self._bus.emit(
                UserTranscriptionTimeout(speech_duration=self.vad_speech, vad_speech_started_at=self.vad_turn_started)
            )

    # -- user-turn limit ----------------------------------------------------------------------

    def reset_turn_limit(self) -> None:
        self._words = 0
        self._transcript = ""
        self.started = None
        self._fired = False

    def count(self, text: str, transcript: str, audio_now: float) -> UserTurnExceeded | None:
        """Count a final's ``text``; the limit's report if this crossed it."""
        options = self._settings.options
        max_words = options.user_turn_max_words
        max_duration = options.user_turn_max_duration
        if max_words is None and max_duration is None:
            return None
        self._words += count_words(text)
        self._transcript = f"{self._transcript} {text}".strip()
        duration = audio_now - self.started if self.started is not None else 0.0
        crossed = (max_words is not None and self._words > max_words) or (
            max_duration is not None and duration > max_duration
        )
        if not crossed or self._fired:
            return None
        self._fired = True
        return UserTurnExceeded(
            transcript=transcript,
            accumulated_transcript=self._transcript,
            word_count=self._words,
            duration=duration,
        )
