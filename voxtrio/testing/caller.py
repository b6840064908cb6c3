"""SimulatedCaller: a caller who says prepared lines, each once the agent has answered.

A WAV file fixes when the user speaks; a real caller waits for the answer.
This transport waits like one: it sends silence until the agent has been
quiet (listening, no event) for ``pause`` seconds, then plays the next
utterance, and after the last one hangs up the same way. It records like a
:class:`~voxtrio.transports.file.FileTransport` (agent audio, the call in
stereo, the JSON transcript), and paces on the trio clock, so under
:class:`~voxtrio.clock.FastForwardClock` it runs as fast as the models allow.
It is for demos and tests of a real pipeline; the utterances are audio the
caller has made beforehand (with an offline TTS, say).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import trio

from ..audio import AudioFrame
from ..audio_files import PathLike
from ..transports.file import RecordingTransport


class SimulatedCaller(RecordingTransport):
    def __init__(
        self,
        utterances: Sequence[Any],
        *,
        sample_rate: int,
        pause: float = 1.0,
        lead_in: float = 0.5,
        chunk_duration: float = 0.02,
        max_answer_wait: float = 60.0,
        output_path: PathLike | None = None,
        conversation_path: PathLike | None = None,
        transcript_path: PathLike | None = None,
    ) -> None:
        super().__init__(
            output_path=output_path,
            conversation_path=conversation_path,
            transcript_path=transcript_path,
            description={"caller": "simulated", "utterances": len(utterances)},
        )
        self.utterances = [np.asarray(u, dtype=np.int16) for u in utterances]
        self.sample_rate = sample_rate
        self.pause = pause
        self.lead_in = lead_in
        self.chunk_duration = chunk_duration
        self.max_answer_wait = max_answer_wait
        self.spoken: list[tuple[float, float]] = []
        """(start, end) of each utterance, seconds from the call's start."""

    async def read_audio(self, frames: trio.MemorySendChannel[AudioFrame]) -> None:
        per_chunk = max(1, int(round(self.chunk_duration * self.sample_rate)))
        silence = np.zeros(per_chunk, np.int16)
        started = trio.current_time()
        self.log.origin = started
        tick = 0

        async def send(samples: np.ndarray) -> None:
            nonlocal tick
            tick += 1
            await trio.sleep_until(started + tick * self.chunk_duration)
            await self._send(frames, AudioFrame(np.ascontiguousarray(samples), self.sample_rate))

        while tick * self.chunk_duration < self.lead_in:
            await send(silence)
        for utterance in self.utterances:
            give_up = trio.current_time() + self.max_answer_wait
            while not self.agent_done(self.pause) and trio.current_time() < give_up:
                await send(silence)
            begin = tick * self.chunk_duration
            for offset in range(0, len(utterance), per_chunk):
                piece = utterance[offset : offset + per_chunk]
                if len(piece) < per_chunk:
                    piece = np.concatenate([piece, silence[: per_chunk - len(piece)]])
                await send(piece)
            self.spoken.append((begin, begin + len(utterance) / self.sample_rate))
            # The VAD needs to hear the end of speech before the agent counts as answering.
            for _ in range(int(self.pause / self.chunk_duration)):
                await send(silence)
        give_up = trio.current_time() + self.max_answer_wait
        while not self.agent_done(self.pause) and trio.current_time() < give_up:
            await send(silence)
        if self._session is not None:
            self._session.shutdown(drain=True)
