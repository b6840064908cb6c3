#!/usr/bin/env python3
"""Run "scripted call v1" against one framework and print the result.

    python bench/peers.py --framework livekit --sessions 10 --json

The framework's adapter says which event loop drives it (``DRIVER``): the
peers and the baseline run on asyncio (``harness.aio``), voxtrio on trio
(``harness.trio_driver``); both drivers share the script, sink and metrics.

The process pins itself to one core first, so every thread a framework starts
later (pipecat's VAD executors, for instance) inherits the pin; then it runs
one un-measured warm-up call and N calls staggered over 6 s, all in one event
loop. ``--quick`` measures the short 3-turn script instead of the full one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time


def pin(core: int | None) -> int:
    allowed = sorted(os.sched_getaffinity(0))
    core = allowed[-1] if core is None else core
    os.sched_setaffinity(0, {core})
    return core


def report(r: dict) -> str:
    def d(key: str) -> str:
        v = r[key]
        return f"p50 {v['p50']} / p99 {v['p99']} / max {v['max']} ms (n={v['n']})"

    m = r["machine"]
    lines = [
        f"{r['framework']} {r['version']}  sessions={r['sessions']}  script={r['script']}  core={r['core']}",
        f"real time held: {r['real_time_held']}  {'; '.join(r['not_held_because'])}",
        f"turns answered {r['turns_answered']}/{r['turns_expected']}, calls aborted {r['calls_aborted']}",
        f"CPU {r['cpu_s']} s over {r['wall_s']} s wall = {r['cpu_pct']} % of a core;"
        f" {r['cpu_s_per_conv_min']} CPU s per conversation-minute",
        f"RSS {r['rss_before_mb']} MB before, max {r['rss_max_mb']} MB ({r['rss_per_call_mb']} MB/call)",
        f"turn latency   {d('turn_latency_ms')}",
        f"turn overhead  {d('turn_overhead_ms')}",
        f"stop delay     {d('interruption_stop_delay_ms')}",
        f"out lateness   {d('output_lateness_ms')}, underrun {r['underrun_s']} s",
        f"input lag      {d('input_lag_ms')}",
        f"machine: others used {m.get('other_cpu_on_core_pct')} % of our core,"
        f" {m['other_cpu_machine_pct']} % of a core machine-wide; run-queue wait"
        f" {m['runqueue_wait_pct']} %; load {m['loadavg_start']} -> {m['loadavg_end']}",
        f"anomalies: {r['anomalies']}",
    ]
    gc = r.get("gc")
    if gc:
        lines.append(
            f"gc pauses: max {gc['max_ms']} ms, {gc['over_10ms']} over 10 ms; by generation "
            + ", ".join(f"{g}: {v['n']} x, {v['total_ms']} ms, max {v['max_ms']} ms" for g, v in gc["by_generation"].items())
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--framework", required=True, choices=["livekit", "pipecat", "baseline", "voxtrio", "baseline-trio"])
    ap.add_argument("--sessions", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="3 short turns per call instead of 6")
    ap.add_argument("--json", action="store_true", help="print only the JSON result line")
    ap.add_argument("--core", type=int, default=None, help="core to pin to (default: highest allowed)")
    ap.add_argument(
        "--nice", type=int, default=0, help="add to the scheduling niceness (negative needs root);"
        " a diagnostic for a machine shared with CPU-heavy processes, recorded in the result",
    )
    args = ap.parse_args()

    core = pin(args.core)
    if args.nice:
        os.nice(args.nice)
    logging.basicConfig(level=logging.WARNING)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from adapters import load
    from harness.call import FULL, QUICK

    t = time.monotonic()
    adapter = load(args.framework)
    import_s = time.monotonic() - t
    spec = QUICK if args.quick else FULL
    if adapter.DRIVER == "trio":
        import trio

        from harness import trio_driver

        result = trio.run(trio_driver.measure, adapter, spec, args.sessions)
    else:
        from harness import aio

        result = asyncio.run(aio.measure(adapter, spec, args.sessions))
    result["import_s"] = round(import_s, 2)
    result["machine"]["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    assert result["core"] == core
    print(json.dumps(result) if args.json else report(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
