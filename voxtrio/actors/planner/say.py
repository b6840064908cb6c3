"""A say() step: the application's text (or audio), played when authorized."""

from __future__ import annotations

from typing import Any, AsyncIterable

import trio

from ...chat import ChatMessage
from ...errors import describe_error
from ...events import ErrorEvent, EventBus
from ...messages import DiscardSegment, PlayoutResult, Say
from .history import History
from .playout import Playout
from .speeches import SpeechRun, SpeechScheduler


class SayStep:
    """Runs the one step of a say(): it returns what was heard (None when the
    speech was interrupted before it played); no step follows it."""

    def __init__(
        self,
        *,
        bus: EventBus,
        speeches: SpeechScheduler,
        playout: Playout,
        history: History,
        speaker_inbox: trio.MemorySendChannel[Any],
    ) -> None:
        self._bus = bus
        self._speeches = speeches
        self._playout = playout
        self._history = history
        self._speaker = speaker_inbox

    async def run(
        self, run: SpeechRun, message: Say, segment_id: str, text_send: trio.MemorySendChannel[str]
    ) -> PlayoutResult | None:
        handle = run.handle
        result: PlayoutResult | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._feed_text, handle.id, message.text, text_send)
            if await self._speeches.wait_authorized(run):
                reply_seq = self._bus.next_seq()
                result = await self._playout.play(run, segment_id)
            else:
                nursery.cancel_scope.cancel()
        if result is None:
            self._speaker.send_nowait(DiscardSegment(segment_id))
            return None
        if result.text and message.add_to_chat_ctx:
            self._history.commit(
                ChatMessage(role="assistant", content=result.text, interrupted=result.interrupted),
                seq=reply_seq,
                owner=run.owner,
                speech=handle,
            )
        self._playout.after(run, tools_pending=False, had_output=False)
        run.step_played()
        return result

    async def _feed_text(
        self, speech_id: str, text: str | AsyncIterable[str], send: trio.MemorySendChannel[str]
    ) -> None:
        """Pass say()'s text on. An application's iterable that fails, or yields
        something else than text, ends the text there, with an error event."""
        async with send:
            if isinstance(text, str):
                send.send_nowait(text)
                return
            try:
                async for chunk in text:
                    if not isinstance(chunk, str):
                        raise TypeError(f"it yielded {type(chunk).__name__} {chunk!r:.40}, not a string")
                    send.send_nowait(chunk)
            except Exception as error:
                self._bus.emit(
                    ErrorEvent(
                        source="agent",
                        message=f"say(): the text of {speech_id} failed: {describe_error(error)}",
                        recoverable=True,
                        error=error,
                    )
                )
