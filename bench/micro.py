#!/usr/bin/env python3
"""Micro-benchmark of voxtrio's plumbing: CPU per message, per actor hop.

    .venv/bin/python bench/micro.py            # a table of microseconds
    .venv/bin/python bench/micro.py --json     # one JSON line, for comparing runs

Two kinds of figures, both CPU time (``time.process_time``), best of
``--repeat`` runs so that a busy machine inflates them as little as possible:

* primitives, in plain timing loops: one trio channel hop (the unit every
  actor link costs), building an ``AudioFrame``, AudioIn's reframing, the
  EnergyVAD decision, a VADEvent through the Turn actor's handler;
* the pipeline, as a whole ``AgentSession`` on trio's MockClock with the
  benchmark's providers (``adapters/voxtrio_rt.py``): CPU per 20 ms input
  frame of silence (transport -> AudioIn -> VAD + Recognizer -> STT), per
  frame of speech (plus a VADEvent per frame through VADActor -> Turn), and
  per 20 ms output chunk of a reply (TTS -> Speaker -> AudioOutput).
  Virtual time jumps over every sleep, so the figure is the runtime's cost
  alone: no harness, no waiting.

Numbers, not assertions: a regression shows as a bigger number here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import trio
import trio.testing

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import voxtrio  # noqa: E402
from voxtrio.actors.audio_in import PipelineConverter  # noqa: E402
from voxtrio.audio import AudioFrame  # noqa: E402
from voxtrio.providers.energy_vad import _EnergyDetector  # noqa: E402
from voxtrio.transports.base import AudioOutput, Transport  # noqa: E402

from adapters import voxtrio_rt as VX  # noqa: E402
from harness import workload as W  # noqa: E402

SPEECH = np.frombuffer(b"".join(W.SPEECH_FRAMES), np.int16)
SILENCE = np.zeros(W.IN_FRAME_SAMPLES, np.int16)


def best(fn, repeat: int) -> float:
    """Smallest CPU seconds of ``repeat`` calls of ``fn``."""
    out = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        out = min(out, time.process_time() - t)
    return out


# ------------------------------------------------------------------ primitives
def channel_hop(n: int) -> None:
    """``n`` messages, each sent by one task and received by another."""

    async def main() -> None:
        send, receive = trio.open_memory_channel(1)

        async def consumer() -> None:
            async for _ in receive:
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer)
            async with send:
                for i in range(n):
                    await send.send(i)

    trio.run(main)


def frame_construction(n: int) -> None:
    for _ in range(n):
        AudioFrame(SILENCE, 16_000)


def reframing(n: int) -> None:
    converter = PipelineConverter()
    frame = AudioFrame(SILENCE, 16_000)
    for _ in range(n):
        converter.push(frame)


def energy_vad(n: int, speech: bool) -> None:
    detector = _EnergyDetector(VX.bench_vad())
    frames = [
        AudioFrame(SPEECH[i * 320 : (i + 1) * 320] if speech else SILENCE, 16_000, 1, i * 0.02)
        for i in range(100)
    ]
    for i in range(n):
        detector.push(frames[i % 100])


# -------------------------------------------------------------------- pipeline
class NullOutput(AudioOutput):
    sample_rate = W.OUT_RATE
    buffer_duration = W.SINK_BUFFER_S

    def __init__(self) -> None:
        self.frames = 0

    async def write(self, frame: AudioFrame) -> None:
        self.frames += 1


class ClockTransport(Transport):
    """``frames`` 20 ms frames on the virtual clock, speech or silence."""

    def __init__(self, frames: int, speech: bool) -> None:
        self.audio_output = NullOutput()
        self._n = frames
        self._speech = speech
        self.sent = 0

    async def read_audio(self, frames) -> None:
        start = trio.current_time()
        for k in range(self._n):
            await trio.sleep_until(start + k * W.FRAME_S)
            pcm = SPEECH[(k % 100) * 320 : (k % 100 + 1) * 320] if self._speech else SILENCE
            await frames.send(AudioFrame(pcm, W.IN_RATE))
            self.sent += 1
        await trio.sleep_forever()


class _NullIO:
    def tts_request(self, text: str) -> None:
        pass


def _session(**extra) -> voxtrio.AgentSession:
    return voxtrio.AgentSession(
        vad=VX.bench_vad(),
        stt=VX.BenchSTT(),
        llm=VX.BenchLLM(),
        tts=VX.BenchTTS(_NullIO()),
        **VX.SESSION_OPTIONS,
        **extra,
    )


def clock_only(frames: int) -> None:
    """What ``pipeline_input`` costs without a session: the virtual clock's
    tick every 20 ms and the transport's one send (subtracted below)."""

    async def main() -> None:
        send, receive = trio.open_memory_channel(50)

        async def consumer() -> None:
            async for _ in receive:
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer)
            start = trio.current_time()
            async with send:
                for k in range(frames):
                    await trio.sleep_until(start + k * W.FRAME_S)
                    await send.send(AudioFrame(SILENCE, W.IN_RATE))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def pipeline_input(frames: int, speech: bool) -> None:
    async def main() -> None:
        transport = ClockTransport(frames, speech)
        session = _session(user_away_timeout=None)
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, VX.OrderAgent(), transport)
            await trio.sleep(frames * W.FRAME_S + 0.1)
            await session.aclose()
        assert transport.sent == frames

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def pipeline_output(replies: int) -> int:
    """``replies`` times the workload's reply via say(); returns chunks played."""
    out = NullOutput()

    class OutputOnly(Transport):
        audio_output = out

    async def main() -> None:
        session = _session()
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, VX.OrderAgent(), OutputOnly())
            for _ in range(replies):
                await session.say(W.REPLY)
            await session.aclose()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return out.frames


# ------------------------------------------------------------------------ main
def measure(repeat: int) -> dict[str, float]:
    us = {}
    n = 20_000
    us["trio channel hop (send -> other task receives)"] = best(lambda: channel_hop(n), repeat) / n * 1e6
    us["AudioFrame(...) construction"] = best(lambda: frame_construction(n), repeat) / n * 1e6
    us["AudioIn reframing, per 20 ms frame"] = best(lambda: reframing(n), repeat) / n * 1e6
    us["EnergyVAD decision, silence frame"] = best(lambda: energy_vad(n, False), repeat) / n * 1e6
    us["EnergyVAD decision, speech frame"] = best(lambda: energy_vad(n, True), repeat) / n * 1e6
    frames = 3000  # 60 s of audio
    clock = best(lambda: clock_only(frames), repeat) - best(lambda: clock_only(1), repeat)
    us["virtual clock tick + transport send (subtracted below)"] = clock / frames * 1e6
    empty = best(lambda: pipeline_input(1, False), repeat)
    silence = best(lambda: pipeline_input(frames, False), repeat) - clock
    speech = best(lambda: pipeline_input(frames, True), repeat) - clock
    us["pipeline: session start + close (once per call)"] = empty * 1e6
    us["pipeline: input frame, silence (AudioIn, VAD, Recognizer, STT)"] = (silence - empty) / frames * 1e6
    us["pipeline: input frame, speech (+ VADEvent -> Turn)"] = (speech - empty) / frames * 1e6
    replies = 5
    chunks = pipeline_output(replies)
    output = best(lambda: pipeline_output(replies), repeat)
    us["pipeline: output chunk, 20 ms (TTS -> Speaker -> AudioOutput)"] = (output - empty) / chunks * 1e6
    return {k: round(v, 2) for k, v in us.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    us = measure(args.repeat)
    if args.json:
        print(json.dumps({"micro_us": us, "voxtrio": VX.version()}))
        return 0
    width = max(map(len, us))
    for name, value in us.items():
        print(f"{name:<{width}}  {value:10.2f} us")
    per_call_s = (
        us["pipeline: input frame, silence (AudioIn, VAD, Recognizer, STT)"] * 50 * 0.75
        + us["pipeline: input frame, speech (+ VADEvent -> Turn)"] * 50 * 0.25
        + us["pipeline: output chunk, 20 ms (TTS -> Speaker -> AudioOutput)"] * 50 * 0.4
    ) / 1e6
    print(
        f"\nimplied runtime CPU for one scripted call (~25% speech in, ~40% agent audio out):"
        f" {per_call_s * 100:.3f} % of a core = {per_call_s * 60:.3f} CPU s per conversation-minute"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
