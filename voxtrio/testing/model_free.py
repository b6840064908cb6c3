"""Model-free providers that answer live audio: ``voxtrio serve --scripted``.

The scripted providers of :mod:`voxtrio.testing.scripted` follow a script
written in advance; a person at a microphone follows none. These three react
to what actually arrives, without any model, so a live session (a browser
talking to the server) runs the real actors, turn-taking and interruptions
on a machine without ``voxtrio[local]``. They understand nothing, and say so:

* :class:`SpeechDurationSTT` "transcribes" each VAD segment as its length
  (``"[1.4 s of speech]"``): it hears that someone spoke, not what;
* :class:`EchoLLM` answers a user message by repeating it;
* :class:`ToneTTS` "speaks" a sentence as a tone per word, with word timings,
  so the words shown to the user follow the sound exactly.
"""

from __future__ import annotations

import zlib

import numpy as np
import trio

from ..audio import AudioFrame
from ..chat import ChatContext
from ..messages import STTEvent
from ..options import APIConnectOptions
from ..providers.base import (
    DEFAULT_CONN_OPTIONS,
    LLM,
    STT,
    TTS,
    LLMChunk,
    STTCapabilities,
    SynthesizedAudio,
    TimedWord,
    TTSCapabilities,
)


class SpeechDurationSTT(STT):
    """A VAD-driven recognizer that reports how long the user spoke."""

    capabilities = STTCapabilities(streaming=False, interim_results=False)

    async def recognize(
        self,
        audio: AudioFrame,
        *,
        language: str | None = None,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> STTEvent:
        return STTEvent(kind="final", text=f"[{audio.duration:.1f} s of speech]")


class EchoLLM(LLM):
    """Answers the last user message with ``You said: <it>``; calls no tool."""

    model = "echo"

    async def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: object,
        tool_choice: object,
        output: trio.MemorySendChannel[LLMChunk],
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        said = next(
            (item.content for item in reversed(chat_ctx.items) if item.type == "message" and item.role == "user"),
            None,
        )
        if said is None:
            await output.send("Hello! This is the scripted pipeline: I repeat what I hear.")
            return
        words = f"You said: {said}".split(" ")
        for index, word in enumerate(words):
            await output.send(word if index == 0 else " " + word)


class ToneTTS(TTS):
    """A tone burst per word (pitch from the word, length from its letters)
    and a short gap between words, 16 kHz, in 40 ms chunks with word timings."""

    capabilities = TTSCapabilities(streaming=False, aligned_transcript=True)
    sample_rate = 16_000
    num_channels = 1

    def __init__(self, *, seconds_per_letter: float = 0.06, gap: float = 0.08, amplitude: int = 6000) -> None:
        self.seconds_per_letter = seconds_per_letter
        self.gap = gap
        self.amplitude = amplitude

    def render(self, text: str) -> tuple[np.ndarray, list[TimedWord]]:
        rate = self.sample_rate
        pieces, words, at = [], [], 0.0
        for word in text.split():
            length = max(0.12, self.seconds_per_letter * len(word))
            t = np.arange(int(length * rate)) / rate
            pitch = 220.0 + zlib.crc32(word.lower().encode()) % 300
            envelope = np.minimum(1.0, np.minimum(t, length - t) / 0.01)  # no clicks
            pieces.append((self.amplitude * envelope * np.sin(2 * np.pi * pitch * t)).astype(np.int16))
            pieces.append(np.zeros(int(self.gap * rate), np.int16))
            words.append(TimedWord(text=word, start=at, end=at + length))
            at += length + self.gap
        samples = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
        return samples, words

    async def synthesize(
        self,
        text: str,
        audio: trio.MemorySendChannel[SynthesizedAudio],
        *,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        samples, words = self.render(text)
        step = int(0.04 * self.sample_rate)
        for start in range(0, len(samples), step):
            begin, end = start / self.sample_rate, min(len(samples), start + step) / self.sample_rate
            chunk_words = tuple(
                TimedWord(text=w.text, start=w.start - begin, end=w.end - begin)
                for w in words
                if begin <= w.end < end  # a word goes with the chunk it ends in
            )
            frame = AudioFrame(np.ascontiguousarray(samples[start : start + step]), self.sample_rate)
            await audio.send(SynthesizedAudio(frame=frame, words=chunk_words))
