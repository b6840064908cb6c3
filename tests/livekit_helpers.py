"""Shared by the LiveKit tests: tones, their frequency, a TTS that speaks a tone."""

from __future__ import annotations

import numpy as np
import trio

from voxtrio.audio import AudioFrame
from voxtrio.providers.base import TTS, SynthesizedAudio, TTSCapabilities


def tone(seconds: float, frequency: float, rate: int, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def loud(frame: np.ndarray) -> bool:
    return int(np.abs(frame.astype(np.int32)).max()) > 1000


class ToneTTS(TTS):
    """Speaks every text as a 660 Hz tone, 50 ms per character (audible in the room)."""

    capabilities = TTSCapabilities(streaming=True)
    sample_rate = 24_000
    num_channels = 1

    async def stream(self, text, audio, *, conn_options=None) -> None:  # type: ignore[no-untyped-def]
        full = "".join([chunk async for chunk in text])
        samples = tone(0.05 * len(full), 660, self.sample_rate)
        for start in range(0, len(samples), 480):
            await audio.send(SynthesizedAudio(frame=AudioFrame(samples[start : start + 480], self.sample_rate)))
            await trio.sleep(0)


async def collect_heard(heard: trio.MemoryReceiveChannel[np.ndarray], frames: int) -> list[np.ndarray]:
    """The next ``frames`` 20 ms frames the participant hears."""
    return [await heard.receive() for _ in range(frames)]


async def wait_for_loud(heard: trio.MemoryReceiveChannel[np.ndarray]) -> list[np.ndarray]:
    """Skip silence, then return the loud run that follows."""
    frame = await heard.receive()
    while not loud(frame):
        frame = await heard.receive()
    run = [frame]
    while loud(frame := await heard.receive()):
        run.append(frame)
    return run
