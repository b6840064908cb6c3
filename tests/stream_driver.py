"""Driving a provider's stream directly in a test, without a session."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import trio

import voxtrio


async def drive(
    run: Callable[[trio.MemorySendChannel[Any]], Awaitable[None]], feed: Callable[[], Awaitable[None]]
) -> list[tuple[float, Any]]:
    """Run ``run(output)`` (a provider's ``stream`` call) with ``feed`` (what
    writes its input) beside it; returns everything it sent, with the trio
    time each item came at. Its ``APIError`` is raised as itself."""
    items: list[tuple[float, Any]] = []
    output, received = trio.open_memory_channel[Any](100_000)

    async def collect() -> None:
        async for item in received:
            items.append((round(trio.current_time(), 3), item))

    failure: voxtrio.APIError | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        nursery.start_soon(collect)
        async with output:
            try:
                await run(output)
            except voxtrio.APIError as error:
                failure = error
                nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return items
