"""The Turn actor: its inbox, its dispatch, and the rules that join its parts.

The parts own their state: :class:`Utterance` (what the user said in the
turn being built), :class:`Endpointing` (the pending commit), :class:`BargeIn`
(what the agent is doing, interruptions, the hold-off, muting),
:class:`Presence` (the user state and the away deadline), :class:`TurnLimits`
(the transcription timeout, the user-turn limit). The actor turns each
message into calls on them, in the order the rules need.
"""

from __future__ import annotations

from typing import assert_never

import trio

from ...errors import ProviderOutputError
from ...events import ErrorEvent, EventBus, UserInputTranscribed
from ...links import AudioInLink, PlannerLink, RealtimeControl, RecognizerLink, SupervisorLink
from ...messages import (
    ActivityChanged,
    AgentSpeech,
    ListenWith,
    ClearUserTurn,
    CloseUserTurn,
    CommitUserTurn,
    ErrorCountReset,
    FlushRecognizer,
    InputEnded,
    OptionsChanged,
    PreemptiveTranscript,
    ProviderFailed,
    RealtimeClearAudio,
    RealtimeCommitAudio,
    ResetRecognizer,
    SetAudioInput,
    STTEvent,
    TurnEvent,
    TurnMessage,
    UserActivity,
    VADEvent,
)
from ...options import SessionOptions
from ...state import SessionState
from .barge_in import BargeIn
from .endpointing import Endpointing
from .limits import TurnLimits
from .presence import Presence
from .settings import Tasks, TurnSettings
from .utterance import AudioClock, Utterance

# A manual commit flushes the recognizer unless a final arrived this recently.
RECENT_FINAL = 0.5


class Turn:
    """Decides when the user's turn is over and when the user cuts in."""

    def __init__(
        self,
        *,
        bus: EventBus,
        state: SessionState,
        options: SessionOptions,
        inbox: trio.MemoryReceiveChannel[TurnMessage],
        events: trio.MemoryReceiveChannel[TurnEvent],
        planner: PlannerLink,
        supervisor: SupervisorLink,
        recognizer: RecognizerLink | None,
        audio_in: AudioInLink | None,
        has_stt: bool,
        has_vad: bool,
        realtime: RealtimeControl | None = None,
    ) -> None:
        self._bus = bus
        self._inbox = inbox
        # the VAD's and the recognizer's events (a VAD provider may write here itself)
        self._events = events
        self._planner = planner
        self._supervisor = supervisor
        # to flush or reset the recognizer (None: no audio input, or no recognizer)
        self._recognizer = recognizer
        # to turn the input on or off (push-to-talk; None: no audio input)
        self._audio_in = audio_in
        self._realtime = realtime  # to commit or clear the audio a realtime model hears
        # the parts, which own the Turn's state (see the module docstring)
        self._settings = TurnSettings(options=options, has_stt=has_stt, has_vad=has_vad)
        self._tasks = Tasks()
        self._clock = AudioClock()
        self._heard = Utterance()
        self._barge_in = BargeIn(
            settings=self._settings,
            planner=planner,
            audio_in=audio_in,
            user_silent=state.user_silent,
            tasks=self._tasks,
        )
        self._endpointing = Endpointing(
            heard=self._heard,
            clock=self._clock,
            barge_in=self._barge_in,
            settings=self._settings,
            state=state,
            planner=planner,
            tasks=self._tasks,
        )
        self._presence = Presence(state=state, bus=bus, settings=self._settings, tasks=self._tasks)
        self._limits = TurnLimits(bus=bus, settings=self._settings, tasks=self._tasks)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._tasks.nursery = nursery
                nursery.start_soon(self._read_events)
                task_status.started()
                async for message in self._inbox:
                    self._handle(message)
        finally:
            self._answer_pending_commits()

    async def _read_events(self) -> None:
        async for event in self._events:
            if isinstance(event, (VADEvent, STTEvent)):
                self._handle(event)
            else:
                # A VAD provider writes here itself, unchecked: what it sent is not a VADEvent.
                error = ProviderOutputError(f"the VAD sent {event!r:.80}, not a VADEvent", output=event)
                self._bus.emit(ErrorEvent(source="vad", message=str(error), recoverable=False, error=error))
                self._supervisor.send_nowait(ProviderFailed(source="vad", error=error))

    def _answer_pending_commits(self) -> None:
        """The session is over: a commit_user_turn() still waiting, or not read
        yet, gets a closed session's answer, an empty transcript (docs/behaviour.md,
        "Endpointing")."""
        manual = self._endpointing.manual
        if manual is not None and not manual.done():
            manual.set_result("")
        self._endpointing.manual = None
        while True:
            try:
                message = self._inbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            if isinstance(message, CommitUserTurn) and not message.reply.done():
                message.reply.set_result("")

    def _handle(self, message: TurnMessage) -> None:
        match message:
            case VADEvent():
                self._on_vad(message)
            case STTEvent():
                self._on_stt(message)
            case AgentSpeech():
                self._on_agent(message)
            case ActivityChanged():
                if self._settings.listen_with(message.realtime) and self._audio_in is not None:
                    self._audio_in.send_nowait(ListenWith(realtime=message.realtime is not None))
                self._settings.agent = message.agent
                self._settings.resolve()
            case OptionsChanged():
                self._settings.options = message.options
                self._settings.resolve()
            case CommitUserTurn():
                self._tasks.start(self._commit_manually, message)
            case ClearUserTurn():
                self._clear_user_turn()
            case CloseUserTurn():
                self._tasks.start(self._close_user_turn, message)
            case InputEnded():
                self._heard.last_words_pending = self._settings.has_stt
            case SetAudioInput():
                if not message.enabled and self._heard.speaking:
                    self._end_of_speech(self._clock.now())  # no more audio: the user's speech ends here
                if self._audio_in is not None:
                    self._audio_in.send_nowait(message)
            case _:
                assert_never(message)

    # -- the agent ------------------------------------------------------------------------------

    def _on_agent(self, agent: AgentSpeech) -> None:
        if agent.speaking:
            self._limits.reset_turn_limit()
        self._barge_in.agent_changed(agent)
        self._presence.update(agent)

    # -- the VAD (docs/behaviour.md, "Interruption", "The reply hold-off") -------------------------

    def _on_vad(self, event: VADEvent) -> None:
        self._clock.observe(event.timestamp)
        heard, detection = self._heard, self._settings.detection
        if event.kind == "start_of_speech":
            self._vad_start(event)
        elif event.kind == "inference":
            if event.speaking:
                heard.last_voiced = event.timestamp - event.raw_accumulated_silence
            if event.speech_duration >= self._settings.options.min_interruption_duration and (
                not detection.recognizer_bounds or not heard.stt_eos_received or event.raw_accumulated_silence == 0
            ):
                self._barge_in.interrupt("vad", heard)
            half_delay = self._settings.get("min_endpointing_delay") / 2
            self._barge_in.hold(event.speaking and event.raw_accumulated_silence <= half_delay)
        elif event.kind == "end_of_speech":
            self._limits.vad_speech += event.speech_duration if heard.speaking else 0.0
            self._end_of_speech(event.timestamp - event.silence_duration - event.inference_duration)
            if detection.vad_driven or self._endpointing.manual is not None:
                self._endpointing.end_of_utterance()
            self._limits.arm_timeout(event)

    def _vad_start(self, event: VADEvent) -> None:
        heard, limits = self._heard, self._limits
        heard.speaking = True
        started = event.timestamp - event.speech_duration
        if heard.speech_started is None:
            heard.speech_started = started
        if limits.vad_turn_started is None:
            limits.vad_turn_started = started
        if limits.started is None:
            limits.started = started
        heard.last_voiced = event.timestamp
        heard.stt_eos_received = False
        heard.committed_since_speech = False
        # Before the pending commit is called off: a false-interruption resume
        # waiting for that decision must see that the user is talking again.
        self._planner.send_nowait(UserActivity(speaking=True, at=event.timestamp))
        self._endpointing.cancel_bounce()
        limits.cancel_timeout()
        # The VAD drives the user state in every mode (in "stt" mode the
        # recognizer's own boundaries move it too).
        self._presence.set("speaking", self._barge_in.agent)
        self._barge_in.hold(True)
        long_enough = event.speech_duration >= self._settings.options.min_interruption_duration
        if long_enough or self._settings.detection.server_turns:
            self._barge_in.interrupt("vad", heard)

    def _end_of_speech(self, end: float) -> None:
        self._heard.speaking = False
        self._heard.last_voiced = end
        self._presence.set("listening", self._barge_in.agent)
        self._barge_in.hold(False)
        self._planner.send_nowait(UserActivity(speaking=False, at=end))

    # -- the recognizer ------------------------------------------------------------------------------

    def _on_stt(self, event: STTEvent) -> None:
        heard, detection = self._heard, self._settings.detection
        if event.kind == "start_of_speech":
            heard.stt_speaking = True
            if detection.recognizer_bounds:
                self._presence.set("speaking", self._barge_in.agent)
                self._endpointing.cancel_bounce()
        elif event.kind == "end_of_speech":
            heard.stt_speaking = False
            heard.stt_eos_received = True
            if detection.recognizer_bounds:
                if event.end_time is not None:
                    heard.last_voiced = event.end_time
                self._presence.set("listening", self._barge_in.agent)
                self._endpointing.end_of_utterance()
        elif event.kind == "interim":
            if not event.text:
                return
            if self._endpointing.manual is not None and detection.manual:
                return  # while a manual commit is pending, only finals count
            heard.interim = event.text
            self._bus.emit(UserInputTranscribed(transcript=event.text, is_final=False, language=event.language))
            if not self._settings.has_vad:
                self._barge_in.interrupt("transcript", heard, event.text)
        else:
            self._on_final(event)

    def _on_final(self, event: STTEvent) -> None:
        heard, detection, endpointing = self._heard, self._settings.detection, self._endpointing
        heard.final_heard()
        if not event.text:
            return
        self._supervisor.send_nowait(ErrorCountReset(sources=("stt",)))
        self._bus.emit(UserInputTranscribed(transcript=event.text, is_final=True, language=event.language))
        heard.add_final(event.text, event.language, event.confidence, self._clock.now())
        self._limits.forget_speech()
        if (not self._settings.has_vad or heard.last_voiced is None) and event.end_time is not None:
            heard.last_voiced = event.end_time
        elif heard.last_voiced is None:
            heard.last_voiced = self._clock.now()
        agent = self._barge_in.agent
        if self._presence.user_state == "away":
            self._presence.set("listening", agent)
        elif self._presence.user_state == "listening" and agent.state == "listening":
            self._presence.rearm(agent)  # the VAD may have missed the speech
        self._count_for_turn_limit(event.text)
        if not detection.manual:
            self._barge_in.interrupt("transcript", heard, event.text)
        if endpointing.manual is not None:
            if endpointing.bounce is not None:
                endpointing.end_of_utterance(skip_reply=endpointing.manual_skip_reply)
            return
        if detection.vad_driven and heard.committed_since_speech and not heard.speaking:
            # A late fragment of a turn that already committed: it opens the next
            # turn instead of becoming a turn of its own (the reference's #6504).
            return
        if not detection.manual and not (detection.recognizer_bounds and heard.stt_speaking):
            self._maybe_preempt()
            if not heard.speaking:
                endpointing.end_of_utterance()

    def _promote_interim(self) -> None:
        """What the recognizer heard last counts, as a final."""
        if self._heard.interim:
            self._on_final(STTEvent(kind="final", text=self._heard.interim, language=self._heard.language))

    # -- limits and preemptive generation (docs/behaviour.md) -----------------------------------------

    def _count_for_turn_limit(self, text: str) -> None:
        exceeded = self._limits.count(text, self._heard.transcript, self._clock.now())
        if exceeded is not None:
            # Crossing the limit ends the user's turn here: it is committed once,
            # now, and the hook decides the reply (by default a cut-in). Leaving
            # the words pending would commit them a second time at the end of
            # the utterance, after the hook answered them.
            self._endpointing.cancel_bounce()
            if not (self._heard.transcript and self._endpointing.commit(skip_reply=True, exceeded=exceeded)):
                self._planner.send_nowait(exceeded)

    def _maybe_preempt(self) -> None:
        heard = self._heard
        if not self._settings.options.preemptive_generation or heard.transcript == heard.preempted_transcript:
            return
        heard.preempted_transcript = heard.transcript
        started = heard.speech_started if heard.speech_started is not None else self._clock.now()
        self._planner.send_nowait(
            PreemptiveTranscript(transcript=heard.transcript, speech_duration=self._clock.now() - started)
        )

    # -- manual commit, clear, close (docs/behaviour.md, "Endpointing") --------------------------------

    async def _flush_for_final(self, timeout: float) -> None:
        """Ask the recognizer for its final transcript and wait for it, at most ``timeout``."""
        final_arrived = self._heard.final_arrived
        if self._settings.has_realtime and self._realtime is not None:
            self._realtime.send_nowait(RealtimeCommitAudio())
        elif self._recognizer is not None:
            self._recognizer.send_nowait(FlushRecognizer())
        with trio.move_on_after(timeout):
            await final_arrived.wait()

    async def _commit_manually(self, request: CommitUserTurn) -> None:
        endpointing = self._endpointing
        if endpointing.manual is not None:
            endpointing.manual.set_result("")  # a new commit replaces a pending one
            if endpointing.manual_wait is not None:
                endpointing.manual_wait.cancel()
            endpointing.cancel_bounce()
        if not self._settings.has_stt:
            request.reply.set_result("")
            return
        endpointing.manual = request.reply
        endpointing.manual_skip_reply = request.skip_reply
        with trio.CancelScope() as waiting:
            endpointing.manual_wait = waiting
            if trio.current_time() - self._heard.final_at_trio > RECENT_FINAL:
                await self._flush_for_final(request.transcript_timeout)
        endpointing.manual_wait = None
        if waiting.cancel_called and not waiting.cancelled_caught:
            return
        if endpointing.manual is not request.reply:
            return  # replaced meanwhile
        self._promote_interim()
        if endpointing.manual is request.reply and endpointing.bounce is None:
            endpointing.end_of_utterance(skip_reply=request.skip_reply)

    def _clear_user_turn(self) -> None:
        self._endpointing.cancel_bounce()
        self._heard.clear()
        self._limits.forget_speech()
        self._limits.reset_turn_limit()
        self._endpointing.answer_manual("")
        if self._settings.has_realtime and self._realtime is not None:
            self._realtime.send_nowait(RealtimeClearAudio())
        elif self._recognizer is not None:
            self._recognizer.send_nowait(ResetRecognizer())

    def _has_pending_turn(self) -> bool:
        heard = self._heard
        return bool(heard.speaking or heard.transcript or heard.interim or self._endpointing.bounce is not None) or (
            self._limits.vad_turn_started is not None or heard.last_words_pending
        )

    async def _close_user_turn(self, request: CloseUserTurn) -> None:
        """Commit what the user said last (no reply: the session is closing).

        The reference always waits ``session_close_transcript_timeout``; this
        waits only while something is actually pending (speech, or a turn with
        no final transcript yet).
        """
        self._endpointing.cancel_bounce()
        if self._settings.has_stt and self._has_pending_turn():
            await self._flush_for_final(request.timeout)
            self._promote_interim()
            self._endpointing.cancel_bounce()
        if self._heard.transcript:
            self._endpointing.commit(skip_reply=True)
        request.reply.set_result(None)
