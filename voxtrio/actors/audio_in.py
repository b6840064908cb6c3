"""AudioIn: reads the transport's audio and fans it out to the listeners.

Whatever the transport sends (any rate from 8 to 192 kHz, any channel count,
any frame size) becomes the pipeline format: mono int16 at 16 kHz in 20 ms
frames, resampled with soxr, stamped with audio time (seconds of audio since
the input began, the clock endpointing is measured on).

A resampler's filter needs audio from after the sample it outputs, so it
holds input back: soxr's default (HQ) setting holds up to 114 ms of 8 kHz
input and 37-39 ms of 44.1/48 kHz input, and every reply would be that much
later. Its low-latency setting (LQ: a shorter filter; measured here, the
top sixth of the band, 3-3.6 kHz of 8 kHz input, is about 4 dB down, and
aliasing stays 53-62 dB down) holds 61 ms and 20-22 ms. What is held back at
any moment is published as ``SessionState.input_delay`` and reported in the
eou metrics (``input_delay``), since the audio clock cannot see it.

Each outgoing link declares what happens when its reader is slow:

* recognizer: a deep buffer (10 s); beyond it frames are dropped, counted in
  ``dropped["recognizer"]`` and reported with an ``error`` event, never silently;
* VAD: drop newest, counted in ``dropped["vad"]`` (VAD state recovers by itself).
  A VAD cheap enough to run inline (``VAD.detector()``, the energy VAD) is run
  here instead, and its events go to the Turn actor (and a segmented
  recognizer), dropped and counted the same way if they fall 256 behind;
* recorder: drop newest, counted in ``dropped["recorder"]``.

None of them can stall the others: AudioIn never waits on a listener.
"""

from __future__ import annotations

from typing import Any, Sequence, assert_never

import numpy as np
import trio

from ..audio import FRAME_DURATION, PIPELINE_SAMPLE_RATE, AudioFrame
from ..errors import AudioFormatError, ProviderOutputError, describe_error
from ..events import ErrorEvent, EventBus
from ..links import TRANSPORT_INPUT, FrameLink, RecognizerAudio, StreamedAudio, SupervisorLink, TurnLink
from ..messages import (
    AudioInMessage,
    CloseRequested,
    InputEnded,
    ListenWith,
    ProviderFailed,
    RecordAudio,
    SetAudioInput,
    SetRecognizerMuted,
    VADEvent,
)
from ..providers.base import VADDetector
from ..state import SessionState
from ..transports.base import Transport, TransportDisconnected

# soxr's low-latency setting (see the module docstring).
RESAMPLER_QUALITY = "LQ"


class PipelineConverter:
    """Any PCM to mono int16 pipeline frames of a fixed size.

    Keeps a streaming resampler per input format, so a transport may change
    rate mid-stream (a new resampler starts; the old one is flushed).
    """

    def __init__(
        self, *, sample_rate: int = PIPELINE_SAMPLE_RATE, frame_duration: float = FRAME_DURATION
    ) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = int(round(sample_rate * frame_duration))
        self._resampler: Any = None
        self._input_rate: int | None = None
        self._pending = np.zeros(0, np.int16)
        self._audio_time = 0.0
        self._input_time = 0.0

    @property
    def delay(self) -> float:
        """Seconds of input received but not yet out in frames."""
        return max(0.0, self._input_time - self._audio_time)

    def push(self, frame: AudioFrame) -> list[AudioFrame]:
        if not isinstance(frame, AudioFrame):
            raise AudioFormatError(f"the transport sent {type(frame).__name__}, not an AudioFrame")
        self._input_time += frame.duration
        samples = frame.data
        if frame.num_channels > 1:
            samples = (
                samples.reshape(-1, frame.num_channels).astype(np.int32).mean(axis=1).astype(np.int16)
            )
        if frame.sample_rate != self.sample_rate:
            samples = self._resample(samples, frame.sample_rate)
        elif self._resampler is not None:
            samples = np.concatenate([self._flush_resampler(), samples])
        return self._frames(samples)

    def _resample(self, samples: np.ndarray, rate: int) -> np.ndarray:
        import soxr

        prefix = np.zeros(0, np.int16)
        if rate != self._input_rate:
            prefix = self._flush_resampler()
            self._resampler = soxr.ResampleStream(rate, self.sample_rate, 1, dtype="int16", quality=RESAMPLER_QUALITY)
            self._input_rate = rate
        out = self._resampler.resample_chunk(samples)
        return np.concatenate([prefix, out]) if len(prefix) else out

    def _flush_resampler(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, np.int16)
        tail = self._resampler.resample_chunk(np.zeros(0, np.int16), last=True)
        self._resampler = None
        self._input_rate = None
        return tail

    def _frames(self, samples: np.ndarray) -> list[AudioFrame]:
        if len(samples):
            self._pending = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        frames = []
        size = self.frame_samples
        while len(self._pending) >= size:
            chunk, self._pending = self._pending[:size], self._pending[size:]
            frames.append(AudioFrame(np.ascontiguousarray(chunk), self.sample_rate, 1, self._audio_time))
            self._audio_time += size / self.sample_rate
        return frames

    def flush(self) -> list[AudioFrame]:
        tail = self._flush_resampler()
        frames = self._frames(tail)
        if len(self._pending):
            padded = np.zeros(self.frame_samples, np.int16)
            padded[: len(self._pending)] = self._pending
            self._pending = np.zeros(0, np.int16)
            frames += self._frames(padded)
        return frames


class AudioIn:
    def __init__(
        self,
        *,
        transport: Transport,
        bus: EventBus,
        inbox: trio.MemoryReceiveChannel[AudioInMessage],
        supervisor: SupervisorLink,
        vad: FrameLink | None = None,
        recognizer: RecognizerAudio | None = None,
        recorder: trio.MemorySendChannel[RecordAudio] | None = None,
        turn: TurnLink | None = None,
        vad_detector: VADDetector | None = None,
        vad_events: Sequence[trio.MemorySendChannel[VADEvent]] = (),
        flush_recognizer: bool = False,
        state: SessionState | None = None,
        realtime: FrameLink | None = None,
    ) -> None:
        self._transport = transport
        self._bus = bus
        self._inbox = inbox
        self._supervisor = supervisor
        self._vad = vad
        self._recognizer = recognizer
        self._recorder = recorder
        self._turn = turn
        # An inline VAD (see VAD.detector): decided here, its events sent on.
        self._detector = vad_detector
        self._vad_events = list(vad_events)
        # At the end of the input, ask the (streaming) recognizer for its last words.
        self._flush_recognizer = flush_recognizer
        self._state = state
        self.dropped = {"vad": 0, "recognizer": 0, "recorder": 0}
        self._converter = PipelineConverter()
        self._enabled = True
        self._recognizer_muted = False
        # The RealtimeLink's audio, and whether it hears the user (ListenWith)
        # instead of the VAD and the recognizer.
        self._realtime = realtime
        self._to_realtime = False
        # What AudioIn's own code raised while a transport's task ran it inline
        # (InlineInput): re-raised here, as if it had run in AudioIn's task.
        self._inline_failure: BaseException | None = None
        # False once run() has left its input loop: InlineInput refuses frames then
        self._accepting = True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        send, receive = trio.open_memory_channel[AudioFrame](TRANSPORT_INPUT)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_transport, send)
            nursery.start_soon(self._read_control)
            task_status.started()
            try:
                async for frame in receive:
                    self._take(frame)
            finally:
                self._accepting = False
            if self._inline_failure is not None:
                raise self._inline_failure
            for pipeline_frame in self._converter.flush():
                self._fan_out(pipeline_frame)
            if self._flush_recognizer and self._recognizer is not None:
                # A streaming recognizer may hold its last words until asked.
                self._offer("recognizer", self._recognizer, AudioFrame(np.zeros(0, np.int16), PIPELINE_SAMPLE_RATE))
                if self._turn is not None:
                    self._turn.send_nowait(InputEnded())
            nursery.cancel_scope.cancel()
        for link in (self._vad, self._recognizer, self._realtime):
            if link is not None:
                link.close()

    def _take(self, frame: Any) -> None:
        """Convert one transport frame and fan the pipeline frames out (never waits)."""
        try:
            if not isinstance(frame, AudioFrame):
                raise ProviderOutputError(
                    f"the transport sent {type(frame).__name__}, not an AudioFrame", output=frame
                )
            pipeline_frames = self._converter.push(frame)
        except (AudioFormatError, ProviderOutputError) as error:
            # The transport's bug: reported, the item dropped, the call goes on.
            self._bus.emit(ErrorEvent(source="transport", message=str(error), recoverable=True, error=error))
            return
        if self._state is not None:
            self._state.input_delay = self._converter.delay
        for pipeline_frame in pipeline_frames:
            self._fan_out(pipeline_frame)

    async def _read_control(self) -> None:
        async for message in self._inbox:
            match message:
                case SetRecognizerMuted():
                    self._recognizer_muted = message.muted
                case SetAudioInput():
                    self._enabled = message.enabled
                case ListenWith():
                    self._to_realtime = message.realtime and self._realtime is not None
                case _:
                    assert_never(message)

    async def _read_transport(self, send: trio.MemorySendChannel[AudioFrame]) -> None:
        # Closed without a checkpoint: once the input ends, run() cancels this
        # task, and a checkpoint on the way out would let that cancellation
        # replace the transport's error.
        frames: trio.MemorySendChannel[AudioFrame] | InlineInput = send
        if getattr(self._transport, "inline_input", False):
            frames = InlineInput(self)
        with send:
            try:
                await self._transport.read_audio(frames)  # type: ignore[arg-type]
            except Exception as error:
                if self._inline_failure is not None:
                    pass  # AudioIn's own code failed in the transport's task: run() raises it
                elif isinstance(error, TransportDisconnected):
                    self._supervisor.send_nowait(CloseRequested(reason="participant_disconnected", drain=False))
                else:
                    self._bus.emit(
                        ErrorEvent(source="transport", message=describe_error(error), recoverable=False, error=error)
                    )
                    self._supervisor.send_nowait(CloseRequested(reason="error", drain=False, error=error))

    def _fan_out(self, frame: AudioFrame) -> None:
        if not self._enabled:
            return
        if self._to_realtime:
            assert self._realtime is not None
            self._offer("recognizer", self._realtime, self._muted(frame))
        elif self._recognizer is not None:
            self._offer("recognizer", self._recognizer, self._muted(frame))
        if self._vad is not None and not self._to_realtime:
            self._offer("vad", self._vad, frame)
        if self._detector is not None and not self._to_realtime:
            self._detect(frame)
        if self._recorder is not None:
            self._offer("recorder", self._recorder, RecordAudio("user", frame))

    def _muted(self, frame: AudioFrame) -> AudioFrame:
        """What the recognizer (or the realtime model) hears: silence while muted."""
        if self._recognizer_muted:
            return AudioFrame(np.zeros_like(frame.data), frame.sample_rate, 1, frame.timestamp)
        return frame

    def _detect(self, frame: AudioFrame) -> None:
        assert self._detector is not None
        try:
            events = self._detector.push(frame)
        except Exception as error:
            # As the VAD actor does for a provider that fails: fatal for the session.
            self._detector = None
            self._bus.emit(ErrorEvent(source="vad", message=describe_error(error), recoverable=False, error=error))
            self._supervisor.send_nowait(ProviderFailed(source="vad", error=error))
            return
        for event in events:
            for link in self._vad_events:
                self._offer("vad", link, event)

    def _offer(self, link: str, channel: trio.MemorySendChannel[Any] | StreamedAudio, item: Any) -> None:
        try:
            channel.send_nowait(item)
        except trio.WouldBlock:
            self.dropped[link] += 1
            if link == "recognizer" and self.dropped[link] in (1, 10, 100, 1000, 10000):
                self._bus.emit(
                    ErrorEvent(
                        source="stt",
                        message=f"the recognizer fell behind: {self.dropped[link]} audio frames dropped",
                        recoverable=True,
                    )
                )
        except trio.BrokenResourceError:
            pass  # that listener has stopped (its provider failed); the others go on


class InlineInput:
    """What ``read_audio`` sends into when the transport sets ``inline_input``:
    each frame is converted and fanned out by the sending task itself.

    A memory channel to AudioIn costs a task wake-up per frame for a hop that
    buys nothing when the sender already waits on the network: AudioIn's work
    on a frame never waits (every listener's link drops and counts rather than
    block), so it runs in the transport's task, and ``send_nowait`` never
    raises WouldBlock. ``send`` is a checkpoint, as a channel's is.
    Once AudioIn has stopped, a send raises BrokenResourceError, as a channel
    whose reader has gone does; a failure of AudioIn's own code ends the
    transport's input the same way and is raised by AudioIn's task.
    """

    def __init__(self, audio_in: AudioIn) -> None:
        self._audio_in = audio_in
        # the transport closed it (the end of its input)
        self._closed = False

    def send_nowait(self, frame: AudioFrame) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the transport closed its input")
        audio_in = self._audio_in
        if not audio_in._accepting or audio_in._inline_failure is not None:
            raise trio.BrokenResourceError("the session's audio input has stopped")
        try:
            audio_in._take(frame)
        except Exception as error:
            audio_in._inline_failure = error
            raise trio.BrokenResourceError("the session's audio input failed") from error

    async def send(self, frame: AudioFrame) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self.send_nowait(frame)
        await trio.lowlevel.cancel_shielded_checkpoint()

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> InlineInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
