"""Audio frames and the playout timeline.

The pipeline format is mono int16 PCM at 16 kHz in 20 ms frames (what the VAD
and the recognizer read). Agent audio keeps the sample rate of the TTS that made
it; the output transport converts if it must.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from .errors import AudioFormatError

PIPELINE_SAMPLE_RATE = 16_000
FRAME_DURATION = 0.020
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 8


def _check_frame(frame: AudioFrame, attribute: attrs.Attribute, data: np.ndarray) -> None:
    if not isinstance(data, np.ndarray):
        raise AudioFormatError(f"audio data must be a numpy array, got {type(data).__name__}")
    if data.dtype != np.int16:
        raise AudioFormatError(f"audio samples must be int16 PCM, got dtype {data.dtype}")
    if data.ndim != 1:
        raise AudioFormatError(
            f"audio data must be one-dimensional (interleaved channels), got shape {data.shape}"
        )


def _check_rate(frame: AudioFrame, attribute: attrs.Attribute, rate: int) -> None:
    if not isinstance(rate, int) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioFormatError(
            f"sample rate {rate!r} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
        )


def _check_channels(frame: AudioFrame, attribute: attrs.Attribute, channels: int) -> None:
    if not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
        raise AudioFormatError(f"channel count {channels!r} is outside 1..{MAX_CHANNELS}")
    if len(frame.data) % channels:
        raise AudioFormatError(
            f"{len(frame.data)} samples cannot be split evenly into {channels} channels"
        )


@attrs.frozen(eq=False)
class AudioFrame:
    """A chunk of PCM audio.

    ``data`` holds int16 samples, channels interleaved. ``timestamp`` is the
    audio time of the first sample, in seconds since the stream started; the
    turn-taking logic measures every delay on that clock.
    """

    data: np.ndarray = attrs.field(validator=_check_frame)
    sample_rate: int = attrs.field(validator=_check_rate)
    num_channels: int = attrs.field(default=1, validator=_check_channels)
    timestamp: float | None = None

    @property
    def samples_per_channel(self) -> int:
        return len(self.data) // self.num_channels

    @property
    def duration(self) -> float:
        return self.samples_per_channel / self.sample_rate

    @classmethod
    def silence(
        cls,
        duration: float,
        *,
        sample_rate: int = PIPELINE_SAMPLE_RATE,
        num_channels: int = 1,
        timestamp: float | None = None,
    ) -> AudioFrame:
        samples = int(round(duration * sample_rate))
        return cls(np.zeros(samples * num_channels, np.int16), sample_rate, num_channels, timestamp)

    @classmethod
    def from_bytes(
        cls, pcm: bytes, *, sample_rate: int, num_channels: int = 1, timestamp: float | None = None
    ) -> AudioFrame:
        if len(pcm) % 2:
            raise AudioFormatError(f"int16 PCM needs an even byte count, got {len(pcm)} bytes")
        return cls(np.frombuffer(pcm, np.int16).copy(), sample_rate, num_channels, timestamp)

    def to_bytes(self) -> bytes:
        return self.data.tobytes()


class PlayoutTimeline:
    """Where the play head of an output device is, given what was written when.

    A model, not a clock: every method takes ``now``. Audio plays back to back
    from the moment it is written; when the device runs dry the play head
    waits for the next write (an underrun); pausing freezes the play head.
    The Speaker uses it to pace writes and to know exactly how much of a
    segment was heard when it is cut off.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.pushed = 0.0
        self.started_at: float | None = None
        self.underrun_time = 0.0
        self._anchor_time = 0.0
        self._anchor_position = 0.0
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def position(self, now: float) -> float:
        """Seconds of audio played so far."""
        if self.started_at is None:
            return 0.0
        if self._paused:
            return self._anchor_position
        return min(self.pushed, self._anchor_position + max(0.0, now - self._anchor_time))

    def queued(self, now: float) -> float:
        return self.pushed - self.position(now)

    def end_time(self, now: float) -> float:
        """When everything written so far will have played (inf while paused)."""
        if self._paused:
            return math.inf
        return now + self.queued(now)

    def write(self, duration: float, now: float) -> None:
        if self.started_at is None:
            if not self._paused:
                self.started_at = now
            self._anchor_time, self._anchor_position = now, 0.0
        elif not self._paused and self.position(now) >= self.pushed:
            dry_since = self._anchor_time + (self.pushed - self._anchor_position)
            self.underrun_time += max(0.0, now - dry_since)
            self._anchor_time, self._anchor_position = now, self.pushed
        self.pushed += duration

    def pause(self, now: float) -> None:
        if not self._paused:
            self._anchor_position = self.position(now)
            self._anchor_time = now
            self._paused = True

    def resume(self, now: float) -> None:
        if self._paused:
            self._paused = False
            self._anchor_time = now
            if self.started_at is None and self.pushed > 0:
                self.started_at = now
