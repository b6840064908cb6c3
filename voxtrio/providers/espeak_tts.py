"""EspeakTTS: libespeak-ng through ctypes, the light fallback voice.

The library and its data ship in ``espeakng-loader`` (libespeak-ng 1.52), so
this needs no apt package; Debian's ``libespeak-ng1`` works too (pass
``library=`` and ``data_dir=``). It is robotic but renders a sentence in a
few milliseconds, and it reports where each word is in the audio, so the
session knows exactly which words were heard when the user cuts it off
(``aligned_transcript``).

libespeak-ng keeps all its state in process globals (voice, rate, the
callback), so every EspeakTTS in a process shares one library handle and one
lock, and each render sets its voice and rate again under that lock. It runs
in synchronous mode: ``espeak_Synth`` returns once the text is rendered,
having called our callback with the audio and the word events.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np
import trio

from ..audio import AudioFrame
from .threads import run_in_worker
from ..options import APIConnectOptions
from .base import DEFAULT_CONN_OPTIONS, TTS, SynthesizedAudio, TimedWord, TTSCapabilities
from .packaged_models import LocalModelError, package_dir

_PURPOSE = "The espeak-ng TTS"

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # without it the library calls exit() on a bad data path
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH = 1, 3
_EVENT_LIST_TERMINATED, _EVENT_WORD = 0, 1


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character offset in the text
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds from the start of the call
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def bundled_library() -> tuple[Path, Path]:
    """(libespeak-ng, espeak-ng-data) inside espeakng-loader."""
    root = package_dir("espeakng_loader", "espeakng-loader", _PURPOSE)
    libraries = sorted(root.glob("libespeak-ng.so*")) + sorted(root.glob("libespeak-ng*.dylib"))
    data = root / "espeak-ng-data"
    if not libraries or not data.is_dir():
        raise LocalModelError(f"espeakng-loader at {root} has no libespeak-ng library or data")
    return libraries[0], data


class _Library:
    """One dlopen'ed libespeak-ng: its lock, its sample rate, and what the callback collects."""

    def __init__(self, library: Path, data: Path) -> None:
        try:
            lib = ctypes.CDLL(str(library))
        except OSError as error:
            raise LocalModelError(f"cannot load {library}: {error}") from error
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_Callback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        # The path given is the directory that contains espeak-ng-data.
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 100, str(data.parent).encode(), _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise LocalModelError(f"espeak_Initialize failed ({rate}) with the data in {data}")
        self.lib = lib
        self.sample_rate = rate
        self.lock = threading.Lock()
        self.buffers: list[np.ndarray] = []
        self.words: list[tuple[int, int, int]] = []  # (character offset, length, sample)
        self.callback = _Callback(self._on_audio)  # C keeps a raw pointer: keep the object alive
        lib.espeak_SetSynthCallback(self.callback)

    def _on_audio(self, wav: Any, count: int, events: Any) -> int:
        if wav and count > 0:
            self.buffers.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        index = 0
        while events and events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == _EVENT_WORD:
                sample = event.audio_position * self.sample_rate // 1000
                self.words.append((event.text_position - 1, event.length, sample))
            index += 1
        return 0


@functools.lru_cache(maxsize=None)
def _open(library: Path, data: Path) -> _Library:
    # dlopen returns the same handle for the same file, so its init and lock are shared too.
    return _Library(library, data)


class EspeakTTS(TTS):
    capabilities = TTSCapabilities(streaming=False, aligned_transcript=True)

    def __init__(
        self,
        *,
        voice: str = "en-us",
        rate_wpm: int = 175,
        pitch: int = 50,
        library: str | Path | None = None,
        data_dir: str | Path | None = None,
        chunk_duration: float = 0.1,
    ) -> None:
        if library is None or data_dir is None:
            default_library, default_data = bundled_library()
            library, data_dir = library or default_library, data_dir or default_data
        self._library = _open(Path(library).resolve(), Path(data_dir).resolve())
        self.sample_rate = self._library.sample_rate
        self.num_channels = 1
        self.voice = voice
        self.rate_wpm = rate_wpm
        self.pitch = pitch
        self._chunk_samples = max(1, int(self.sample_rate * chunk_duration))
        self._limiter = trio.CapacityLimiter(1)
        with self._library.lock:
            self._configure()  # an unknown voice fails here, not on the first sentence

    def _configure(self) -> None:
        lib = self._library.lib
        if lib.espeak_SetVoiceByName(self.voice.encode()) != 0:
            raise LocalModelError(f"espeak-ng has no voice {self.voice!r}")
        lib.espeak_SetParameter(_PARAM_RATE, self.rate_wpm, 0)
        lib.espeak_SetParameter(_PARAM_PITCH, self.pitch, 0)

    def render(self, text: str) -> tuple[np.ndarray, list[TimedWord]]:
        """Speak ``text`` (blocking): int16 samples and when each word is heard."""
        data = text.encode("utf-8") + b"\0"
        library = self._library
        with library.lock:
            library.buffers, library.words = [], []
            self._configure()
            error = library.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            buffers, marks = library.buffers, library.words
            library.buffers, library.words = [], []
        if error != 0:
            raise LocalModelError(f"espeak_Synth failed with error {error}")
        samples = np.concatenate(buffers).astype(np.int16, copy=False) if buffers else np.zeros(0, np.int16)
        encoded = text.encode("utf-8")
        words = []
        for position, (offset, length, sample) in enumerate(marks):
            following = marks[position + 1][2] if position + 1 < len(marks) else len(samples)
            word = encoded[offset : offset + length].decode("utf-8", errors="ignore")
            words.append(
                TimedWord(text=word, start=sample / self.sample_rate, end=max(sample, following) / self.sample_rate)
            )
        return samples, words

    async def synthesize(
        self,
        text: str,
        audio: trio.MemorySendChannel[SynthesizedAudio],
        *,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        samples, words = await run_in_worker(self.render, text, limiter=self._limiter)
        step = self._chunk_samples
        for start in range(0, len(samples), step):
            begin, end = start / self.sample_rate, min(len(samples), start + step) / self.sample_rate
            # Each word goes with the chunk in which it starts; times are relative to that chunk.
            chunk_words = tuple(
                TimedWord(text=w.text, start=w.start - begin, end=w.end - begin)
                for w in words
                if begin <= w.start < end or (start == 0 and w.start < begin)
            )
            chunk = np.ascontiguousarray(samples[start : start + step])
            await audio.send(SynthesizedAudio(frame=AudioFrame(chunk, self.sample_rate), words=chunk_words))
