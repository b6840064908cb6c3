"""The harness alone: an ideal asyncio "runtime" with no framework in the path.

It does only what the workload needs: an energy VAD on each pushed frame,
endpointing at VAD stop + final transcript, the fake LLM's token timing with
sentence splitting, one fake TTS request per sentence, and writes to the sink;
a barge-in (VAD start while replying) cancels the reply and clears the sink.
Its figures are the floor every framework is measured against: the harness's
own ticker, sink and fakes cost the same in every run.
"""

from __future__ import annotations

import asyncio

from harness import workload as W

NAME = "baseline"
DRIVER = "asyncio"


def version() -> str:
    return "0"


async def _sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - asyncio.get_running_loop().time()))


class BaselineSession:
    def __init__(self, io) -> None:
        self._io = io
        self._loop = asyncio.get_running_loop()
        self._speech_n = self._silence_n = 0
        self._speaking = False
        self._ended = False  # VAD saw the end of the user's speech
        self._transcript: str | None = None
        self._reply: asyncio.Task | None = None

    def push_audio(self, pcm: bytes) -> None:
        if W.is_speech(pcm):
            self._speech_n, self._silence_n = self._speech_n + 1, 0
            if not self._speaking and self._speech_n >= W.VAD_START_FRAMES:
                self._speaking, self._ended = True, False
                if self._reply is not None and not self._reply.done():
                    self._reply.cancel()
                    self._io.sink.clear()
        else:
            self._silence_n, self._speech_n = self._silence_n + 1, 0
            if self._speaking and self._silence_n >= W.VAD_STOP_FRAMES:
                self._speaking, self._ended = False, True
                self._maybe_reply()

    def end_of_speech(self, transcript: str) -> None:
        self._loop.call_later(W.STT_FINAL_DELAY_S, self._final, transcript)

    def _final(self, transcript: str) -> None:
        self._transcript = transcript
        self._maybe_reply()

    def _maybe_reply(self) -> None:
        if self._ended and self._transcript is not None:
            self._reply = asyncio.create_task(self._answer(self._transcript))
            self._ended, self._transcript = False, None

    async def _answer(self, transcript: str) -> None:
        start = self._loop.time()
        if transcript == W.TOOL_TEXT:  # first LLM call returns the tool call
            await _sleep_until(start + W.LLM_TTFT_S)
            start = self._loop.time()
        pending: asyncio.Queue[asyncio.Future | None] = asyncio.Queue()

        async def synthesize(sentence: str, fut: asyncio.Future) -> None:
            self._io.tts_request(sentence)
            await asyncio.sleep(W.TTS_TTFB_S)
            fut.set_result(W.tts_audio(sentence))

        async def generate(tg: asyncio.TaskGroup) -> None:
            text = ""
            for i, token in enumerate(W.REPLY_TOKENS):
                await _sleep_until(start + W.LLM_TTFT_S + (i + 1) * W.LLM_TOKEN_S)
                text += token
                if text.endswith((".", "?", "!")):
                    fut = self._loop.create_future()
                    tg.create_task(synthesize(text.strip(), fut))
                    pending.put_nowait(fut)
                    text = ""
            pending.put_nowait(None)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(generate(tg))
            while (fut := await pending.get()) is not None:
                for chunk in await fut:
                    await self._io.sink.write(W.OUT_CHUNK_SAMPLES)

    async def aclose(self) -> None:
        if self._reply is not None:
            self._reply.cancel()


async def open_session(io) -> BaselineSession:
    return BaselineSession(io)
