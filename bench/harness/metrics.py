"""Turn the calls' records and the process samples into the one JSON result line.

Every framework produces the same keys, so results can be compared (and
tabulated) by key. Times in the result are milliseconds unless the key says
``_s``; percentiles use the nearest-rank method on all samples of the run.
"""

from __future__ import annotations

import math
import platform

from . import workload as W
from .call import Call
from .procstat import Delta

# Real-time criteria (spec "Real time held").
MAX_INPUT_LAG_P99_S = 0.020
MAX_LATENESS_P99_S = 0.020
MAX_OVERHEAD_P99_S = 0.150


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def dist_ms(values: list[float]) -> dict:
    """p50/p99/max in ms, rounded to 0.1 ms, plus the sample count."""
    out = {"n": len(values)}
    for name, p in (("p50", 50), ("p99", 99), ("max", 100)):
        v = pct(values, p)
        out[name] = None if v is None else round(v * 1000, 1)
    return out


def verdict(
    calls: list[Call], input_lag: list[float], lateness: list[float], overheads: list[float]
) -> list[str]:
    """Reasons real time was *not* held; empty means it was."""
    why = []
    expected = sum(c.spec.turns for c in calls)
    answered = sum(len(c.turn_latencies()) for c in calls)
    if answered < expected:
        why.append(f"{expected - answered} of {expected} turns unanswered")
    if aborted := sum(c.aborted for c in calls):
        why.append(f"{aborted} calls aborted by the {W.CALL_CAP_S:.0f} s cap")
    for name, values, limit in (
        ("input lag", input_lag, MAX_INPUT_LAG_P99_S),
        ("output lateness", lateness, MAX_LATENESS_P99_S),
        ("turn overhead", overheads, MAX_OVERHEAD_P99_S),
    ):
        p99 = pct(values, 99)
        if p99 is None or p99 >= limit:
            shown = "n/a" if p99 is None else f"{p99 * 1000:.1f} ms"
            why.append(f"{name} p99 {shown} >= {limit * 1000:.0f} ms")
    return why


def summarize(
    *,
    framework: str,
    version: str,
    calls: list[Call],
    input_lag: list[float],
    proc: Delta,
    rss_before: int,
    rss_max: int,
    core: int | None,
    extra: dict | None = None,
) -> dict:
    lateness = [x for c in calls for x in c.lateness]
    overheads = [x for c in calls for x in c.turn_overheads()]
    latencies = [lat for c in calls for _, lat in c.turn_latencies()]
    stops = [d for c in calls if (d := c.stop_delay()) is not None]
    conv_s = sum(c.duration_s for c in calls)
    n = len(calls)
    why = verdict(calls, input_lag, lateness, overheads)
    mb = 1 / (1024 * 1024)
    result = {
        "framework": framework,
        "version": version,
        "workload": W.WORKLOAD,
        "script": calls[0].spec.name if calls else None,
        "sessions": n,
        "python": platform.python_version(),
        "core": core,
        "real_time_held": not why,
        "not_held_because": why,
        "calls_completed": sum(c.done_at is not None and not c.aborted for c in calls),
        "calls_aborted": sum(c.aborted for c in calls),
        "turns_expected": sum(c.spec.turns for c in calls),
        "turns_answered": len(latencies),
        "wall_s": round(proc.wall_s, 3),
        "conversation_s": round(conv_s, 3),
        "cpu_s": round(proc.cpu_s, 3),
        "cpu_pct": round(100 * proc.cpu_s / proc.wall_s, 2) if proc.wall_s else None,
        "cpu_s_per_conv_min": round(proc.cpu_s / (conv_s / 60), 3) if conv_s else None,
        "rss_before_mb": round(rss_before * mb, 1),
        "rss_max_mb": round(rss_max * mb, 1),
        "rss_per_call_mb": round((rss_max - rss_before) * mb / n, 3) if n else None,
        "turn_latency_ms": dist_ms(latencies),
        "turn_overhead_ms": dist_ms(overheads),
        "interruption_stop_delay_ms": dist_ms(stops),
        "output_lateness_ms": dist_ms(lateness),
        "underrun_s": round(sum(c.underrun_s for c in calls), 4),
        "input_lag_ms": dist_ms(input_lag),
        "output_frames": sum(c.frames_out for c in calls),
        "anomalies": {
            "leaked_frames": sum(c.leaked_frames for c in calls),
            "unexpected_frames": sum(c.unexpected_frames for c in calls),
            "extra_samples": sum(c.extra_samples for c in calls),
            "clears": sum(c.clears for c in calls),
            "tts_requests": sum(c.tts_requests for c in calls),
            "tts_mismatches": sum(c.tts_mismatches for c in calls),
        },
        "machine": proc.as_dict(),
    }
    if extra:
        result.update(extra)
    return result
