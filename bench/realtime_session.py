#!/usr/bin/env python3
"""A whole AgentSession call on a realtime model against the same call on a pipeline,
both over loopback: CPU per minute of call of voxtrio's side.

    .venv/bin/python bench/realtime_session.py [--runs 3] [--minutes 1]

The call: the user speaks 1.5 s every 6 s (a constant-value "voice" the fake
servers recognize), the agent answers each turn with the same sentence.

* realtime: ``openai.RealtimeModel`` against the local Realtime server
  (tests/loopback/openai_realtime.py): the user's audio goes up as base64 PCM at
  24 kHz, the server's turn detection, its 4 s of reply audio (as long as the fake TTS speaks the reply) and transcript.
* pipeline: the energy VAD (inside AudioIn), ``deepgram.STT`` against the local
  Deepgram server, the scripted LLM (in-process: no network LLM is in the
  loopback set) and ``elevenlabs.TTS`` against the local ElevenLabs server.

Both run on trio's MockClock (idle time is skipped; the sockets are real), so the
wall time is the CPU time; CPU is counted per task step as in
bench/realtime_loopback.py, the fake servers' share apart. Printed: medians of
``--runs`` runs, and the ratio realtime / pipeline. Numbers, not assertions; the
machine's load is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import trio
import trio.testing

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import voxtrio  # noqa: E402
from voxtrio.providers import deepgram, elevenlabs, openai  # noqa: E402
from voxtrio.providers.energy_vad import EnergyVAD  # noqa: E402
from voxtrio.testing import ArrayTransport, LLMResponse, ScriptedLLM  # noqa: E402

from loopback.deepgram import FakeDeepgram  # noqa: E402
from loopback.elevenlabs import FakeElevenLabs  # noqa: E402
from loopback.openai_realtime import FakeRealtime, Reply, Say, Turn  # noqa: E402
from realtime_loopback import TaskCPU  # noqa: E402

TURN_EVERY = 6.0
SPEECH = 1.5
VOICE = 3000
SAID = "could you tell me more about my order please"
REPLY = "Sure, here is what I found about that, it should help you with your question today."


def user_audio(minutes: float) -> tuple[np.ndarray, list[Turn]]:
    samples = np.zeros(int(minutes * 60 * 16_000), np.int16)
    turns = []
    start = 0.5
    while start + SPEECH < minutes * 60:
        samples[int(start * 16_000) : int((start + SPEECH) * 16_000)] = VOICE
        turns.append(Turn(start, start + SPEECH, SAID))
        start += TURN_EVERY
    return samples, turns


async def call(kind: str, minutes: float, cpu: TaskCPU) -> dict[str, int]:
    samples, turns = user_audio(minutes)
    if kind == "realtime":
        # As long as the fake ElevenLabs speaks REPLY, so both calls play the same audio.
        servers = [FakeRealtime(turns=turns, replies=[Reply((Say(REPLY, 4.0),)) for _ in turns])]
    else:
        servers = [FakeDeepgram({VOICE: SAID}), FakeElevenLabs()]
    async with trio.open_nursery() as outer:
        ready = trio.Event()

        async def run_servers() -> None:
            cpu.server_root = trio.lowlevel.current_task()
            async with servers[0].running():
                if len(servers) > 1:
                    async with servers[1].running():
                        ready.set()
                        await trio.sleep_forever()
                ready.set()
                await trio.sleep_forever()

        outer.start_soon(run_servers)
        await ready.wait()
        if kind == "realtime":
            model = openai.RealtimeModel(api_key="test-key", base_url=f"{servers[0].url}/v1/realtime")
            session = voxtrio.AgentSession(llm=model)
        else:
            session = voxtrio.AgentSession(
                vad=EnergyVAD(),
                stt=deepgram.STT(api_key="test-key", base_url=f"{servers[0].url}/v1/listen"),
                llm=ScriptedLLM([LLMResponse(input=SAID, content=REPLY)]),
                tts=elevenlabs.TTS(api_key="test-key", voice_id="v", base_url=servers[1].url),
                min_endpointing_delay=0.2,
            )
        transport = ArrayTransport(samples)
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, voxtrio.Agent(instructions="Be brief."), transport)
            await trio.sleep(minutes * 60)
            await session.aclose()
        outer.cancel_scope.cancel()
    events = session.recorded_events
    return {
        "user_turns": sum(1 for e in events if e.type == "conversation_item_added" and getattr(e.item, "role", "") == "user"),
        "replies_played": sum(1 for e in events if e.type == "playback_finished"),
        "audio_out_s": round(sum(seconds for _, seconds in transport.audio_output.writes)),
    }


def run_once(kind: str, minutes: float) -> tuple[float, float, dict[str, int]]:
    cpu = TaskCPU()
    counts = trio.run(call, kind, minutes, cpu, clock=trio.testing.MockClock(autojump_threshold=0), instruments=[cpu])
    return cpu.client / minutes, cpu.server / minutes, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=1.0)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {args.runs} runs of a {args.minutes:g}-minute call")
    medians = {}
    for kind in ("realtime", "pipeline"):
        client, server = [], []
        counts: dict[str, int] = {}
        for _ in range(args.runs):
            c, s, counts = run_once(kind, args.minutes)
            client.append(c)
            server.append(s)
        medians[kind] = statistics.median(client)
        print(f"{kind:8s} voxtrio CPU {medians[kind]:6.3f} s per minute of call "
              f"(runs {min(client):.3f}..{max(client):.3f}), fake servers {statistics.median(server):.3f} s; per call: {counts}")
    print(f"realtime / pipeline: {medians['realtime'] / medians['pipeline']:.2f}")


if __name__ == "__main__":
    main()
