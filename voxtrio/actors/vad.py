"""VAD actor: runs the VAD provider over the pipeline's frames.

Its inbox is the frame link from AudioIn (``Links.vad_frames``). Events go to the Turn actor and, for
a recognizer driven by speech segments, to the Recognizer (through a task that
forwards them to both; with only the Turn actor to tell, the provider writes
to the Turn actor's channel itself).
"""

from __future__ import annotations

import trio

from ..audio import AudioFrame
from ..errors import describe_error
from ..events import ErrorEvent, EventBus
from ..links import VAD_EVENTS, SupervisorLink, TurnEventLink, VADEventLink
from ..messages import ProviderFailed, VADEvent
from ..providers.base import VAD


class VADActor:
    def __init__(
        self,
        *,
        vad: VAD,
        bus: EventBus,
        frames: trio.MemoryReceiveChannel[AudioFrame],
        turn_events: TurnEventLink,
        supervisor: SupervisorLink,
        recognizer_events: VADEventLink | None = None,
    ) -> None:
        self._vad = vad
        self._bus = bus
        self._frames = frames
        self._turn = turn_events
        self._recognizer = recognizer_events
        self._supervisor = supervisor

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._recognizer is None:
            # The Turn actor is the only reader: the provider sends to it
            # directly, which saves a task switch per event (one per frame
            # while the user speaks).
            task_status.started()
            await self._run_provider(self._turn.clone())
            return
        send, receive = trio.open_memory_channel[VADEvent](VAD_EVENTS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_provider, send)
            task_status.started()
            async with receive:
                async for event in receive:
                    await self._turn.send(event)
                    if self._recognizer is not None:
                        await self._recognizer.send(event)

    async def _run_provider(self, send: trio.MemorySendChannel[VADEvent]) -> None:
        async with send:
            try:
                await self._vad.run(self._frames, send)
            except Exception as error:
                self._bus.emit(ErrorEvent(source="vad", message=describe_error(error), recoverable=False, error=error))
                await self._supervisor.send(ProviderFailed(source="vad", error=error))
