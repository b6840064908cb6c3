"""Does the Silero VAD need a worker thread? Per-frame cost inline vs a thread round trip.

Prints the time one 20 ms pipeline frame costs the event loop when SileroVAD
scores it inline (the provider's choice), and what a trio.to_thread round trip
costs for the same work. Run: .venv/bin/python bench/offline/vad_inline.py
"""

import os
import statistics
import time

import numpy as np
import trio

from voxtrio.providers.silero_vad import SileroVAD, _WindowStream


def percentiles(values):
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))] * 1000  # noqa: E731
    return f"p50 {pick(0.5):.3f} ms  p99 {pick(0.99):.3f} ms  max {max(values) * 1000:.3f} ms"


async def main():
    vad = SileroVAD()
    vad.load()
    model = vad._model.get()
    rng = np.random.default_rng(0)
    audio = (rng.normal(0, 3000, 16_000 * 60)).astype(np.int16)  # one minute
    frames = [audio[i : i + 320] for i in range(0, len(audio), 320)]

    stream = _WindowStream(model, 0.0)
    inline = []
    for frame in frames:
        started = time.perf_counter()
        stream.push(frame)
        inline.append(time.perf_counter() - started)

    stream = _WindowStream(model, 0.0)
    limiter = trio.CapacityLimiter(1)
    threaded = []
    for frame in frames:
        started = time.perf_counter()
        await trio.to_thread.run_sync(stream.push, frame, limiter=limiter)
        threaded.append(time.perf_counter() - started)

    print(f"load average: {os.getloadavg()[0]:.2f} (2 cores)")
    print(f"inline, per 20 ms frame:       {percentiles(inline)}")
    print(f"worker thread, per 20 ms frame: {percentiles(threaded)}")
    share = statistics.mean(inline) / 0.020 * 100
    print(f"inline share of the event loop in real time: {share:.2f} %")


trio.run(main)
