"""Turn: decides when the user's turn is over and when the user cuts in.

Endpointing is measured on one clock, the audio clock, whatever reported
the end of speech (the VAD, itself ``min_silence_duration`` late; the
recognizer; a manual commit)::

    commit_at = last_voiced + delay
    delay     = max_endpointing_delay  if an end-of-turn detector finds the
                                       turn unlikely to be over,
                min_endpointing_delay  otherwise

where ``last_voiced`` is the audio timestamp of the last voiced audio: the
VAD's end of speech minus the silence it waited, the last voiced inference
tick, or the recognizer's end time when there is no VAD. The eou metrics
report the parts: ``end_of_utterance_delay = commit - last_voiced``,
``transcription_delay = final transcript - last_voiced``,
``endpointing_delay`` (the delay chosen) and ``end_of_turn_probability``.
The reference measures this differently in VAD and STT modes (its #4325);
here it is the same formula in every mode.

Rules kept here: no commit without a transcript when there is a recognizer;
new speech cancels a pending commit; transcript fragments that arrive after
a commit start the next turn (never a phantom turn of their own); the two
interruption paths' gates (duration, words, AEC warm-up, mode); the user
state (listening, speaking, away on a deadline, paused while tools run);
the reply hold-off; the transcription timeout and the user-turn limit.
"""

from __future__ import annotations

import math
import re
from typing import Any

import trio

from .._sync import Future
from ..errors import ProviderOutputError
from ..events import (
    ErrorEvent,
    EventBus,
    UserInputTranscribed,
    UserState,
    UserStateChanged,
    UserTranscriptionTimeout,
)
from ..messages import (
    ActivityChanged,
    AgentSpeech,
    ClearUserTurn,
    CloseUserTurn,
    CommitUserTurn,
    EndOfTurnPending,
    ErrorCountReset,
    FlushRecognizer,
    InputEnded,
    OptionsChanged,
    PreemptiveTranscript,
    ProviderFailed,
    ResetRecognizer,
    SetAudioInput,
    SetRecognizerMuted,
    STTEvent,
    TurnMessage,
    UserActivity,
    UserInterrupted,
    UserTurnCompleted,
    UserTurnExceeded,
    VADEvent,
)
from ..options import SessionOptions, is_given
from ..providers.base import EndOfTurnDetector
from ..state import SessionState

# VAD and recognizer events waiting for the Turn actor (it handles each at once).
EVENT_BUFFER = 256
# How long the end-of-turn detector may think before the turn goes on without it.
PREDICTION_TIMEOUT = 1.0
# A manual commit flushes the recognizer unless a final arrived this recently.
RECENT_FINAL = 0.5


def count_words(text: str) -> int:
    return len(re.findall(r"\w+(?:'\w+)?", text))


class Turn:
    def __init__(
        self,
        *,
        bus: EventBus,
        state: SessionState,
        options: SessionOptions,
        session_inbox: trio.MemorySendChannel[Any],
        has_stt: bool,
        has_vad: bool,
    ) -> None:
        self._bus = bus
        self._state = state
        self._options = options
        self._session_inbox = session_inbox
        # Set by connect(): the Planner also needs this actor's inbox, so one of
        # the two is created first.
        self._planner: trio.MemorySendChannel[Any]
        self._audio_in: trio.MemorySendChannel[Any] | None = None
        self._recognizer: trio.MemorySendChannel[Any] | None = None
        self._has_stt = has_stt
        self._has_vad = has_vad
        self.events, self._events = trio.open_memory_channel[TurnMessage](EVENT_BUFFER)
        self.inbox, self._inbox = trio.open_memory_channel[TurnMessage](math.inf)
        self._nursery: trio.Nursery | None = None
        self._agent_overrides: Any = None
        self._mode: str | None = None
        self._detector: EndOfTurnDetector | None = None
        # the audio clock: trio time = audio time + offset (updated as events arrive)
        self._clock_offset: float | None = None
        # the current user turn
        self._speaking = False  # VAD (or STT in "stt" mode) says the user is talking
        self._stt_speaking = False
        self._speech_started: float | None = None
        self._last_voiced: float | None = None
        self._transcript = ""
        self._interim = ""
        self._language: str | None = None
        self._confidences: list[float] = []
        self._final_at: float | None = None  # audio time of the last final
        self._final_at_trio: float = -math.inf
        self._stt_eos_received = False
        self._bounce: trio.CancelScope | None = None
        self._committed_since_speech = False  # a turn committed since the user last spoke
        self._manual_commit: Future[str] | None = None
        self._manual_skip_reply = False
        self._manual_wait: trio.CancelScope | None = None
        self._final_arrived = trio.Event()
        # interruption and hold-off
        self._agent = AgentSpeech(state="initializing", interruptible=True, has_current_speech=False)
        self._aec_until: float | None = None
        self._muted = False
        self._holding = False
        # user presence
        self._away_scope: trio.CancelScope | None = None
        # transcription timeout
        self._vad_speech = 0.0
        self._vad_turn_started: float | None = None
        self._transcription_timer: trio.CancelScope | None = None
        # user-turn limit (accumulated until the agent speaks)
        self._limit_words = 0
        self._limit_transcript = ""
        self._limit_started: float | None = None
        self._limit_fired = False
        # preemptive generation
        self._preempted_transcript = ""
        # the input ended and the recognizer was flushed: its last final may follow
        self._last_words_pending = False
        self._resolve_mode()

    def connect(
        self,
        *,
        planner: trio.MemorySendChannel[Any],
        recognizer: trio.MemorySendChannel[Any] | None = None,
        audio_in: trio.MemorySendChannel[Any] | None = None,
    ) -> None:
        """Give the actors this one sends to (the Planner, and when there is audio
        input the Recognizer, to flush or reset it, and AudioIn, to mute it)."""
        self._planner = planner
        self._recognizer = recognizer
        self._audio_in = audio_in

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._read, self._events)
                task_status.started()
                await self._read(self._inbox)
        finally:
            self._answer_pending_commits()

    def _answer_pending_commits(self) -> None:
        """The session is over: a commit_user_turn() still waiting, or not read
        yet, gets a closed session's answer, an empty transcript (docs/behaviour.md,
        "Endpointing")."""
        if self._manual_commit is not None and not self._manual_commit.done():
            self._manual_commit.set_result("")
        self._manual_commit = None
        while True:
            try:
                message = self._inbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            if isinstance(message, CommitUserTurn) and not message.reply.done():
                message.reply.set_result("")

    async def _read(self, channel: trio.MemoryReceiveChannel[TurnMessage]) -> None:
        async for message in channel:
            self._handle(message)

    def _handle(self, message: TurnMessage) -> None:
        if isinstance(message, VADEvent):
            self._on_vad(message)
        elif isinstance(message, STTEvent):
            self._on_stt(message)
        elif isinstance(message, AgentSpeech):
            self._on_agent(message)
        elif isinstance(message, ActivityChanged):
            self._agent_overrides = message.agent
            self._resolve_mode()
        elif isinstance(message, OptionsChanged):
            self._options = message.options
            self._resolve_mode()
        elif isinstance(message, CommitUserTurn):
            self._start(self._commit_manually(message))
        elif isinstance(message, ClearUserTurn):
            self._clear_user_turn()
        elif isinstance(message, CloseUserTurn):
            self._start(self._close_user_turn(message))
        elif isinstance(message, InputEnded):
            self._last_words_pending = self._has_stt
        elif isinstance(message, SetAudioInput):
            if not message.enabled and self._speaking:
                # No more audio: the user's speech ends here.
                self._end_of_speech(self._audio_now())
            if self._audio_in is not None:
                self._audio_in.send_nowait(message)
        else:
            # Only a VAD provider writes here unchecked (it sends to this
            # actor directly): what it sent is not a VADEvent.
            error = ProviderOutputError(f"the VAD sent {message!r:.80}, not a VADEvent", output=message)
            self._bus.emit(ErrorEvent(source="vad", message=str(error), recoverable=False, error=error))
            self._session_inbox.send_nowait(ProviderFailed(source="vad", error=error))

    def _start(self, coroutine: Any) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(lambda: coroutine)

    # -- settings ------------------------------------------------------------------------

    def _setting(self, name: str) -> Any:
        value = getattr(self._options, name)
        if self._agent_overrides is not None:
            value = self._agent_overrides.override(name, value)
        return value

    def _resolve_mode(self) -> None:
        """The turn-detection mode, with its fallbacks (docs/behaviour.md, "Turn detection")."""
        wanted = self._setting("turn_detection")
        self._detector = None
        if isinstance(wanted, EndOfTurnDetector):
            if wanted.requires_vad and not self._has_vad:
                self._mode = None
            else:
                self._detector, self._mode = wanted, None
        elif wanted == "vad" and not self._has_vad:
            self._mode = None
        elif wanted == "stt" and not self._has_stt:
            self._mode = None
        elif wanted == "realtime_llm":
            self._mode = None  # needs a RealtimeModel with server-side turn detection
        else:
            self._mode = wanted

    @property
    def _vad_driven(self) -> bool:
        return self._mode in ("vad", None) and self._has_vad

    # -- clock -----------------------------------------------------------------------------

    def _observe(self, audio_time: float) -> None:
        self._clock_offset = trio.current_time() - audio_time

    def _to_trio_time(self, audio_time: float) -> float:
        return audio_time + (self._clock_offset if self._clock_offset is not None else 0.0)

    def _audio_now(self) -> float:
        return trio.current_time() - (self._clock_offset if self._clock_offset is not None else 0.0)

    # -- user state ----------------------------------------------------------------------------

    def _set_user_state(self, new: UserState) -> None:
        old = self._state.user_state
        if old != new:
            self._state.user_state = new
            self._bus.emit(UserStateChanged(old_state=old, new_state=new))
        self._update_away_timer()

    def _update_away_timer(self) -> None:
        """Away is a deadline, armed while both sides listen and no tool runs."""
        timeout = self._options.user_away_timeout
        armed = (
            timeout is not None
            and self._state.user_state == "listening"
            and self._agent.state == "listening"
            and not self._agent.tools_running
        )
        if armed and self._away_scope is None:
            scope = trio.CancelScope(deadline=trio.current_time() + timeout)
            self._away_scope = scope
            self._start(self._away_after(scope))
        elif not armed and self._away_scope is not None:
            self._away_scope.cancel()
            self._away_scope = None

    async def _away_after(self, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep_forever()
        if scope.cancel_called and self._away_scope is scope and scope.deadline <= trio.current_time():
            self._away_scope = None
            self._set_user_state("away")

    def _rearm_away(self) -> None:
        if self._away_scope is not None:
            self._away_scope.cancel()
            self._away_scope = None
        self._update_away_timer()

    def _set_holding(self, holding: bool) -> None:
        if holding != self._holding:
            self._holding = holding
            self._state.user_silent.set(not holding)

    # -- agent ----------------------------------------------------------------------------------

    def _on_agent(self, agent: AgentSpeech) -> None:
        first_speech = agent.speaking and not self._agent.speaking and self._aec_until is None
        if agent.speaking:
            self._reset_turn_limit()
        self._agent = agent
        warmup = self._options.aec_warmup_duration
        if first_speech and warmup:
            self._aec_until = trio.current_time() + warmup
            self._start(self._end_of_warmup(self._aec_until))
        self._update_mute()
        self._update_away_timer()

    async def _end_of_warmup(self, until: float) -> None:
        await trio.sleep_until(until)
        self._update_mute()

    def _aec_warming_up(self) -> bool:
        return self._aec_until is not None and trio.current_time() < self._aec_until

    def _update_mute(self) -> None:
        agent = self._agent
        protected = (
            self._options.discard_audio_if_uninterruptible
            and agent.has_current_speech
            and not agent.interruptible
            and not agent.interrupted
        )
        muted = protected or (self._aec_warming_up() and agent.speaking)
        if muted != self._muted:
            self._muted = muted
            if self._audio_in is not None:
                self._audio_in.send_nowait(SetRecognizerMuted(muted))

    # -- interruption, path 1 (docs/behaviour.md, "Interruption") ------------------------------------

    def _current_words(self) -> int:
        return count_words(f"{self._transcript} {self._interim}")

    def _interrupt_by_audio_activity(self, reason: str, transcript: str = "") -> None:
        if self._mode in ("manual", "realtime_llm"):
            return
        if not self._agent.has_current_speech or self._agent.interrupted:
            return
        if self._aec_warming_up():
            return
        min_words = self._options.min_interruption_words
        if min_words > 0 and self._has_stt and self._current_words() < min_words:
            return
        self._planner.send_nowait(UserInterrupted(reason=reason, transcript=transcript))  # type: ignore[arg-type]

    # -- VAD ---------------------------------------------------------------------------------------

    def _on_vad(self, event: VADEvent) -> None:
        self._observe(event.timestamp)
        if event.kind == "start_of_speech":
            self._vad_start(event)
        elif event.kind == "inference":
            if event.speaking:
                self._last_voiced = event.timestamp - event.raw_accumulated_silence
            if event.speech_duration >= self._options.min_interruption_duration and (
                self._mode != "stt" or not self._stt_eos_received or event.raw_accumulated_silence == 0
            ):
                self._interrupt_by_audio_activity("vad")
            half_delay = self._setting("min_endpointing_delay") / 2
            self._set_holding(event.speaking and event.raw_accumulated_silence <= half_delay)
        elif event.kind == "end_of_speech":
            self._vad_speech += event.speech_duration if self._speaking else 0.0
            end = event.timestamp - event.silence_duration - event.inference_duration
            self._end_of_speech(end)
            if self._vad_driven or self._manual_commit is not None:
                self._end_of_utterance()
            self._arm_transcription_timeout(event)

    def _vad_start(self, event: VADEvent) -> None:
        self._speaking = True
        started = event.timestamp - event.speech_duration
        if self._speech_started is None:
            self._speech_started = started
        if self._vad_turn_started is None:
            self._vad_turn_started = started
        if self._limit_started is None:
            self._limit_started = started
        self._last_voiced = event.timestamp
        self._stt_eos_received = False
        self._committed_since_speech = False
        # Before the pending commit is called off: a false-interruption resume
        # waiting for that decision must see that the user is talking again.
        self._planner.send_nowait(UserActivity(speaking=True, at=event.timestamp))
        self._cancel_bounce()
        self._cancel_transcription_timeout()
        # The VAD drives the user state in every mode (in "stt" mode the
        # recognizer's own boundaries move it too).
        self._set_user_state("speaking")
        self._set_holding(True)
        if event.speech_duration >= self._options.min_interruption_duration:
            self._interrupt_by_audio_activity("vad")

    def _end_of_speech(self, end: float) -> None:
        self._speaking = False
        self._last_voiced = end
        self._set_user_state("listening")
        self._set_holding(False)
        self._planner.send_nowait(UserActivity(speaking=False, at=end))

    # -- recognizer ------------------------------------------------------------------------------

    def _on_stt(self, event: STTEvent) -> None:
        if event.kind == "start_of_speech":
            self._stt_speaking = True
            if self._mode == "stt":
                self._set_user_state("speaking")
                self._cancel_bounce()
            return
        if event.kind == "end_of_speech":
            self._stt_speaking = False
            self._stt_eos_received = True
            if self._mode == "stt":
                if event.end_time is not None:
                    self._last_voiced = event.end_time
                self._set_user_state("listening")
                self._end_of_utterance()
            return
        if event.kind == "interim":
            if not event.text:
                return
            if self._manual_commit is not None and self._mode == "manual":
                return  # while a manual commit is pending, only finals count
            self._interim = event.text
            self._bus.emit(UserInputTranscribed(transcript=event.text, is_final=False, language=event.language))
            if not self._has_vad:
                self._interrupt_by_audio_activity("transcript", event.text)
            return
        self._on_final(event)

    def _on_final(self, event: STTEvent) -> None:
        self._last_words_pending = False
        self._interim = ""
        self._final_at_trio = trio.current_time()
        self._final_arrived.set()
        self._final_arrived = trio.Event()
        if not event.text:
            return
        self._session_inbox.send_nowait(ErrorCountReset(sources=("stt",)))
        self._bus.emit(UserInputTranscribed(transcript=event.text, is_final=True, language=event.language))
        self._transcript = f"{self._transcript} {event.text}".strip()
        self._language = event.language or self._language
        self._confidences.append(event.confidence)
        self._final_at = self._audio_now()
        self._cancel_transcription_timeout()
        self._vad_speech = 0.0
        self._vad_turn_started = None
        if (not self._has_vad or self._last_voiced is None) and event.end_time is not None:
            self._last_voiced = event.end_time
        elif self._last_voiced is None:
            self._last_voiced = self._audio_now()
        if self._state.user_state == "away":
            self._set_user_state("listening")
        elif self._state.user_state == "listening" and self._agent.state == "listening":
            self._rearm_away()  # the VAD may have missed the speech
        self._count_for_turn_limit(event.text)
        if self._mode not in ("manual", "realtime_llm"):
            self._interrupt_by_audio_activity("transcript", event.text)
        if self._manual_commit is not None:
            if self._bounce is not None:
                self._end_of_utterance(skip_reply=self._manual_skip_reply)
            return
        if self._vad_driven and self._committed_since_speech and not self._speaking:
            # A late fragment of a turn that already committed: it opens the next
            # turn instead of becoming a turn of its own (the reference's #6504).
            return
        if self._mode in (None, "vad") or (self._mode == "stt" and not self._stt_speaking):
            self._maybe_preempt()
            if not self._speaking:
                self._end_of_utterance()

    # -- endpointing ------------------------------------------------------------------------------

    def _cancel_bounce(self) -> None:
        if self._bounce is not None:
            self._bounce.cancel()
            self._bounce = None
            self._planner.send_nowait(EndOfTurnPending(pending=False, committed=False))

    def _end_of_utterance(self, *, skip_reply: bool = False) -> None:
        """Schedule the commit of the user's turn (the "bounce"), replacing any pending one."""
        manual = self._manual_commit is not None
        if self._mode == "manual" and not manual:
            return
        if self._has_stt and not self._transcript and not manual:
            return  # noise without words is never a turn
        self._cancel_bounce()
        last_voiced = self._last_voiced if self._last_voiced is not None else self._audio_now()
        scope = trio.CancelScope()
        self._bounce = scope
        self._planner.send_nowait(EndOfTurnPending(pending=True))
        self._start(self._commit_after_delay(scope, last_voiced, skip_reply))

    async def _commit_after_delay(self, scope: trio.CancelScope, last_voiced: float, skip_reply: bool) -> None:
        with scope:
            delay = self._setting("min_endpointing_delay")
            probability = None
            detector = self._detector
            if (
                detector is not None
                and self._mode != "manual"
                and self._transcript
                and detector.supports_language(self._language)
            ):
                with trio.move_on_after(PREDICTION_TIMEOUT):
                    probability = await detector.predict_end_of_turn(
                        self._state.history.copy(), self._transcript
                    )
                if probability is not None and probability < detector.unlikely_threshold:
                    delay = self._setting("max_endpointing_delay")
            await trio.sleep_until(self._to_trio_time(last_voiced) + delay)
            if self._bounce is scope:
                self._bounce = None
            answered = bool(self._transcript) and not skip_reply  # a turn without words gets no reply
            committed = self._commit(skip_reply=skip_reply, delay=delay, probability=probability)
            self._planner.send_nowait(EndOfTurnPending(pending=False, committed=committed and answered))

    def _commit(
        self,
        *,
        skip_reply: bool,
        delay: float | None = None,
        probability: float | None = None,
        exceeded: UserTurnExceeded | None = None,
    ) -> bool:
        transcript = self._transcript
        agent = self._agent
        min_words = self._options.min_interruption_words
        if (
            self._has_stt
            and self._mode != "manual"
            and min_words > 0
            and agent.has_current_speech
            and agent.interruptible
            and not agent.interrupted
            and count_words(transcript) < min_words
        ):
            return False  # too few words to cut the agent off: keep them for the next turn
        now = self._audio_now()
        metrics: dict[str, float] = {}
        if self._last_voiced is not None:
            metrics["end_of_utterance_delay"] = max(0.0, now - self._last_voiced)
            if self._final_at is not None:
                metrics["transcription_delay"] = max(0.0, self._final_at - self._last_voiced)
        if delay is not None:
            metrics["endpointing_delay"] = delay
        if self._has_stt or self._has_vad:
            # Heard this much later than the transport delivered it (resampling).
            metrics["input_delay"] = self._state.input_delay
        if probability is not None:
            metrics["end_of_turn_probability"] = probability
        confidence = sum(self._confidences) / len(self._confidences) if self._confidences else 1.0
        self._planner.send_nowait(
            UserTurnCompleted(
                transcript=transcript,
                started_speaking_at=self._speech_started,
                stopped_speaking_at=self._last_voiced,
                confidence=confidence,
                skip_reply=skip_reply,
                metrics=metrics,
                exceeded=exceeded,
            )
        )
        self._transcript = ""
        self._confidences.clear()
        self._final_at = None
        self._preempted_transcript = ""
        self._committed_since_speech = True
        if not self._speaking:
            self._speech_started = None
        if self._manual_commit is not None:
            commit, self._manual_commit = self._manual_commit, None
            commit.set_result(transcript)
        return True

    # -- manual commit, clear, close (docs/behaviour.md, "Endpointing") ------------------------------

    async def _commit_manually(self, request: CommitUserTurn) -> None:
        if self._manual_commit is not None:
            self._manual_commit.set_result("")  # a new commit replaces a pending one
            if self._manual_wait is not None:
                self._manual_wait.cancel()
            self._cancel_bounce()
        if not self._has_stt:
            request.reply.set_result("")
            return
        self._manual_commit = request.reply
        self._manual_skip_reply = request.skip_reply
        with trio.CancelScope() as waiting:
            self._manual_wait = waiting
            if trio.current_time() - self._final_at_trio > RECENT_FINAL:
                final_arrived = self._final_arrived
                if self._recognizer is not None:
                    self._recognizer.send_nowait(FlushRecognizer())
                with trio.move_on_after(request.transcript_timeout):
                    await final_arrived.wait()
        self._manual_wait = None
        if waiting.cancel_called and not waiting.cancelled_caught:
            return
        if self._manual_commit is not request.reply:
            return  # replaced meanwhile
        if self._interim:
            # What the recognizer heard last counts, as a final.
            self._on_final(STTEvent(kind="final", text=self._interim, language=self._language))
        if self._manual_commit is request.reply and self._bounce is None:
            self._end_of_utterance(skip_reply=request.skip_reply)

    def _clear_user_turn(self) -> None:
        self._cancel_bounce()
        self._transcript = self._interim = ""
        self._confidences.clear()
        self._last_voiced = self._speech_started = None
        self._final_at = None
        self._preempted_transcript = ""
        self._cancel_transcription_timeout()
        self._vad_speech, self._vad_turn_started = 0.0, None
        self._reset_turn_limit()
        if self._manual_commit is not None:
            self._manual_commit.set_result("")
            self._manual_commit = None
        if self._recognizer is not None:
            self._recognizer.send_nowait(ResetRecognizer())

    def has_pending_turn(self) -> bool:
        return bool(self._speaking or self._transcript or self._interim or self._bounce is not None) or (
            self._vad_turn_started is not None or self._last_words_pending
        )

    async def _close_user_turn(self, request: CloseUserTurn) -> None:
        """Commit what the user said last (no reply: the session is closing).

        The reference always waits ``session_close_transcript_timeout``; this
        waits only while something is actually pending (speech, or a turn with
        no final transcript yet).
        """
        self._cancel_bounce()
        if self._has_stt and self.has_pending_turn():
            final_arrived = self._final_arrived
            if self._recognizer is not None:
                self._recognizer.send_nowait(FlushRecognizer())
            with trio.move_on_after(request.timeout):
                await final_arrived.wait()
            if self._interim:
                self._on_final(STTEvent(kind="final", text=self._interim, language=self._language))
            self._cancel_bounce()
        if self._transcript:
            self._commit(skip_reply=True)
        request.reply.set_result(None)

    # -- transcription timeout and user-turn limit (docs/behaviour.md) -------------------------------

    def _cancel_transcription_timeout(self) -> None:
        if self._transcription_timer is not None:
            self._transcription_timer.cancel()
            self._transcription_timer = None

    def _arm_transcription_timeout(self, event: VADEvent) -> None:
        timeout = self._options.transcription_timeout
        if timeout is None or not self._has_stt or not self._has_vad:
            return
        self._cancel_transcription_timeout()
        scope = trio.CancelScope()
        self._transcription_timer = scope
        deadline = trio.current_time() + timeout - (event.silence_duration + event.inference_duration)
        self._start(self._transcription_timed_out(scope, deadline))

    async def _transcription_timed_out(self, scope: trio.CancelScope, deadline: float) -> None:
        with scope:
            await trio.sleep_until(deadline)
            self._transcription_timer = None
            self._bus.emit(
                UserTranscriptionTimeout(
                    speech_duration=self._vad_speech, vad_speech_started_at=self._vad_turn_started
                )
            )

    def _reset_turn_limit(self) -> None:
        self._limit_words = 0
        self._limit_transcript = ""
        self._limit_started = None
        self._limit_fired = False

    def _count_for_turn_limit(self, text: str) -> None:
        max_words = self._options.user_turn_max_words
        max_duration = self._options.user_turn_max_duration
        if max_words is None and max_duration is None:
            return
        self._limit_words += count_words(text)
        self._limit_transcript = f"{self._limit_transcript} {text}".strip()
        duration = self._audio_now() - self._limit_started if self._limit_started is not None else 0.0
        crossed = (max_words is not None and self._limit_words > max_words) or (
            max_duration is not None and duration > max_duration
        )
        if crossed and not self._limit_fired:
            self._limit_fired = True
            # Crossing the limit ends the user's turn here: it is committed once,
            # now, and the hook decides the reply (by default a cut-in). Leaving
            # the words pending would commit them a second time at the end of
            # the utterance, after the hook answered them.
            exceeded = UserTurnExceeded(
                transcript=self._transcript,
                accumulated_transcript=self._limit_transcript,
                word_count=self._limit_words,
                duration=duration,
            )
            self._cancel_bounce()
            if not (self._transcript and self._commit(skip_reply=True, exceeded=exceeded)):
                self._planner.send_nowait(exceeded)

    # -- preemptive generation (docs/behaviour.md) ---------------------------------------------------

    def _maybe_preempt(self) -> None:
        if not self._options.preemptive_generation or self._transcript == self._preempted_transcript:
            return
        self._preempted_transcript = self._transcript
        started = self._speech_started if self._speech_started is not None else self._audio_now()
        self._planner.send_nowait(
            PreemptiveTranscript(transcript=self._transcript, speech_duration=self._audio_now() - started)
        )
