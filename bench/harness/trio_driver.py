"""The trio driver: global ticker, awaitable sink, and one measured run.

The twin of ``aio``: the same ticker (absolute schedule, overdue slots
delivered back to back), the same sink semantics and the same ``measure()``
sequence (calibration, warm-up call, RSS, N staggered calls, samples), with
``trio.sleep_until`` and cancel scopes where ``aio`` uses ``asyncio.sleep``
and futures. ``call``/``playout``/``metrics`` are shared unchanged.

The one addition to the adapter contract: trio has no free-floating tasks, so
``CallIO.nursery`` is where an adapter starts whatever must outlive
``open_session`` (the framework's session itself). That nursery belongs to the
call and is cancelled once the adapter's ``aclose()`` has returned.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any, Callable

import trio

from . import metrics, procstat
from .gcpauses import GCPauses
from . import workload as W
from .call import WARMUP, Call, ScriptSpec

CLOSE_TIMEOUT_S = 30.0


class Sink:
    """The playout model as an awaitable sink (one per call, one writer)."""

    def __init__(self, call: Call, nursery: trio.Nursery) -> None:
        self.call = call
        self._nursery = nursery
        self._cleared = trio.Event()  # replaced after every clear()

    def now(self) -> float:
        return trio.current_time()

    async def write(self, samples: int) -> None:
        """Append ``samples`` (24 kHz) to the device; returns once <= 200 ms is queued."""
        now = trio.current_time()
        release = self.call.audio_written(now, samples)
        if release <= now:
            return
        cleared = self._cleared
        with trio.move_on_at(release):
            await cleared.wait()

    def clear(self) -> None:
        """Drop everything queued; playback stops now and blocked writes return."""
        self.call.audio_cleared(trio.current_time())
        self._cleared.set()
        self._cleared = trio.Event()

    def queued(self) -> float:
        return self.call.playout.queued(trio.current_time())

    def call_when_drained(self, callback: Callable[..., Any], *args: Any) -> _Timer:
        """Run ``callback`` when everything written so far has been played;
        ``.cancel()`` on the result calls it off."""
        timer = _Timer()

        async def later() -> None:
            with timer.scope:
                await trio.sleep_until(max(self.call.playout.end, trio.current_time()))
                callback(*args)

        self._nursery.start_soon(later)
        return timer


class _Timer:
    def __init__(self) -> None:
        self.scope = trio.CancelScope()

    def cancel(self) -> None:
        self.scope.cancel()


@dataclass
class CallIO:
    """Handed to ``adapter.open_session``: the call's sink, its TTS check and
    the nursery the session runs in."""

    call: Call
    sink: Sink
    nursery: trio.Nursery

    def tts_request(self, text: str) -> None:
        self.call.tts_request(text)


@dataclass
class _Live:
    call: Call
    session: Any
    done: trio.Event
    error: BaseException | None = None


class Ticker:
    def __init__(self) -> None:
        self.live: list[_Live] = []
        self.lags: list[float] = []
        self.recording = False

    async def run(self) -> None:
        base, k = trio.current_time(), 0
        while True:
            slot = base + k * W.FRAME_S
            if slot > trio.current_time():
                await trio.sleep_until(slot)
            self._deliver(slot, trio.current_time())
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
                live.error = e
                live.done.set()
                continue
            if out is None:
                self.live.remove(live)
                live.done.set()


async def run_call(adapter, ticker: Ticker, call: Call) -> None:
    """Open a session, let the ticker drive the script to its end, close it."""
    async with trio.open_nursery() as nursery:
        sink = Sink(call, nursery)
        session = await adapter.open_session(CallIO(call, sink, nursery))
        live = _Live(call, session, trio.Event())
        ticker.live.append(live)
        try:
            await live.done.wait()
        finally:
            with trio.fail_after(CLOSE_TIMEOUT_S):
                await session.aclose()
        nursery.cancel_scope.cancel()
    if live.error is not None:
        raise live.error


async def measure(adapter, spec: ScriptSpec, sessions: int, *, stagger_s: float = 6.0) -> dict:
    """Warm-up call, then ``sessions`` calls starting at ``stagger_s * i / N``."""
    ticker = Ticker()
    calib_ms = procstat.calibrate()
    async with trio.open_nursery() as outer:
        outer.start_soon(ticker.run)
        await run_call(adapter, ticker, Call(WARMUP, index=-1))
        gc.collect()
        ready = getattr(adapter, "server_ready", None)
        if ready is not None:
            ready()  # what the framework's server does once it is up, before its first call
        rss_before = procstat.rss_bytes()
        calls = [Call(spec, index=i) for i in range(sessions)]
        before = procstat.sample()
        ticker.recording = True
        t0 = trio.current_time()

        async def staggered(i: int, call: Call) -> None:
            await trio.sleep_until(t0 + stagger_s * i / sessions)
            await run_call(adapter, ticker, call)

        with GCPauses() as gc_pauses:  # the collections while calls are live
            async with trio.open_nursery() as calls_nursery:
                for i, call in enumerate(calls):
                    calls_nursery.start_soon(staggered, i, call)
        after = procstat.sample()
        outer.cancel_scope.cancel()
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
