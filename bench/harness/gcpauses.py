"""Garbage-collection pauses, measured with ``gc.callbacks``.

A collection runs inside whatever task allocated last and stops every call of
the process while it runs, so its length is a stall of every conversation at
once. The probe times each collection (start to stop, per generation) on the
monotonic clock; the benchmark reports the longest pause, how many went over
10 ms, and their count and total time per generation.
"""

from __future__ import annotations

import gc
import time
from typing import Any


class GCPauses:
    """Records every collection while installed (``with GCPauses() as pauses:``)."""

    def __init__(self) -> None:
        # seconds of each finished collection, by generation
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        # when the collection under way started (None between collections)
        self._started: float | None = None

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.pauses[info["generation"]].append(time.perf_counter() - self._started)
            self._started = None

    def __enter__(self) -> GCPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        every = [p for pauses in self.pauses.values() for p in pauses]
        return {
            "max_ms": round(1000 * max(every, default=0.0), 2),
            "over_10ms": sum(p > 0.010 for p in every),
            "by_generation": {
                str(generation): {"n": len(pauses), "total_ms": round(1000 * sum(pauses), 1),
                                  "max_ms": round(1000 * max(pauses, default=0.0), 2)}
                for generation, pauses in self.pauses.items()
            },
        }
