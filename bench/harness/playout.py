"""A playout device as pure arithmetic on a timeline (spec "Audio out (sink)").

The device plays whatever is queued at real-time speed. A written frame is
appended to the timeline at its arrival time; if the queue had run dry the
frame starts playing on arrival (the gap is an audible underrun). The writer
is held back while more than ``buffer_s`` is queued, which is how a real sink
(``rtc.AudioSource(queue_size_ms=200)``, a WebSocket client's jitter buffer)
pushes back on a producer that runs ahead. ``clear()`` drops the queue, so
playback stops at that instant.

No clock and no event loop in here: callers pass ``now`` and get back the time
at which a blocked write may return. The thin asyncio/trio wrappers turn that
time into a wait that ``clear()`` can cut short.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Write:
    """What one write did to the timeline."""

    starts_at: float  # when this frame becomes audible
    gap_s: float  # silence before it because the device had run dry (0 if not)
    release_at: float  # when the writer may continue (== now if not blocked)


class Playout:
    def __init__(self, buffer_s: float) -> None:
        self.buffer_s = buffer_s
        self.end = float("-inf")  # the queued audio is audible until this time
        self.cleared_at: float | None = None

    def queued(self, now: float) -> float:
        """Seconds of audio still to play."""
        return max(0.0, self.end - now)

    def write(self, now: float, duration_s: float) -> Write:
        gap = max(0.0, now - self.end)
        start = max(now, self.end)
        self.end = start + duration_s
        return Write(starts_at=start, gap_s=gap, release_at=max(now, self.end - self.buffer_s))

    def clear(self, now: float) -> float:
        """Stop playback now; returns the seconds of audio that were discarded."""
        dropped = self.queued(now)
        if self.end > now:
            self.end = now
        self.cleared_at = now
        return dropped
