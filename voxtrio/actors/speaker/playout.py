"""The Speaker's playout: a segment's audio at real-time pace, and what was heard of it.

Playout writes at most ``AudioOutput.buffer_duration`` ahead of the play head
(a :class:`PlayoutTimeline` says where the head is), so an interruption,
which cancels the playout scope it bound to the speech (``SpeechStatus``),
leaves at most that much audio in the device, and ``clear()`` drops it. The
result of a playout says what was heard: the position, and the words up to
it (from TTS word timings when the provider gives them, else the pacing
estimate of :func:`voxtrio.text.heard_prefix`). A device that knows its play
head better than the timeline (``AudioOutput.queued``) is believed.
"""

from __future__ import annotations

import math
from typing import Any

import trio

from ...events import EventBus, PlaybackFinished, PlaybackStarted
from ...messages import PlayoutResult, PlaySegment
from ...speech import status_of
from ...text import heard_prefix
from .captions import NOMINAL_CHARS_PER_SECOND, Captions
from .output import Output
from .synthesis import Segment

# What _next_audio returns when the device ran dry waiting for audio.
_STALLED = object()


class Player:
    """Plays one segment at a time (the Planner authorizes one step at a time)."""

    def __init__(self, *, output: Output, captions: Captions, bus: EventBus) -> None:
        self._output = output
        self._captions = captions
        self._bus = bus
        # The Speaker's nursery, for the captions of a playing segment.
        self._nursery: trio.Nursery | None = None

    def open(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    async def play(self, segment: Segment, request: PlaySegment) -> None:
        handle = request.handle
        started_at: float | None = None
        wrote_any = False
        interrupted = False
        # Pauses applied before the audio, ready, began to be held back for the
        # user to be silent (None: it was never held back).
        held_after: int | None = None
        captions = trio.CancelScope() if self._captions.enabled else None
        status = status_of(handle)
        with trio.CancelScope() as scope:
            status.bind(scope, "playout")
            try:
                if segment.text_only:
                    started_at = await self._play_text_only(segment, request)
                else:
                    self._output.timeline.reset()
                    if self._output.paused:
                        self._output.timeline.pause(trio.current_time())
                    stalled = False
                    while True:
                        item = await self._next_audio(segment, request, stalled or not wrote_any)
                        if item is _STALLED:
                            stalled = True
                            continue
                        if item is None:
                            break
                        frame = item.frame
                        if not frame.samples_per_channel:
                            continue  # it only carried word timings
                        if not wrote_any and request.hold_while_user_speaks is not None:
                            held_after = self._output.pauses - (1 if self._output.paused else 0)
                            await request.hold_while_user_speaks.wait_value(True)
                        await self._output.wait_for_room(frame.duration)
                        now = trio.current_time()
                        await self._output.device.write(frame)
                        self._output.timeline.write(frame.duration, now)
                        if not wrote_any and captions is not None:
                            assert self._nursery is not None
                            self._nursery.start_soon(self._captions.show_words, segment, handle.id, captions)
                        wrote_any = True
                        if stalled:
                            stalled = False
                            if request.on_stall is not None:
                                request.on_stall(False)
                        self._output.record(frame)
                        if started_at is None:
                            started_at = await self._await_audible(request)
                    self._output.device.segment_done()
                    if started_at is None and wrote_any:
                        started_at = await self._await_audible(request)
                    await self._output.wait_until_played()
            finally:
                status.unbind(scope)
                if captions is not None:
                    captions.cancel()
        interrupted = scope.cancelled_caught or handle.interrupted
        # Synthesis that failed after some audio cut the speech short: the user
        # heard the start of it, as if it had been interrupted there.
        interrupted = interrupted or (wrote_any and segment.error is not None)
        now = trio.current_time()
        if not segment.text_only:
            assert self._output.device is not None
            if interrupted:
                position = self._output.heard_position(now)  # before clear(): it empties the device
                self._output.device.clear()
            else:
                position = self._output.timeline.pushed
            self._output.timeline.reset()
            if self._output.paused:
                self._output.timeline.pause(now)
            if interrupted or position < segment.synthesized:
                segment.scope.cancel()
            # No audio (the TTS failed or had nothing): nothing was heard.
            heard = self._heard_text(segment, position, interrupted) if wrote_any else ""
        else:
            position = 0.0
            heard = "" if started_at is None or segment.error is not None else segment.text
            if interrupted:
                segment.scope.cancel()
        if self._captions.enabled and (heard or segment.captioned):
            self._captions.publish(handle.id, heard, final=True)
        # Audio that was ready, held back and paused (the agent went to
        # listening with it parked) and then dropped has an outcome too.
        parked = held_after is not None and self._output.pauses > held_after
        if wrote_any or (interrupted and parked):
            self._bus.emit(PlaybackFinished(speech_id=handle.id, position=position, interrupted=interrupted))
        if not request.started.done():
            request.started.set_result(None)  # nothing was audible
        request.reply.set_result(
            PlayoutResult(
                position=position,
                interrupted=interrupted,
                text=heard,
                started_at=started_at,
                finished_at=now,
                synthesized_text=segment.text,
                error=segment.error,
            )
        )

    async def _next_audio(self, segment: Segment, request: PlaySegment, quiet: bool) -> Any:
        """The next synthesized chunk, None at the end, or ``_STALLED`` once when
        the device runs dry waiting for it (then the caller asks again).

        ``quiet``: nothing is playing anyway (not started yet, or already stalled)."""
        receive = segment.audio_receive
        dry_at = math.inf
        if not quiet and not self._output.paused and request.on_stall is not None:
            dry_at = self._output.timeline.end_time(trio.current_time())
        if dry_at > trio.current_time():
            # Audio already synthesized (most chunks: a TTS runs ahead of the
            # play head) needs no deadline scope. These are receive()'s own
            # checkpoints: the task yields exactly as it would in it.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                item = receive.receive_nowait()
            except trio.EndOfChannel:
                return None
            except trio.WouldBlock:
                pass
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return item
        with trio.move_on_at(dry_at):
            try:
                return await receive.receive()
            except trio.EndOfChannel:
                return None
        request.on_stall(True)  # type: ignore[misc]
        return _STALLED

    async def _await_audible(self, request: PlaySegment) -> float | None:
        """Resolve ``started`` once the first frame is actually playing (after a pause)."""
        await self._output.paused.wait_value(False)
        started_at = self._output.timeline.started_at or trio.current_time()
        self._bus.emit(PlaybackStarted(speech_id=request.handle.id))
        request.started.set_result(started_at)
        return started_at

    async def _play_text_only(self, segment: Segment, request: PlaySegment) -> float | None:
        started_at = None
        while not segment.text_done:
            if segment.text_parts and started_at is None:
                started_at = trio.current_time()
                request.started.set_result(started_at)
            await segment.text_done.wait_value(True)
        if segment.text_parts and started_at is None:
            started_at = trio.current_time()
            request.started.set_result(started_at)
        return started_at

    def _heard_text(self, segment: Segment, position: float, interrupted: bool) -> str:
        if not interrupted:
            return segment.text
        if segment.words:
            return " ".join(w.text for w in segment.words if w.end <= position + 1e-9)
        if segment.synthesized <= 0:
            return ""
        total = segment.synthesized
        if segment.error is not None:
            # The rest was never synthesized: estimate how long all of it would be.
            total = max(total, len(segment.text) / NOMINAL_CHARS_PER_SECOND)
        return heard_prefix(segment.text, position / total)

