"""EnergyVAD: voice activity from frame energy, in numpy. Always available.

A frame is voiced when its RMS exceeds a threshold: fixed (``threshold``) or
adaptive, a margin above a tracked noise floor. Speech starts once voiced
frames have lasted ``min_speech_duration`` and ends after
``min_silence_duration`` of unvoiced frames, as the VADEvent protocol says.
It is cheap (a few microseconds a frame) and fine in quiet rooms; in noise a
model VAD (Silero) does much better.
"""

from __future__ import annotations

import math

import numpy as np
import trio

from ..audio import AudioFrame
from .base import VADEvent
from .base import VAD, VADCapabilities


class EnergyVAD(VAD):
    def __init__(
        self,
        *,
        min_speech_duration: float = 0.1,
        min_silence_duration: float = 0.5,
        threshold: float | None = None,
        margin_db: float = 12.0,
        min_threshold: float = 150.0,
        floor_adapt_seconds: float = 2.0,
    ) -> None:
        self.min_speech_duration = min_speech_duration
        self.min_silence_duration = min_silence_duration
        self.threshold = threshold
        self.margin = 10 ** (margin_db / 20)
        self.min_threshold = min_threshold
        self.floor_adapt_seconds = floor_adapt_seconds
        self.capabilities = VADCapabilities(update_interval=0.02)

    def detector(self) -> _EnergyDetector:
        # A few microseconds a frame: cheaper inline than as a task of its own.
        return _EnergyDetector(self)

    async def run(
        self,
        frames: trio.MemoryReceiveChannel[AudioFrame],
        events: trio.MemorySendChannel[VADEvent],
    ) -> None:
        detector = _EnergyDetector(self)
        async for frame in frames:
            for event in detector.push(frame):
                await events.send(event)


class _EnergyDetector:
    """The per-stream state of an EnergyVAD (one per session)."""

    def __init__(self, vad: EnergyVAD) -> None:
        self.vad = vad
        self.floor: float | None = None
        self.speaking = False
        self.voiced_run = 0.0
        self.silent_run = 0.0
        self.speech_duration = 0.0

    def _threshold(self) -> float:
        if self.vad.threshold is not None:
            return self.vad.threshold
        floor = self.floor if self.floor is not None else self.vad.min_threshold / self.vad.margin
        return max(self.vad.min_threshold, floor * self.vad.margin)

    def push(self, frame: AudioFrame) -> list[VADEvent]:
        samples = frame.data.astype(np.float32)
        # A dot product, not np.mean(samples * samples): the same float32
        # sum of squares without mean()'s dispatch and temporary array.
        rms = math.sqrt(float(np.dot(samples, samples)) / len(samples)) if len(samples) else 0.0
        duration = frame.duration
        end = (frame.timestamp or 0.0) + duration
        voiced = rms > self._threshold()
        if not voiced:
            # Track the noise floor on unvoiced frames only (fast down, slow up).
            rate = min(1.0, duration / self.vad.floor_adapt_seconds)
            if self.floor is None or rms < self.floor:
                self.floor = rms if self.floor is None else 0.5 * (self.floor + rms)
            else:
                self.floor += (rms - self.floor) * rate
        probability = min(1.0, rms / (2 * self._threshold()))
        events: list[VADEvent] = []
        if voiced:
            self.voiced_run += duration
            self.silent_run = 0.0
        else:
            self.silent_run += duration
            if not self.speaking:
                self.voiced_run = 0.0
        if not self.speaking:
            if self.voiced_run >= self.vad.min_speech_duration - 1e-9:
                self.speaking = True
                self.speech_duration = self.voiced_run
                events.append(self._event("start_of_speech", end, probability))
            return events
        if voiced:
            self.speech_duration += duration
        if self.silent_run >= self.vad.min_silence_duration - 1e-9:
            self.speaking = False
            self.voiced_run = 0.0
            events.append(self._event("end_of_speech", end, probability))
        else:
            events.append(self._event("inference", end, probability))
        return events

    def _event(self, kind: str, timestamp: float, probability: float) -> VADEvent:
        return VADEvent(
            kind=kind,  # type: ignore[arg-type]
            timestamp=timestamp,
            speech_duration=self.speech_duration,
            silence_duration=self.silent_run,
            speaking=self.speaking,
            probability=probability,
            raw_accumulated_silence=self.silent_run,
        )
