"""An asyncio event loop in a thread of its own, driven from trio.

The ``livekit`` SDK is asyncio code over a Rust library: its callbacks land on
a Rust thread and are handed to the asyncio loop each SDK object was created
on (``loop.call_soon_threadsafe``). Rather than run asyncio inside trio, the
SDK is confined to one thread that runs one asyncio loop; trio stays the only
host loop of the process, and its nurseries and cancel scopes are untouched.

* ``await bridge.run(async_fn, *args)`` runs a coroutine on the loop and
  returns its result in trio. Cancelling the trio caller cancels the asyncio
  task and waits (bounded by ``cancel_timeout``) until it has finished, so no
  asyncio work of a cancelled caller keeps running unnoticed; one that will
  not finish is counted in ``stats.abandoned_tasks``.
* ``bridge.submit(fn, *args)`` calls a function on the loop, fire and forget.
* ``bridge.port(capacity)`` is the way back: a :class:`TrioPort` the asyncio
  side feeds without ever blocking; what does not fit is dropped and counted.

Every SDK object must be created on the loop (inside a coroutine passed to
``run``, or with ``loop=bridge.loop``): one created elsewhere binds itself to
an asyncio loop nobody runs, and its awaits never complete.

Closing (``async with`` exit or ``aclose``) cancels what still runs on the
loop, stops it and joins the thread, all within ``close_timeout``; a thread
that does not stop in time is left behind as a daemon and counted in
``stats.abandoned_threads`` (and :data:`ABANDONED_THREADS`), so the close
stays bounded.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable, Generic, TypeVar

import attrs
import trio

from ..errors import VoxtrioError

T = TypeVar("T")

ABANDONED_THREADS = 0
"""Bridge threads of this process that did not stop within their close timeout."""


class BridgeClosed(VoxtrioError, RuntimeError):
    """The bridge is not running (not started, or closed while the call waited)."""


@attrs.define
class BridgeStats:
    abandoned_tasks: int = 0
    """asyncio tasks still running ``cancel_timeout`` after their trio caller was cancelled."""
    abandoned_threads: int = 0
    """1 when the loop thread did not stop within ``close_timeout``."""


class TrioPort(Generic[T]):
    """A bounded one-way channel from the asyncio thread into trio.

    ``send_nowait`` may be called from any thread and never blocks: at most
    ``capacity`` items wait to be handed to trio, and at most ``capacity``
    more wait in the trio channel; anything beyond is dropped and counted in
    ``dropped``. Receive from ``receive`` in trio.
    """

    def __init__(self, token: trio.lowlevel.TrioToken, capacity: int) -> None:
        self._token = token
        self._capacity = capacity
        self._send, self.receive = trio.open_memory_channel[T](capacity)
        self._lock = threading.Lock()
        self._in_flight = 0  # scheduled with run_sync_soon, not yet in the channel
        self.dropped = 0

    def send_nowait(self, item: T) -> bool:
        """Offer ``item`` to trio; False if it was dropped."""
        with self._lock:
            if self._in_flight >= self._capacity:
                self.dropped += 1
                return False
            self._in_flight += 1
        try:
            self._token.run_sync_soon(self._deliver, item)
        except trio.RunFinishedError:
            return False
        return True

    def _deliver(self, item: T) -> None:
        with self._lock:
            self._in_flight -= 1
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            with self._lock:
                self.dropped += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def close(self) -> None:
        """End the stream (trio's receiver sees EndOfChannel after what was sent)."""
        try:
            self._token.run_sync_soon(self._send.close)
        except trio.RunFinishedError:
            pass


class AsyncioBridge:
    """One thread, one asyncio loop, used from trio. See the module docstring."""

    def __init__(
        self, *, name: str = "voxtrio-asyncio", close_timeout: float = 5.0, cancel_timeout: float = 2.0
    ) -> None:
        self.name = name
        self.close_timeout = close_timeout
        self.cancel_timeout = cancel_timeout
        self.stats = BridgeStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stopped: trio.Event | None = None
        self._waiting: set[Callable[[], None]] = set()  # the wake-ups of run() calls in flight

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise BridgeClosed("the asyncio bridge is not running")
        return self._loop

    @property
    def running(self) -> bool:
        return self._loop is not None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    async def __aenter__(self) -> AsyncioBridge:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("this bridge was already started")
        token = self._token = trio.lowlevel.current_trio_token()
        ready = trio.Event()
        stopped = self._stopped = trio.Event()
        loop = asyncio.new_event_loop()

        def wake(event: trio.Event) -> None:
            try:
                token.run_sync_soon(event.set)
            except trio.RunFinishedError:
                pass

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(wake, ready)
            try:
                loop.run_forever()
            finally:
                try:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()
                    wake(stopped)

        self._thread = threading.Thread(target=main, name=self.name, daemon=True)
        self._thread.start()
        await ready.wait()
        self._loop = loop

    async def run(self, async_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``async_fn(*args)`` on the loop; return (or raise) its result in trio."""
        loop = self.loop
        token = self._token
        assert token is not None
        done = trio.Event()
        tasks: list[asyncio.Task[T]] = []

        def wake(_: object = None) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        async def call() -> T:
            return await async_fn(*args)

        def start() -> None:
            # The task's own callback, not a concurrent future's: it fires when
            # the task has really finished, cancelled or not.
            task = loop.create_task(call())
            tasks.append(task)
            task.add_done_callback(wake)

        self._waiting.add(wake)
        try:
            loop.call_soon_threadsafe(start)
            try:
                await done.wait()
            except BaseException:
                loop.call_soon_threadsafe(lambda: tasks and tasks[0].cancel())
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(self.cancel_timeout):
                        await done.wait()
                if not done.is_set():
                    self.stats.abandoned_tasks += 1
                raise
        except RuntimeError:  # call_soon_threadsafe on a closed loop
            raise BridgeClosed("the asyncio bridge is closed") from None
        finally:
            self._waiting.discard(wake)
        if not tasks or not tasks[0].done():
            raise BridgeClosed("the asyncio bridge closed before the call ran")
        try:
            return tasks[0].result()
        except asyncio.CancelledError:
            raise BridgeClosed("the asyncio bridge closed while the call was running") from None

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call a plain function on the loop and return its result."""

        async def call() -> T:
            return fn(*args)

        return await self.run(call)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` on the loop soon; no result, no wait."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def port(self, capacity: int) -> TrioPort[Any]:
        if self._token is None:
            raise BridgeClosed("the asyncio bridge is not running")
        return TrioPort(self._token, capacity)

    async def aclose(self) -> None:
        """Cancel what runs on the loop, stop it, join the thread (bounded)."""
        global ABANDONED_THREADS
        loop, thread, stopped = self._loop, self._thread, self._stopped
        if loop is None or thread is None or stopped is None:
            return
        self._loop = None
        grace = self.cancel_timeout

        async def shutdown() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=grace)
            asyncio.get_running_loop().stop()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop)
        except RuntimeError:
            pass
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self.close_timeout):
                await stopped.wait()
        if stopped.is_set():
            thread.join()
            for wake in list(self._waiting):
                wake()  # a call the loop never started
        else:
            self.stats.abandoned_threads += 1
            ABANDONED_THREADS += 1
