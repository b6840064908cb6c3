"""SpeechHandle: one agent utterance, from creation to its last tool step.

A handle is scheduled into the Planner's queue (priority first, FIFO within a
priority), authorized one step at a time by the scheduler, and done when the
whole turn is over, tool replies included. ``interrupt()`` acts at once: it
cancels the cancel scopes the current step registered (so playout stops on
the spot) and the Planner records what was heard.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
from typing import Any, Callable, Literal

import trio

from ._sync import Flag

SpeechSource = Literal["say", "generate_reply", "tool_response"]

# Set while a tool runs, to the handle whose step called it.
current_tool_speech: contextvars.ContextVar[SpeechHandle | None] = contextvars.ContextVar(
    "voxtrio_current_tool_speech", default=None
)


class SpeechHandle:
    SPEECH_PRIORITY_LOW = 0
    SPEECH_PRIORITY_NORMAL = 5
    SPEECH_PRIORITY_HIGH = 10

    def __init__(
        self,
        *,
        speech_id: str,
        allow_interruptions: bool,
        source: SpeechSource,
        priority: int = SPEECH_PRIORITY_NORMAL,
    ) -> None:
        self._id = speech_id
        self._allow_interruptions = allow_interruptions
        self._source = source
        self._priority = priority
        self._num_steps = 1
        self._scheduled = Flag()
        self._authorized = Flag()
        self._generation_done = Flag()
        self._interrupted = Flag()
        self._done = Flag()
        self._error: BaseException | None = None
        self._scopes: set[trio.CancelScope] = set()
        self._done_callbacks: list[Callable[[SpeechHandle], Any]] = []
        self._interruption_holds = 0
        self._owner: Any = None  # the agent it speaks for (set by the Planner)
        self.chat_items: list[Any] = []
        self.position: float = 0.0

    def __repr__(self) -> str:
        state = "done" if self.done() else "interrupted" if self.interrupted else "active"
        return f"<SpeechHandle {self._id} {self._source} {state}>"

    @property
    def id(self) -> str:
        return self._id

    @property
    def source(self) -> SpeechSource:
        return self._source

    @property
    def priority(self) -> int:
        return self._priority

    @property
    def num_steps(self) -> int:
        return self._num_steps

    @property
    def scheduled(self) -> bool:
        return self._scheduled.value

    @property
    def interrupted(self) -> bool:
        return self._interrupted.value

    @property
    def allow_interruptions(self) -> bool:
        return self._allow_interruptions and self._interruption_holds == 0

    @allow_interruptions.setter
    def allow_interruptions(self, value: bool) -> None:
        if not value and self.interrupted:
            raise RuntimeError("this speech was already interrupted; it cannot be protected now")
        self._allow_interruptions = value

    def done(self) -> bool:
        return self._done.value

    def exception(self) -> BaseException | None:
        if not self.done():
            raise RuntimeError("the speech is not done yet")
        return self._error

    def interrupt(self, *, force: bool = False) -> SpeechHandle:
        """Stop this speech now, or drop it from the queue if it has not started.

        Raises RuntimeError when the speech does not allow interruptions and
        ``force`` is false. Interrupting a done or interrupted speech does nothing.
        """
        if self.done() or self.interrupted:
            return self
        if not force and not self.allow_interruptions:
            raise RuntimeError(
                f"speech {self._id} does not allow interruptions; use interrupt(force=True)"
            )
        self._interrupted.set()
        for scope in list(self._scopes):
            scope.cancel()
        return self

    async def wait_for_playout(self) -> None:
        """Wait until the whole turn is over (tool steps included). Never raises
        the speech's error: read ``exception()`` for it."""
        if current_tool_speech.get() is self:
            raise RuntimeError(
                "wait_for_playout() from inside one of this speech's own tools would wait for "
                "itself; use RunContext.wait_for_playout() instead"
            )
        await self._done.wait_value(True)

    def __await__(self):  # type: ignore[no-untyped-def]
        return self.wait_for_playout().__await__()

    def add_done_callback(self, callback: Callable[[SpeechHandle], Any]) -> None:
        if self.done():
            callback(self)
        else:
            self._done_callbacks.append(callback)

    # -- the Planner's side -------------------------------------------------

    def _bind_scope(self, scope: trio.CancelScope) -> None:
        """Cancel ``scope`` when this speech is interrupted."""
        if self.interrupted:
            scope.cancel()
        self._scopes.add(scope)

    def _unbind_scope(self, scope: trio.CancelScope) -> None:
        self._scopes.discard(scope)

    def _mark_scheduled(self) -> None:
        self._scheduled.set()

    def _authorize(self) -> None:
        self._generation_done.clear()
        self._authorized.set()

    def _clear_authorization(self) -> None:
        self._authorized.clear()

    async def _wait_for_authorization(self) -> None:
        await self._authorized.wait_value(True)

    def _mark_generation_done(self) -> None:
        self._authorized.clear()
        self._generation_done.set()

    async def _wait_for_generation(self) -> None:
        await self._generation_done.wait_value(True)

    def _hold_interruptions(self) -> None:
        """Protect this speech while one of its tools awaits an AgentTask.

        Counted, because parallel tool calls of one speech may each await a
        task: the user talking to one task must not cut off the speech the
        others still belong to.
        """
        self._interruption_holds += 1

    def _release_interruptions(self) -> None:
        self._interruption_holds -= 1

    def _next_step(self) -> None:
        self._num_steps += 1

    def _mark_done(self, error: BaseException | None = None) -> None:
        if self.done():
            return
        if error is not None and self._error is None:
            self._error = error
        self._generation_done.set()
        self._done.set()
        callbacks, self._done_callbacks = self._done_callbacks, []
        for callback in callbacks:
            callback(self)


class SpeechQueue:
    """Speeches waiting to play: highest priority first, FIFO within a priority."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, SpeechHandle]] = []
        self._counter = itertools.count()
        self._changed = trio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, handle: SpeechHandle) -> None:
        heapq.heappush(self._heap, (-handle.priority, next(self._counter), handle))
        self._changed.set()

    def pop(self) -> SpeechHandle:
        return heapq.heappop(self._heap)[2]

    def in_playout_order(self) -> list[SpeechHandle]:
        return [entry[2] for entry in sorted(self._heap)]

    async def wait_nonempty(self) -> None:
        while not self._heap:
            self._changed = trio.Event()
            await self._changed.wait()
