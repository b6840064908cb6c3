"""SpeechHandle: one agent utterance, from creation to its last tool step.

A handle is scheduled into the Planner's queue (priority first, FIFO within a
priority), authorized one step at a time by the Planner's scheduler, and done
when the whole turn is over, tool replies included.

The handle is public API and nothing else: what the Planner needs to run a
speech (its authorization, the agent it speaks for) lives with the Planner.
What the handle and its owner share is a :class:`SpeechStatus`, and it is the
one place that says what stops when a speech is interrupted: every cancel
scope bound to it, each named for what it stops (see :data:`StopKind`).
``interrupt()`` acts at once, from whatever task calls it, so playout stops on
the spot and the Planner then records what was heard.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal

import attrs
import trio

from ._sync import Flag
from .context import current_tool_speech
from .events import EventBus, SpeechCreated

if TYPE_CHECKING:
    from .state import SessionState

SpeechSource = Literal["say", "generate_reply", "tool_response"]

# Everything an interruption stops, by name. A speech's cancel scopes are
# bound with one of these; nothing else is cancelled by ``interrupt()``.
StopKind = Literal[
    "spacing",  # the scheduler's wait of min_consecutive_speech_delay before it
    "authorization",  # a step waiting for its turn (and for the user to be silent)
    "llm",  # the LLM request of a reply step
    "routing",  # the routing of the LLM's text to the Speaker and its calls to the tools
    "scheduling",  # a reply step waiting to be scheduled (or for a cut-off speech's record)
    "first_text",  # a reply step waiting for the first text of its reply
    "playout",  # the Speaker playing the step's audio
]



@attrs.define(eq=False)
class SpeechStatus:
    """What a handle reports and its owner (the Planner) writes.

    Invariants: ``done`` implies ``step_played``; once ``interrupted`` is set,
    every scope in ``stops`` is cancelled, and so is any scope bound later.
    """

    # Asked for without interruptions (the handle's allow_interruptions=False)?
    allow_interruptions: bool
    # Tools of this speech awaiting an AgentTask: while above zero the speech
    # cannot be interrupted (counted: parallel calls may each await one).
    interruption_holds: int = 0
    # The steps it has run so far (a tool follow-up is a step).
    num_steps: int = 1
    # Set once the Planner put it in its queue.
    scheduled: Flag = attrs.Factory(Flag)
    # Set once it was interrupted (or dropped from the queue); never cleared.
    interrupted: Flag = attrs.Factory(Flag)
    # Set when the current step has played (what was heard is recorded);
    # cleared when the next step is authorized.
    step_played: Flag = attrs.Factory(Flag)
    # Set when the whole turn is over, tool steps included.
    done: Flag = attrs.Factory(Flag)
    # The first error of one of its steps (a failed LLM request, a bug).
    error: BaseException | None = None
    # Called once when done, with the handle.
    done_callbacks: list[Callable[[SpeechHandle], Any]] = attrs.Factory(list)
    # What an interruption stops right now: each bound scope and what it is.
    stops: dict[trio.CancelScope, StopKind] = attrs.Factory(dict)

    @property
    def interruptible(self) -> bool:
        return self.allow_interruptions and self.interruption_holds == 0

    def bind(self, scope: trio.CancelScope, kind: StopKind) -> None:
        """Cancel ``scope`` when the speech is interrupted (at once if it was)."""
        if self.interrupted:
            scope.cancel()
        self.stops[scope] = kind

    def unbind(self, scope: trio.CancelScope) -> None:
        self.stops.pop(scope, None)

    @contextlib.contextmanager
    def stopped_by_interruption(self, kind: StopKind) -> Iterator[trio.CancelScope]:
        """A cancel scope that an interruption cancels, bound while it is open."""
        with trio.CancelScope() as scope:
            self.bind(scope, kind)
            try:
                yield scope
            finally:
                self.unbind(scope)

    def interrupt(self) -> None:
        self.interrupted.set()
        for scope in list(self.stops):
            scope.cancel()

    def finish(self, handle: SpeechHandle, error: BaseException | None = None) -> None:
        if self.done:
            return
        if error is not None and self.error is None:
            self.error = error
        self.step_played.set()
        self.done.set()
        callbacks, self.done_callbacks = self.done_callbacks, []
        for callback in callbacks:
            callback(handle)


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
        self._source = source
        self._priority = priority
        # Shared with the Planner, which runs the speech (see SpeechStatus).
        self._status = SpeechStatus(allow_interruptions=allow_interruptions)
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
        return self._status.num_steps

    @property
    def scheduled(self) -> bool:
        return self._status.scheduled.value

    @property
    def interrupted(self) -> bool:
        return self._status.interrupted.value

    @property
    def allow_interruptions(self) -> bool:
        return self._status.interruptible

    @allow_interruptions.setter
    def allow_interruptions(self, value: bool) -> None:
        if not value and self.interrupted:
            raise RuntimeError("this speech was already interrupted; it cannot be protected now")
        self._status.allow_interruptions = value

    def done(self) -> bool:
        return self._status.done.value

    def exception(self) -> BaseException | None:
        if not self.done():
            raise RuntimeError("the speech is not done yet")
        return self._status.error

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
        self._status.interrupt()
        return self

    async def wait_for_playout(self) -> None:
        """Wait until the whole turn is over (tool steps included). Never raises
        the speech's error: read ``exception()`` for it."""
        if current_tool_speech.get() is self:
            raise RuntimeError(
                "wait_for_playout() from inside one of this speech's own tools would wait for "
                "itself; use RunContext.wait_for_playout() instead"
            )
        await self._status.done.wait_value(True)

    def __await__(self):  # type: ignore[no-untyped-def]
        return self.wait_for_playout().__await__()

    def add_done_callback(self, callback: Callable[[SpeechHandle], Any]) -> None:
        if self.done():
            callback(self)
        else:
            self._status.done_callbacks.append(callback)


def status_of(handle: SpeechHandle) -> SpeechStatus:
    """The owner's side of ``handle`` (for the Planner and the Speaker)."""
    return handle._status


@attrs.define
class SpeechFactory:
    """Makes the session's speech handles: numbered in one sequence, each
    announced (``speech_created``) and counted as posted work until the
    Planner takes it in. Shared by the public API and the Planner, so that
    neither calls the other to make one."""

    bus: EventBus
    state: SessionState
    # the number of the next speech (speech_1, speech_2, ...)
    ids: Iterator[int] = attrs.Factory(lambda: itertools.count(1))

    def create(self, *, source: SpeechSource, allow_interruptions: bool, user_initiated: bool = True) -> SpeechHandle:
        handle = SpeechHandle(
            speech_id=f"speech_{next(self.ids)}", allow_interruptions=allow_interruptions, source=source
        )
        self.state.count_posted_speech(+1)
        self.bus.emit(
            SpeechCreated(
                speech_id=handle.id, source=source, user_initiated=user_initiated, speech_handle=handle
            )
        )
        return handle


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
