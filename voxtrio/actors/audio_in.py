"""AudioIn: reads the transport's audio and fans it out to the listeners.

Each outgoing link declares what happens when its reader is slow:

* recognizer: ``block`` (the transcript must not lose audio);
* VAD: ``drop`` newest, counted in ``dropped["vad"]``;
* recorder: ``drop`` newest, counted in ``dropped["recorder"]``.

Frames are stamped with audio time (seconds of audio since the input began),
the clock that endpointing is measured on.
"""

from __future__ import annotations

from typing import Any

import trio

from ..audio import PIPELINE_SAMPLE_RATE, AudioFrame
from ..errors import AudioFormatError
from ..messages import CloseRequested, RecordAudio
from ..transports.base import Transport, TransportDisconnected

INPUT_BUFFER = 50


class AudioIn:
    def __init__(
        self,
        *,
        transport: Transport,
        session_inbox: trio.MemorySendChannel[Any],
        vad: trio.MemorySendChannel[AudioFrame] | None = None,
        recognizer: trio.MemorySendChannel[AudioFrame] | None = None,
        recorder: trio.MemorySendChannel[RecordAudio] | None = None,
    ) -> None:
        self._transport = transport
        self._session_inbox = session_inbox
        self._vad = vad
        self._recognizer = recognizer
        self._recorder = recorder
        self.dropped = {"vad": 0, "recorder": 0}
        self._audio_time = 0.0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        send, receive = trio.open_memory_channel[AudioFrame](INPUT_BUFFER)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_transport, send)
            task_status.started()
            async with receive:
                async for frame in receive:
                    await self._fan_out(self._to_pipeline(frame))
        for link in (self._vad, self._recognizer):
            if link is not None:
                await link.aclose()

    async def _read_transport(self, send: trio.MemorySendChannel[AudioFrame]) -> None:
        async with send:
            try:
                await self._transport.read_audio(send)
            except TransportDisconnected:
                await self._session_inbox.send(
                    CloseRequested(reason="participant_disconnected", drain=False)
                )

    def _to_pipeline(self, frame: AudioFrame) -> AudioFrame:
        if not isinstance(frame, AudioFrame):
            raise AudioFormatError(f"the transport sent {type(frame).__name__}, not an AudioFrame")
        if frame.sample_rate != PIPELINE_SAMPLE_RATE or frame.num_channels != 1:
            raise AudioFormatError(
                f"expected mono {PIPELINE_SAMPLE_RATE} Hz input, got {frame.num_channels} "
                f"channel(s) at {frame.sample_rate} Hz"
            )
        stamped = AudioFrame(frame.data, frame.sample_rate, 1, self._audio_time)
        self._audio_time += frame.duration
        return stamped

    async def _fan_out(self, frame: AudioFrame) -> None:
        if self._recognizer is not None:
            await self._recognizer.send(frame)
        if self._vad is not None:
            try:
                self._vad.send_nowait(frame)
            except trio.WouldBlock:
                self.dropped["vad"] += 1
        if self._recorder is not None:
            try:
                self._recorder.send_nowait(RecordAudio("user", frame))
            except trio.WouldBlock:
                self.dropped["recorder"] += 1
