"""The LiveKit transport's costs: the asyncio bridge's CPU per call, and job start latency.

    .venv/bin/python bench/livekit_bridge.py [--seconds 10] [--calls 1,10] [--jobs 20]

1. CPU per call, CPU-seconds of this process over wall seconds (robust to other
   load on the machine), for N concurrent calls in one process sharing one bridge:
   * ``bridge echo``: the bridge alone, per call 50 ``bridge.run`` round trips a
     second (trio -> asyncio -> trio) plus 50 frames a second through a port
     (asyncio -> trio): the two hops every 20 ms frame of a call takes;
   * ``loopback call``: a whole LiveKitTransport in a LoopbackRoom, the caller
     speaking 20 ms frames into a native AudioSource that the transport hears
     through AudioStream at 16 kHz, and the agent writing 20 ms frames out
     through its AudioSource that the caller hears back: the SDK's native media
     work of both ends plus the bridge.
2. Job start latency: a Worker against the fake dispatcher of tests/, each job a
   scripted session in a LoopbackRoom whose caller is there when the agent
   arrives: from the JobAssignment received to the session listening (median,
   p90 over ``--jobs`` jobs, one at a time).
"""

from __future__ import annotations

import argparse
from functools import partial
import statistics
import sys
import time
from pathlib import Path

import attrs
import numpy as np
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from voxtrio.audio import AudioFrame  # noqa: E402
from voxtrio.transports.asyncio_bridge import AsyncioBridge  # noqa: E402
from voxtrio.transports.livekit import LiveKitTransport  # noqa: E402
from voxtrio.testing.livekit_room import LoopbackRoom  # noqa: E402

FRAME = 0.02


async def _ticker(seconds: float, action) -> None:  # type: ignore[no-untyped-def]
    start = trio.current_time()
    for tick in range(int(seconds / FRAME)):
        await trio.sleep_until(start + tick * FRAME)
        await action()


async def bridge_echo(calls: int, seconds: float) -> float:
    async with AsyncioBridge() as bridge:
        ports = [bridge.port(50) for _ in range(calls)]

        async def noop() -> None:
            return None

        async def one_call(port) -> None:  # type: ignore[no-untyped-def]
            payload = bytes(640)

            async def hop() -> None:
                await bridge.run(noop)
                bridge.submit(port.send_nowait, payload)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(_drain, port.receive)
                await _ticker(seconds, hop)
                nursery.cancel_scope.cancel()

        return await _measure(seconds, [lambda p=p: one_call(p) for p in ports])


async def _drain(receive) -> None:  # type: ignore[no-untyped-def]
    async for _ in receive:
        pass


async def loopback_calls(calls: int, seconds: float) -> float:
    async with AsyncioBridge() as bridge:

        async def one_call() -> None:
            room = LoopbackRoom()
            speech = (3000 * np.sin(2 * np.pi * 300 * np.arange(int(seconds * 48_000)) / 48_000)).astype(np.int16)
            reply = AudioFrame((3000 * np.sin(2 * np.pi * 600 * np.arange(480) / 24_000)).astype(np.int16), 24_000)
            async with trio.open_nursery() as nursery:

                async def caller() -> None:
                    await room.agent_joined.wait()
                    await room.join("caller")
                    nursery.start_soon(partial(room.say, speech, identity="caller"))
                    nursery.start_soon(_drain, room.heard)

                nursery.start_soon(caller)
                async with LiveKitTransport(room=room, bridge=bridge) as transport:
                    send, receive = trio.open_memory_channel[AudioFrame](100)
                    nursery.start_soon(transport.read_audio, send)
                    nursery.start_soon(_drain, receive)
                    assert transport.audio_output is not None
                    await _ticker(seconds, lambda: transport.audio_output.write(reply))  # type: ignore[union-attr]
                nursery.cancel_scope.cancel()

        return await _measure(seconds, [one_call] * calls)


async def _measure(seconds: float, calls) -> float:  # type: ignore[no-untyped-def]
    cpu, wall = time.process_time(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for call in calls:
            nursery.start_soon(call)
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


async def start_latency(jobs: int) -> list[float]:
    import voxtrio
    from fake_dispatcher import FakeDispatcher
    from livekit.protocol import agent
    from livekit_helpers import ToneTTS
    from voxtrio.testing import LLMResponse, ScriptedLLM
    from voxtrio.worker import Credentials, Worker, WorkerOptions

    credentials = Credentials("ws://unused", "APIbench", "a-bench-secret-that-is-long-enough-for-hs256")

    class Greeter(voxtrio.Agent):
        def __init__(self) -> None:
            super().__init__(instructions="greet")

        async def on_enter(self) -> None:
            self.session.say("Hello")

    async def entrypoint(ctx) -> None:  # type: ignore[no-untyped-def]
        room = LoopbackRoom(name=ctx.room_name)
        session = voxtrio.AgentSession(llm=ScriptedLLM([LLMResponse(input="x", content="y")]), tts=ToneTTS())
        async with trio.open_nursery() as nursery:

            async def caller_already_there() -> None:
                await room.agent_joined.wait()
                await room.join("caller")

            nursery.start_soon(caller_already_there)
            await ctx.run(session, Greeter(), room=room)

    async with trio.open_nursery() as nursery:
        dispatcher = await nursery.start(FakeDispatcher(credentials).serve)
        worker = Worker(entrypoint, attrs.evolve(credentials, url=dispatcher.url), WorkerOptions(status_interval=0.5))
        await nursery.start(worker.run)
        await dispatcher.wait_for_workers(1)
        for number in range(jobs):
            placed = await dispatcher.dispatch(f"bench-{number}")
            assert placed is not None
            job_id, _ = placed
            while len(worker.start_latencies) <= number:
                await dispatcher.changed.wait()
            await dispatcher.terminate(job_id)
            await dispatcher.wait_for_status(job_id, agent.JS_SUCCESS)
        worker.stop()
        await worker.stopped.wait()
        nursery.cancel_scope.cancel()
    return worker.start_latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--calls", default="1,10")
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args()
    for calls in [int(n) for n in args.calls.split(",")]:
        echo = trio.run(bridge_echo, calls, args.seconds)
        full = trio.run(loopback_calls, calls, args.seconds)
        print(
            f"{calls:3d} call(s): bridge echo {100 * echo / calls:5.2f} % of a core per call, "
            f"loopback call {100 * full / calls:5.2f} % of a core per call "
            f"(bridge share {echo / full:.0%})"
        )
    latencies = trio.run(start_latency, args.jobs)
    ms = sorted(1000 * value for value in latencies)
    print(
        f"job start latency (assignment -> agent listening), {len(ms)} jobs: "
        f"median {statistics.median(ms):.1f} ms, p90 {ms[int(0.9 * (len(ms) - 1))]:.1f} ms, max {ms[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
