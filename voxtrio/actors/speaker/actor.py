"""The Speaker's actor: its inbox and what each message does."""

from __future__ import annotations

import math
from typing import Any, assert_never

import trio

from ...events import EventBus
from ...messages import (
    DiscardSegment,
    OptionsChanged,
    PausePlayout,
    PlaySegment,
    RecordAudio,
    ResumePlayout,
    SpeakerMessage,
    SynthesizeSegment,
)
from ...options import SessionOptions
from ...providers.base import TTS
from ...transports.base import Transport
from .captions import Captions
from .output import Output
from .playout import Player
from .synthesis import Synthesizer



class Speaker:
    def __init__(
        self,
        *,
        tts: TTS | None,
        transport: Transport | None,
        bus: EventBus,
        options: SessionOptions,
        session_inbox: trio.MemorySendChannel[Any],
        recorder: trio.MemorySendChannel[RecordAudio] | None = None,
    ) -> None:
        self.inbox, self._inbox = trio.open_memory_channel[SpeakerMessage](math.inf)
        device = transport.audio_output if transport else None
        self._output = Output(device=device, recorder=recorder)
        self._synthesizer = Synthesizer(
            tts=tts, has_output=device is not None, bus=bus, options=options, session_inbox=session_inbox
        )
        self._player = Player(
            output=self._output, captions=Captions(transport=transport, output=self._output, bus=bus), bus=bus
        )

    @property
    def can_pause(self) -> bool:
        return self._output.can_pause

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._player.open(nursery)
            task_status.started()
            # Inboxes are never closed from this side: a late message from an
            # actor that is itself shutting down is simply not read.
            async for message in self._inbox:
                self._handle(message, nursery)
            nursery.cancel_scope.cancel()

    def _handle(self, message: SpeakerMessage, nursery: trio.Nursery) -> None:
        match message:
            case SynthesizeSegment():
                self._synthesizer.start(message, nursery)
            case PlaySegment():
                nursery.start_soon(self._player.play, self._synthesizer.take(message.segment_id), message)
            case OptionsChanged():
                self._synthesizer.options = message.options
            case DiscardSegment():
                self._synthesizer.discard(message.segment_id)
            case PausePlayout():
                self._output.pause()
            case ResumePlayout():
                self._output.resume()
            case _:
                assert_never(message)
