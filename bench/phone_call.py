#!/usr/bin/env python3
"""Run "phone call v1": scripted call v1's six turns, every call a Twilio media stream.

    .venv/bin/python bench/phone_call.py --quick --sessions 2              # smoke test, ~25 s
    .venv/bin/python bench/phone_call.py --sessions 100 --json
    .venv/bin/python bench/phone_call.py --framework transport --sessions 100   # the transport alone
    .venv/bin/python bench/phone_call.py --sessions 100 --profile prof.txt      # + py-spy split

Three processes: this one (the conductor, idle while measuring), the server
(``phone_server.py``: TelephonyServer with Twilio, pinned to ``--server-core``,
default the highest allowed core) and the load generator
(``harness/phone_caller.py``: N scripted callers, pinned to the other core).
The generator places one un-measured warm-up call, then N calls staggered
over 6 s, as scripted call v1 does; the server is measured from after the
warm-up call to the end of the last call.

The result is scripted call v1's JSON line (``harness.metrics.summarize``)
with ``workload: phone-call-v1``: the calls' latencies, overheads, stop
delays and lateness as the callers measured them (the playout model of
``harness.call``), the CPU, RSS, loop lag ("input lag") and GC pauses of the
server process, and a ``phone`` block: the generator's own CPU and lag (a
saturated generator says so and the run does not count as held), what went
over the wire, what the server's transport counted (inbound frames dropped
fail the run) and what the sessions' histories recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from importlib.metadata import version as _pkg_version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import metrics, procstat  # noqa: E402
from harness import workload as W  # noqa: E402
from harness.call import FULL, QUICK, WARMUP, Call  # noqa: E402

WORKLOAD = "phone-call-v1"
NAMES = {"voxtrio": "voxtrio", "transport": "transport-alone"}
SCRIPTS = {"full": FULL, "quick": QUICK}
MAX_GENERATOR_LAG_P99_S = 0.020


# ------------------------------------------------------------------- generator role
def run_generator(args: argparse.Namespace) -> None:
    import trio

    from harness import phone_caller as P

    spec = SCRIPTS[args.script]
    control = trio.wrap_file(sys.stdin)

    async def main() -> None:
        import httpx2

        ticker = P.CallerTicker()
        callers: list[P.Caller] = []
        async with httpx2.AsyncClient(timeout=30.0, limits=httpx2.Limits(max_connections=20)) as client, \
                trio.open_nursery() as outer:
            outer.start_soon(ticker.run)
            if not args.no_warmup:
                await P.run_call(ticker, client, args.url, args.token, Call(WARMUP, index=-1), [])
            print(json.dumps({"warm": True}), flush=True)
            assert (await control.readline()).strip() == "go"
            calls = [Call(spec, index=i) for i in range(args.sessions)]
            before = procstat.sample()
            ticker.recording = True
            t0 = trio.current_time()

            async def staggered(i: int, call: Call) -> None:
                await trio.sleep_until(t0 + args.stagger * i / args.sessions)
                await P.run_call(ticker, client, args.url, args.token, call, callers)

            async with trio.open_nursery() as calls_nursery:
                for i, call in enumerate(calls):
                    calls_nursery.start_soon(staggered, i, call)
            after = procstat.sample()
            outer.cancel_scope.cancel()
        delta = procstat.Delta(before, after)
        with open(args.out, "wb") as f:
            pickle.dump({"calls": calls, "lags": ticker.lags, "cpu_s": delta.cpu_s, "wall_s": delta.wall_s,
                         "wire": [c.stats for c in callers]}, f)
        print(json.dumps({"done": True}), flush=True)

    trio.run(main)


# ---------------------------------------------------------------------- conductor
def _line(proc: subprocess.Popen, what: str) -> dict:
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line:
        raise RuntimeError(f"the {what} ended early (exit {proc.wait()})")
    return json.loads(line)


def _send(proc: subprocess.Popen, text: str) -> None:
    proc.stdin.write(text + "\n")  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]


def measure(args: argparse.Namespace) -> dict:
    allowed = sorted(os.sched_getaffinity(0))
    server_core = allowed[-1] if args.server_core is None else args.server_core
    generator_core = next((c for c in allowed if c != server_core), server_core)
    python = sys.executable
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    server = subprocess.Popen(
        [python, str(HERE / "phone_server.py"), "--framework", args.framework, "--script", args.script,
         "--core", str(server_core), "--max-calls", str(args.sessions + 10), "--output-options", args.output_options,
         *(["--default-gc"] if args.default_gc else [])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    generator = profiler = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            hello = _line(server, "server")
            out = os.path.join(tmp, "calls.pickle")
            generator = subprocess.Popen(
                [python, __file__, "--role", "generator", "--url", f"http://127.0.0.1:{hello['port']}",
                 "--token", "phone-call-v1-auth-token", "--sessions", str(args.sessions), "--script", args.script,
                 "--stagger", str(args.stagger), "--out", out, *(["--no-warmup"] if args.no_warmup else []), "--core", str(generator_core)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            )
            _line(generator, "generator")  # the warm-up call is over
            _send(server, "measure")
            _line(server, "server")
            if args.profile:
                profiler = subprocess.Popen(
                    [str(Path(python).parent / "py-spy"), "record", "--pid", str(hello["pid"]), "--rate", "200",
                     "--format", "raw", "--output", args.profile, "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            _send(generator, "go")
            _line(generator, "generator")
            _send(server, "report")
            served = _line(server, "server")
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=60)
            generator.wait(timeout=60)
            server.wait(timeout=60)
            with open(out, "rb") as f:
                generated = pickle.load(f)
        finally:
            for proc in (profiler, generator, server):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return summarize(args, served, generated, server_core, generator_core)


def summarize(args: argparse.Namespace, served: dict, generated: dict, server_core: int, generator_core: int) -> dict:
    calls: list[Call] = generated["calls"]
    proc = procstat.Delta(procstat.Sample(**served["before"]), procstat.Sample(**served["after"]))
    rss = int(served["rss_mb"] * 2**20)
    result = metrics.summarize(
        framework=NAMES[args.framework], version=_pkg_version("voxtrio"), calls=calls, input_lag=served["lags"],
        proc=proc, rss_before=rss, rss_max=rss, core=served["core"],
    )
    per_call = served["calls"]
    wire = generated["wire"]
    total = lambda key: sum(c[key] for c in per_call)  # noqa: E731
    media_in = sum(w.media_in for w in wire)
    gen_lag_p99 = metrics.pct(generated["lags"], 99)
    why = result["not_held_because"]
    if dropped := total("inbound_dropped"):
        why.append(f"{dropped} inbound frames dropped")
    if len(per_call) != len(calls):
        why.append(f"the server saw {len(per_call)} of {len(calls)} calls")
    if gen_lag_p99 is not None and gen_lag_p99 >= MAX_GENERATOR_LAG_P99_S:
        why.append(f"the load generator fell behind (its lag p99 {gen_lag_p99 * 1000:.1f} ms)")
    result["real_time_held"] = not why
    histories = [c["history"] for c in per_call if "history" in c]
    by_turn: dict[int, list[float]] = {}
    for c in calls:
        for (k, _), overhead in zip(c.turn_latencies(), c.turn_overheads()):
            by_turn.setdefault(k, []).append(overhead)
    result.update(
        workload=WORKLOAD,
        rss_before_mb=None,
        rss_per_call_mb=None,  # the server's RSS is sampled once, at the end: see rss_max_mb
        gc=served["gc"],
        phone={
            "server_core": server_core,
            "generator_core": generator_core,
            "server_calib_ms": served["calib_ms"],
            "server_calls_failed": served["calls_failed"],
            "server_call_s": round(sum(c["duration_s"] for c in per_call), 3),
            "cpu_pct_per_call": round(100 * proc.cpu_s / result["conversation_s"], 3) if result["conversation_s"] else None,
            "generator_cpu_s": round(generated["cpu_s"], 3),
            "generator_cpu_pct": round(100 * generated["cpu_s"] / generated["wall_s"], 2) if generated["wall_s"] else None,
            "generator_lag_ms": metrics.dist_ms(generated["lags"]),
            "turn_overhead_p99_by_turn_ms": [metrics.dist_ms(by_turn[k])["p99"] for k in sorted(by_turn)],
            "inbound_frames": total("inbound_frames"),
            "inbound_dropped": total("inbound_dropped"),
            "media_sent_by_callers": sum(w.media_out for w in wire),
            "media_sent_by_server": total("media_messages_sent"),
            "messages_sent_by_server": total("messages_sent"),
            "media_ms_mean": round(1000 * sum(w.media_in_samples for w in wire) / media_in / 8000, 1) if media_in else None,
            "media_ms_max": round(1000 * max((w.frames_in_largest for w in wire), default=0) / 8000, 1),
            "marks_sent": total("marks_sent"),
            "marks_played": total("marks_played"),
            "clears_sent": total("clears_sent"),
            "finals": total("finals"),
            "history": {
                "assistant_messages": sum(h["assistant_messages"] for h in histories),
                "interrupted": sum(h["interrupted"] for h in histories),
                "interrupted_chars_max": max((x for h in histories for x in h["interrupted_chars"]), default=None),
                "whole_replies": sum(h["whole_replies"] for h in histories),
            } if histories else None,
            "output_options": json.loads(args.output_options),
            "default_gc": args.default_gc,
        },
    )
    result["machine"]["calib_ms"] = served["calib_ms"]
    if histories:  # voxtrio's TTS requests are counted on the server
        result["anomalies"].update(tts_requests=total("tts_requests"), tts_mismatches=total("tts_mismatches"))
    return result


def report(r: dict) -> str:
    from peers import report as scripted_report

    p = r["phone"]
    lines = [
        scripted_report(r),
        f"phone: {p['cpu_pct_per_call']} % of a core per call on core {p['server_core']};"
        f" generator on core {p['generator_core']}: {p['generator_cpu_pct']} % of a core, lag p99 {p['generator_lag_ms']['p99']} ms",
        f"wire: callers sent {p['media_sent_by_callers']} media, the server {p['media_sent_by_server']} media"
        f" (mean {p['media_ms_mean']} ms, max {p['media_ms_max']} ms) in {p['messages_sent_by_server']} messages,"
        f" {p['marks_sent']} marks ({p['marks_played']} back), {p['clears_sent']} clears;"
        f" inbound {p['inbound_frames']} frames, {p['inbound_dropped']} dropped",
        f"history: {p['history']}",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--framework", choices=sorted(NAMES), default="voxtrio")
    ap.add_argument("--sessions", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="3 short turns per call instead of 6")
    ap.add_argument("--json", action="store_true", help="print only the JSON result line")
    ap.add_argument("--server-core", type=int, default=None, help="the server's core (default: the highest allowed)")
    ap.add_argument("--stagger", type=float, default=6.0)
    ap.add_argument("--output-options", default="{}", help='JSON for TelephonyAudioOutput, e.g. \'{"max_chunk": 0.02}\'')
    ap.add_argument("--default-gc", action="store_true",
                    help="the server keeps CPython's collector settings (default: tune_collector_for_calls, as voxtrio serve)")
    ap.add_argument("--no-warmup", action="store_true", help="skip the un-measured warm-up call (smoke tests)")
    ap.add_argument("--profile", default=None, help="py-spy the server while measuring; raw stacks to this file")
    ap.add_argument("--role", choices=("generator",), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--url", default="", help=argparse.SUPPRESS)
    ap.add_argument("--token", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    ap.add_argument("--script", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--core", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.script = args.script or ("quick" if args.quick else "full")
    if args.role == "generator":
        os.sched_setaffinity(0, {args.core})
        run_generator(args)
        return 0
    result = measure(args)
    print(json.dumps(result) if args.json else report(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
