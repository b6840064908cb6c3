"""The cost per frame of the WebSocket path (voxtrio serve's server side).

A server process (VoiceServer under hypercorn's trio worker, the WebSocket
transport, sessions with no VAD, STT or LLM) takes N trio-websocket clients
from this process, in three phases of ``--seconds`` each, and its own CPU
time (from /proc, so other load on the machine does not count) is divided by
the frames it handled:

* idle: N sessions connected, nothing flowing (the baseline);
* inbound: every client sends 20 ms PCM16 frames at 50 a second; per frame:
  hypercorn, the transport's checks and decoding, AudioIn's framing;
* duplex: the same, while every agent speaks (tone TTS, 40 ms chunks at 24
  kHz, the words as client events); per 20 ms of audio each way.

Run: .venv/bin/python bench/websocket_frame.py [--clients 10] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

import trio

SECRET = b"bench secret, thirty-two bytes!!"
STORY = " ".join(["The weather desk reads the forecast for every city, slowly and clearly."] * 40)


def serve(port: int, speak: bool) -> None:
    import hypercorn.config
    import hypercorn.trio

    import voxtrio
    from voxtrio.server import TokenSigner, VoiceServer
    from voxtrio.testing.model_free import ToneTTS

    class Reader(voxtrio.Agent):
        def __init__(self) -> None:
            super().__init__(instructions="")

        async def on_enter(self) -> None:
            if speak:
                self.session.say(STORY)

    tts = ToneTTS()
    server = VoiceServer(lambda: (voxtrio.AgentSession(tts=tts), Reader()), signer=TokenSigner(SECRET), max_sessions=1000)
    config = hypercorn.config.Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.loglevel = "WARNING"
    trio.run(hypercorn.trio.serve, server, config)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def phase(port: int, clients: int, seconds: float, send: bool, pid: int) -> dict[str, float]:
    from trio_websocket import open_websocket_url

    from voxtrio.server import TokenSigner

    signer = TokenSigner(SECRET)
    counts = {"sent": 0, "received": 0}
    ready = trio.Event()
    connected = 0

    async def client() -> None:
        nonlocal connected
        async with open_websocket_url(f"ws://127.0.0.1:{port}/ws?token={signer.issue()}") as ws:
            connected += 1
            if connected == clients:
                ready.set()

            async def receive() -> None:
                while True:
                    if isinstance(await ws.get_message(), bytes):
                        counts["received"] += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                await ready.wait()
                await trio.sleep(1.0)  # let every session start
                start = trio.current_time()
                for index in range(int(seconds / 0.02)):
                    await trio.sleep_until(start + index * 0.02)
                    if send:
                        await ws.send_message(bytes(640))
                        counts["sent"] += 1
                nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(client)
        await ready.wait()
        await trio.sleep(1.0)
        before, began = cpu_seconds(pid), time.monotonic()
        counts["received"] = 0
        await trio.sleep(seconds)
        used, wall = cpu_seconds(pid) - before, time.monotonic() - began
    return {"cpu": used, "wall": wall, **counts}


def run_phase(name: str, args: argparse.Namespace, *, speak: bool, send: bool, port: int) -> dict[str, float]:
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(port)] + (["--speak"] if speak else []))
    try:
        deadline = time.monotonic() + 60
        while True:  # until the server listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        result = trio.run(phase, port, args.clients, args.seconds, send, child.pid)
    finally:
        child.terminate()
        child.wait()
    result["name"] = name  # type: ignore[assignment]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--speak", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.speak)
        return
    print(f"load average before: {os.getloadavg()}")
    figures: dict[str, list[float]] = {"idle": [], "in": [], "duplex": [], "out_chunks": []}
    for round in range(args.rounds):
        idle = run_phase("idle", args, speak=False, send=False, port=18801 + round * 3)
        inbound = run_phase("inbound", args, speak=False, send=True, port=18802 + round * 3)
        duplex = run_phase("duplex", args, speak=True, send=True, port=18803 + round * 3)
        idle_rate = idle["cpu"] / idle["wall"]
        per_in = (inbound["cpu"] - idle_rate * inbound["wall"]) / inbound["sent"]
        per_duplex = (duplex["cpu"] - idle_rate * duplex["wall"]) / duplex["sent"]
        figures["idle"].append(100 * idle_rate)
        figures["in"].append(per_in * 1e6)
        figures["duplex"].append(per_duplex * 1e6)
        figures["out_chunks"].append(duplex["received"] / duplex["wall"] / args.clients)
        print(
            f"round {round + 1}: idle {100 * idle_rate:.1f} % of a core for {args.clients} sessions; "
            f"inbound {per_in * 1e6:.0f} us a frame ({inbound['sent']:.0f} frames); "
            f"duplex {per_duplex * 1e6:.0f} us per 20 ms each way ({duplex['received'] / duplex['wall'] / args.clients:.1f} "
            f"agent chunks a second per client), server at {100 * duplex['cpu'] / duplex['wall']:.1f} % of a core"
        )
    print(f"\nmedians of {args.rounds} rounds, {args.clients} clients, {args.seconds:g} s a phase:")
    print(f"  idle sessions:            {statistics.median(figures['idle']):.1f} % of a core")
    print(f"  inbound, per 20 ms frame: {statistics.median(figures['in']):.0f} us of server CPU")
    print(f"  duplex, per 20 ms frame:  {statistics.median(figures['duplex']):.0f} us of server CPU (in + out + speaking)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
