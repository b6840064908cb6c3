#!/usr/bin/env python3
"""CPU cost per call of recording and tracing, against the same call without them.

    .venv/bin/python bench/telemetry_overhead.py            # the table
    .venv/bin/python bench/telemetry_overhead.py --tree     # the span tree of the call

The call is tests/fixtures/traced_call.json (20 s of conversation: two tools,
a hand-off, an interruption) on trio's MockClock, so a call costs only its
CPU. Every mode runs in this one process, interleaved round by round (the
machine's load hits them alike); each figure is the median over the rounds
of process CPU seconds per call. Modes:

* ``bare``: the session's telemetry subscriber unplugged (what voxtrio cost
  before telemetry existed);
* ``no sdk``: as shipped, with no OpenTelemetry SDK configured (usage and log
  context only: the tracer and the meter are not even subscribed);
* ``tracing``: an SDK TracerProvider exporting to memory (SimpleSpanProcessor),
  and an SDK MeterProvider with an in-memory reader;
* ``record wav`` / ``record ogg``: AgentSession(record=...) to a temporary
  directory, no SDK.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio
import trio.testing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voxtrio import telemetry  # noqa: E402
from voxtrio.recording import RecordingOptions  # noqa: E402
from voxtrio.testing import load_scenario, play  # noqa: E402

CALL = ROOT / "tests" / "fixtures" / "traced_call.json"


def run_call(record: RecordingOptions | None = None) -> float:
    scenario = load_scenario(json.loads(CALL.read_text()))
    if record is not None:
        scenario.options["record"] = record
    started = time.process_time()
    trio.run(play, scenario, clock=trio.testing.MockClock(autojump_threshold=0))
    return time.process_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tree", action="store_true", help="print the call's span tree and stop")
    args = parser.parse_args()

    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    sdk = {"on": False}
    # The session asks whether an SDK is configured; the bench switches the answer
    # per mode (the OpenTelemetry globals can be set only once per process).
    real_tracer, real_meter = trace.get_tracer, metrics.get_meter
    telemetry.tracing_configured = lambda: sdk["on"]
    telemetry.metrics_configured = lambda: sdk["on"]
    telemetry.trace.get_tracer = lambda name, *a, **k: tracer_provider.get_tracer(name)
    telemetry.otel_metrics.get_meter = lambda name, *a, **k: meter_provider.get_meter(name)
    del real_tracer, real_meter

    if args.tree:
        from voxtrio.testing.traces import span_tree

        sdk["on"] = True
        run_call()
        shown = ["lk.speech_id", "lk.agent_label", "lk.interrupted", "lk.function_tool.name"]
        print("\n".join(span_tree(exporter.get_finished_spans(), attributes=shown)))
        return 0

    on_event = telemetry.SessionTelemetry.on_event
    directory = Path(tempfile.mkdtemp(prefix="voxtrio-bench-"))

    def bare() -> float:
        telemetry.SessionTelemetry.on_event = lambda self, event: None
        try:
            return run_call()
        finally:
            telemetry.SessionTelemetry.on_event = on_event

    def traced() -> float:
        sdk["on"] = True
        try:
            return run_call()
        finally:
            sdk["on"] = False
            exporter.clear()

    modes = {
        "bare": bare,
        "no sdk": run_call,
        "tracing": traced,
        "record wav": lambda: run_call(RecordingOptions(directory=directory, format="wav")),
        "record ogg": lambda: run_call(RecordingOptions(directory=directory, format="ogg")),
    }
    for run in modes.values():  # warm-up: imports, first-call caches
        run()
    times: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.rounds):
        for name, run in modes.items():
            times[name].append(run())
    base = statistics.median(times["bare"])
    print(f"CPU per call ({CALL.name}, 20.2 s of call, {args.rounds} rounds, medians)")
    print(f"{'mode':<12} {'ms/call':>9} {'vs bare':>9} {'overhead ms':>12}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<12} {median * 1e3:9.2f} {median / base:9.3f} {(median - base) * 1e3:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
