"""LiveKit Agents driven headless, the way its own test suite drives it.

``AgentSession`` runs with no room, worker or server: ``session.input.audio``
is an ``AudioInput`` fed by the harness, ``session.output.audio`` is an
``AudioOutput`` over the harness's playout model, wrapped in a
``TranscriptSynchronizer`` (as RoomIO does by default) whose text goes
nowhere. The fakes are written against the public plugin base classes
(``vad.VADStream``, ``stt.RecognizeStream``, ``llm.LLMStream``,
``tts.ChunkedStream``) in the style of the repo's ``tests/fake_*.py``, but
react to the audio instead of replaying a timeline: the VAD measures energy,
the STT answers when the harness says the user stopped speaking.

The TTS is non-streaming, so the framework wraps it in ``tts.StreamAdapter``
with its blingfire sentence tokenizer, exactly as it would a plain HTTP TTS.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from importlib.metadata import version as _pkg_version

from livekit import rtc
from livekit.agents import (
    NOT_GIVEN,
    Agent,
    AgentSession,
    APIConnectOptions,
    LanguageCode,
    function_tool,
    llm,
    stt,
    tts,
    utils,
    vad,
)
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS
from livekit.agents.voice.io import AudioInput, AudioOutput, AudioOutputCapabilities, TextOutput
from livekit.agents.voice.transcription.synchronizer import TranscriptSynchronizer

from harness import workload as W

NAME = "livekit"
DRIVER = "asyncio"

# Equalised turn-taking (spec table): VAD endpointing with no extra delay,
# VAD interruption after 0.2 s, no preemptive generation.
TURN_HANDLING = {
    "turn_detection": "vad",
    "endpointing": {"mode": "fixed", "min_delay": 0.0, "max_delay": 3.0},
    "interruption": {
        "enabled": True,
        "mode": "vad",
        "min_duration": W.MIN_INTERRUPTION_S,
        "resume_false_interruption": False,
    },
    "preemptive_generation": {"enabled": False},
}


def version() -> str:
    return _pkg_version("livekit-agents")


async def _sleep_until(deadline: float) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, deadline - loop.time()))


# ---------------------------------------------------------------------- VAD
class EnergyVAD(vad.VAD):
    def __init__(self) -> None:
        super().__init__(capabilities=vad.VADCapabilities(update_interval=W.FRAME_S))

    def stream(self) -> vad.VADStream:
        return EnergyVADStream(self)


class EnergyVADStream(vad.VADStream):
    """Energy decision per 20 ms window, with the silero plugin's event semantics.

    As in ``inference/vad.py``: INFERENCE_DONE is sent for every window with the
    state *before* that window is applied; START_OF_SPEECH/END_OF_SPEECH follow
    when the raw speech/silence run reaches 0.2 s. So the window completing
    0.2 s of speech starts speech, and interruption (which LiveKit checks on
    INFERENCE_DONE.speech_duration) triggers one window later. Runs inline.
    """

    async def _main_task(self) -> None:
        step, window_bytes = W.FRAME_S, 2 * W.IN_FRAME_SAMPLES
        speaking = False
        speech_n = silence_n = 0  # published durations, in windows
        raw_speech_n = raw_silence_n = 0
        index = 0
        utterance: list[rtc.AudioFrame] = []
        pending = b""

        async for item in self._input_ch:
            if isinstance(item, self._FlushSentinel):
                speaking, speech_n, silence_n, raw_speech_n, raw_silence_n = False, 0, 0, 0, 0
                utterance, pending = [], b""
                continue
            if not pending and item.samples_per_channel == W.IN_FRAME_SAMPLES:
                data, windows = b"", [item]  # the usual case: one frame = one window
            else:  # re-cut anything else into 20 ms windows
                data = pending + bytes(item.data)
                cut = range(0, len(data) - window_bytes + 1, window_bytes)
                windows = [rtc.AudioFrame(data[o : o + window_bytes], W.IN_RATE, 1, W.IN_FRAME_SAMPLES) for o in cut]
            for frame in windows:
                t = time.perf_counter()
                p = 1.0 if W.is_speech(frame.data) else 0.0
                index += W.IN_FRAME_SAMPLES
                if speaking:
                    speech_n += 1
                else:
                    silence_n += 1
                self._event_ch.send_nowait(
                    vad.VADEvent(
                        type=vad.VADEventType.INFERENCE_DONE,
                        samples_index=index,
                        timestamp=index / W.IN_RATE,
                        speech_duration=speech_n * step,
                        silence_duration=silence_n * step,
                        frames=[frame],
                        probability=p,
                        inference_duration=time.perf_counter() - t,
                        speaking=speaking,
                        raw_accumulated_silence=raw_silence_n * step,
                        raw_accumulated_speech=raw_speech_n * step,
                    )
                )
                if p >= 0.5:
                    raw_speech_n, raw_silence_n = raw_speech_n + 1, 0
                    utterance.append(frame)
                    if not speaking and raw_speech_n >= W.VAD_START_FRAMES:
                        speaking, silence_n, speech_n = True, 0, raw_speech_n
                        self._send_edge(vad.VADEventType.START_OF_SPEECH, index, speech_n, 0, utterance)
                else:
                    raw_silence_n, raw_speech_n = raw_silence_n + 1, 0
                    if not speaking:
                        utterance = []
                    elif raw_silence_n >= W.VAD_STOP_FRAMES:
                        speaking, silence_n = False, raw_silence_n
                        self._send_edge(
                            vad.VADEventType.END_OF_SPEECH,
                            index,
                            max(0, speech_n - raw_silence_n),
                            silence_n,
                            utterance,
                        )
                        speech_n, utterance = 0, []
            pending = data[len(data) - len(data) % window_bytes :]

    def _send_edge(self, type_, index: int, speech_n: int, silence_n: int, frames) -> None:
        self._event_ch.send_nowait(
            vad.VADEvent(
                type=type_,
                samples_index=index,
                timestamp=index / W.IN_RATE,
                speech_duration=speech_n * W.FRAME_S,
                silence_duration=silence_n * W.FRAME_S,
                frames=[rtc.combine_audio_frames(frames)] if frames else [],
                speaking=type_ == vad.VADEventType.START_OF_SPEECH,
            )
        )


# ---------------------------------------------------------------------- STT
class ScriptedSTT(stt.STT):
    """Streaming STT that swallows audio and emits one FINAL per user turn."""

    def __init__(self) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=False))
        self._streams: weakref.WeakSet[ScriptedSTTStream] = weakref.WeakSet()

    async def _recognize_impl(self, buffer, *, language, conn_options) -> stt.SpeechEvent:
        raise NotImplementedError("the benchmark only streams")

    def stream(
        self, *, language=NOT_GIVEN, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> ScriptedSTTStream:
        s = ScriptedSTTStream(stt=self, conn_options=conn_options)
        self._streams.add(s)
        return s

    def final_after(self, text: str, delay: float) -> None:
        for s in list(self._streams):
            s.final_after(text, delay)


class ScriptedSTTStream(stt.RecognizeStream):
    async def _run(self) -> None:
        async for _ in self._input_ch:  # a real STT would upload this audio
            pass

    def final_after(self, text: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self._final, text)

    def _final(self, text: str) -> None:
        if not self._event_ch.closed:
            self._event_ch.send_nowait(
                stt.SpeechEvent(
                    type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                    alternatives=[stt.SpeechData(text=text, language=LanguageCode("en"))],
                )
            )


# ---------------------------------------------------------------------- LLM
class ScriptedLLM(llm.LLM):
    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools=None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls=NOT_GIVEN,
        tool_choice=NOT_GIVEN,
        extra_kwargs=NOT_GIVEN,
    ) -> llm.LLMStream:
        return ScriptedLLMStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class ScriptedLLMStream(llm.LLMStream):
    async def _run(self) -> None:
        start = asyncio.get_running_loop().time()
        await _sleep_until(start + W.LLM_TTFT_S)
        last = self.chat_ctx.items[-1]
        if last.type == "message" and last.role == "user" and last.text_content == W.TOOL_TEXT:
            call = llm.FunctionToolCall(name=W.TOOL_NAME, arguments="{}", call_id=utils.shortuuid("call_"))
            self._send(tool_calls=[call])
            return
        for i, token in enumerate(W.REPLY_TOKENS):
            await _sleep_until(start + W.LLM_TTFT_S + (i + 1) * W.LLM_TOKEN_S)
            self._send(content=token)

    def _send(self, *, content: str | None = None, tool_calls=None) -> None:
        self._event_ch.send_nowait(
            llm.ChatChunk(
                id=str(id(self)),
                delta=llm.ChoiceDelta(role="assistant", content=content, tool_calls=tool_calls or []),
            )
        )


# ---------------------------------------------------------------------- TTS
class ScriptedTTS(tts.TTS):
    """Non-streaming ("HTTP") TTS: one request per sentence, whole audio at once."""

    def __init__(self, io) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False), sample_rate=W.OUT_RATE, num_channels=1
        )
        self.io = io

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return ScriptedChunkedStream(tts=self, input_text=text, conn_options=conn_options)


class ScriptedChunkedStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        self._tts.io.tts_request(self._input_text)
        output_emitter.initialize(
            request_id=utils.shortuuid("tts_"),
            sample_rate=W.OUT_RATE,
            num_channels=1,
            mime_type="audio/pcm",
        )
        await asyncio.sleep(W.TTS_TTFB_S)
        for chunk in W.tts_audio(self._input_text):
            output_emitter.push(chunk)
        output_emitter.flush()


# ----------------------------------------------------------------------- IO
class HarnessAudioInput(AudioInput):
    def __init__(self) -> None:
        super().__init__(label="bench")
        self._ch = utils.aio.Chan[rtc.AudioFrame]()

    async def __anext__(self) -> rtc.AudioFrame:
        return await self._ch.__anext__()

    def push(self, pcm: bytes) -> None:
        self._ch.send_nowait(rtc.AudioFrame(pcm, W.IN_RATE, 1, W.IN_FRAME_SAMPLES))

    def close(self) -> None:
        self._ch.close()


class HarnessAudioOutput(AudioOutput):
    """The harness sink as a LiveKit ``AudioOutput`` (the role RoomIO's track plays).

    ``capture_frame`` is the blocking write; ``flush`` reports the segment
    finished when the modelled device has drained it; ``clear_buffer`` stops
    playback and reports how much of the segment was heard.
    """

    def __init__(self, sink) -> None:
        super().__init__(
            label="bench", capabilities=AudioOutputCapabilities(pause=False), sample_rate=W.OUT_RATE
        )
        self._sink = sink
        self._pushed = 0.0  # seconds captured in the open segment
        self._playing = 0.0  # seconds in the flushed segment still playing
        self._drain: asyncio.TimerHandle | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self._pushed:
            self.on_playback_started(created_at=time.time())
        self._pushed += frame.duration
        await self._sink.write(frame.samples_per_channel)

    def flush(self) -> None:
        super().flush()
        if not self._pushed:
            return
        self._playing, self._pushed = self._pushed, 0.0
        self._drain = self._sink.call_when_drained(self._drained)

    def _drained(self) -> None:
        self._drain = None
        self.on_playback_finished(playback_position=self._playing, interrupted=False)

    def clear_buffer(self) -> None:
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None
            total = self._playing
        elif self._pushed:
            total, self._pushed = self._pushed, 0.0
        else:
            return
        heard = max(0.0, total - self._sink.queued())
        self._sink.clear()
        self.on_playback_finished(playback_position=heard, interrupted=True)


class NullTextOutput(TextOutput):
    def __init__(self) -> None:
        super().__init__(label="bench", next_in_chain=None)

    async def capture_text(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


# ------------------------------------------------------------------ session
class OrderAgent(Agent):
    def __init__(self) -> None:
        super().__init__(instructions=W.INSTRUCTIONS)

    @function_tool
    async def lookup_order(self) -> str:
        """Look up the status of the caller's most recent order."""
        return W.TOOL_RESULT


class LiveKitSession:
    def __init__(self, session, audio_in, stt_, sync) -> None:
        self._session, self._audio_in, self._stt, self._sync = session, audio_in, stt_, sync

    def push_audio(self, pcm: bytes) -> None:
        self._audio_in.push(pcm)

    def end_of_speech(self, transcript: str) -> None:
        self._stt.final_after(transcript, W.STT_FINAL_DELAY_S)

    async def aclose(self) -> None:
        await self._session.aclose()
        await self._sync.aclose()
        self._audio_in.close()


async def open_session(io) -> LiveKitSession:
    stt_ = ScriptedSTT()
    session = AgentSession(
        vad=EnergyVAD(),
        stt=stt_,
        llm=ScriptedLLM(),
        tts=ScriptedTTS(io),
        turn_handling=TURN_HANDLING,
        aec_warmup_duration=None,
    )
    audio_in = HarnessAudioInput()
    sync = TranscriptSynchronizer(
        next_in_chain_audio=HarnessAudioOutput(io.sink), next_in_chain_text=NullTextOutput()
    )
    session.input.audio = audio_in
    session.output.audio = sync.audio_output
    session.output.transcription = sync.text_output
    await session.start(OrderAgent(), record=False)
    return LiveKitSession(session, audio_in, stt_, sync)
