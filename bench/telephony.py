"""What phone calls cost on the telephony server: CPU per call, clear-to-silence, calls per core.

    .venv/bin/python bench/telephony.py --calls 10,25,50            # one run per N
    .venv/bin/python bench/telephony.py --sweep 25,50,75,100,150    # stops after the first N lost

Each run starts two processes: the TelephonyServer (Twilio, the scripted
pipeline of the tests: energy VAD on the caller's real audio, a line per VAD
segment, a scripted LLM, word tones) pinned to core 0 with ``taskset``, and
the load generator, N fake Twilio callers (``voxtrio.testing.phone``), pinned
to core 1. Every caller asks (an espeak WAV as 20 ms μ-law frames), lets the
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
* held: real time was held if every caller heard every answer, no caller
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
                "lag_p50": percentile(lags, 0.5), "lag_p99": percentile(lags, 0.99), "clears": clears,
            }), flush=True)
            nursery.cancel_scope.cancel()

    trio.run(main)


# -- the load generator process ----------------------------------------------------------


def run_load(args: argparse.Namespace) -> None:
    import trio

    from telephony_helpers import Credentials, fixture_audio
    from voxtrio.testing.phone import FakeCaller, HangUp, Pause, Say, WaitForAgent

    credentials = Credentials()
    question, interruption = fixture_audio("question"), fixture_audio("interruption")
    script = [Pause(0.3)]
    for _ in range(args.rounds):
        script += [Say(question), WaitForAgent(speech=1.0), Say(interruption), WaitForAgent(speech=0.5, silence=0.6)]
    script.append(HangUp())
    callers = [FakeCaller(credentials.wire("twilio"), script, timeout=600, detect_dtmf=False) for _ in range(args.calls)]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for index, caller in enumerate(callers):
                nursery.start_soon(caller.dial_in, args.url)
                await trio.sleep(args.stagger)

    trio.run(main)
    results = []
    for caller in callers:
        # What the caller heard, as replies: runs of agent audio at least 0.3 s apart.
        frames = [bool(f.any()) for f in caller.heard_frames]
        replies, quiet = 0, 99
        for voiced in frames:
            if voiced and quiet >= 15:
                replies += 1
            quiet = 0 if voiced else quiet + 1
        silences = [(s - c) for s, c in zip(caller.silence_times, caller.clear_times)]
        results.append({
            "stream": caller.wire.stream_id, "status": caller.answer_status, "ended_by": caller.ended_by,
            "replies": replies, "silence_at": [t + caller.monotonic_offset for t in caller.silence_times], "late_p99": percentile(caller.late, 0.99), "local_clear_to_silence": silences,
        })
    print(json.dumps(results), flush=True)


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
    expected_replies = 2 * args.rounds
    answered = sum(1 for c in callers if c["replies"] >= expected_replies and c["status"] == 200)
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
