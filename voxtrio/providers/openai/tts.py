"""Speech (``/audio/speech``) as raw PCM, streamed as the server renders it.

One request per sentence (the session splits the reply): the audio comes back
as ``response_format="pcm"``, 24 kHz mono 16-bit little-endian with no header,
and is passed on chunk by chunk, so the first words play while the rest of
the sentence is still being rendered.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import trio

from ...audio import AudioFrame
from ...options import APIConnectOptions
from ..base import DEFAULT_CONN_OPTIONS, SynthesizedAudio, TTS as BaseTTS, TTSCapabilities
from .connection import openai_client

SAMPLE_RATE = 24_000


class TTS(BaseTTS):
    """OpenAI's text to speech (``gpt-4o-mini-tts``, ``tts-1``, ``tts-1-hd``), or a
    compatible server's. ``instructions`` (the voice's tone, accent, pace) works
    with ``gpt-4o-mini-tts`` only; ``speed`` is 0.25 to 4.0."""

    capabilities = TTSCapabilities(streaming=False)
    sample_rate = SAMPLE_RATE
    num_channels = 1

    def __init__(
        self,
        *,
        model: str = "gpt-4o-mini-tts",
        voice: str = "ash",
        instructions: str | None = None,
        speed: float | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        if speed is not None and not 0.25 <= speed <= 4.0:
            raise ValueError(f"speed must be between 0.25 and 4.0, got {speed}")
        self.model = model
        self.voice = voice
        self.instructions = instructions
        self.speed = speed
        self._http = openai_client(
            api_key_arg=api_key, base_url=base_url, extra_headers=extra_headers, provider="openai.TTS"
        )

    def __repr__(self) -> str:
        return f"openai.TTS({self.model!r}, voice={self.voice!r} at {self._http.base_url})"

    async def synthesize(
        self,
        text: str,
        audio: trio.MemorySendChannel[SynthesizedAudio],
        *,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        body: dict[str, object] = {"model": self.model, "input": text, "voice": self.voice, "response_format": "pcm"}
        if self.instructions:
            body["instructions"] = self.instructions
        if self.speed is not None:
            body["speed"] = self.speed
        pending = b""
        async with self._http.request("POST", "/audio/speech", json=body, conn_options=conn_options) as response:
            async for chunk in response.aiter_bytes():
                pending += chunk
                whole = len(pending) - len(pending) % 2  # a chunk can end inside a sample
                if whole:
                    samples = np.frombuffer(pending[:whole], "<i2").astype(np.int16)
                    pending = pending[whole:]
                    await audio.send(SynthesizedAudio(frame=AudioFrame(samples, SAMPLE_RATE)))
