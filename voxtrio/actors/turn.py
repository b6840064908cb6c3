"""Turn: decides when the user's turn is over and when the user cuts in.

Endpointing is measured on one clock, the audio clock: a turn commits
``min_endpointing_delay`` after the audio timestamp of the last voiced frame,
whatever reported the end of speech (the VAD, which is itself ``min_silence``
late, or the recognizer). So::

    commit_time = last_voiced_audio_time + min_endpointing_delay

and the EOU metrics report ``end_of_utterance_delay = commit - last_voiced``
and ``transcription_delay = final_transcript - last_voiced``. New speech
cancels a pending commit; with a recognizer there is no commit without a
transcript (noise never becomes a turn).

The user state (listening/speaking) is owned here.
"""

from __future__ import annotations

import math
from typing import Any

import trio

from ..events import EventBus, UserInputTranscribed, UserState, UserStateChanged
from ..messages import (
    AgentSpeech,
    ClearUserTurn,
    CommitUserTurn,
    ErrorCountReset,
    OptionsChanged,
    STTEvent,
    TurnMessage,
    UserActivity,
    UserInterrupted,
    UserTurnCompleted,
    VADEvent,
)
from ..options import SessionOptions
from ..state import SessionState

# VAD and recognizer events waiting for the Turn actor (it handles each at once).
EVENT_BUFFER = 256


class Turn:
    def __init__(
        self,
        *,
        bus: EventBus,
        state: SessionState,
        options: SessionOptions,
        planner_inbox: trio.MemorySendChannel[Any],
        session_inbox: trio.MemorySendChannel[Any],
        has_stt: bool,
        has_vad: bool,
    ) -> None:
        self._bus = bus
        self._state = state
        self._options = options
        self._planner = planner_inbox
        self._session_inbox = session_inbox
        self._has_stt = has_stt
        self._has_vad = has_vad
        self.events, self._events = trio.open_memory_channel[TurnMessage](EVENT_BUFFER)
        self.inbox, self._inbox = trio.open_memory_channel[TurnMessage](math.inf)
        self._nursery: trio.Nursery | None = None
        # the audio clock: trio time = audio time + offset (updated as events arrive)
        self._clock_offset: float | None = None
        self._speaking = False
        self._speech_started: float | None = None
        self._last_voiced: float | None = None
        self._final_transcript_at: float | None = None
        self._transcript = ""
        self._interim = ""
        self._bounce: trio.CancelScope | None = None
        self._agent = AgentSpeech(speaking=False, interruptible=True, has_current_speech=False)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._read, self._events)
            task_status.started()
            await self._read(self._inbox)
            nursery.cancel_scope.cancel()

    async def _read(self, channel: trio.MemoryReceiveChannel[TurnMessage]) -> None:
        async for message in channel:
            self._handle(message)

    def _handle(self, message: TurnMessage) -> None:
        if isinstance(message, VADEvent):
            self._on_vad(message)
        elif isinstance(message, STTEvent):
            self._on_stt(message)
        elif isinstance(message, AgentSpeech):
            self._agent = message
        elif isinstance(message, OptionsChanged):
            self._options = message.options
        elif isinstance(message, CommitUserTurn):
            self._commit_now(skip_reply=message.skip_reply, reply=message.reply)
        elif isinstance(message, ClearUserTurn):
            self._cancel_bounce()
            self._transcript = self._interim = ""
            self._last_voiced = self._speech_started = None

    # -- clock -----------------------------------------------------------------

    def _observe(self, audio_time: float) -> None:
        self._clock_offset = trio.current_time() - audio_time

    def _to_trio_time(self, audio_time: float) -> float:
        offset = self._clock_offset if self._clock_offset is not None else 0.0
        return audio_time + offset

    def _audio_now(self) -> float:
        offset = self._clock_offset if self._clock_offset is not None else 0.0
        return trio.current_time() - offset

    # -- user state --------------------------------------------------------------

    def _set_user_state(self, new: UserState) -> None:
        old = self._state.user_state
        if old != new:
            self._state.user_state = new
            self._bus.emit(UserStateChanged(old_state=old, new_state=new))

    # -- VAD -----------------------------------------------------------------------

    def _on_vad(self, event: VADEvent) -> None:
        self._observe(event.timestamp)
        if event.kind == "start_of_speech":
            self._speaking = True
            if self._speech_started is None:
                self._speech_started = event.timestamp - event.speech_duration
            self._last_voiced = event.timestamp
            self._cancel_bounce()
            self._set_user_state("speaking")
            self._planner.send_nowait(UserActivity(speaking=True, at=event.timestamp))
        elif event.kind == "inference":
            if event.speaking:
                self._last_voiced = event.timestamp
            if (
                event.speech_duration >= self._options.min_interruption_duration
                and self._agent.has_current_speech
            ):
                self._planner.send_nowait(UserInterrupted(reason="vad"))
        elif event.kind == "end_of_speech":
            self._speaking = False
            self._last_voiced = event.timestamp - event.silence_duration - event.inference_duration
            self._set_user_state("listening")
            self._planner.send_nowait(UserActivity(speaking=False, at=self._last_voiced))
            self._end_of_utterance()

    # -- recognizer --------------------------------------------------------------------

    def _on_stt(self, event: STTEvent) -> None:
        if event.kind == "interim" and event.text:
            self._interim = event.text
            self._bus.emit(UserInputTranscribed(transcript=event.text, is_final=False, language=event.language))
        elif event.kind == "final":
            self._interim = ""
            if not event.text:
                return
            self._session_inbox.send_nowait(ErrorCountReset(sources=("stt",)))
            self._bus.emit(UserInputTranscribed(transcript=event.text, is_final=True, language=event.language))
            self._transcript = f"{self._transcript} {event.text}".strip()
            self._final_transcript_at = self._audio_now()
            if not self._has_vad and event.end_time is not None:
                self._last_voiced = event.end_time
            elif self._last_voiced is None:
                self._last_voiced = self._audio_now()
            if self._agent.has_current_speech:
                self._planner.send_nowait(UserInterrupted(reason="transcript", transcript=event.text))
            if not self._speaking:
                self._end_of_utterance()

    # -- endpointing ------------------------------------------------------------------------

    def _cancel_bounce(self) -> None:
        if self._bounce is not None:
            self._bounce.cancel()
            self._bounce = None

    def _end_of_utterance(self) -> None:
        if self._has_stt and not self._transcript:
            return
        self._cancel_bounce()
        last_voiced = self._last_voiced if self._last_voiced is not None else self._audio_now()
        deadline = self._to_trio_time(last_voiced) + self._options.min_endpointing_delay
        scope = trio.CancelScope()
        self._bounce = scope
        assert self._nursery is not None
        self._nursery.start_soon(self._commit_at, scope, deadline)

    async def _commit_at(self, scope: trio.CancelScope, deadline: float) -> None:
        with scope:
            await trio.sleep_until(deadline)
            self._bounce = None
            self._commit_now(skip_reply=False)

    def _commit_now(self, *, skip_reply: bool, reply: Any = None) -> None:
        transcript = self._transcript
        now = self._audio_now()
        metrics: dict[str, float] = {}
        if self._last_voiced is not None:
            metrics["end_of_utterance_delay"] = max(0.0, now - self._last_voiced)
            if self._final_transcript_at is not None:
                metrics["transcription_delay"] = max(0.0, self._final_transcript_at - self._last_voiced)
        self._planner.send_nowait(
            UserTurnCompleted(
                transcript=transcript,
                started_speaking_at=self._speech_started,
                stopped_speaking_at=self._last_voiced,
                skip_reply=skip_reply,
                metrics=metrics,
            )
        )
        self._transcript = ""
        self._final_transcript_at = None
        if not self._speaking:
            self._speech_started = None
        if reply is not None:
            reply.set_result(transcript)
