"""The asyncio driver: global ticker, awaitable sink, and one measured run.

Everything that decides *what* happens lives in the pure modules (``call``,
``playout``, ``metrics``); this module only supplies time and waiting for
frameworks that run on asyncio. A trio driver is the same ~150 lines with
``trio.sleep_until``/``trio.Event`` in place of ``asyncio.sleep``/futures.

One ticker serves all calls, as the spec requires: it wakes on the absolute
schedule ``base + k * 20 ms`` and, if it wakes late, delivers every overdue
slot back to back without yielding (a jitter buffer releasing a burst). Its
wake-up lateness per slot is the "input tick lag" metric.
"""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass
from typing import Any, Protocol

from . import metrics, procstat
from .gcpauses import GCPauses
from . import workload as W
from .call import WARMUP, Call, ScriptSpec

CLOSE_TIMEOUT_S = 30.0


class Session(Protocol):
    """What an adapter's ``open_session`` returns: one live framework session."""

    def push_audio(self, pcm: bytes) -> None:
        """Feed one 20 ms 16 kHz frame, non-blocking."""

    def end_of_speech(self, transcript: str) -> None:
        """The user's last speech frame was just pushed: make the fake STT emit
        ``transcript`` as a FINAL ``STT_FINAL_DELAY_S`` from now."""

    async def aclose(self) -> None:
        """Close the session the framework's normal way."""


class Sink:
    """The playout model as an awaitable sink (one per call, one writer)."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self._loop = asyncio.get_running_loop()
        self._waiters: set[asyncio.Future] = set()

    def now(self) -> float:
        return self._loop.time()

    async def write(self, samples: int) -> None:
        """Append ``samples`` (24 kHz) to the device; returns once <= 200 ms is queued."""
        now = self._loop.time()
        release = self.call.audio_written(now, samples)
        if release <= now:
            return
        fut = self._loop.create_future()
        timer = self._loop.call_at(release, _wake, fut)
        self._waiters.add(fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._waiters.discard(fut)

    def clear(self) -> None:
        """Drop everything queued; playback stops now and blocked writes return."""
        self.call.audio_cleared(self._loop.time())
        for fut in self._waiters:
            _wake(fut)

    def queued(self) -> float:
        return self.call.playout.queued(self._loop.time())

    def call_when_drained(self, callback, *args) -> asyncio.TimerHandle:
        """Run ``callback`` when everything written so far has been played."""
        return self._loop.call_at(max(self.call.playout.end, self._loop.time()), callback, *args)


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


@dataclass
class CallIO:
    """Handed to ``adapter.open_session``: the call's sink and its TTS check."""

    call: Call
    sink: Sink

    def tts_request(self, text: str) -> None:
        self.call.tts_request(text)


@dataclass
class _Live:
    call: Call
    session: Any
    done: asyncio.Future


class Ticker:
    def __init__(self) -> None:
        self.live: list[_Live] = []
        self.lags: list[float] = []
        self.recording = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        base, k = loop.time(), 0
        while True:
            slot = base + k * W.FRAME_S
            delay = slot - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._deliver(slot, loop.time())
            k += 1

    def _deliver(self, slot: float, now: float) -> None:
        if self.recording and self.live:
            self.lags.append(max(0.0, now - slot))
        for live in list(self.live):
            try:
                out = live.call.tick(slot, now)
                if out is not None:
                    live.session.push_audio(out[0])
                    if out[1] is not None:
                        live.session.end_of_speech(out[1])
            except Exception as e:  # a framework error ends that call, loudly
                self.live.remove(live)
                live.done.set_exception(e)
                continue
            if out is None:
                self.live.remove(live)
                live.done.set_result(None)


async def run_call(adapter, ticker: Ticker, call: Call) -> None:
    """Open a session, let the ticker drive the script to its end, close it."""
    sink = Sink(call)
    session = await adapter.open_session(CallIO(call, sink))
    done = asyncio.get_running_loop().create_future()
    ticker.live.append(_Live(call, session, done))
    try:
        await done
    finally:
        await asyncio.wait_for(session.aclose(), CLOSE_TIMEOUT_S)


async def measure(adapter, spec: ScriptSpec, sessions: int, *, stagger_s: float = 6.0) -> dict:
    """Warm-up call, then ``sessions`` calls starting at ``stagger_s * i / N``."""
    loop = asyncio.get_running_loop()
    ticker = Ticker()
    calib_ms = procstat.calibrate()
    tick_task = asyncio.create_task(ticker.run())
    try:
        await run_call(adapter, ticker, Call(WARMUP, index=-1))
        gc.collect()
        ready = getattr(adapter, "server_ready", None)
        if ready is not None:
            ready()  # what the framework's server does once it is up, before its first call
        rss_before = procstat.rss_bytes()
        calls = [Call(spec, index=i) for i in range(sessions)]
        before = procstat.sample()
        ticker.recording = True
        t0 = loop.time()

        async def staggered(i: int, call: Call) -> None:
            await asyncio.sleep(t0 + stagger_s * i / sessions - loop.time())
            await run_call(adapter, ticker, call)

        with GCPauses() as gc_pauses:  # the collections while calls are live
            async with asyncio.TaskGroup() as tg:
                for i, call in enumerate(calls):
                    tg.create_task(staggered(i, call))
        after = procstat.sample()
    finally:
        tick_task.cancel()
    result = metrics.summarize(
        framework=adapter.NAME,
        version=adapter.version(),
        calls=calls,
        input_lag=ticker.lags,
        proc=procstat.Delta(before, after),
        rss_before=rss_before,
        rss_max=procstat.max_rss_bytes(),
        core=procstat.pinned_core(),
    )
    result["machine"]["calib_ms"] = calib_ms
    result["gc"] = gc_pauses.summary()
    return result
