"""The harness alone on trio: ``baseline`` with the trio driver's ticker and sink.

voxtrio runs on the trio driver, the peers on the asyncio one; this gives the
floor of the trio side (ticker, sink, fake-provider timing) so that voxtrio's
own cost can be told from the driver's. Same logic as ``baseline``: an
energy VAD per pushed frame, endpointing at VAD stop + final transcript, the
fake LLM's token timing with sentence splitting, one fake TTS request per
sentence, writes to the sink; a barge-in cancels the reply and clears.
"""

from __future__ import annotations

import trio

from harness import workload as W

NAME = "baseline-trio"
DRIVER = "trio"


def version() -> str:
    return "0"


class BaselineTrioSession:
    def __init__(self, io) -> None:
        self._io = io
        self._speech_n = self._silence_n = 0
        self._speaking = False
        self._ended = False
        self._transcript: str | None = None
        self._reply: trio.CancelScope | None = None

    def push_audio(self, pcm: bytes) -> None:
        if W.is_speech(pcm):
            self._speech_n, self._silence_n = self._speech_n + 1, 0
            if not self._speaking and self._speech_n >= W.VAD_START_FRAMES:
                self._speaking, self._ended = True, False
                if self._reply is not None and not self._reply.cancel_called:
                    self._reply.cancel()
                    self._io.sink.clear()
        else:
            self._silence_n, self._speech_n = self._silence_n + 1, 0
            if self._speaking and self._silence_n >= W.VAD_STOP_FRAMES:
                self._speaking, self._ended = False, True
                self._maybe_reply()

    def end_of_speech(self, transcript: str) -> None:
        self._io.nursery.start_soon(self._final_after, transcript)

    async def _final_after(self, transcript: str) -> None:
        await trio.sleep(W.STT_FINAL_DELAY_S)
        self._transcript = transcript
        self._maybe_reply()

    def _maybe_reply(self) -> None:
        if self._ended and self._transcript is not None:
            scope = self._reply = trio.CancelScope()
            self._io.nursery.start_soon(self._answer, self._transcript, scope)
            self._ended, self._transcript = False, None

    async def _answer(self, transcript: str, scope: trio.CancelScope) -> None:
        with scope:
            start = trio.current_time()
            if transcript == W.TOOL_TEXT:  # first LLM call returns the tool call
                await trio.sleep_until(start + W.LLM_TTFT_S)
                start = trio.current_time()
            send, receive = trio.open_memory_channel(3)

            async def synthesize(sentence: str, done: trio.Event, out: list) -> None:
                self._io.tts_request(sentence)
                await trio.sleep(W.TTS_TTFB_S)
                out.append(W.tts_audio(sentence))
                done.set()

            async def generate(nursery: trio.Nursery) -> None:
                text = ""
                async with send:
                    for i, token in enumerate(W.REPLY_TOKENS):
                        await trio.sleep_until(start + W.LLM_TTFT_S + (i + 1) * W.LLM_TOKEN_S)
                        text += token
                        if text.endswith((".", "?", "!")):
                            done, out = trio.Event(), []
                            nursery.start_soon(synthesize, text.strip(), done, out)
                            await send.send((done, out))
                            text = ""

            async with trio.open_nursery() as nursery:
                nursery.start_soon(generate, nursery)
                async for done, out in receive:
                    await done.wait()
                    for _chunk in out[0]:
                        await self._io.sink.write(W.OUT_CHUNK_SAMPLES)

    async def aclose(self) -> None:
        if self._reply is not None:
            self._reply.cancel()


async def open_session(io) -> BaselineTrioSession:
    return BaselineTrioSession(io)
