"""The processes behind ``voxtrio start`` and ``voxtrio dev``.

An agent file declares what the worker runs::

    # agent.py
    from voxtrio.worker import JobContext, WorkerOptions

    worker_options = WorkerOptions(agent_name="support")   # optional

    async def entrypoint(ctx: JobContext) -> None:         # required
        await ctx.run(voxtrio.AgentSession(...), Support())

``voxtrio start agent.py`` runs a parent process and ``--processes`` children
(one per core by default). Each child is a whole worker: one trio process
that registers with LiveKit on its own and holds up to ``max_jobs`` calls, so
LiveKit balances rooms between the children by the load each reports, as it
does between machines. The parent restarts a child that dies (backing off if
it keeps dying), and on SIGTERM or SIGINT drains: every child stops taking
jobs, finishes its live calls (at most ``--drain-timeout`` seconds, then ends
them), and exits; a child still there ten seconds after that is killed.

``voxtrio dev agent.py`` runs one child and restarts it, drained quickly,
whenever a ``.py`` file beside the agent file changes.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import trio

from .._sync import Flag
from ..errors import VoxtrioError

logger = logging.getLogger("voxtrio.worker")


class AgentFileError(VoxtrioError, ValueError):
    """The agent file cannot be loaded, or declares no ``async def entrypoint(ctx)``."""


def load_agent(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """(entrypoint, WorkerOptions) declared by the agent file at ``path``."""
    import inspect

    from ..demo import load_module
    from .worker import WorkerOptions

    file = Path(path)
    if not file.is_file():
        raise AgentFileError(f"{file}: no such agent file")
    try:
        module = load_module(file)
    except Exception as error:
        raise AgentFileError(f"{file} failed to load: {type(error).__name__}: {error}") from error
    entrypoint = getattr(module, "entrypoint", None)
    if not inspect.iscoroutinefunction(entrypoint):
        raise AgentFileError(f"{file} must define `async def entrypoint(ctx: JobContext)`")
    options = getattr(module, "worker_options", None) or WorkerOptions()
    if not isinstance(options, WorkerOptions):
        raise AgentFileError(f"{file}: worker_options must be a voxtrio.worker.WorkerOptions")
    return entrypoint, options


async def run_child(path: str, *, drain_timeout: float | None = None) -> None:
    """One worker process: serve until SIGTERM/SIGINT, then drain and return."""
    from ..collector import tune_collector_for_calls
    from .credentials import Credentials
    from .worker import Worker

    entrypoint, options = load_agent(path)
    worker = Worker(entrypoint, Credentials.from_env(), options)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            tune_collector_for_calls()  # registered, before the first job: see voxtrio/collector.py

            async def drain_on_signal() -> None:
                async for _ in signals:
                    await worker.drain(drain_timeout)
                    return

            nursery.start_soon(drain_on_signal)
            await worker.stopped.wait()
            nursery.cancel_scope.cancel()


def _child_command(path: str, drain_timeout: float | None) -> list[str]:
    command = [sys.executable, "-m", "voxtrio.worker", path]
    if drain_timeout is not None:
        command += ["--drain-timeout", str(drain_timeout)]
    return command


class Pool:
    """The parent: children started, restarted, drained (see the module docstring)."""

    def __init__(self, path: str, processes: int, *, drain_timeout: float | None = None) -> None:
        self.path = path
        self.processes = processes
        self.drain_timeout = drain_timeout
        self.restarts = 0
        self.draining = False
        self._children: set[Any] = set()
        self._none_left = Flag(True)

    async def run(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                for number in range(self.processes):
                    nursery.start_soon(self._keep_child, number)
                async for signum in signals:
                    logger.info("signal %s: draining %d worker(s)", signum, len(self._children))
                    self.draining = True
                    for child in list(self._children):
                        child.send_signal(signal.SIGTERM)
                    break
                bound = (self.drain_timeout or 1800.0) + 10.0
                with trio.move_on_after(bound):
                    await self._none_left.wait_value(True)
                for child in list(self._children):
                    child.kill()
                nursery.cancel_scope.cancel()

    async def _keep_child(self, number: int) -> None:
        failures = 0
        while not self.draining:
            child = await trio.lowlevel.open_process(_child_command(self.path, self.drain_timeout))
            self._children.add(child)
            self._none_left.set(False)
            try:
                code = await child.wait()
            finally:
                self._children.discard(child)
                self._none_left.set(not self._children)
            if self.draining:
                return
            failures = failures + 1 if code != 0 else 0
            self.restarts += 1
            delay = min(0.5 * 2 ** max(failures - 1, 0), 30.0) if failures else 0.0
            logger.warning("worker %d exited with %s; restarting in %.1f s", number, code, delay)
            await trio.sleep(delay)


async def run_dev(path: str, *, poll: float = 0.5) -> None:
    """One child, restarted (after a quick drain) when a .py file beside ``path`` changes."""
    folder = Path(path).resolve().parent

    def snapshot() -> dict[Path, float]:
        return {file: file.stat().st_mtime for file in folder.rglob("*.py") if ".venv" not in file.parts}

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            stop = trio.Event()

            async def watch_signals() -> None:
                async for _ in signals:
                    stop.set()
                    return

            nursery.start_soon(watch_signals)
            while not stop.is_set():
                seen = snapshot()
                child = await trio.lowlevel.open_process(_child_command(path, 2.0))
                changed = False
                while not stop.is_set() and child.poll() is None:
                    with trio.move_on_after(poll):
                        await stop.wait()
                    if snapshot() != seen:
                        changed = True
                        break
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
                    with trio.move_on_after(12.0):
                        await child.wait()
                    if child.poll() is None:
                        child.kill()
                if changed:
                    logger.warning("%s changed: restarting the worker", folder)
                elif not stop.is_set():
                    with trio.move_on_after(1.0):  # it died: do not spin
                        await stop.wait()
            nursery.cancel_scope.cancel()
