#!/usr/bin/env python3
"""voxtrio against LiveKit Agents and Pipecat: one command, same machine state.

    .venv/bin/python bench/compare.py                          # 3 rounds at N=1, both workloads
    .venv/bin/python bench/compare.py --sweep 1,10,50,100,200,400 --phone-sweep 1,50,100,150 --readme
    .venv/bin/python bench/compare.py --workload phone --phone-sessions 50    # phone call v1 only

Each framework runs in its own interpreter (voxtrio from voxtrio's venv, the
peers from theirs: ``pip install -r bench/requirements-peers.txt``), one fresh
process per run, through ``peers.py`` (pinned to one core, warm-up call, N
calls staggered over 6 s). Runs are interleaved round by round (voxtrio,
livekit, pipecat, baseline, baseline-trio, then again), so every framework
sees the same machine; ``baseline`` and ``baseline-trio`` are the harness
with no framework on asyncio and on trio, the floor every figure includes.

"phone call v1" (``--workload phone``; both by default) runs ``phone_call.py``:
the same script with every call a Twilio media stream on loopback, the server
on one core and the load generator on the other, for voxtrio and for
``transport-alone`` (the same TelephonyServer, Twilio path and codec with no
voxtrio runtime: what is left when voxtrio is subtracted is the runtime's own);
its rows interleave with the scripted workload's, round by round.

Output: the table of medians and ratios (voxtrio / peer) on stdout; with
``--sweep``, for each N in the list a run per framework, the largest N that
held real time, and a PNG plot (CPU % and turn-latency p99 against N); every
run's JSON line appended to ``--out``; a markdown fragment (``--markdown``)
that ``--readme`` inserts into README.md between its performance markers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = ("livekit", "pipecat")
ORDER = ("voxtrio", "livekit", "pipecat", "baseline", "baseline-trio")
# The harness alone on the event loop each framework runs on.
FLOOR = {"voxtrio": "baseline-trio", "livekit": "baseline", "pipecat": "baseline"}
SCRIPTED, PHONE = "scripted-call-v1", "phone-call-v1"
PHONE_ORDER = ("voxtrio", "transport-alone")
# phone call v1: what voxtrio's runtime costs beyond the same transport path.
PHONE_FLOOR = {"voxtrio": "transport-alone"}
PHONE_FRAMEWORK = {"voxtrio": "voxtrio", "transport-alone": "transport"}  # phone_call.py --framework


def default_python(framework: str) -> str:
    if framework == "voxtrio":
        venv = os.path.join(ROOT, ".venv", "bin", "python")
        return venv if os.path.exists(venv) else sys.executable
    return os.environ.get("PEERS_PYTHON", os.path.join(ROOT, ".venv-peers", "bin", "python"))


def workload(r: dict) -> str:
    return r.get("workload", SCRIPTED)


def run_one(
    python: str, framework: str, sessions: int, quick: bool, timeout: float, phone: bool = False,
    server_core: int | None = None,
) -> dict:
    if phone:
        cmd = [python, os.path.join(HERE, "phone_call.py"), "--framework", PHONE_FRAMEWORK[framework],
               "--sessions", str(sessions), "--json"]
        if server_core is not None:
            cmd += ["--server-core", str(server_core)]
    else:
        cmd = [python, os.path.join(HERE, "peers.py"), "--framework", framework, "--sessions", str(sessions), "--json"]
    if quick:
        cmd.append("--quick")
    t = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{framework} N={sessions} failed ({proc.returncode}):\n{tail}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["run_wall_s"] = round(time.monotonic() - t, 1)
    return result


# ------------------------------------------------------------------ figures
def fig(r: dict, key: str) -> float | None:
    """A scalar figure of a result by name (nested distributions by dotted key)."""
    node = r
    for part in key.split("."):
        if node is None:
            return None
        node = node.get(part)
    return node


FIGURES = [
    # (key, label, lower is better)
    ("cpu_pct", "CPU % of a core", True),
    ("net_cpu_pct", "  minus the harness alone on the same loop (the framework's own)", True),
    ("cpu_s_per_conv_min", "CPU s per conversation-minute", True),
    ("net_cpu_s_per_conv_min", "  minus the harness alone on the same loop (the framework's own)", True),
    ("turn_overhead_ms.p50", "turn overhead p50, ms", True),
    ("turn_overhead_ms.p99", "turn overhead p99, ms", True),
    ("turn_latency_ms.p50", "turn latency p50, ms", True),
    ("interruption_stop_delay_ms.p50", "interruption stop delay p50, ms", None),  # signed: no ratio
    ("rss_per_call_mb", "RSS per call, MB", True),
    ("output_lateness_ms.p99", "output lateness p99, ms", True),
    ("input_lag_ms.p99", "input tick lag p99, ms", True),
]
PHONE_FIGURES = [
    ("cpu_pct", "server CPU % of a core", True),
    ("phone.cpu_pct_per_call", "server CPU % of a core per call", True),
    ("cpu_s_per_conv_min", "server CPU s per conversation-minute", True),
    ("net_cpu_s_per_conv_min", "  minus the transport alone (voxtrio's runtime's own)", True),
    ("turn_overhead_ms.p50", "turn overhead p50, ms", True),
    ("turn_overhead_ms.p99", "turn overhead p99, ms", True),
    ("interruption_stop_delay_ms.p50", "interruption stop delay p50, ms", None),
    ("output_lateness_ms.p99", "output lateness p99, ms", True),
    ("input_lag_ms.p99", "server loop lag p99, ms", True),
    ("phone.media_ms_mean", "agent audio per media message, ms", None),
    ("phone.inbound_dropped", "caller frames dropped", True),
    ("phone.generator_cpu_pct", "load generator CPU % of its core", True),
    ("phone.generator_lag_ms.p99", "load generator lag p99, ms", True),
]


def median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def add_net_cpu(results: list[dict], floors: dict[str, str] = FLOOR) -> None:
    """CPU minus the median of the harness alone on the same event loop at the
    same N (``FLOOR``): what the framework itself costs."""
    for r in results:
        floor = floors.get(r["framework"])
        base = [b for b in results if b["framework"] == floor and b["sessions"] == r["sessions"]]
        for key in ("cpu_pct", "cpu_s_per_conv_min"):
            m = median([b[key] for b in base])
            if m is not None and r.get(key) is not None:
                r["net_" + key] = round(r[key] - m, 3)


def fmt(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.3g}"


def table(
    results: list[dict], sessions: int, order: tuple[str, ...] = ORDER, figures: list = FIGURES
) -> tuple[str, dict]:
    """Markdown table of medians per framework, and voxtrio / peer ratios."""
    rows = [r for r in results if r["sessions"] == sessions]
    present = [f for f in order if any(r["framework"] == f for r in rows)]
    meds: dict[str, dict[str, float | None]] = {}
    for f in present:
        rs = [r for r in rows if r["framework"] == f]
        meds[f] = {key: median([fig(r, key) for r in rs]) for key, _, _ in figures}
        meds[f]["runs"] = len(rs)
        meds[f]["held"] = sum(r["real_time_held"] for r in rs)
    peers = [p for p in PEERS if p in present]
    head = ["figure (median)"] + [f"{f} ({meds[f]['runs']} runs)" for f in present]
    head += [f"voxtrio / {p}" for p in peers if "voxtrio" in present]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, lower in figures:
        cells = [label] + [fmt(meds[f][key]) for f in present]
        if "voxtrio" in present:
            cells += [ratio(meds["voxtrio"][key], meds[p][key]) if lower is not None else "–" for p in peers]
        lines.append("| " + " | ".join(cells) + " |")
    held = ["real time held (runs)"] + [f"{meds[f]['held']}/{meds[f]['runs']}" for f in present]
    held += [""] * (len(head) - len(held))
    lines.append("| " + " | ".join(held) + " |")
    return "\n".join(lines), meds


def machine_summary(results: list[dict]) -> str:
    def m(key: str) -> str:
        return fmt(median([r["machine"].get(key) for r in results]), 1)

    return (
        f"other processes used a median {m('other_cpu_on_core_pct')} % of the pinned core"
        f" ({m('other_cpu_machine_pct')} % of a core machine-wide), main-thread run-queue wait"
        f" {m('runqueue_wait_pct')} %, load average {m('loadavg_start')} at the start of a run,"
        f" calibration loop {m('calib_ms')} ms"
    )


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# -------------------------------------------------------------------- sweep
def largest_held(results: list[dict], framework: str) -> int | None:
    held = [r["sessions"] for r in results if r["framework"] == framework and r["real_time_held"]]
    return max(held) if held else None


def slope(results: list[dict], framework: str) -> float | None:
    """Marginal CPU s per conversation-minute: least squares of CPU seconds on
    conversation-minutes over the framework's complete runs (sweep.py's method)."""
    rs = [
        r
        for r in results
        if r["framework"] == framework and r["turns_answered"] == r["turns_expected"] and not r["calls_aborted"]
    ]
    xs = [r["conversation_s"] / 60 for r in rs]
    ys = [r["cpu_s"] for r in rs]
    if len(xs) < 2 or max(xs) - min(xs) < 1.0:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def sweep_table(results: list[dict], frameworks: list[str], ns: list[int], floors: dict[str, str] = FLOOR) -> str:
    head = ["N"] + frameworks
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in ns:
        cells = [str(n)]
        for f in frameworks:
            rs = [r for r in results if r["framework"] == f and r["sessions"] == n]
            if not rs:
                cells.append("not run")
                continue
            r = rs[-1]
            mark = "held" if r["real_time_held"] else "**lost**"
            cells.append(
                f"{mark}: CPU {fmt(r['cpu_pct'], 1)} %, overhead p99 {fmt(fig(r, 'turn_overhead_ms.p99'), 1)} ms,"
                f" lateness p99 {fmt(fig(r, 'output_lateness_ms.p99'), 1)} ms"
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| largest N held | " + " | ".join(str(largest_held(results, f)) for f in frameworks) + " |")
    lines.append(
        "| marginal CPU s per conversation-minute per call | "
        + " | ".join(fmt(slope(results, f), 3) for f in frameworks)
        + " |"
    )

    def own(f: str) -> str:
        s, floor = slope(results, f), slope(results, floors.get(f, ""))
        return fmt(s - floor, 3) if s is not None and floor is not None else "–"

    floor_name = "the transport alone" if floors is PHONE_FLOOR else "the harness alone on the same loop"
    lines.append(f"| the same, minus {floor_name} | " + " | ".join(own(f) for f in frameworks) + " |")
    return "\n".join(lines)


def plot(panels: list[tuple[str, list[dict], list[str]]], path: str, title: str) -> None:
    """One row of panels (CPU, turn-latency p99 against N) per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_, axes = plt.subplots(len(panels), 2, figsize=(11, 4.2 * len(panels)), squeeze=False)
    for (name, results, frameworks), (ax1, ax2) in zip(panels, axes):
        for f in frameworks:
            rs = sorted((r for r in results if r["framework"] == f), key=lambda r: r["sessions"])
            if not rs:
                continue
            ns = [r["sessions"] for r in rs]
            line = ax1.plot(ns, [r["cpu_pct"] for r in rs], marker="o", label=f)[0]
            ax2.plot(ns, [fig(r, "turn_latency_ms.p99") for r in rs], marker="o", color=line.get_color(), label=f)
            lost = [r for r in rs if not r["real_time_held"]]
            for ax, key in ((ax1, "cpu_pct"), (ax2, "turn_latency_ms.p99")):
                ax.scatter([r["sessions"] for r in lost], [fig(r, key) for r in lost], marker="x", s=80, color="red", zorder=3)
        ax1.axhline(100, color="grey", lw=0.8, ls="--")
        ax1.set(xscale="log", xlabel="concurrent calls N (one core)", ylabel="CPU % of one core", title=f"{name}: CPU")
        ax2.set(xscale="log", yscale="log", xlabel="concurrent calls N (one core)", ylabel="ms",
                title=f"{name}: turn latency p99")
        for ax in (ax1, ax2):
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
    fig_.suptitle(title + "  (red x: real time lost)", fontsize=9)
    fig_.tight_layout()
    fig_.savefig(path, dpi=110)


# --------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=("both", "scripted", "phone"), default="both",
                    help="scripted call v1, phone call v1, or both (default), interleaved")
    ap.add_argument("--frameworks", default=",".join(ORDER), help="comma-separated, from " + ",".join(ORDER))
    ap.add_argument("--runs", type=int, default=3, help="rounds for the table (medians)")
    ap.add_argument("--sessions", type=int, default=1, help="N for the table")
    ap.add_argument("--phone-sessions", type=int, default=None, help="N for the phone table (default: --sessions)")
    ap.add_argument("--quick", action="store_true", help="the short 3-turn script")
    ap.add_argument("--sweep", help="comma-separated N list for the density sweep")
    ap.add_argument("--phone-sweep", help="comma-separated N list for the phone workload's density sweep")
    ap.add_argument("--phone-server-core", type=int, default=None,
                    help="the phone server's core (default: the highest allowed; the load generator gets another)")
    ap.add_argument("--sweep-stop-after", type=int, default=2, help="stop a framework after this many Ns lost in a row")
    ap.add_argument("--voxtrio-python", default=default_python("voxtrio"))
    ap.add_argument("--peers-python", default=default_python("livekit"))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    ap.add_argument("--out", default=os.path.join(HERE, "results", f"compare-{stamp}.jsonl"))
    ap.add_argument("--plot", default=os.path.join(HERE, "results", "density.png"))
    ap.add_argument("--markdown", default=os.path.join(HERE, "results", "performance.md"))
    ap.add_argument("--readme", action="store_true", help="insert the markdown into README.md")
    ap.add_argument("--from-jsonl", help="no runs: make the tables, plot and markdown from this file")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--measured-by", help="with --from-jsonl: the command that measured the file")
    ap.add_argument("--commit", help="with --from-jsonl: voxtrio's commit, for results that do not record it")
    args = ap.parse_args()
    scripted, phone = args.workload in ("both", "scripted"), args.workload in ("both", "phone")
    phone_sessions = args.phone_sessions or args.sessions
    frameworks = [f for f in args.frameworks.split(",") if f] if scripted else []
    on_trio = ("voxtrio", "baseline-trio")  # need voxtrio's venv (trio, voxtrio)
    pythons = {f: args.voxtrio_python if f in on_trio else args.peers_python for f in frameworks}
    phone_frameworks = list(PHONE_ORDER) if phone else []
    started = datetime.datetime.now(datetime.timezone.utc)
    results: list[dict] = []
    sweep_ns = [int(n) for n in args.sweep.split(",")] if args.sweep and scripted else []
    phone_ns = [int(n) for n in args.phone_sweep.split(",")] if args.phone_sweep and phone else []

    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE, text=True)
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "voxtrio"], stdout=subprocess.PIPE, text=True)
    this_commit = head.stdout.strip() + ("+local changes" if dirty.stdout.strip() else "")

    def record(r: dict, phase: str) -> None:
        r["phase"] = phase
        r["commit"] = this_commit
        r["started"] = started.isoformat()
        results.append(r)
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(r) + "\n")
        m = r["machine"]
        print(
            f"[{phase}] {'phone ' if workload(r) == PHONE else ''}{r['framework']:<8} N={r['sessions']:<3}"
            f" held={str(r['real_time_held']):5}"
            f" cpu={r['cpu_pct']}% cpu_s/conv_min={r['cpu_s_per_conv_min']}"
            f" ovh p50/p99={fig(r, 'turn_overhead_ms.p50')}/{fig(r, 'turn_overhead_ms.p99')} ms"
            f" stop={fig(r, 'interruption_stop_delay_ms.p50')} ms rss/call={r['rss_per_call_mb']} MB"
            f" | others on core {m.get('other_cpu_on_core_pct')}% load {m['loadavg_start']}"
            + (f" [{'; '.join(r['not_held_because'])}]" if r["not_held_because"] else ""),
            flush=True,
        )

    def sweep(ns: list[int], names: list[str], is_phone: bool) -> None:
        lost_in_a_row = {f: 0 for f in names}
        for n in ns:
            for f in names:
                if lost_in_a_row[f] >= args.sweep_stop_after:
                    continue
                python = args.voxtrio_python if is_phone else pythons[f]
                r = run_one(python, f, n, args.quick, args.timeout, phone=is_phone, server_core=args.phone_server_core)
                record(r, "sweep")
                lost_in_a_row[f] = 0 if r["real_time_held"] else lost_in_a_row[f] + 1

    if args.from_jsonl:
        with open(args.from_jsonl) as f:
            results = [json.loads(line) for line in f if line.strip()]
        frameworks = [f for f in ORDER if any(r["framework"] == f and workload(r) == SCRIPTED for r in results)]
        phone_frameworks = [f for f in PHONE_ORDER if any(r["framework"] == f and workload(r) == PHONE for r in results)]
        sweep_ns = sorted({r["sessions"] for r in results if r.get("phase") == "sweep" and workload(r) == SCRIPTED})
        phone_ns = sorted({r["sessions"] for r in results if r.get("phase") == "sweep" and workload(r) == PHONE})
        phone_tables = {r["sessions"] for r in results if r.get("phase", "table") == "table" and workload(r) == PHONE}
        if phone_tables and args.phone_sessions is None:
            phone_sessions = min(phone_tables)
        started = datetime.datetime.fromisoformat(results[0].get("started", started.isoformat()))
    else:
        for i in range(args.runs):
            for f in frameworks:
                record(run_one(pythons[f], f, args.sessions, args.quick, args.timeout), "table")
            for f in phone_frameworks:
                r = run_one(args.voxtrio_python, f, phone_sessions, args.quick, args.timeout, phone=True,
                            server_core=args.phone_server_core)
                record(r, "table")
        sweep(sweep_ns, frameworks, False)
        sweep(phone_ns, phone_frameworks, True)

    versions = {r["framework"]: r["version"] for r in results if workload(r) == SCRIPTED}
    command = args.measured_by or "bench/compare.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    commit = next((r["commit"] for r in results if r.get("commit")), args.commit)
    md: list[str] = []
    table_results = [r for r in results if r.get("phase", "table") == "table" and workload(r) == SCRIPTED]
    if table_results:
        add_net_cpu(table_results)
        body, _ = table(table_results, args.sessions)
        runs = max((sum(1 for r in table_results if r["framework"] == f) for f in frameworks), default=0)
        md += [
            f"Measured {started:%Y-%m-%d %H:%M} UTC on {cpu_model()}, {os.cpu_count()} cores shared with other"
            f" jobs, each run pinned to one core; Python {platform.python_version()};"
            f" {', '.join(f'{f} {v}' for f, v in versions.items() if not f.startswith('baseline'))}"
            + (f" (voxtrio at commit {commit})." if commit else "."),
            f"Made by `{command}`: workload \"scripted call v1\" (`docs/bench-workload.md`),"
            f" {'quick' if args.quick else 'full'} script, N={args.sessions} call(s) per run, medians of"
            f" {runs} interleaved rounds. Machine while measuring: {machine_summary(table_results)}.",
            "",
            body,
            "",
            "The baseline columns are the benchmark harness with no framework (ticker, fake providers, sink),"
            " on asyncio (the peers' loop) and on trio (voxtrio's): their cost is inside every other column,"
            " and the \"framework's own\" rows subtract the one on the same loop.",
        ]
    phone_results = [r for r in results if r.get("phase", "table") == "table" and workload(r) == PHONE]
    if phone_results:
        add_net_cpu(phone_results, PHONE_FLOOR)
        body, _ = table(phone_results, phone_sessions, PHONE_ORDER, PHONE_FIGURES)
        runs = max((sum(1 for r in phone_results if r["framework"] == f) for f in phone_frameworks), default=0)
        md += [
            "",
            f"Workload \"phone call v1\" (`docs/bench-workload.md`): the same script, every call a Twilio media"
            f" stream on loopback, the server pinned to one core and the load generator to the other;"
            f" N={phone_sessions} call(s) per run, medians of {runs} rounds, interleaved with the above."
            f" CPU is the server's. Machine (server's core): {machine_summary(phone_results)}.",
            "",
            body,
            "",
            "\"transport alone\" is the same TelephonyServer, Twilio serializer, μ-law codec, resampling and"
            " chunked, mark-timed audio output answering each turn on the fakes' timing with no voxtrio runtime"
            " (`bench/phone_server.py`); voxtrio minus it is what the runtime itself costs on a phone call.",
        ]
    panels = []
    if sweep_ns:
        sweep_results = [r for r in results if r.get("phase") == "sweep" and workload(r) == SCRIPTED]
        panels.append(("scripted call v1", sweep_results, frameworks))
        md += [
            "",
            f"Density sweep (one run per N, a framework stops after {args.sweep_stop_after} Ns lost in a row;"
            " real time held = every turn answered, input lag, output lateness p99 < 20 ms, turn overhead"
            f" p99 < 150 ms). Machine: {machine_summary(sweep_results)}.",
            "",
            sweep_table(sweep_results, frameworks, sweep_ns),
        ]
    if phone_ns:
        phone_sweep = [r for r in results if r.get("phase") == "sweep" and workload(r) == PHONE]
        panels.append(("phone call v1", phone_sweep, phone_frameworks))
        md += [
            "",
            "Phone call v1, density sweep (the same criteria on the server's loop, and no caller audio"
            f" dropped; the load generator's own lag must stay under 20 ms). Machine: {machine_summary(phone_sweep)}.",
            "",
            sweep_table(phone_sweep, phone_frameworks, phone_ns, PHONE_FLOOR),
        ]
    if panels:
        plot(panels, args.plot, f"{started:%Y-%m-%d}, one core")
        md += ["", f"![CPU and turn-latency p99 against N]({os.path.relpath(args.plot, ROOT)})"]
    text = "\n".join(md) + "\n"
    os.makedirs(os.path.dirname(args.markdown), exist_ok=True)
    with open(args.markdown, "w") as f:
        f.write(text)
    print()
    print(text)
    if args.readme:
        subprocess.run([sys.executable, os.path.join(HERE, "update_readme.py"), args.markdown], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
