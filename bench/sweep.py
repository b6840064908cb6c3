#!/usr/bin/env python3
"""Run peers.py for a list of session counts and summarise the results.

    python bench/sweep.py --framework pipecat --sessions 1 1 1 5 10 15 20 30 --out pipecat.jsonl

Each run is a fresh process (so imports, caches and RSS start equal) and
appends its JSON line to ``--out``. The summary gives, per N, the median of
the repeated runs, the largest N that held real time, and the marginal cost:
the least-squares slope of CPU seconds against conversation-minutes over all
runs, i.e. what one more call costs per minute of conversation once the
process's fixed costs are paid.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(framework: str, n: int, quick: bool, python: str, nice: int) -> dict:
    cmd = [python, os.path.join(HERE, "peers.py"), "--framework", framework, "--sessions", str(n), "--json"]
    cmd += ["--nice", str(nice)] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def slope(xs: list[float], ys: list[float]) -> float | None:
    if max(xs, default=0) - min(xs, default=0) < 1.0:  # needs runs with different N
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def row(r: dict) -> str:
    m = r["machine"]
    return (
        f"N={r['sessions']:<3} held={str(r['real_time_held']):5} cpu={r['cpu_pct']:6.2f}%"
        f" cpu_s/conv_min={r['cpu_s_per_conv_min']:.3f}"
        f" ovh p50/p99={r['turn_overhead_ms']['p50']}/{r['turn_overhead_ms']['p99']}ms"
        f" stop={r['interruption_stop_delay_ms']['p50']}ms"
        f" lag p99={r['input_lag_ms']['p99']}ms late p99={r['output_lateness_ms']['p99']}ms"
        f" rss/call={r['rss_per_call_mb']}MB"
        f" | others on core {m.get('other_cpu_on_core_pct')}% rq-wait {m['runqueue_wait_pct']}%"
        f" load {m['loadavg_start']} calib {m.get('calib_ms')}ms nice {m.get('nice', 0)}"
        + (f" [{'; '.join(r['not_held_because'])}]" if r["not_held_because"] else "")
    )


def summary(results: list[dict]) -> str:
    lines = []
    for n in sorted({r["sessions"] for r in results}):
        rs = [r for r in results if r["sessions"] == n]
        med = lambda f: statistics.median(f(r) for r in rs)  # noqa: E731
        lines.append(
            f"N={n:<3} runs={len(rs)} held={sum(r['real_time_held'] for r in rs)}/{len(rs)}"
            f" median cpu={med(lambda r: r['cpu_pct']):.2f}%"
            f" cpu_s/conv_min={med(lambda r: r['cpu_s_per_conv_min']):.3f}"
            f" ovh p50={med(lambda r: r['turn_overhead_ms']['p50']):.1f}"
            f" p99={med(lambda r: r['turn_overhead_ms']['p99']):.1f}ms"
            f" stop p50={med(lambda r: r['interruption_stop_delay_ms']['p50']):.1f}ms"
            f" rss/call={med(lambda r: r['rss_per_call_mb']):.2f}MB"
            f" others-on-core={med(lambda r: r['machine'].get('other_cpu_on_core_pct') or 0):.1f}%"
        )
    held = [r["sessions"] for r in results if r["real_time_held"]]
    lines.append(f"largest N holding real time: {max(held) if held else None}")
    # Only runs that did all their work: a run with unanswered turns or calls
    # held until the cap has less CPU per conversation-minute for bad reasons.
    done = [r for r in results if r["turns_answered"] == r["turns_expected"] and not r["calls_aborted"]]
    s = slope([r["conversation_s"] / 60 for r in done], [r["cpu_s"] for r in done])
    lines.append(
        f"marginal CPU s per conversation-minute (slope over the {len(done)} complete runs): {s and round(s, 3)}"
    )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--framework", required=True)
    ap.add_argument("--sessions", type=int, nargs="+", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", help="append each run's JSON line to this file")
    ap.add_argument("--python", default=sys.executable, help="interpreter of the peers venv")
    ap.add_argument("--nice", type=int, default=0, help="passed to peers.py")
    args = ap.parse_args()
    results = []
    for n in args.sessions:
        r = run(args.framework, n, args.quick, args.python, args.nice)
        results.append(r)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(r) + "\n")
        print(row(r), flush=True)
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
