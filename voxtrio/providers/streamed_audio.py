"""Audio and word timings as the streaming TTS vendors send them.

ElevenLabs and Cartesia both send base64 PCM (16-bit little-endian, mono)
in chunks of whatever size their model produced, and say when words are
heard: ElevenLabs per character, on each chunk's own clock, Cartesia per
word, on the clock of the whole context. The Speaker wants 20 ms frames
(an interruption then drops at most what the device holds) and words timed
from the first sample of the item that carries them; these helpers do the
conversion once for both.
"""

from __future__ import annotations

import base64
import binascii
from typing import Sequence

import numpy as np

from ..audio import AudioFrame
from ..errors import APIError
from .base import SynthesizedAudio, TimedWord

FRAME_DURATION = 0.02


class PCMStream:
    """Decodes a vendor's PCM chunks into frames, keeping count of the audio.

    ``seconds`` is how much audio came before the next chunk: the clock on
    which whole-context word timings are placed.
    """

    def __init__(self, sample_rate: int, *, vendor: str) -> None:
        self.sample_rate = sample_rate
        self.seconds = 0.0
        self._vendor = vendor
        self._carry = b""  # an odd byte: half a sample, waiting for its other half
        self._frame = max(1, int(round(sample_rate * FRAME_DURATION)))

    def decode(self, encoded: str) -> list[AudioFrame]:
        try:
            data = self._carry + base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise APIError(f"{self._vendor} sent audio that is not base64", retryable=True) from None
        usable = len(data) - len(data) % 2
        self._carry = data[usable:]
        samples = np.frombuffer(data[:usable], "<i2").astype(np.int16)
        frames = [
            AudioFrame(samples[i : i + self._frame], self.sample_rate)
            for i in range(0, len(samples), self._frame)
        ]
        self.seconds += len(samples) / self.sample_rate
        return frames


def with_words(
    frames: Sequence[AudioFrame], words: Sequence[TimedWord], *, at: float, sample_rate: int
) -> list[SynthesizedAudio]:
    """The Speaker's items for ``frames`` (the first starting at ``at`` on the
    segment's clock) carrying ``words`` (timed on that clock): the words go on
    the first item, timed from its start. No frames: one item that only
    carries the words."""
    relative = tuple(TimedWord(text=w.text, start=w.start - at, end=w.end - at) for w in words)
    if not frames:
        empty = AudioFrame(np.zeros(0, np.int16), sample_rate)
        return [SynthesizedAudio(frame=empty, words=relative)] if relative else []
    items = [SynthesizedAudio(frame=frames[0], words=relative)]
    items.extend(SynthesizedAudio(frame=frame) for frame in frames[1:])
    return items


class CharacterAligner:
    """Words, with their times, from character alignments (ElevenLabs).

    Characters arrive chunk by chunk, each timed from its chunk's start; a
    word is the characters between whitespace, heard from its first
    character's start to its last one's end, and may span two chunks.
    """

    def __init__(self) -> None:
        self._word = ""
        self._start = 0.0
        self._end = 0.0

    def push(
        self, chars: Sequence[str], starts_ms: Sequence[float], durations_ms: Sequence[float], *, at: float
    ) -> list[TimedWord]:
        """Characters of a chunk that starts ``at`` seconds into the segment;
        returns the words they complete, timed on the segment's clock."""
        done: list[TimedWord] = []
        for char, start_ms, duration_ms in zip(chars, starts_ms, durations_ms):
            start = at + float(start_ms) / 1000
            end = start + float(duration_ms) / 1000
            if not char.strip():
                done.extend(self.flush())
                continue
            if not self._word:
                self._start = start
            self._word += char
            self._end = max(self._end, end)
        return done

    def flush(self) -> list[TimedWord]:
        if not self._word:
            return []
        word = TimedWord(text=self._word, start=self._start, end=self._end)
        self._word, self._end = "", 0.0
        return [word]
