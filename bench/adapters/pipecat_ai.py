"""Pipecat driven as a standard bot pipeline over a tiny in-process transport.

    transport.input() -> STT -> user aggregator (VAD, turn strategies) -> LLM
        -> TTS -> transport.output() -> assistant aggregator

run by one ``PipelineWorker`` + ``WorkerRunner(handle_sigint=False)`` per call,
all in the one asyncio loop, with the worker's defaults (RTVI and turn
tracking on, metrics off). The transport subclasses ``BaseInputTransport`` /
``BaseOutputTransport``, the classes the WebSocket and WebRTC transports build
on, so pipecat's own input queue and output ``MediaSender`` (40 ms chunks) are
in the path; only the socket is replaced by the harness's playout model. As the
FastAPI WebSocket transport does, an ``InterruptionFrame`` reaching the output
clears the client's playout buffer.

The fakes follow pipecat's test mocks (``MockLLMService``,
``MockHttpTTSService``, ``FakeSTTService``). The LLM pushes the frame sequence
``BaseOpenAILLMService`` pushes; the VAD only replaces ``voice_confidence`` so
pipecat's analyzer (buffering, volume, state machine, executor thread) runs.
"""

from __future__ import annotations

import asyncio
import sys
from importlib.metadata import version as _pkg_version

from loguru import logger

# pipecat logs at DEBUG by default; the benchmark runs every framework at WARNING.
logger.remove()
logger.add(sys.stderr, level="WARNING")

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema  # noqa: E402
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema  # noqa: E402
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    EndFrame,
    FunctionCallFromLLM,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    StartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.aggregators.llm_context import LLMContext  # noqa: E402
from pipecat.processors.aggregators.llm_response_universal import (  # noqa: E402
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.services.llm_service import FunctionCallParams, LLMService  # noqa: E402
from pipecat.services.settings import LLMSettings, STTSettings, TTSSettings  # noqa: E402
from pipecat.services.stt_service import STTService  # noqa: E402
from pipecat.services.tts_service import TTSService  # noqa: E402
from pipecat.transports.base_input import BaseInputTransport  # noqa: E402
from pipecat.transports.base_output import BaseOutputTransport  # noqa: E402
from pipecat.transports.base_transport import BaseTransport, TransportParams  # noqa: E402
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy  # noqa: E402
from pipecat.turns.user_turn_strategies import UserTurnStrategies  # noqa: E402
from pipecat.utils.time import time_now_iso8601  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

from harness import workload as W  # noqa: E402

NAME = "pipecat"
DRIVER = "asyncio"


def version() -> str:
    return _pkg_version("pipecat-ai")


async def _sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - asyncio.get_running_loop().time()))


# ---------------------------------------------------------------------- VAD
class EnergyVADAnalyzer(VADAnalyzer):
    """20 ms windows whose confidence is 1.0 when the energy says speech."""

    def num_frames_required(self) -> int:
        return int(self.sample_rate * W.FRAME_S)

    def voice_confidence(self, buffer: bytes) -> float:
        return 1.0 if W.is_speech(buffer) else 0.0


VAD_PARAMS = VADParams(confidence=0.5, start_secs=0.2, stop_secs=0.2, min_volume=0.0)


# ---------------------------------------------------------------------- STT
class ScriptedSTTService(STTService):
    """Swallows audio; one finalized transcript per user turn, when told."""

    def __init__(self) -> None:
        super().__init__(ttfs_p99_latency=W.STT_FINAL_DELAY_S, settings=STTSettings(model=None, language=None))

    def can_generate_metrics(self) -> bool:
        return False

    async def run_stt(self, audio: bytes):
        yield None

    def final_after(self, text: str, delay: float) -> None:
        due = asyncio.get_running_loop().time() + delay
        self.create_task(self._final_at(text, due))

    async def _final_at(self, text: str, due: float) -> None:
        await _sleep_until(due)
        await self.push_frame(TranscriptionFrame(text, "", time_now_iso8601(), finalized=True))


# ---------------------------------------------------------------------- LLM
class ScriptedLLMService(LLMService):
    def __init__(self) -> None:
        unused = dict.fromkeys(
            "system_instruction temperature max_tokens top_p top_k frequency_penalty"
            " presence_penalty seed filter_incomplete_user_turns user_turn_completion_config".split()
        )
        super().__init__(settings=LLMSettings(model="scripted", **unused))

    async def process_frame(self, frame, direction) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            try:
                await self.push_frame(LLMFullResponseStartFrame())
                await self.start_processing_metrics()
                await self._complete(frame.context)
            finally:
                await self.stop_processing_metrics()
                await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)

    async def _complete(self, context: LLMContext) -> None:
        start = asyncio.get_running_loop().time()
        await self.start_ttfb_metrics()
        await _sleep_until(start + W.LLM_TTFT_S)
        await self.stop_ttfb_metrics()
        last = context.get_messages()[-1]
        if last.get("role") == "user" and last.get("content") == W.TOOL_TEXT:
            call = FunctionCallFromLLM(
                function_name=W.TOOL_NAME, tool_call_id=f"call_{id(last)}", arguments={}, context=context
            )
            await self.run_function_calls([call])
            return
        for i, token in enumerate(W.REPLY_TOKENS):
            await _sleep_until(start + W.LLM_TTFT_S + (i + 1) * W.LLM_TOKEN_S)
            await self._push_llm_text(token)


async def lookup_order(params: FunctionCallParams) -> None:
    await params.result_callback(W.TOOL_RESULT)


TOOLS = ToolsSchema(
    standard_tools=[
        FunctionSchema(
            name=W.TOOL_NAME,
            description="Look up the status of the caller's most recent order.",
            properties={},
            required=[],
            handler=lookup_order,
        )
    ]
)


# ---------------------------------------------------------------------- TTS
class ScriptedHttpTTSService(TTSService):
    """HTTP-style TTS: the base class aggregates sentences, run_tts yields audio."""

    def __init__(self, io) -> None:
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            sample_rate=W.OUT_RATE,
            settings=TTSSettings(model=None, voice=None, language=None),
        )
        self._io = io

    def can_generate_metrics(self) -> bool:
        return False

    async def run_tts(self, text: str, context_id: str):
        self._io.tts_request(text)
        await asyncio.sleep(W.TTS_TTFB_S)
        for chunk in W.tts_audio(text):
            yield TTSAudioRawFrame(chunk, W.OUT_RATE, 1, context_id=context_id)


# ---------------------------------------------------------------- transport
class HarnessInputTransport(BaseInputTransport):
    def __init__(self, params: TransportParams, ready: asyncio.Event) -> None:
        super().__init__(params)
        self._ready = ready

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        self._ready.set()

    def feed(self, pcm: bytes) -> None:
        """``push_audio_frame`` without the await: the queue is unbounded."""
        if self._params.audio_in_enabled and not self._paused and self._audio_task:
            self._audio_in_queue.put_nowait(InputAudioRawFrame(pcm, W.IN_RATE, 1))


class HarnessOutputTransport(BaseOutputTransport):
    def __init__(self, params: TransportParams, sink) -> None:
        super().__init__(params)
        self._sink = sink

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def process_frame(self, frame, direction) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame):
            self._sink.clear()  # what the WebSocket serializers ask the client to do

    async def write_audio_frame(self, frame) -> bool:
        await self._sink.write(len(frame.audio) // 2)
        return True


class HarnessTransport(BaseTransport):
    def __init__(self, sink) -> None:
        super().__init__()
        params = TransportParams(
            audio_in_enabled=True,
            audio_in_sample_rate=W.IN_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=W.OUT_RATE,
        )
        self.ready = asyncio.Event()
        self._input = HarnessInputTransport(params, self.ready)
        self._output = HarnessOutputTransport(params, sink)

    def input(self) -> HarnessInputTransport:
        return self._input

    def output(self) -> HarnessOutputTransport:
        return self._output


# ------------------------------------------------------------------ session
class PipecatSession:
    def __init__(self, transport, stt, worker, run_task) -> None:
        self._transport, self._stt, self._worker, self._run = transport, stt, worker, run_task

    def push_audio(self, pcm: bytes) -> None:
        self._transport.input().feed(pcm)

    def end_of_speech(self, transcript: str) -> None:
        self._stt.final_after(transcript, W.STT_FINAL_DELAY_S)

    async def aclose(self) -> None:
        await self._worker.queue_frame(EndFrame())
        await self._run


async def open_session(io) -> PipecatSession:
    transport = HarnessTransport(io.sink)
    stt = ScriptedSTTService()
    llm = ScriptedLLMService()
    tts = ScriptedHttpTTSService(io)
    context = LLMContext(messages=[{"role": "system", "content": W.INSTRUCTIONS}], tools=TOOLS)
    user, assistant = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=EnergyVADAnalyzer(params=VAD_PARAMS),
            user_turn_strategies=UserTurnStrategies(
                stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.0)]
            ),
        ),
    )
    pipeline = Pipeline([transport.input(), stt, user, llm, tts, transport.output(), assistant])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=W.IN_RATE, audio_out_sample_rate=W.OUT_RATE),
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    run_task = asyncio.create_task(runner.run())
    ready = asyncio.create_task(transport.ready.wait())
    await asyncio.wait([ready, run_task], return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():  # the runner ended before the transport came up
        ready.cancel()
        await run_task
        raise RuntimeError("pipecat pipeline stopped before its transport was ready")
    return PipecatSession(transport, stt, worker, run_task)
