"""Captions: the agent's words shown as they are heard (``Transport.publish_text``)."""

from __future__ import annotations

import re

import trio

from ...events import ErrorEvent, EventBus
from ...text import heard_prefix
from ...transports.base import Transport
from .output import Output
from .synthesis import Segment

# Speech pace assumed for text whose audio was never fully synthesized (a TTS
# failure): about 170 words a minute.
NOMINAL_CHARS_PER_SECOND = 15.0

# The longest wait between two looks at what has been heard, when the next
# word's end is only estimated (its audio is still being synthesized).
CAPTION_RECHECK = 0.25

_WORD = re.compile(r"\S+")


class Captions:
    """Shows what has been heard of a segment, by the measure its result uses."""

    def __init__(self, *, transport: Transport | None, output: Output, bus: EventBus) -> None:
        self._transport = transport
        self._output = output
        self._bus = bus
        # Only a transport that implements publish_text shows words.
        self.enabled = transport is not None and type(transport).publish_text is not Transport.publish_text

    async def show_words(self, segment: Segment, speech_id: str, scope: trio.CancelScope) -> None:
        """Publish the segment's words as they are heard, until ``scope`` is cancelled."""
        with scope:
            shown = ""
            while not scope.cancel_called:  # (the playout ends before a start_soon task first runs)
                position = self._output.heard_position(trio.current_time())
                text, next_end, exact = self._words_heard(segment, position)
                if segment.synthesis_done and position >= segment.synthesized - 1e-9:
                    return  # all of it played: the final text comes now
                if text != shown and not shown.startswith(text):  # estimates may wobble: never unsay
                    shown = text
                    segment.captioned = True
                    self.publish(speech_id, text, final=False)
                if self._output.paused:
                    await self._output.paused.wait_value(False)
                    continue
                wait = CAPTION_RECHECK if next_end is None else max(next_end - position, 0.02)
                await trio.sleep(wait if exact else min(wait, CAPTION_RECHECK))

    def _words_heard(self, segment: Segment, position: float) -> tuple[str, float | None, bool]:
        """What has been heard at ``position``, where the next word ends (or None),
        and whether that end is exact (word timings, or all of the audio known)."""
        timed = segment.tts is not None and segment.tts.capabilities.aligned_transcript
        if segment.words or (timed and not segment.synthesis_done):
            heard = [w.text for w in segment.words if w.end <= position + 1e-9]
            following = [w.end for w in segment.words if w.end > position + 1e-9]
            if following:
                return " ".join(heard), following[0], True
            # The next word's timing has not come yet: it ends after the audio known so far.
            return " ".join(heard), max(segment.synthesized, position), bool(segment.synthesis_done)
        text = segment.text
        exact = bool(segment.synthesis_done)
        total = segment.synthesized
        if not exact:
            total = max(total, len(text) / NOMINAL_CHARS_PER_SECOND)
        if total <= 0 or not text:
            return "", None, exact
        heard = heard_prefix(text, (position + 1e-9) / total)
        following = _WORD.search(text, len(heard))
        if following is None:
            return heard, None, exact
        # The next word counts as heard once its middle has played (heard_prefix).
        return heard, (following.start() + following.end()) / 2 / len(text) * total, exact

    def publish(self, speech_id: str, text: str, *, final: bool) -> None:
        assert self._transport is not None
        try:
            self._transport.publish_text(speech_id, text, final=final)
        except Exception as error:  # showing words must not stop the speech
            self._bus.emit(ErrorEvent(source="transport", message=str(error), recoverable=True, error=error))

