"""A step's audio: asking the Speaker to synthesize and to play it, and what it means for the agent's state."""

from __future__ import annotations

import itertools
from typing import Any, AsyncIterable

import trio

from ..._sync import Future
from ...faults import FAULTS
from ...messages import PlaySegment, PlayoutResult, PlayoutStalled, SynthesizeSegment
from ...state import SessionState
from .agent_state import AgentStatus
from .speeches import SpeechRun, SpeechScheduler
from .stage import Stage


class Playout:
    """The Planner's side of the Speaker: segments are synthesized as soon as
    their text starts to exist and played once their step is authorized."""

    def __init__(
        self,
        *,
        state: SessionState,
        stage: Stage,
        speaker_inbox: trio.MemorySendChannel[Any],
        planner_inbox: trio.MemorySendChannel[Any],
        agent_status: AgentStatus,
        speeches: SpeechScheduler,
    ) -> None:
        self._state = state
        self._stage = stage
        self._speaker = speaker_inbox
        self._planner = planner_inbox
        self._agent_status = agent_status
        self._speeches = speeches
        # The number of the next segment (unique in the session).
        self._segment_ids = itertools.count(1)

    def synthesize_now(
        self,
        run: SpeechRun,
        text: trio.MemoryReceiveChannel[str],
        audio: AsyncIterable[Any] | None = None,
    ) -> str:
        """Ask for a segment at once (say(): TTS requests keep the order of the calls)."""
        segment_id = f"{run.handle.id}/{next(self._segment_ids)}"
        self._speaker.send_nowait(self._synthesis(run, segment_id, text, audio))
        return segment_id

    async def synthesize(self, run: SpeechRun, text: trio.MemoryReceiveChannel[str]) -> str:
        segment_id = f"{run.handle.id}/{next(self._segment_ids)}"
        await self._speaker.send(self._synthesis(run, segment_id, text, None))
        return segment_id

    def _synthesis(
        self,
        run: SpeechRun,
        segment_id: str,
        text: trio.MemoryReceiveChannel[str],
        audio: AsyncIterable[Any] | None,
    ) -> SynthesizeSegment:
        return SynthesizeSegment(
            segment_id=segment_id,
            speech_id=run.handle.id,
            text=text,
            audio=audio,
            tts=self._stage.tts_for(run.owner),
        )

    async def play(self, run: SpeechRun, segment_id: str) -> PlayoutResult:
        handle = run.handle
        started: Future[float | None] = Future()
        reply: Future[PlayoutResult] = Future()
        planner = self._planner
        await self._speaker.send(
            PlaySegment(
                segment_id=segment_id,
                handle=handle,
                started=started,
                reply=reply,
                hold_while_user_speaks=self._state.user_silent if handle.allow_interruptions else None,
                on_stall=lambda stalled: planner.send_nowait(PlayoutStalled(handle, stalled)),
            )
        )
        if await started is not None:
            self._agent_status.set("speaking")
        return await reply

    def on_stalled(self, message: PlayoutStalled) -> None:
        """The agent is 'speaking' only while its audio plays: while the speech's
        audio has run out (a stuck TTS) it is 'thinking' (the reference's #3418)."""
        if FAULTS.ignore_playout_stalls:
            return
        if self._state.current_speech is not message.handle or message.handle.done():
            return
        if message.stalled and self._agent_status.current == "speaking":
            self._agent_status.set("thinking")
        elif not message.stalled and self._agent_status.current == "thinking":
            self._agent_status.set("speaking")

    def after(self, run: SpeechRun, *, tools_pending: bool, had_output: bool) -> None:
        """The step played: the agent thinks (a reply to its tools follows) or listens."""
        if had_output and not run.handle.interrupted:
            self._agent_status.set("thinking")
        elif self._agent_status.current == "speaking":
            # Another speech's tool still running keeps the agent thinking too
            # (a filler said from inside a slow tool).
            busy = tools_pending or self._speeches.tools_to_answer()
            self._agent_status.set("thinking" if busy else "listening")
