"""Two small synchronisation primitives that trio leaves to its users.

Actors answer requests and publish state changes without sharing mutable
attributes. A :class:`Future` is the one-shot answer slot that travels inside a
request message; a :class:`Flag` is a boolean that other tasks can wait on in
either direction (``trio.Event`` can only be set once).
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

import trio

T = TypeVar("T")


class Future(Generic[T]):
    """A one-shot result that any number of tasks can await.

    Awaiting a future never cancels the work that produces it, and setting it
    twice is an error: every request gets exactly one answer.
    """

    __slots__ = ("_event", "_result", "_error", "_callbacks")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._result: T | None = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Future[T]], Any]] = []

    def done(self) -> bool:
        return self._event.is_set()

    def set_result(self, value: T) -> None:
        if self.done():
            raise RuntimeError("future already resolved")
        self._result = value
        self._resolve()

    def set_exception(self, error: BaseException) -> None:
        if self.done():
            raise RuntimeError("future already resolved")
        self._error = error
        self._resolve()

    def _resolve(self) -> None:
        self._event.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def add_done_callback(self, callback: Callable[[Future[T]], Any]) -> None:
        if self.done():
            callback(self)
        else:
            self._callbacks.append(callback)

    def result(self) -> T:
        if not self.done():
            raise RuntimeError("future not resolved yet")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def exception(self) -> BaseException | None:
        if not self.done():
            raise RuntimeError("future not resolved yet")
        return self._error

    async def wait(self) -> T:
        await self._event.wait()
        return self.result()

    async def settled(self) -> None:
        """Wait until resolved, without raising its error."""
        await self._event.wait()

    def __await__(self):  # type: ignore[no-untyped-def]
        return self.wait().__await__()


def resolved(value: T) -> Future[T]:
    future: Future[T] = Future()
    future.set_result(value)
    return future


class Flag:
    """A boolean whose changes can be awaited in both directions."""

    __slots__ = ("_value", "_changed")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._changed = trio.Event()

    def __bool__(self) -> bool:
        return self._value

    @property
    def value(self) -> bool:
        return self._value

    def set(self, value: bool = True) -> None:
        if value != self._value:
            self._value = value
            self._changed.set()
            self._changed = trio.Event()

    def clear(self) -> None:
        self.set(False)

    async def wait_value(self, value: bool = True) -> None:
        while self._value != value:
            await self._changed.wait()
