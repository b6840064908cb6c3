"""SileroVAD: Silero VAD v6 (ONNX) on onnxruntime, streaming, one state per call.

The model file is the one faster-whisper ships (``faster_whisper/assets/
silero_vad_v6.onnx``), so ``voxtrio[local]`` needs no separate VAD package and
no torch. The network scores 512-sample windows (32 ms at 16 kHz), each fed
with the last 64 samples of the previous window ("context") and an LSTM state
that carries over; pipeline frames (20 ms) are buffered into windows, and all
complete windows of a push go through in one call (the rows of one input are
consecutive windows of one stream, not a batch).

Inference runs on the trio thread. Measured here (bench/offline/vad_inline.py,
load 1.7 on two cores): 0.2 ms per 20 ms frame at the median, 1.1 ms at p99,
7 ms at worst, about 1 % of the event loop's time; a worker-thread round trip
costs 0.46 ms, more than the inference itself. The worst stall is a third of
a frame and a thirtieth of the Speaker's 200 ms lead, so the VAD stays inline.
The recurrent state lives in the ``run`` call, so one SileroVAD serves any
number of sessions.

Two layouts of the same network are accepted (told apart by input names):
``input``/``h``/``c`` (faster-whisper's v6 file, and silero-vad's
``silero_vad_16k_sequence.onnx``) and ``input``/``state``/``sr`` (silero-vad's
default ``silero_vad.onnx``, one window per call).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import trio

from ..audio import PIPELINE_SAMPLE_RATE, AudioFrame
from ..errors import AudioFormatError
from .base import VADEvent
from .base import VAD, VADCapabilities
from .packaged_models import LazyModel, LocalModelError, bundled_file, offline_environment, require_module

WINDOW = 512
CONTEXT = 64
STATE_SIZE = 128
_PURPOSE = "The Silero VAD"


def default_model_path() -> Path:
    """Silero v6 inside faster-whisper."""
    return bundled_file("faster_whisper", "faster-whisper", "assets/silero_vad_v6.onnx", _PURPOSE)


class _SileroModel:
    """An onnxruntime session over one of the two Silero file layouts."""

    def __init__(self, path: Path, threads: int) -> None:
        ort = require_module("onnxruntime", "onnxruntime", _PURPOSE)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # the Silero files trigger harmless initializer warnings
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime has its own exception hierarchy
            raise LocalModelError(f"cannot load the Silero VAD model {path}: {error}") from error
        names = {i.name for i in self.session.get_inputs()}
        if {"input", "h", "c"} <= names:
            self.layout = "hc"
        elif {"input", "state"} <= names:
            self.layout = "state"
            self.needs_sr = "sr" in names
        else:
            raise LocalModelError(f"{path} has inputs {sorted(names)}: not a Silero VAD model")

    def initial_state(self) -> tuple[np.ndarray, ...]:
        if self.layout == "hc":
            return (np.zeros((1, 1, STATE_SIZE), np.float32), np.zeros((1, 1, STATE_SIZE), np.float32))
        return (np.zeros((2, 1, STATE_SIZE), np.float32),)

    def score(self, rows: np.ndarray, state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Speech probabilities of consecutive windows ``rows`` [n, 576], and the next state."""
        if self.layout == "hc":
            probs, h, c = self.session.run(None, {"input": rows, "h": state[0], "c": state[1]})
            return np.asarray(probs, np.float32).reshape(-1), (h, c)
        out = np.empty(len(rows), np.float32)
        (s,) = state
        feed: dict[str, Any] = {}
        if self.needs_sr:
            feed["sr"] = np.array(PIPELINE_SAMPLE_RATE, np.int64)
        for index in range(len(rows)):
            feed["input"], feed["state"] = rows[index : index + 1], s
            prob, s = self.session.run(None, feed)
            out[index] = np.asarray(prob).reshape(-1)[0]
        return out, (s,)


@attrs.frozen
class _Window:
    start: float
    end: float
    probability: float


class _WindowStream:
    """Buffers 16 kHz audio into 512-sample windows and scores them, keeping the LSTM state."""

    def __init__(self, model: _SileroModel, origin: float) -> None:
        self._model = model
        self._state = model.initial_state()
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self._origin = origin
        self._windows = 0

    def push(self, pcm: np.ndarray) -> list[_Window]:
        samples = pcm.astype(np.float32) * np.float32(1 / 32768)
        if len(self._pending):
            samples = np.concatenate([self._pending, samples])
        count = len(samples) // WINDOW
        self._pending = samples[count * WINDOW :]
        if count == 0:
            return []
        windows = samples[: count * WINDOW].reshape(count, WINDOW)
        rows = np.empty((count, CONTEXT + WINDOW), np.float32)
        rows[:, CONTEXT:] = windows
        rows[0, :CONTEXT] = self._context
        rows[1:, :CONTEXT] = windows[:-1, -CONTEXT:]
        self._context = windows[-1, -CONTEXT:].copy()
        probabilities, self._state = self._model.score(rows, self._state)
        first = self._windows
        self._windows += count
        step = WINDOW / PIPELINE_SAMPLE_RATE
        return [
            _Window(self._origin + (first + i) * step, self._origin + (first + i + 1) * step, float(p))
            for i, p in enumerate(probabilities)
        ]


class SileroVAD(VAD):
    """Voice activity from Silero's speech probability, with hysteresis.

    Speech starts once windows at or above ``activation_threshold`` have lasted
    ``min_speech_duration``; it ends once windows below
    ``deactivation_threshold`` have lasted ``min_silence_duration``.
    """

    def __init__(
        self,
        *,
        min_speech_duration: float = 0.05,
        min_silence_duration: float = 0.55,
        activation_threshold: float = 0.5,
        deactivation_threshold: float | None = None,
        model_path: str | Path | None = None,
        threads: int = 1,
    ) -> None:
        deactivation = activation_threshold - 0.15 if deactivation_threshold is None else deactivation_threshold
        if not 0.0 <= deactivation <= activation_threshold <= 1.0:
            raise ValueError("need 0 <= deactivation_threshold <= activation_threshold <= 1")
        offline_environment()
        path = Path(model_path) if model_path is not None else default_model_path()
        require_module("onnxruntime", "onnxruntime", _PURPOSE)
        self.min_speech_duration = min_speech_duration
        self.min_silence_duration = min_silence_duration
        self.activation_threshold = activation_threshold
        self.deactivation_threshold = deactivation
        self.model_path = path
        self.capabilities = VADCapabilities(update_interval=WINDOW / PIPELINE_SAMPLE_RATE)
        self._model = LazyModel(lambda: _SileroModel(path, threads))

    def load(self) -> None:
        """Load the model now (a few ms) instead of on the first frame."""
        self._model.get()

    async def run(
        self,
        frames: trio.MemoryReceiveChannel[AudioFrame],
        events: trio.MemorySendChannel[VADEvent],
    ) -> None:
        model = self._model.get()
        stream: _WindowStream | None = None
        gate = _SpeechGate(self)
        async for frame in frames:
            if not len(frame.data):
                continue
            if frame.sample_rate != PIPELINE_SAMPLE_RATE or frame.num_channels != 1:
                raise AudioFormatError(
                    f"SileroVAD needs mono {PIPELINE_SAMPLE_RATE} Hz frames, got "
                    f"{frame.num_channels} channel(s) at {frame.sample_rate} Hz"
                )
            if stream is None:
                stream = _WindowStream(model, frame.timestamp or 0.0)
            started = time.perf_counter()
            windows = stream.push(frame.data)
            inference = time.perf_counter() - started
            for window in windows:
                for event in gate.update(window, inference):
                    await events.send(event)


class _SpeechGate:
    """Hysteresis over window probabilities; the per-stream part of a SileroVAD."""

    def __init__(self, vad: SileroVAD) -> None:
        self.vad = vad
        self.speaking = False
        self.speech_start = 0.0
        self.candidate: float | None = None  # start of the run that may flip the state
        self.last_voiced = 0.0

    def update(self, window: _Window, inference: float) -> list[VADEvent]:
        vad = self.vad
        voiced = window.probability >= (vad.deactivation_threshold if self.speaking else vad.activation_threshold)
        if not self.speaking:
            if not voiced:
                self.candidate = None
                return []
            if self.candidate is None:
                self.candidate = window.start
            if window.end - self.candidate < vad.min_speech_duration - 1e-9:
                return []
            self.speaking, self.speech_start, self.candidate = True, self.candidate, None
            self.last_voiced = window.end
            return [self._event("start_of_speech", window, inference)]
        if voiced:
            self.candidate = None
            self.last_voiced = window.end
            return [self._event("inference", window, inference)]
        if self.candidate is None:
            self.candidate = window.start
        if window.end - self.candidate >= vad.min_silence_duration - 1e-9:
            self.speaking, self.candidate = False, None
            return [self._event("end_of_speech", window, inference)]
        return [self._event("inference", window, inference)]

    def _event(self, kind: Any, window: _Window, inference: float) -> VADEvent:
        silence = window.end - self.last_voiced
        return VADEvent(
            kind=kind,
            timestamp=window.end,
            speech_duration=self.last_voiced - self.speech_start,
            silence_duration=silence,
            speaking=self.speaking,
            probability=window.probability,
            inference_duration=inference,
            raw_accumulated_silence=silence,
        )
