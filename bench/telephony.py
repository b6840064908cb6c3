"""What phone calls cost on the telephony server: CPU per call, clear-to-silence, calls per core.

    .venv/bin/python bench/telephony.py --calls 10,25,50            # one run per N
    .venv/bin/python bench/telephony.py --sweep 25,50,75,100,150    # stops after the first N lost

Each run starts two processes: the TelephonyServer (Twilio, the scripted
pipeline of the tests: energy VAD on the caller's real audio, a line per VAD
segment, a scripted LLM, word tones) pinned to core 0 with ``taskset``, and
the load generator, N Twilio callers, pinned to core 1 (raw-socket callers
as cheap as possible: the signed webhook, the TwiML's stream URL, prebuilt
media frames, marks returned and clears honoured as Twilio does; the tests'
``voxtrio.testing.phone.FakeCaller`` does the same at several times the cost). Every caller asks (an espeak WAV as 20 ms μ-law frames), lets the
agent's six-second answer play for a second, barges in, waits for the second
answer and the silence after it, ``--rounds`` times, then hangs up; the
callers start ``--stagger`` seconds apart.

Printed per N, from the server process alone (CPU-seconds, so other load on
the machine does not count, though it does delay):

* CPU per call: the server's CPU-seconds over the call-seconds it served
  (% of a core per concurrent call);
* clear-to-silence: from the server's ``clear()`` (the Speaker cutting the
  reply) to the first silent 20 ms frame the caller played (CLOCK_MONOTONIC
  across the two processes); its floor is the caller's 20 ms playback tick;
* loop lag: how late a 10 ms trio sleep wakes in the server (p50/p99);
* held: real time was held if every call had all its turns (each question and
  barge-in answered, as the server's history says), no caller
  audio was dropped, the loop lag p99 stayed under 50 ms and the server's
  CPU under 90 % of its core. The load generator's own lateness is printed so
  that a generator falling behind is not mistaken for the server.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from harness.phone_caller import client_frame as ws_frame  # noqa: E402

LONG_ANSWER = (
    "It is sunny in Paris today with a light breeze from the west, a high of twenty four degrees "
    "and a low of fifteen, clear skies all afternoon and a mild evening for a walk by the river."
)
SECOND_ANSWER = "Tomorrow it will rain in the morning."


# The server's loop lag p99 beyond which it no longer counts as real time (a
# barge-in then waits longer than this for its clear).
LAG_LIMIT = 0.05


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the server process ------------------------------------------------------------------


def run_server(args: argparse.Namespace) -> None:
    import trio

    import voxtrio
    from telephony_helpers import INTERRUPTION, QUESTION, TWILIO_TOKEN
    from voxtrio.providers.energy_vad import EnergyVAD
    from voxtrio.testing import LLMResponse, ScriptedLLM
    from voxtrio.testing.model_free import ToneTTS
    from voxtrio.testing.phone import LinesSTT
    from voxtrio.transports.telephony import TelephonyServer, Twilio
    from voxtrio.transports.telephony.transport import TelephonyAudioOutput

    clears: dict[str, list[float]] = {}
    original_clear = TelephonyAudioOutput.clear

    def clear(self: TelephonyAudioOutput) -> None:
        clears.setdefault(str(self._transport.serializer.stream_sid), []).append(time.monotonic())
        original_clear(self)

    TelephonyAudioOutput.clear = clear  # type: ignore[method-assign]
    lags: list[float] = []
    spans: list[tuple[float, float]] = []
    dropped: list[int] = []
    answered: list[bool] = []

    async def entrypoint(call) -> None:  # type: ignore[no-untyped-def]
        llm = ScriptedLLM([LLMResponse(input=QUESTION, content=LONG_ANSWER), LLMResponse(input=INTERRUPTION, content=SECOND_ANSWER)])
        session = voxtrio.AgentSession(
            vad=EnergyVAD(), stt=LinesSTT([QUESTION, INTERRUPTION] * args.rounds), llm=llm, tts=ToneTTS(),
            min_endpointing_delay=0.3, min_interruption_duration=0.3,
        )
        begin = time.monotonic()
        try:
            await call.run(session, voxtrio.Agent(instructions="weather"))
        finally:
            spans.append((begin, time.monotonic()))
            dropped.append(call.transport.stats.inbound_dropped)
            said = [m.role for m in session.history.items if m.type == "message"]
            answered.append(said.count("assistant") >= 2 * args.rounds and said.count("user") >= 2 * args.rounds)

    async def main() -> None:
        server = TelephonyServer(entrypoint, [Twilio(auth_token=TWILIO_TOKEN)], max_calls=args.calls + 10)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(lambda task_status: server.serve(port=0, task_status=task_status))
            print(json.dumps({"port": port}), flush=True)

            async def watch_lag() -> None:
                while True:
                    before = time.monotonic()
                    await trio.sleep(0.01)
                    if server.calls:
                        lags.append(time.monotonic() - before - 0.01)

            nursery.start_soon(watch_lag)
            while not server.calls:
                await trio.sleep(0.01)
            cpu_at_start = cpu_seconds()
            while server.stats.calls_total < args.calls or server.calls:
                await trio.sleep(0.05)
            cpu = cpu_seconds() - cpu_at_start
            wall = max(end for _, end in spans) - min(begin for begin, _ in spans)
            print(json.dumps({
                "cpu": cpu, "wall": wall, "call_seconds": sum(end - begin for begin, end in spans),
                "calls": server.stats.calls_total, "failed": server.stats.calls_failed, "dropped": sum(dropped), "dropped_calls": sum(1 for d in dropped if d),
                "answered": sum(answered),
                "lag_p50": percentile(lags, 0.5), "lag_p99": percentile(lags, 0.99), "clears": clears,
            }), flush=True)
            nursery.cancel_scope.cancel()

    trio.run(main)


# -- the load generator process ----------------------------------------------------------

TICK = 0.02


class RawCaller:
    """A Twilio caller as cheap as can be: media frames built once and sent
    raw, the agent's audio "played" by counting its samples (not decoding
    them), marks returned and clears honoured as Twilio does. The tests'
    FakeCaller does all of this properly and costs several times more a call;
    here the load generator must stay far cheaper than the server it loads."""

    def __init__(self, url: str, stream_sid: str, speech: list[list[bytes]], rounds: int) -> None:
        self.url, self.sid, self.speech, self.rounds = url, stream_sid, speech, rounds
        self.queue: list[int | str] = []  # samples to play, and mark names
        self.played = 0  # agent samples played
        self.clears: list[float] = []
        self.silence_at: list[float] = []
        self.replies = 0
        self.late: list[float] = []
        self.status = 0
        self._idle_ticks = 99

    def mark(self, name: str) -> bytes:
        return ws_frame(json.dumps({"event": "mark", "sequenceNumber": "0", "streamSid": self.sid, "mark": {"name": name}}).encode())

    async def run(self) -> None:
        import trio

        host, _, port = self.url.removeprefix("ws://").split("/", 1)[0].partition(":")
        stream = await trio.open_tcp_stream(host, int(port))
        path = "/" + self.url.removeprefix("ws://").split("/", 1)[1]
        await stream.send_all((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(4096)
        self.status = int(head.split()[1])
        if self.status != 101:
            return
        buffer = head.split(b"\r\n\r\n", 1)[1]
        start = {"event": "start", "sequenceNumber": "1", "streamSid": self.sid,
                 "start": {"streamSid": self.sid, "callSid": "CA" + self.sid[2:], "tracks": ["inbound"], "customParameters": {},
                           "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
        await stream.send_all(ws_frame(b'{"event":"connected","protocol":"Call","version":"1.0.0"}') + ws_frame(json.dumps(start).encode()))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive, stream, buffer)
            await self._talk(stream)
            await stream.send_all(ws_frame(json.dumps({"event": "stop", "streamSid": self.sid}).encode()))
            nursery.cancel_scope.cancel()
        await stream.aclose()

    async def _receive(self, stream, buffer: bytes) -> None:  # type: ignore[no-untyped-def]
        while True:
            while len(buffer) >= 2:
                size, offset = buffer[1] & 0x7F, 2
                if size == 126:
                    size, offset = int.from_bytes(buffer[2:4], "big"), 4
                elif size == 127:
                    size, offset = int.from_bytes(buffer[2:10], "big"), 10
                if len(buffer) < offset + size:
                    break
                payload, buffer = buffer[offset : offset + size], buffer[offset + size :]
                self._message(payload)
            data = await stream.receive_some(65536)
            if not data:
                return
            buffer += data

    def _message(self, payload: bytes) -> None:
        if payload.startswith(b'{"event":"media"'):
            self.queue.append(len(payload.rsplit(b'"payload":"', 1)[1].rstrip(b'"}')) * 3 // 4)
        elif payload.startswith(b'{"event":"mark"'):
            self.queue.append(json.loads(payload)["mark"]["name"])
        elif payload.startswith(b'{"event":"clear"'):
            self.clears.append(time.monotonic())
            self.queue = [item for item in self.queue if isinstance(item, str)]  # Twilio returns them at once

    async def _tick(self, stream, frame: bytes, start: float, tick: int) -> bool:  # type: ignore[no-untyped-def]
        """Send one frame and play one; True if agent audio played."""
        import trio

        await trio.sleep_until(start + tick * TICK)
        self.late.append(trio.current_time() - start - tick * TICK)
        out = [frame]
        need, played = 160, False
        while self.queue and (need or isinstance(self.queue[0], str)):
            head = self.queue[0]
            if isinstance(head, str):
                out.append(self.mark(head))
                self.queue.pop(0)
            elif head <= need:
                need -= head
                self.queue.pop(0)
                played = True
            else:
                self.queue[0] = head - need
                need, played = 0, True
        self.played += 160 - need
        if played:
            if self._idle_ticks >= 15:
                self.replies += 1
            self._idle_ticks = 0
        else:
            self._idle_ticks += 1
            if len(self.silence_at) < len(self.clears):
                self.silence_at.append(time.monotonic())
        await stream.send_all(b"".join(out))
        return played

    async def _talk(self, stream) -> None:  # type: ignore[no-untyped-def]
        import trio

        question, interruption, silence = self.speech
        start, tick = trio.current_time(), 0
        quiet = ws_frame(silence[0])

        async def say(frames: list[bytes]) -> None:
            nonlocal tick
            for frame in frames:
                tick += 1
                await self._tick(stream, frame, start, tick)

        async def until(condition) -> None:  # type: ignore[no-untyped-def]
            nonlocal tick
            give_up = tick + int(60 / TICK)
            while not condition() and tick < give_up:
                tick += 1
                await self._tick(stream, quiet, start, tick)

        await say([quiet] * 15)
        for _ in range(self.rounds):
            await say([ws_frame(f) for f in question])
            heard = self.played
            await until(lambda: self.played - heard >= 8000)  # a second of the answer
            await say([ws_frame(f) for f in interruption])
            heard = self.played
            await until(lambda: self.played - heard >= 4000 and self._idle_ticks * TICK >= 0.6)


def run_load(args: argparse.Namespace) -> None:
    import base64
    import secrets

    import httpx2
    import trio

    from telephony_helpers import TWILIO_TOKEN, fixture_audio
    from voxtrio.transports.telephony import twilio
    from voxtrio.transports.telephony.g711 import ulaw_encode
    from voxtrio.testing.phone import _xml_stream

    def frames(samples, sid: str) -> list[bytes]:  # type: ignore[no-untyped-def]
        out = []
        for chunk, offset in enumerate(range(0, len(samples), 160), start=1):
            piece = samples[offset : offset + 160]
            payload = base64.b64encode(ulaw_encode(np.pad(piece, (0, 160 - len(piece))))).decode()
            out.append(json.dumps({"event": "media", "sequenceNumber": str(chunk + 1), "streamSid": sid,
                                   "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20),
                                             "payload": payload}}).encode())
        return out

    import numpy as np

    question, interruption = fixture_audio("question"), fixture_audio("interruption")
    callers = []

    async def one(index: int) -> None:
        sid = "MZ" + secrets.token_hex(16)
        params = {"CallSid": "CA" + sid[2:], "From": f"+1555{index:07d}", "To": "+15550000000", "Direction": "inbound"}
        url = f"{args.url}/twilio/answer"
        async with httpx2.AsyncClient(timeout=30.0) as client:
            answer = await client.post(url, data=params, headers={
                "X-Twilio-Signature": twilio.compute_signature(TWILIO_TOKEN, url, params.items())})
        caller = RawCaller(str(_xml_stream(answer.content).get("url")), sid,
                           [frames(question, sid), frames(interruption, sid), frames(np.zeros(160, np.int16), sid)], args.rounds)
        callers.append(caller)
        await caller.run()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for index in range(args.calls):
                nursery.start_soon(one, index)
                await trio.sleep(args.stagger)

    trio.run(main)
    print(json.dumps([{"stream": c.sid, "status": 200 if c.status == 101 else c.status, "replies": c.replies,
                       "silence_at": c.silence_at, "late_p99": percentile(c.late, 0.99)} for c in callers]), flush=True)


# -- the orchestrator ---------------------------------------------------------------------


def one_run(calls: int, args: argparse.Namespace) -> dict:
    python = sys.executable
    common = ["--rounds", str(args.rounds), "--calls", str(calls)]
    pin = (lambda core: ["taskset", "-c", str(core)]) if not args.no_pin else (lambda core: [])
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    server = subprocess.Popen(pin(0) + [python, __file__, "--role", "server", *common], stdout=subprocess.PIPE, text=True, env=env)
    assert server.stdout is not None
    port = json.loads(server.stdout.readline())["port"]
    load = subprocess.run(
        pin(1) + [python, __file__, "--role", "load", "--url", f"http://127.0.0.1:{port}", "--stagger", str(args.stagger), *common],
        stdout=subprocess.PIPE, text=True, env=env, timeout=900, check=True,
    )
    served = json.loads(server.stdout.readline())
    server.wait(timeout=60)
    callers = json.loads(load.stdout)
    clear_to_silence = []
    for caller in callers:
        for cleared, silent in zip(served["clears"].get(caller["stream"], []), caller["silence_at"]):
            clear_to_silence.append(silent - cleared)
    answered = served["answered"]
    cpu_per_call = 100 * served["cpu"] / served["call_seconds"] if served["call_seconds"] else float("nan")
    core = 100 * served["cpu"] / served["wall"] if served["wall"] else float("nan")
    held = answered == calls and served["dropped"] == 0 and served["lag_p99"] < LAG_LIMIT and core < 90
    return {
        "calls": calls, "held": held, "cpu_per_call_pct": cpu_per_call, "server_core_pct": core,
        "clear_to_silence_ms_p50": 1000 * statistics.median(clear_to_silence) if clear_to_silence else float("nan"),
        "clear_to_silence_ms_p90": 1000 * percentile(clear_to_silence, 0.9),
        "clears": len(clear_to_silence), "answered": answered, "lag_p50_ms": 1000 * served["lag_p50"],
        "lag_p99_ms": 1000 * served["lag_p99"], "dropped": served["dropped"],
        "generator_late_p99_ms": 1000 * max(c["late_p99"] for c in callers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("server", "load"), default=None)
    parser.add_argument("--calls", default="10,50")
    parser.add_argument("--sweep", default=None, help="N,N,...: runs until the first N that does not hold")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stagger", type=float, default=0.05)
    parser.add_argument("--url", default="")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the two processes with taskset")
    args = parser.parse_args()
    if args.role == "server":
        args.calls = int(args.calls)
        return run_server(args)
    if args.role == "load":
        args.calls = int(args.calls)
        return run_load(args)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    counts = [int(n) for n in (args.sweep or args.calls).split(",")]
    held_max = 0
    for calls in counts:
        result = one_run(calls, args)
        print(
            f"N={result['calls']:>4}  held={'yes' if result['held'] else 'NO '}  "
            f"CPU/call {result['cpu_per_call_pct']:.2f} % of a core (server {result['server_core_pct']:.0f} %)  "
            f"clear->silence p50 {result['clear_to_silence_ms_p50']:.1f} ms p90 {result['clear_to_silence_ms_p90']:.1f} ms "
            f"({result['clears']} clears)  loop lag p50 {result['lag_p50_ms']:.1f} p99 {result['lag_p99_ms']:.1f} ms  "
            f"answered {result['answered']}/{result['calls']}  dropped {result['dropped']}  "
            f"generator late p99 {result['generator_late_p99_ms']:.1f} ms",
            flush=True,
        )
        if result["held"]:
            held_max = max(held_max, calls)
        elif args.sweep:
            break
    print(f"largest N held: {held_max}  (load average {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
