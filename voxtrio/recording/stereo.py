"""The call's two sides on one clock, written to disk as they become final.

Samples are placed by the session time their frame was sent at
(``RecordAudio.at``): a user frame has just arrived, so it ends then; an
agent frame was just written to the output, so it plays from then, or after
what was queued before it, unless the output is paused: what it holds then
plays from :meth:`resume` (:meth:`pause`). Audio becomes final
``LATE_MARGIN`` seconds after it was heard: an agent frame queued ahead may
still be paused, or cut by an interruption, until it has played
(:meth:`cut`), and a user frame may arrive a little late. What is final is
appended to the file at each :meth:`flush`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import soundfile
import soxr

from ..audio import AudioFrame

# How long after it was heard audio waits before it is written (late user frames).
LATE_MARGIN = 0.25
# Ogg pages are closed at least this often, so a crash loses little of an OGG file.
OGG_PAGE_LATENCY_MS = 200.0
# libsndfile's command for it (sndfile.h: SFC_SET_OGG_PAGE_LATENCY_MS).
_SFC_SET_OGG_PAGE_LATENCY_MS = 0x1302


def open_audio_file(path: Path, sample_rate: int, fmt: Literal["ogg", "wav"]) -> soundfile.SoundFile:
    if fmt == "ogg":
        file = soundfile.SoundFile(path, "w", samplerate=sample_rate, channels=2, format="OGG", subtype="OPUS")
        latency = soundfile._ffi.new("double*", OGG_PAGE_LATENCY_MS)
        soundfile._snd.sf_command(file._file, _SFC_SET_OGG_PAGE_LATENCY_MS, latency, soundfile._ffi.sizeof("double"))
        return file
    return soundfile.SoundFile(path, "w", samplerate=sample_rate, channels=2, format="WAV", subtype="PCM_16")


# Agent audio that comes this much later than the end of the last is a new
# stretch of speech (longer than a resampler's delay, shorter than any pause).
SPEECH_GAP = 0.06


class StereoRecording:
    def __init__(self, file: soundfile.SoundFile, *, origin: float) -> None:
        self._file = file
        self.sample_rate: int = file.samplerate
        self._origin = origin
        # Samples (per channel) already in the file; the buffer starts there.
        self.written = 0
        self._buffer = np.zeros((0, 2), np.int16)
        # Where each track's next sample goes (absolute sample index).
        self._ends = [0, 0]
        self._resamplers: dict[tuple[int, int], soxr.ResampleStream] = {}
        # Agent audio the paused output holds (None: not paused), and the
        # sample the pause began at: nothing of the agent's plays from there
        # until the resume.
        self._held: np.ndarray | None = None
        self._paused_at = 0
        self.late_samples = 0
        """User samples that came after their place had been written (dropped)."""

    def _index(self, t: float) -> int:
        return int(round((t - self._origin) * self.sample_rate))

    def _mono(self, frame: AudioFrame, channel: int) -> np.ndarray:
        samples = frame.data
        if frame.num_channels > 1:
            samples = samples.reshape(-1, frame.num_channels).astype(np.int32).mean(axis=1).astype(np.int16)
        if frame.sample_rate == self.sample_rate:
            return samples
        key = (channel, frame.sample_rate)
        resampler = self._resamplers.get(key)
        if resampler is None:
            resampler = self._resamplers[key] = soxr.ResampleStream(
                frame.sample_rate, self.sample_rate, 1, dtype="int16"
            )
        return resampler.resample_chunk(samples)

    def add(self, track: Literal["user", "agent"], frame: AudioFrame, at: float) -> None:
        if track == "user":
            samples = self._mono(frame, 0)
            self._place(0, samples, max(self._index(at) - len(samples), self._ends[0]))
            return
        index = self._index(at)
        if index > self._ends[1] + int(SPEECH_GAP * self.sample_rate):
            # A new stretch of speech: the rest of the previous one is still in
            # the resampler (its filter's delay), to be placed where it ended.
            self._flush_agent_resampler()
            start = index
        else:
            # The same stretch: a resampler gives its output late and in bursts,
            # so it is laid end to end from where the stretch began (placed at
            # each frame's time, it would leave holes and lose its end).
            start = self._ends[1]
        self._place_agent(self._mono(frame, 1), start)

    def _flush_agent_resampler(self) -> None:
        for key in [key for key in self._resamplers if key[0] == 1]:
            tail = self._resamplers.pop(key).resample_chunk(np.zeros(0, np.int16), last=True)
            self._place_agent(tail, self._ends[1])

    def _place_agent(self, samples: np.ndarray, start: int) -> None:
        if self._held is not None:
            # What would play past the pause waits for the resume.
            audible = max(0, min(len(samples), self._paused_at - start))
            self._held = np.concatenate([self._held, samples[audible:]])
            samples = samples[:audible]
        self._place(1, samples, start)

    def _place(self, channel: int, samples: np.ndarray, start: int) -> None:
        self._ends[channel] = start + len(samples)
        if start < self.written:
            skipped = min(len(samples), self.written - start)
            self.late_samples += skipped
            samples, start = samples[skipped:], start + skipped
        offset = start - self.written
        needed = offset + len(samples)
        if needed > len(self._buffer):
            grown = np.zeros((max(needed, 2 * len(self._buffer)), 2), np.int16)
            grown[: len(self._buffer)] = self._buffer
            self._buffer = grown
        self._buffer[offset:needed, channel] = samples

    def _take_agent_audio(self, at: float) -> tuple[int, np.ndarray]:
        """Where ``at`` falls, and the agent audio queued past it, taken off the track."""
        index = max(self._index(at), self.written)
        taken = np.zeros(0, np.int16)
        if self._ends[1] > index:
            piece = self._buffer[index - self.written : self._ends[1] - self.written, 1]
            taken = piece.copy()
            piece[:] = 0
            self._ends[1] = index
        return index, taken

    def cut(self, at: float) -> None:
        """The agent was interrupted at ``at``: what it had queued past then, or
        what a pause held, never played."""
        self._take_agent_audio(at)
        for key in [key for key in self._resamplers if key[0] == 1]:
            del self._resamplers[key]  # its delayed samples were not played either
        if self._held is not None:
            self._held = self._held[:0]

    def pause(self, at: float) -> None:
        """The agent's output stopped playing at ``at`` (a pause, or nothing to play)."""
        if self._held is None:
            self._paused_at, self._held = self._take_agent_audio(at)

    def resume(self, at: float) -> None:
        """The agent's output plays again from ``at``, what it held first."""
        if self._held is None:
            return
        held, self._held = self._held, None
        self._place(1, held, max(self._index(at), self._ends[1]))

    def flush(self, now: float, *, final: bool = False) -> None:
        """Write what is final at ``now`` (everything heard until then, when ``final``)."""
        until = self._index(now) if final else self._index(now - LATE_MARGIN)
        if final:
            # What the agent had queued (or paused) but did not play by the close is not part of the call.
            self._flush_agent_resampler()
            self.cut(now)
            until = max(until, self._ends[0])
        count = until - self.written
        if count <= 0:
            return
        if count > len(self._buffer):
            self._buffer = np.concatenate([self._buffer, np.zeros((count - len(self._buffer), 2), np.int16)])
        self._file.write(self._buffer[:count])
        self._file.flush()
        self._buffer = self._buffer[count:].copy()
        self.written = until

    @property
    def duration(self) -> float:
        return self.written / self.sample_rate

    def close(self) -> None:
        self._file.close()
