#!/usr/bin/env python3
"""The realtime models' own cost: CPU per minute of a scripted call, on loopback.

    .venv/bin/python bench/realtime_loopback.py [--runs 5] [--minutes 1] [--speedup 10]

One call against the local vendor servers of the tests (tests/loopback/):
the user speaks 1.5 s every 6 s, the model answers each turn with 3 s of
speech (every third turn first calls a tool), and the user talks over one
reply a minute (an interruption: cancel and truncate). The user's audio is
pushed in 20 ms frames ``--speedup`` times faster than real time, and the
server speaks that much faster too: the same frames and messages per minute
of call, in less wall time.

CPU is counted per task step (a trio Instrument reading the thread's CPU
clock), so the client's share (the provider: base64, resampling, JSON, the
WebSocket, the events; and the driver that reads them) is told apart from
the fake server's in the same process. Printed: medians of ``--runs`` runs
of client CPU seconds per minute of call, and its share of one core.
Numbers, not assertions; the machine's load is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from voxtrio.audio import AudioFrame, PlayoutTimeline  # noqa: E402
from voxtrio.providers import gemini, openai  # noqa: E402
from voxtrio.providers.base import InputSpeechStarted, RealtimeFunctionCall, ResponseAudio, ResponseDone  # noqa: E402

from loopback.gemini_live import FakeGemini  # noqa: E402
from loopback.openai_realtime import Call, FakeRealtime, Reply, Say, Turn  # noqa: E402

TURN_EVERY = 6.0
SPEECH = 1.5
REPLY = "Sure, here is what I found about that, it should help you with your question today."


class TaskCPU(trio.abc.Instrument):
    """Thread CPU time per task step, summed for the server's tasks and the rest."""

    def __init__(self) -> None:
        self.server_root: trio.lowlevel.Task | None = None
        self.client = 0.0
        self.server = 0.0
        self._started = 0.0
        self._is_server: dict[trio.lowlevel.Task, bool] = {}

    def _server_task(self, task: trio.lowlevel.Task) -> bool:
        known = self._is_server.get(task)
        if known is None:
            known = False
            ancestor: trio.lowlevel.Task | None = task
            while ancestor is not None:
                if ancestor is self.server_root:
                    known = True
                    break
                nursery = ancestor.parent_nursery
                ancestor = nursery.parent_task if nursery is not None else None
            self._is_server[task] = known
        return known

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        spent = time.thread_time() - self._started
        if self._server_task(task):
            self.server += spent
        else:
            self.client += spent


def script(minutes: float) -> tuple[list[Turn], list[Reply], float]:
    """The turns, the replies, and when (audio time) the user talks over one."""
    turns, replies = [], []
    count = int(minutes * 60 / TURN_EVERY)
    for index in range(count):
        start = 0.5 + index * TURN_EVERY
        turns.append(Turn(start, start + SPEECH, "Could you tell me more about my order please?"))
        if index % 3 == 2:
            replies.append(Reply((Call("lookup_order", '{"order": "A-1"}', call_id=f"call_{index}"),)))
        replies.append(Reply((Say(REPLY, 3.0),)))
    # Every minute, the user speaks again 1 s into a reply: one more turn, inside it.
    barge_ins = [0.5 + k * 60 + 2 * TURN_EVERY + SPEECH + 1.0 for k in range(int(minutes))]
    for at in barge_ins:
        turns.append(Turn(at, at + 0.6, "Wait, actually."))
        replies.append(Reply((Say("Okay.", 0.5),)))
    turns.sort(key=lambda turn: turn.start)
    return turns, replies, minutes * 60


async def call(kind: str, minutes: float, speedup: float, cpu: TaskCPU) -> dict[str, float]:
    turns, replies, seconds = script(minutes)
    pace = 0.02 / speedup
    if kind == "openai":
        server = FakeRealtime(turns=turns, replies=replies, ttfb=0.2 / speedup, speed=speedup * 4)
    else:
        server = FakeGemini(turns=turns, replies=replies, ttfb=0.2 / speedup, speed=speedup * 4)
    counts = {"frames_out": 0, "responses": 0, "tool_calls": 0, "interruptions": 0}
    async with trio.open_nursery() as outer:
        ready = trio.Event()

        async def run_server() -> None:
            cpu.server_root = trio.lowlevel.current_task()
            async with server.running():
                ready.set()
                await trio.sleep_forever()

        outer.start_soon(run_server)
        await ready.wait()
        if kind == "openai":
            model = openai.RealtimeModel(api_key="test-key", base_url=f"{server.url}/v1/realtime")
        else:
            model = gemini.RealtimeModel(api_key="test-key", base_url=f"{server.url}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent")
        timeline = PlayoutTimeline()
        item = None
        async with model.session(instructions="Be brief.") as live:

            async def read() -> None:
                nonlocal item
                async for event in live.events:
                    now = trio.current_time() * speedup  # on the call's clock
                    if isinstance(event, ResponseAudio):
                        if event.item_id != item:
                            item = event.item_id
                            timeline.reset()
                        timeline.write(event.frame.duration, now)
                        counts["frames_out"] += 1
                    elif isinstance(event, RealtimeFunctionCall):
                        counts["tool_calls"] += 1
                        await live.send_tool_output(event.call_id, '{"status": "shipped"}')
                    elif isinstance(event, InputSpeechStarted) and item is not None and timeline.queued(now) > 0:
                        counts["interruptions"] += 1
                        await live.interrupt(item_id=item, played=timeline.position(now))
                    elif isinstance(event, ResponseDone):
                        counts["responses"] += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                start = trio.current_time()
                silence = np.zeros(320, np.int16)
                for index in range(int(round(seconds / 0.02))):
                    await trio.sleep_until(start + (index + 1) * pace)
                    await live.push_audio(AudioFrame(silence, 16_000, timestamp=index * 0.02))
                nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    return counts


def run_once(kind: str, minutes: float, speedup: float) -> tuple[float, float, float, dict[str, float]]:
    cpu = TaskCPU()
    started = time.perf_counter()
    counts = trio.run(call, kind, minutes, speedup, cpu, instruments=[cpu])
    wall = time.perf_counter() - started
    return cpu.client / minutes, cpu.server / minutes, wall, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--speedup", type=float, default=10.0)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"{args.runs} runs of a {args.minutes:g}-minute call at {args.speedup:g}x real time")
    for kind in ("openai", "gemini"):
        client, server, walls = [], [], []
        counts: dict[str, float] = {}
        for _ in range(args.runs):
            c, s, wall, counts = run_once(kind, args.minutes, args.speedup)
            client.append(c)
            server.append(s)
            walls.append(wall)
        per_minute = statistics.median(client)
        print(f"{kind:7s} client CPU {per_minute:6.3f} s per minute of call ({per_minute / 60 * 100:5.2f} % of a core; "
              f"runs {min(client):.3f}..{max(client):.3f}), fake server {statistics.median(server):.3f} s, "
              f"wall {statistics.median(walls):.2f} s; per call: {counts}")


if __name__ == "__main__":
    main()
