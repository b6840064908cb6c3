#!/usr/bin/env python3
"""How late the pipeline hears the user: the input path's delay per input rate.

    .venv/bin/python bench/input_delay.py

AudioIn converts the transport's audio to 16 kHz, 20 ms frames. A resampler
holds input back (its filter looks ahead), and a frame goes out only when it
is full. This plays clicks ~0.1 s apart through ``PipelineConverter`` in the
transport's chunks and prints, for each click, how long after the chunk that
carried it was delivered the pipeline frame holding it came out: the mean and
the worst, for soxr's default quality (HQ) and the setting AudioIn uses.
Samples, not clocks: the figures are the same on any machine.
"""

from __future__ import annotations

import argparse

import numpy as np

from voxtrio.actors import audio_in
from voxtrio.audio import AudioFrame


def click_latency(rate: int, quality: str, *, chunk: float = 0.02, seconds: float = 6.0) -> np.ndarray:
    saved = audio_in.RESAMPLER_QUALITY
    audio_in.RESAMPLER_QUALITY = quality
    try:
        converter = audio_in.PipelineConverter()
        per_chunk = int(round(rate * chunk))
        samples = np.zeros(int(rate * seconds), np.int16)
        clicks = np.arange(0.3, seconds - 0.5, 0.0973)  # not a multiple of the frame
        samples[(clicks * rate).astype(int)] = 30_000
        emitted: list[tuple[float, AudioFrame]] = []
        for start in range(0, len(samples), per_chunk):
            delivered = (start + per_chunk) / rate
            for frame in converter.push(AudioFrame(samples[start : start + per_chunk], rate)):
                emitted.append((delivered, frame))
        latencies = []
        for click in clicks:
            delivered = (int(click * rate) // per_chunk + 1) * per_chunk / rate
            out = next(t for t, f in emitted if f.timestamp <= click < f.timestamp + f.duration)
            latencies.append(out - delivered)
        return np.array(latencies)
    finally:
        audio_in.RESAMPLER_QUALITY = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=float, default=0.02, help="the transport's chunk, seconds")
    args = parser.parse_args()
    qualities = ["HQ", audio_in.RESAMPLER_QUALITY] if audio_in.RESAMPLER_QUALITY != "HQ" else ["HQ"]
    print(f"input path delay, {args.chunk * 1000:g} ms transport chunks (mean / worst, ms)")
    print("rate     " + "".join(f"{q + (' (soxr default)' if q == 'HQ' else ' (AudioIn)'):>24}" for q in qualities))
    for rate in (8_000, 16_000, 22_050, 44_100, 48_000):
        cells = []
        for quality in qualities:
            latency = click_latency(rate, quality, chunk=args.chunk) * 1000
            cells.append(f"{latency.mean():>14.1f} / {latency.max():>5.1f}")
        print(f"{rate:>6} Hz" + "".join(f"{c:>24}" for c in cells))


if __name__ == "__main__":
    main()
