"""CPU, memory and machine-contention sampling from /proc and getrusage.

A benchmark on a shared 2-core machine is only meaningful if it says how busy
the machine was. Besides our own CPU time (getrusage: all threads, user+sys)
we record what everybody else used on our core and on the whole machine
(/proc/stat minus our own time) and how long our main thread sat runnable
waiting for the CPU (/proc/thread-self/schedstat, field 2). A run with high
"other" CPU or run-queue wait was measured under contention.

Call ``sample()`` from the event-loop thread: schedstat is per thread.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _cpu_line(name: str) -> tuple[float, float, float]:
    """(busy_s, steal_s, total_s) for a ``cpu``/``cpuN`` line of /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(name + " "):
                v = [int(x) for x in line.split()[1:9]]
                user, nice, system, idle, iowait, irq, softirq, steal = v
                busy = user + nice + system + irq + softirq + steal
                return busy / _TICK, steal / _TICK, (busy + idle + iowait) / _TICK
    raise LookupError(name)


def _schedstat() -> tuple[float, float]:
    """(run_s, runqueue_wait_s) of the calling thread."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            run_ns, wait_ns, _ = f.read().split()
        return int(run_ns) / 1e9, int(wait_ns) / 1e9
    except OSError:  # kernel without schedstats
        return 0.0, 0.0


def rss_bytes() -> int:
    """Current resident set size (/proc/self/statm, field 2)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def max_rss_bytes() -> int:
    """Peak RSS. ru_maxrss's high-water mark is updated lazily, so it can
    trail the current statm figure by a few pages; take the larger."""
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, rss_bytes())


def calibrate() -> float:
    """CPU milliseconds for a fixed pure-Python loop (best of 3).

    Not a benchmark of anything: it tells whether two runs (or two machines)
    had the same per-core speed, which CPU-seconds figures silently depend on.
    Thread CPU time, not wall time, so time-slicing with other processes does
    not count (that is in the contention figures); a slow host core does.
    """
    best = float("inf")
    for _ in range(3):
        t = time.thread_time()
        x, d = 0, {}
        for i in range(200_000):
            x = (x * 31 + i) & 0xFFFF
            d[i & 1023] = x
        best = min(best, time.thread_time() - t)
    return round(best * 1000, 1)


def pinned_core() -> int | None:
    cores = os.sched_getaffinity(0)
    return next(iter(cores)) if len(cores) == 1 else None


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float
    core: tuple[float, float, float] | None
    machine: tuple[float, float, float]
    thread: tuple[float, float]
    loadavg: float


def sample() -> Sample:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    core = pinned_core()
    with open("/proc/loadavg") as f:
        load1 = float(f.read().split()[0])
    return Sample(
        wall=time.monotonic(),
        cpu=ru.ru_utime + ru.ru_stime,
        core=_cpu_line(f"cpu{core}") if core is not None else None,
        machine=_cpu_line("cpu"),
        thread=_schedstat(),
        loadavg=load1,
    )


@dataclass(frozen=True)
class Delta:
    a: Sample
    b: Sample

    @property
    def wall_s(self) -> float:
        return self.b.wall - self.a.wall

    @property
    def cpu_s(self) -> float:
        return self.b.cpu - self.a.cpu

    def as_dict(self) -> dict:
        """Contention figures, in % of one core over the wall time."""
        wall = self.wall_s or 1e-9
        pct = lambda s: round(100 * s / wall, 2)  # noqa: E731
        out = {
            "other_cpu_machine_pct": pct(max(0.0, self.b.machine[0] - self.a.machine[0] - self.cpu_s)),
            "machine_cores": os.cpu_count(),
            "runqueue_wait_s": round(self.b.thread[1] - self.a.thread[1], 3),
            "runqueue_wait_pct": pct(self.b.thread[1] - self.a.thread[1]),
            "loadavg_start": self.a.loadavg,
            "loadavg_end": self.b.loadavg,
        }
        if self.a.core and self.b.core:
            # All our threads are pinned to this core, so the rest is others'.
            out["other_cpu_on_core_pct"] = pct(max(0.0, self.b.core[0] - self.a.core[0] - self.cpu_s))
            out["steal_on_core_pct"] = pct(self.b.core[1] - self.a.core[1])
        return out
