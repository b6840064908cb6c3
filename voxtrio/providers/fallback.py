"""Fallback adapters: several providers of one kind, used as one.

    llm = voxtrio.FallbackLLM([openai.LLM(), anthropic.LLM()])

A request goes to the first healthy provider. When it fails (any provider
error: a non-retryable one says the request cannot succeed *there*) or stalls
(no progress for ``attempt_timeout``) before it delivered anything, the next
one takes the same request. The failed provider is left out of later requests
and probed in the background (the request that failed, sent again every
``probe_interval``, its output thrown away) until it answers; then it is used
again. Each change of the provider in use is an ``active_provider_changed``
event. When every provider is down, each is tried again, in order.

The probes run in a task of the session (``AgentSession`` starts
:meth:`run_background` for the providers it was given and the first agent's):
nothing outlives the session. Used outside a session, start it yourself
(``await nursery.start(adapter.run_background, emit)``); without it the failed
providers are only tried again when all are down.

``attempt_timeout`` must stay below the session's ``APIConnectOptions.timeout``
(10 s by default), or the session gives the whole request up first.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Generic, Literal, Sequence, TypeVar

import numpy as np
import trio

from .replayable_text import ReplayableText
from ..audio import AudioFrame
from ..errors import APIError
from ..events import ActiveProviderChanged, Event, logger
from .base import STTEvent
from ..options import APIConnectOptions
from ..retry import stream_attempt, unwrap
from .base import (
    DEFAULT_CONN_OPTIONS,
    LLM,
    STT,
    TTS,
    LLMCapabilities,
    LLMChunk,
    STTCapabilities,
    SynthesizedAudio,
    ToolChoice,
    TTSCapabilities,
    UsageChunk,
)

if TYPE_CHECKING:
    from ..chat import ChatContext
    from ..tools import FunctionTool

P = TypeVar("P")
Probe = Callable[[], Awaitable[None]]


class _Providers(Generic[P]):
    """Which providers are healthy, which one is in use, and the probes."""

    def __init__(
        self,
        providers: Sequence[P],
        *,
        source: Literal["stt", "llm", "tts"],
        attempt_timeout: float,
        probe_interval: float,
    ) -> None:
        if not providers:
            raise ValueError(f"a fallback {source.upper()} needs at least one provider")
        if attempt_timeout <= 0 or probe_interval <= 0:
            raise ValueError("attempt_timeout and probe_interval must be positive")
        self.providers = list(providers)
        self.source = source
        self.attempt_timeout = attempt_timeout
        self.probe_interval = probe_interval
        self.healthy = [True] * len(self.providers)
        self.active = 0
        # The request to send again to each failed provider; the probes under way.
        self._probes: dict[int, Probe] = {}
        self._probing: set[int] = set()
        self._emitters: list[Callable[[Event], Any]] = []
        self._wake = trio.Event()

    def label(self, index: int) -> str:
        return f"{index}: {self.providers[index]!r}"

    def order(self) -> list[int]:
        """The providers to try, best first: the healthy ones, else all."""
        healthy = [i for i, ok in enumerate(self.healthy) if ok]
        return healthy or list(range(len(self.providers)))

    def failed(self, index: int, error: BaseException, probe: Probe) -> None:
        self._probes[index] = probe
        if self.healthy[index]:
            self.healthy[index] = False
            self._wake.set()
        self._update(f"{self.label(index)} failed: {type(error).__name__}: {error}")

    def succeeded(self, index: int) -> None:
        if not self.healthy[index]:
            self.healthy[index] = True
            self._probes.pop(index, None)
            self._update(f"{self.label(index)} is healthy again")

    def _update(self, reason: str) -> None:
        active = self.order()[0]
        if active == self.active:
            return
        previous, self.active = self.active, active
        event = ActiveProviderChanged(
            source=self.source, active=self.label(active), previous=self.label(previous), reason=reason
        )
        logger.info("fallback %s: now %s (%s)", self.source, event.active, reason)
        for emit in list(self._emitters):
            emit(event)

    async def run_background(
        self, emit: Callable[[Event], Any], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._emitters.append(emit)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    for index in list(self._probes):
                        if index not in self._probing:
                            self._probing.add(index)
                            nursery.start_soon(self._probe, index)
                    self._wake = trio.Event()
                    await self._wake.wait()
        finally:
            self._emitters.remove(emit)

    async def _probe(self, index: int) -> None:
        try:
            while not self.healthy[index]:
                await trio.sleep(self.probe_interval)
                probe = self._probes.get(index)
                if probe is None:
                    return
                try:
                    with trio.fail_after(self.attempt_timeout):
                        await probe()
                except Exception as raised:  # any failure, however wrapped: still down
                    logger.debug("fallback %s: probe of %s failed: %r", self.source, self.label(index), unwrap(raised))
                    continue
                self.succeeded(index)
        finally:
            # Cancelled with its session: another session's task may take it up.
            self._probing.discard(index)

    async def attempt(
        self,
        run: Callable[[P, trio.MemorySendChannel[Any]], Awaitable[None]],
        deliver: Callable[[Any], Awaitable[None]],
        *,
        counts: Callable[[Any], bool],
        probe: Callable[[P], Probe],
    ) -> None:
        """Run ``run(provider, send)`` on each provider in turn until one
        succeeds, passing its output to ``deliver``. Once an item that
        ``counts`` was delivered the request cannot move on: its error is raised."""
        error: APIError | None = None
        for index in self.order():
            provider = self.providers[index]
            delivered = False

            async def forward(item: Any) -> None:
                nonlocal delivered
                delivered = delivered or counts(item)
                await deliver(item)

            try:
                await stream_attempt(
                    lambda send: run(provider, send),
                    forward,
                    timeout=self.attempt_timeout,
                    what=repr(provider),
                )
            except APIError as failure:
                self.failed(index, failure, probe(provider))
                if delivered:
                    raise
                error = failure
                continue
            self.succeeded(index)
            return
        assert error is not None
        raise error


async def _drained(produce: Callable[[trio.MemorySendChannel[Any]], Awaitable[None]]) -> None:
    """Run a request and throw its output away (a probe: one reply's worth)."""
    send, receive = trio.open_memory_channel[Any](math.inf)
    with receive:
        async with send:
            await produce(send)


class FallbackLLM(LLM):
    """LLMs used in order: the next takes over when one fails or stalls."""

    def __init__(
        self, llms: Sequence[LLM], *, attempt_timeout: float = 5.0, probe_interval: float = 5.0
    ) -> None:
        self._providers = _Providers(llms, source="llm", attempt_timeout=attempt_timeout, probe_interval=probe_interval)
        self.capabilities = LLMCapabilities(
            tool_calls=all(llm.capabilities.tool_calls for llm in llms),
            structured_output=all(llm.capabilities.structured_output for llm in llms),
        )
        self.model = "/".join(llm.model for llm in llms)
        self.run_background = self._providers.run_background

    def __repr__(self) -> str:
        return f"FallbackLLM({self._providers.providers!r})"

    @property
    def active(self) -> LLM:
        return self._providers.providers[self._providers.active]

    async def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: Sequence[FunctionTool],
        tool_choice: ToolChoice | None,
        output: trio.MemorySendChannel[LLMChunk],
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        async def run(llm: LLM, send: trio.MemorySendChannel[Any]) -> None:
            await llm.chat(chat_ctx=context, tools=tools, tool_choice=tool_choice, output=send, conn_options=conn_options)

        context = chat_ctx.copy()  # a probe may send it again after this request
        await self._providers.attempt(
            run,
            output.send,
            counts=lambda chunk: not isinstance(chunk, UsageChunk),
            probe=lambda llm: lambda: _drained(lambda send: run(llm, send)),
        )


class FallbackTTS(TTS):
    """TTSs used in order. It streams text when all of them do; otherwise it
    takes a sentence at a time (a streaming provider gets each sentence as a
    stream of one). Word timings are declared when all of them have them."""

    def __init__(
        self, ttss: Sequence[TTS], *, attempt_timeout: float = 5.0, probe_interval: float = 5.0
    ) -> None:
        self._providers = _Providers(ttss, source="tts", attempt_timeout=attempt_timeout, probe_interval=probe_interval)
        self.capabilities = TTSCapabilities(
            streaming=all(tts.capabilities.streaming for tts in ttss),
            aligned_transcript=all(tts.capabilities.aligned_transcript for tts in ttss),
        )
        self.sample_rate = ttss[0].sample_rate
        self.num_channels = ttss[0].num_channels
        self.run_background = self._providers.run_background

    def __repr__(self) -> str:
        return f"FallbackTTS({self._providers.providers!r})"

    @property
    def active(self) -> TTS:
        return self._providers.providers[self._providers.active]

    async def stream(
        self,
        text: trio.MemoryReceiveChannel[str],
        audio: trio.MemorySendChannel[SynthesizedAudio],
        *,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        # Each provider that takes over reads the text from its beginning.
        replay = ReplayableText()

        async def read_text() -> None:
            async for chunk in text:
                replay.append(chunk)
            replay.close()

        async def run(tts: TTS, send: trio.MemorySendChannel[Any]) -> None:
            text_send, text_receive = trio.open_memory_channel[str](math.inf)
            async with trio.open_nursery() as feeding:
                feeding.start_soon(replay.replay, text_send)
                await tts.stream(text_receive, send, conn_options=conn_options)
                feeding.cancel_scope.cancel()

        async with trio.open_nursery() as reading:
            reading.start_soon(read_text)
            await self._providers.attempt(
                run,
                audio.send,
                counts=lambda item: isinstance(item, SynthesizedAudio),
                probe=lambda tts: lambda: _drained(lambda send: run(tts, send)),
            )
            reading.cancel_scope.cancel()

    async def synthesize(
        self,
        text: str,
        audio: trio.MemorySendChannel[SynthesizedAudio],
        *,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        async def run(tts: TTS, send: trio.MemorySendChannel[Any]) -> None:
            if not tts.capabilities.streaming:
                await tts.synthesize(text, send, conn_options=conn_options)
                return
            text_send, text_receive = trio.open_memory_channel[str](1)
            text_send.send_nowait(text)
            text_send.close()
            await tts.stream(text_receive, send, conn_options=conn_options)

        await self._providers.attempt(
            run,
            audio.send,
            counts=lambda item: isinstance(item, SynthesizedAudio),
            probe=lambda tts: lambda: _drained(lambda send: run(tts, send)),
        )


class FallbackSTT(STT):
    """STTs used in order; all stream, or none does (the session drives a
    streaming and a segmented recognizer differently).

    A segmented one fails over per utterance. A streaming one fails over in
    the middle of the stream: the next provider reads on from the same audio
    (what the failed one had heard but not yet transcribed is lost); a
    provider that is healthy again is used from the next stream on. A stream
    can be silent for as long as the user is, so only errors, not silence,
    move it on.
    """

    def __init__(
        self, stts: Sequence[STT], *, attempt_timeout: float = 5.0, probe_interval: float = 5.0
    ) -> None:
        streaming = {stt.capabilities.streaming for stt in stts}
        if len(streaming) > 1:
            raise ValueError("FallbackSTT needs providers that all stream or all recognize utterances, not a mix")
        self._providers = _Providers(stts, source="stt", attempt_timeout=attempt_timeout, probe_interval=probe_interval)
        self.capabilities = STTCapabilities(
            streaming=streaming.pop() if streaming else False,
            interim_results=all(stt.capabilities.interim_results for stt in stts),
            aligned_transcript=all(stt.capabilities.aligned_transcript for stt in stts),
            offline_recognize=all(stt.capabilities.offline_recognize for stt in stts),
        )
        self.run_background = self._providers.run_background

    def __repr__(self) -> str:
        return f"FallbackSTT({self._providers.providers!r})"

    @property
    def active(self) -> STT:
        return self._providers.providers[self._providers.active]

    async def recognize(
        self,
        audio: AudioFrame,
        *,
        language: str | None = None,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> STTEvent:
        results: list[STTEvent] = []

        async def run(stt: STT, send: trio.MemorySendChannel[Any]) -> None:
            await send.send(await stt.recognize(audio, language=language, conn_options=conn_options))

        async def keep(event: STTEvent) -> None:
            results.append(event)

        await self._providers.attempt(
            run,
            keep,
            counts=lambda item: True,
            probe=lambda stt: lambda: _drained(lambda send: run(stt, send)),
        )
        return results[0]

    async def stream(
        self,
        frames: trio.MemoryReceiveChannel[AudioFrame],
        events: trio.MemorySendChannel[STTEvent],
        *,
        language: str | None = None,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        providers = self._providers
        error: APIError | None = None
        for index in providers.order():
            stt = providers.providers[index]
            try:
                await stt.stream(frames, events, language=language, conn_options=conn_options)
            except Exception as raised:
                failure = unwrap(raised)  # a provider may use nurseries
                if not isinstance(failure, APIError):
                    raise
                providers.failed(index, failure, lambda stt=stt: _probe_stream(stt, language, conn_options))
                error = failure
                continue
            providers.succeeded(index)
            return
        assert error is not None
        raise error


async def _probe_stream(stt: STT, language: str | None, conn_options: APIConnectOptions) -> None:
    """A streaming STT answers a short silence and a close without an error."""
    frames_send, frames_receive = trio.open_memory_channel[AudioFrame](math.inf)
    for _ in range(25):
        frames_send.send_nowait(AudioFrame(np.zeros(320, np.int16), 16_000))
    frames_send.close()
    await _drained(lambda send: stt.stream(frames_receive, send, language=language, conn_options=conn_options))


__all__ = ["FallbackLLM", "FallbackSTT", "FallbackTTS"]
