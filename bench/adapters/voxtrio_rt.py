"""voxtrio driven through its public API, with its real actors in the path.

One ``voxtrio.AgentSession`` per call, run by ``session.main(agent, transport)``
in the call's nursery: transport -> AudioIn -> VAD + Recognizer -> Turn ->
Planner (LLM, the tool) -> Speaker (non-streaming TTS, one request per
sentence as voxtrio's own splitter cuts them) -> the transport's AudioOutput.

The fakes implement voxtrio's provider protocols (``voxtrio.providers.base``)
with the workload's timing:

* VAD: voxtrio's own ``EnergyVAD`` configured to the spec: a fixed RMS
  threshold of 500, 0.2 s of speech to start, 0.2 s of silence to stop;
* STT: streaming, consumes every frame, one FINAL 100 ms after the harness
  says the user's last speech frame was fed, no interims;
* LLM: TTFT 150 ms, then the 40 tokens 10 ms apart; the tool turn returns one
  ``lookup_order`` call after TTFT and no text;
* TTS: non-streaming, 100 ms to first byte, then the sentence's 20 ms chunks.

Settings are the spec's equalised ones: ``turn_detection="vad"``,
``min_endpointing_delay=0``, ``min_interruption_duration=0.2``, no
false-interruption resume, no preemptive generation, no AEC warm-up; the rest
are voxtrio's defaults (text transforms included), as the peers keep theirs.
"""

from __future__ import annotations

import itertools
from importlib.metadata import version as _pkg_version

import numpy as np
import trio

import voxtrio
from voxtrio.audio import AudioFrame
from voxtrio.messages import STTEvent
from voxtrio.providers.base import (
    LLM,
    STT,
    TTS,
    STTCapabilities,
    SynthesizedAudio,
    ToolCallChunk,
    TTSCapabilities,
)
from voxtrio.providers.energy_vad import EnergyVAD
from voxtrio.transports.base import AudioOutput, Transport

from harness import workload as W

NAME = "voxtrio"
DRIVER = "trio"

SESSION_OPTIONS = dict(
    turn_detection="vad",
    min_endpointing_delay=0.0,
    max_endpointing_delay=3.0,
    min_interruption_duration=W.MIN_INTERRUPTION_S,
    resume_false_interruption=False,
    preemptive_generation=False,
    aec_warmup_duration=None,
)


def version() -> str:
    return _pkg_version("voxtrio")


def server_ready() -> None:
    """As voxtrio's server commands do before their first call (voxtrio/collector.py)."""
    voxtrio.tune_collector_for_calls()


def bench_vad() -> EnergyVAD:
    """voxtrio's EnergyVAD with the spec's rules (RMS > 500, 10 frames on, 10 off)."""
    return EnergyVAD(
        threshold=W.VAD_RMS_THRESHOLD,
        min_speech_duration=W.VAD_START_FRAMES * W.FRAME_S,
        min_silence_duration=W.VAD_STOP_FRAMES * W.FRAME_S,
    )


# The fake TTS's audio as voxtrio frames, built once (frames are immutable).
_TTS_FRAMES = tuple(
    AudioFrame(np.frombuffer(chunk, np.int16), W.OUT_RATE) for chunk in W.TTS_CHUNKS
)


# ---------------------------------------------------------------------- STT
class BenchSTT(STT):
    """Streaming; swallows the audio; one FINAL per user turn, when told."""

    capabilities = STTCapabilities(streaming=True, interim_results=False)

    def __init__(self) -> None:
        self._due_send, self._due = trio.open_memory_channel[tuple[float, str]](16)

    def final_after(self, text: str, delay: float) -> None:
        self._due_send.send_nowait((trio.current_time() + delay, text))

    async def stream(self, frames, events, *, language=None, conn_options=None) -> None:
        async def consume() -> None:
            async for _ in frames:  # a real recognizer would upload this audio
                pass
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            async for due, text in self._due:
                await trio.sleep_until(due)
                await events.send(STTEvent(kind="final", text=text, language="en"))


# ---------------------------------------------------------------------- LLM
class BenchLLM(LLM):
    model = "scripted-call-v1"

    def __init__(self) -> None:
        self._ids = itertools.count()

    async def chat(self, *, chat_ctx, tools, tool_choice, output, conn_options=None) -> None:
        start = trio.current_time()
        await trio.sleep_until(start + W.LLM_TTFT_S)
        last = chat_ctx.items[-1]
        if last.type == "message" and last.role == "user" and last.content == W.TOOL_TEXT:
            await output.send(ToolCallChunk(name=W.TOOL_NAME, arguments="{}", call_id=f"call_{next(self._ids)}"))
            return
        for i, token in enumerate(W.REPLY_TOKENS):
            await trio.sleep_until(start + W.LLM_TTFT_S + (i + 1) * W.LLM_TOKEN_S)
            await output.send(token)


# ---------------------------------------------------------------------- TTS
class BenchTTS(TTS):
    """Non-streaming ("HTTP") TTS: voxtrio feeds it one sentence at a time."""

    capabilities = TTSCapabilities(streaming=False)
    sample_rate = W.OUT_RATE
    num_channels = 1

    def __init__(self, io) -> None:
        self._io = io

    async def synthesize(self, text, audio, *, conn_options=None) -> None:
        self._io.tts_request(text)
        await trio.sleep(W.TTS_TTFB_S)
        for frame in _TTS_FRAMES[: W.tts_chunk_count(text)]:
            await audio.send(SynthesizedAudio(frame=frame))


# ----------------------------------------------------------------------- IO
class HarnessAudioOutput(AudioOutput):
    """The harness's playout device as a voxtrio AudioOutput (200 ms buffer,
    cannot pause: false-interruption resume is off anyway)."""

    sample_rate = W.OUT_RATE
    can_pause = False
    buffer_duration = W.SINK_BUFFER_S

    def __init__(self, sink) -> None:
        self._sink = sink

    async def write(self, frame: AudioFrame) -> None:
        await self._sink.write(frame.samples_per_channel)

    def clear(self) -> None:
        self._sink.clear()


class HarnessTransport(Transport):
    """The harness pushes 20 ms frames from its one ticker task; each is
    converted and fanned out right there (inline input), as a network
    transport's reading task does."""

    inline_input = True  # AudioIn's work runs in the reading task (transports/base.py)

    def __init__(self, sink) -> None:
        self.audio_output = HarnessAudioOutput(sink)
        self._frames: trio.MemorySendChannel[AudioFrame] | None = None
        self._ended = trio.Event()
        self.dropped = 0

    async def read_audio(self, frames) -> None:
        self._frames = frames
        await self._ended.wait()

    def push(self, pcm: bytes) -> None:
        if self._frames is None:
            self.dropped += 1
            return
        try:
            self._frames.send_nowait(AudioFrame(np.frombuffer(pcm, np.int16), W.IN_RATE))
        except trio.WouldBlock:
            self.dropped += 1

    def end_input(self) -> None:
        self._ended.set()


# ------------------------------------------------------------------ session
class OrderAgent(voxtrio.Agent):
    def __init__(self) -> None:
        super().__init__(instructions=W.INSTRUCTIONS)

    @voxtrio.function_tool
    async def lookup_order(self) -> str:
        """Look up the status of the caller's most recent order."""
        return W.TOOL_RESULT


class VoxtrioSession:
    def __init__(self, session: voxtrio.AgentSession, transport: HarnessTransport, stt: BenchSTT) -> None:
        self._session, self._transport, self._stt = session, transport, stt

    def push_audio(self, pcm: bytes) -> None:
        self._transport.push(pcm)

    def end_of_speech(self, transcript: str) -> None:
        self._stt.final_after(transcript, W.STT_FINAL_DELAY_S)

    async def aclose(self) -> None:
        await self._session.aclose()
        self._transport.end_input()


async def open_session(io) -> VoxtrioSession:
    stt = BenchSTT()
    session = voxtrio.AgentSession(
        vad=bench_vad(), stt=stt, llm=BenchLLM(), tts=BenchTTS(io), **SESSION_OPTIONS
    )
    transport = HarnessTransport(io.sink)
    await io.nursery.start(session.main, OrderAgent(), transport)
    return VoxtrioSession(session, transport, stt)


def dropped_input(session: VoxtrioSession) -> int:
    return session._transport.dropped
