"""The Planner's notes to itself: messages that keep an order with the ones before them."""

from __future__ import annotations

import attrs

from ..._sync import Future
from ...speech import SpeechHandle


@attrs.frozen
class ScheduleSpeech:
    """Schedule a speech made earlier (a preemptive reply the turn turned out to want)."""

    handle: SpeechHandle


@attrs.frozen
class StopAccepting:
    """No new speech after the messages before this."""

    reply: Future[None]
