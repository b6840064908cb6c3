"""Running a provider request: progress timeouts and retries per APIConnectOptions.

A provider streams into a channel; :func:`stream_attempt` reads it with a
deadline on every chunk (``timeout`` bounds the wait for *progress*, so a long
answer is fine and a stalled one is not) and re-raises the provider's own error
unwrapped. :func:`retrying` repeats an attempt while the error is retryable,
the budget allows it and no output was delivered yet (audio already played or
text already spoken cannot be taken back), waiting at least as long as the
provider's ``Retry-After`` asked.
"""

from __future__ import annotations

import math
from typing import Any, Awaitable, Callable, TypeVar

import trio

from .errors import APIError, APITimeoutError
from .faults import FAULTS
from .options import APIConnectOptions

T = TypeVar("T")


async def stream_attempt(
    produce: Callable[[trio.MemorySendChannel[Any]], Awaitable[None]],
    deliver: Callable[[Any], Awaitable[None]],
    *,
    timeout: float,
    what: str,
    buffer: float = math.inf,
) -> None:
    """Run ``produce(send)`` and pass each item to ``deliver`` as it arrives."""
    send, receive = trio.open_memory_channel[Any](buffer)
    failure: list[BaseException] = []

    async def producer() -> None:
        async with send:
            try:
                await produce(send)
            except Exception as error:  # re-raised below, outside the nursery
                failure.append(unwrap(error))

    stalled = False
    rejected: list[BaseException] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        with receive:
            while True:
                # One progress deadline per item; the scope is only built when
                # the item is not already there (a TTS sends a sentence's audio
                # at once: most items are), which halves the cost of an item.
                try:
                    item = receive.receive_nowait()
                except trio.WouldBlock:
                    with trio.move_on_after(timeout) as waiting:
                        try:
                            item = await receive.receive()
                        except trio.EndOfChannel:
                            break
                    if waiting.cancelled_caught:
                        # Raised below: an error raised inside a cancelled nursery
                        # would be lost to the cancellation.
                        stalled = True
                        nursery.cancel_scope.cancel()
                        break
                except trio.EndOfChannel:
                    break
                try:
                    await deliver(item)
                except Exception as error:  # raised below, like the producer's own
                    rejected.append(error)
                    nursery.cancel_scope.cancel()
                    break
    if rejected:
        raise rejected[0]
    if stalled:
        raise APITimeoutError(f"{what} made no progress for {timeout:g} s")
    if failure:
        raise failure[0]


def unwrap(error: BaseException) -> BaseException:
    """The single error inside (nested) exception groups, else the group itself.

    Providers are free to use nurseries; the session still sees their
    ``APIError`` as such.
    """
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    *,
    conn_options: APIConnectOptions,
    on_error: Callable[[BaseException, bool], None],
    delivered: Callable[[], bool] = lambda: False,
) -> T:
    """Call ``attempt`` until it succeeds or the error is final.

    ``on_error(error, recoverable)`` is told about every failed attempt:
    ``recoverable`` is true when another attempt follows. Any ``Exception``
    counts as a failed attempt (a provider with a bug raises ``ValueError``
    as easily as ``APIError``); only an ``APIError`` marked retryable is tried
    again. The final error is re-raised unwrapped from its exception groups.
    """
    retries = 0
    while True:
        try:
            return await attempt()
        except Exception as raised:
            error = unwrap(raised)
            again = (
                isinstance(error, APIError)
                and error.retryable
                and retries < conn_options.max_retry
                and not delivered()
            )
            if isinstance(error, APIError) or not FAULTS.report_api_errors_only:
                on_error(error, again)
            if not again:
                raise error from None
            await trio.sleep(max(conn_options.retry_delay(retries), error.retry_after or 0.0))  # type: ignore[attr-defined]
            retries += 1
