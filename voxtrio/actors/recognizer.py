"""Recognizer actor: streams the user's audio to the STT provider.

A streaming STT gets the frames as they come and sends interim and final
transcripts; the stream is restarted after an error while the retry budget
allows it. Its inbox is the frame link from AudioIn, which never drops audio
on this link (it waits instead).
"""

from __future__ import annotations

from typing import Any

import trio

from ..audio import AudioFrame
from ..events import ErrorEvent, EventBus
from ..messages import ProviderFailed, STTEvent
from ..options import SessionOptions
from ..errors import APIError
from ..providers.base import STT
from ..retry import unwrap

FRAME_BUFFER = 50


class Recognizer:
    def __init__(
        self,
        *,
        stt: STT,
        bus: EventBus,
        options: SessionOptions,
        turn_events: trio.MemorySendChannel[Any],
        session_inbox: trio.MemorySendChannel[Any],
    ) -> None:
        self._stt = stt
        self._bus = bus
        self._options = options
        self._turn = turn_events
        self._session_inbox = session_inbox
        self.frames, self._frames = trio.open_memory_channel[AudioFrame](FRAME_BUFFER)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        conn_options = self._options.conn_options.stt_conn_options
        retries = 0
        while True:
            send, receive = trio.open_memory_channel[STTEvent](FRAME_BUFFER)
            try:
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._forward, receive)
                        async with send:
                            await self._stt.stream(self._frames, send, conn_options=conn_options)
                except BaseExceptionGroup as group:
                    # The provider's error arrives wrapped by the nursery; only a
                    # provider error alone is retried, anything else propagates.
                    error = unwrap(group)
                    if isinstance(error, APIError):
                        raise error from None
                    raise
                return
            except APIError as error:
                again = error.retryable and retries < conn_options.max_retry
                self._bus.emit(ErrorEvent(source="stt", message=str(error), recoverable=again, error=error))
                if not again:
                    await self._session_inbox.send(ProviderFailed(source="stt", error=error))
                    retries = 0
                else:
                    retries += 1
                await trio.sleep(conn_options.retry_delay(max(0, retries - 1)))

    async def _forward(self, receive: trio.MemoryReceiveChannel[STTEvent]) -> None:
        async with receive:
            async for event in receive:
                await self._turn.send(event)
