"""Recorder: keeps the session's audio (user and agent) when recording is on.

It reads a bounded link that its writers never block on: when it falls
behind, frames are dropped and counted (``dropped``), never silently lost.
"""

from __future__ import annotations

import trio

from ..audio import AudioFrame
from ..messages import RecordAudio

# Frames waiting for the recorder; writers drop (and count) beyond this.
FRAME_BUFFER = 500


class Recorder:
    def __init__(self, *, enabled: bool = False, max_duration: float = 3600.0) -> None:
        self.enabled = enabled
        self.max_duration = max_duration
        self.inbox, self._inbox = trio.open_memory_channel[RecordAudio](FRAME_BUFFER)
        self.tracks: dict[str, list[AudioFrame]] = {"user": [], "agent": []}
        self._durations = {"user": 0.0, "agent": 0.0}
        self.truncated = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for message in self._inbox:
            if not self.enabled:
                continue
            if self._durations[message.track] >= self.max_duration:
                self.truncated = True
                continue
            self.tracks[message.track].append(message.frame)
            self._durations[message.track] += message.frame.duration
