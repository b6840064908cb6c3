"""A text that arrives piece by piece and can be read again from the start.

The Speaker feeds a segment's text into one as the LLM writes it; a retried
TTS request (the session's retry, or the next TTS of a fallback adapter)
reads it again from the first character, so no provider gets only what was
left of the text when it took over.
"""

from __future__ import annotations

import trio


class ReplayableText:
    """The text of a segment as it arrives, readable again from the start
    (a retried TTS request must get the whole text, not what is left)."""

    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._closed = False
        self._changed = trio.Event()

    def append(self, chunk: str) -> None:
        self._chunks.append(chunk)
        self._notify()

    @property
    def characters(self) -> int:
        return sum(len(chunk) for chunk in self._chunks)

    def close(self) -> None:
        self._closed = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def replay(self, send: trio.MemorySendChannel[str]) -> None:
        async with send:
            index = 0
            while True:
                while index < len(self._chunks):
                    send.send_nowait(self._chunks[index])
                    index += 1
                if self._closed:
                    return
                await self._changed.wait()
