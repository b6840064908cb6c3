#!/usr/bin/env python3
"""The WebSocket providers' own latency, against the local vendor servers of the tests.

    .venv/bin/python bench/providers_loopback.py [--runs 20]

On the real clock, over loopback, with the servers answering at once (no
synthesis or recognition time), so every figure is what voxtrio's side and
the WebSocket cost:

* Deepgram: the first transcript (an interim) after the audio that
  triggers it was handed to the stream (the connection opened with the
  first frame, 0.2 s earlier), and a final after the audio it covers (the
  provider's own ``STTUsage.latency``, what ``metrics_collected`` reports).
* ElevenLabs, Cartesia: first audio after the request (text ready when the
  stream starts: handshake, first message, first audio message decoded),
  and first audio after the first text went out (without the handshake).
* Barge-in, per TTS, in a whole AgentSession: from ``SpeechHandle.interrupt()``
  to the output device going silent (its ``clear()``), to the last audio
  written, and to the vendor seeing it (ElevenLabs: the connection gone;
  Cartesia: the context's cancel message received).

Medians (and the 90th percentile) of ``--runs`` runs. Numbers, not
assertions; the machine's load is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import voxtrio  # noqa: E402
from voxtrio.providers.base import TTS_REQUEST_STARTED  # noqa: E402
from voxtrio.audio import AudioFrame  # noqa: E402
from voxtrio.messages import STTEvent  # noqa: E402
from voxtrio.providers import cartesia, deepgram, elevenlabs  # noqa: E402
from voxtrio.providers.base import STTUsage, SynthesizedAudio  # noqa: E402
from voxtrio.testing import ScriptedTransport  # noqa: E402

from loopback.cartesia import FakeCartesia  # noqa: E402
from loopback.deepgram import FakeDeepgram  # noqa: E402
from loopback.elevenlabs import FakeElevenLabs  # noqa: E402
from loopback.server import SpeechModel  # noqa: E402

LONG_TEXT = (
    "The quick brown fox jumps over the lazy dog. Then it runs far away into the woods, "
    "where nobody can find it, and it sleeps there until the morning comes. The end."
)


def ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return f"{statistics.median(ordered) * 1000:7.2f} ms (p90 {p90 * 1000:.2f})"


async def deepgram_once() -> tuple[float, list[float]]:
    server = FakeDeepgram({1000: "hello there friend"}, interim_every=0.02)
    pushed: dict[float, float] = {}
    first_interim: list[float] = []
    latencies: list[float] = []
    async with server.running():
        stt = deepgram.STT(api_key="test-key", base_url=f"{server.url}/v1/listen")
        frames_send, frames_receive = trio.open_memory_channel(1000)
        events_send, events_receive = trio.open_memory_channel(1000)
        voice_starts = 0.2

        async def produce() -> None:
            async with frames_send:
                start = trio.current_time()
                for index in range(60):  # 0.2 s of silence, 0.6 s voiced, 0.4 s of silence
                    at = index * 0.02
                    value = 1000 if voice_starts <= at < 0.8 else 0
                    await trio.sleep_until(start + at + 0.02)
                    pushed[round(at, 2)] = trio.current_time()
                    await frames_send.send(AudioFrame(np.full(320, value, np.int16), 16_000, timestamp=at))

        async def collect() -> None:
            async for item in events_receive:
                if isinstance(item, STTEvent) and item.kind == "interim" and not first_interim:
                    first_interim.append(trio.current_time() - pushed[voice_starts])
                if isinstance(item, STTUsage) and item.latency is not None:
                    latencies.append(item.latency)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            nursery.start_soon(collect)
            async with events_send:
                await stt.stream(frames_receive, events_send)
    return first_interim[0], latencies


async def tts_once(make) -> tuple[float, float]:
    text_send, text_receive = trio.open_memory_channel(10)
    audio_send, audio_receive = trio.open_memory_channel(100_000)
    await text_send.send("Hello there, my friend. ")
    text_send.close()
    started = trio.current_time()
    marks: dict[str, float] = {}
    tts = make()

    async def collect() -> None:
        async for item in audio_receive:
            if item == TTS_REQUEST_STARTED:
                marks.setdefault("sent", trio.current_time())
            elif isinstance(item, SynthesizedAudio) and item.frame.samples_per_channel:
                marks.setdefault("audio", trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        async with audio_send:
            await tts.stream(text_receive, audio_send)
    return marks["audio"] - started, marks["audio"] - marks["sent"]


async def barge_in_once(server, tts) -> dict[str, float]:
    session = voxtrio.AgentSession(tts=tts)
    transport = ScriptedTransport(input_audio=False)
    output = transport.audio_output
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(), transport)
        handle = session.say(LONG_TEXT)
        await trio.sleep(1.0)  # the reply is playing, and still being synthesized
        cut = trio.current_time()
        handle.interrupt()
        await handle
        await trio.sleep(0.2)  # let the server see what it will see
        await session.aclose()
    figures = {
        "silence": output.clears[0] - cut if output.clears else float("nan"),
        "last_write": max(t for t, _ in output.writes) - cut,
    }
    connection = server.connections[-1]
    if isinstance(server, FakeCartesia):
        figures["vendor"] = server.cancelled_at[0] - cut if server.cancelled_at else float("nan")
    elif connection.client_gone_at is not None:
        figures["vendor"] = connection.client_gone_at - cut
    return figures


async def main(runs: int) -> None:
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores, shared with other jobs)")
    interims, finals = [], []
    for _ in range(runs):
        first, latencies = await deepgram_once()
        interims.append(first)
        finals.extend(latencies)
    print(f"deepgram   first transcript after the audio that triggers it: {ms(interims)}")
    print(f"deepgram   final after the audio it covers:                   {ms(finals)}")

    instant = SpeechModel(ttfb=0.0, speed=1000.0)  # answers at once
    real_time = SpeechModel(speed=1.5)  # a long reply is still being synthesized when it is cut
    vendors = {
        "elevenlabs": (FakeElevenLabs, lambda url: elevenlabs.TTS(voice_id="v", api_key="test-key", base_url=url)),
        "cartesia": (FakeCartesia, lambda url: cartesia.TTS(voice="v", api_key="test-key", base_url=url)),
    }
    for name, (fake, make_tts) in vendors.items():
        server = fake(model=instant)
        async with server.running():
            results = [await tts_once(lambda: make_tts(server.url)) for _ in range(runs)]
        print(f"{name:10} first audio after the request (with the handshake):  {ms([r[0] for r in results])}")
        print(f"{name:10} first audio after the first text was sent:           {ms([r[1] for r in results])}")

    for name, (fake, make_tts) in vendors.items():
        figures = []
        for _ in range(runs):
            server = fake(model=real_time)
            async with server.running():
                figures.append(await barge_in_once(server, make_tts(server.url)))
        print(f"{name:10} barge-in: interrupt() to the device's silence:       {ms([f['silence'] for f in figures])}")
        print(f"{name:10} barge-in: interrupt() to the last audio written:     {ms([f['last_write'] for f in figures])}")
        what = "its context cancel" if name == "cartesia" else "the socket closed"
        print(f"{name:10} barge-in: interrupt() to the vendor seeing {what}: {ms([f['vendor'] for f in figures if 'vendor' in f])}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    trio.run(main, parser.parse_args().runs)
