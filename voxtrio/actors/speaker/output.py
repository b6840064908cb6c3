"""The Speaker's output device: how far ahead of the play head it is written, and pauses."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ..._sync import Flag
from ...audio import AudioFrame, PlayoutTimeline
from ...messages import RecordAudio

if TYPE_CHECKING:
    from ...transports.base import AudioOutput

# How long a playout waits, after the timeline says it has played, for a
# device that reports it is still playing.
DEVICE_LAG_LIMIT = 1.0


class Output:
    """The device, the timeline of what was written to it, and whether it is paused.

    Invariant: ``paused`` is set only while the device is paused (and the
    timeline with it); ``pauses`` counts the pauses applied so far.
    """

    def __init__(
        self,
        *,
        device: AudioOutput | None,
        recorder: trio.MemorySendChannel[RecordAudio] | None,
    ) -> None:
        # None: the session has no audio output (text only).
        self.device = device
        # Where the play head is in what was written (a device may know better).
        self.timeline = PlayoutTimeline()
        self.paused = Flag()
        self.pauses = 0
        # Where the agent's audio is recorded, if anywhere.
        self._recorder = recorder
        # Frames the recorder could not take (its channel was full).
        self.recorder_drops = 0

    @property
    def can_pause(self) -> bool:
        return bool(self.device is not None and self.device.can_pause)

    def pause(self) -> None:
        if self.can_pause and not self.paused:
            assert self.device is not None
            self.device.pause()
            self.timeline.pause(trio.current_time())
            self.paused.set()
            self.pauses += 1

    def resume(self) -> None:
        if self.paused:
            assert self.device is not None
            self.device.resume()
            self.timeline.resume(trio.current_time())
            self.paused.clear()

    async def wait_for_room(self, duration: float) -> None:
        """Wait until writing ``duration`` more keeps the device within its buffer.

        When the buffer is full, wait until it is half empty and then refill it
        in one go: ten wake-ups a second instead of one per TTS chunk, and never
        more than ``buffer_duration`` of audio in the device.
        """
        assert self.device is not None
        buffer = self.device.buffer_duration
        if self.timeline.queued(trio.current_time()) + duration <= buffer + 1e-9:
            return
        limit = max(0.0, min(buffer / 2, buffer - duration))
        while True:
            if self.paused:
                await self.paused.wait_value(False)
                continue
            wake = self.timeline.end_time(trio.current_time()) - limit
            if wake <= trio.current_time() + 1e-9:
                return
            with trio.move_on_at(wake):
                await self.paused.wait_value(True)

    async def wait_until_played(self) -> None:
        while True:
            if self.paused:
                await self.paused.wait_value(False)
                continue
            end = self.timeline.end_time(trio.current_time())
            if end <= trio.current_time() + 1e-9:
                break
            with trio.move_on_at(end):
                await self.paused.wait_value(True)
        # A device that reports its play head may still be playing what the
        # timeline says has played (a network and a jitter buffer behind).
        give_up = trio.current_time() + DEVICE_LAG_LIMIT
        while True:
            queued = self.device.queued() if self.device is not None else None
            now = trio.current_time()
            if queued is None or queued <= 1e-3 or now >= give_up:
                return
            if self.paused:
                await self.paused.wait_value(False)
                continue
            with trio.move_on_at(min(give_up, now + queued)):
                await self.paused.wait_value(True)

    def heard_position(self, now: float) -> float:
        """Seconds of the playing segment heard so far (the device's word for it
        when it has one)."""
        assert self.device is not None
        queued = self.device.queued()
        if queued is None:
            return self.timeline.position(now)
        return min(self.timeline.pushed, max(0.0, self.timeline.pushed - queued))

    def record(self, frame: AudioFrame) -> None:
        if self._recorder is None:
            return
        try:
            self._recorder.send_nowait(RecordAudio("agent", frame))
        except trio.WouldBlock:
            self.recorder_drops += 1
