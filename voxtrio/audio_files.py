"""Sound files in and out, through soundfile (libsndfile).

Reading takes whatever libsndfile reads (WAV in every sample format, plain or
extensible headers, FLAC, OGG/Opus and Vorbis, AIFF, ...) as interleaved int16:
integer formats keep their top 16 bits, float ones are clipped to [-1, 1]
and scaled. What voxtrio cannot use is an
:class:`~voxtrio.errors.AudioFormatError` that says what was found: not a
sound file, a sample format libsndfile does not read, a channel count or rate
outside voxtrio's limits (:mod:`voxtrio.audio`), NaN or infinite samples.

Writing picks the format by the file's extension (``.wav``: 16-bit PCM,
``.flac``, ``.ogg``/``.opus``: Opus) and is atomic: a temporary file, then a
rename, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
from typing import Union

import numpy as np
import soundfile
import soxr

from .audio import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioFrame
from .errors import AudioFormatError

PathLike = Union[str, "os.PathLike[str]"]

# The container and sample format each writable extension gets.
WRITABLE_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "OPUS"),
    ".opus": ("OGG", "OPUS"),
}
# The only rates Opus encodes; other audio is resampled to the last.
OPUS_SAMPLE_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)
# Decoded as floats: reading them as int16 through libsndfile would not scale.
_FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE", "VORBIS", "OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III"})
_WAV_FORMAT_NAMES = {0x0001: "integer", 0x0003: "float"}
_WAV_SAMPLE_BITS = {0x0001: (8, 16, 24, 32), 0x0003: (32, 64)}
_WAV_FORMAT_EXTENSIBLE = 0xFFFE
# An extensible header's subformat GUID: the format tag, then these bytes.
_WAV_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")


def read_audio_file(path: PathLike) -> AudioFrame:
    """The whole file as one frame of interleaved int16 samples."""
    try:
        with open(path, "rb") as file:
            content = file.read()
    except OSError as error:
        raise AudioFormatError(f"cannot read {path}: {error.strerror or error}") from None
    return _decode(content, os.fspath(path))


def _decode(content: bytes, name: str) -> AudioFrame:
    try:
        with soundfile.SoundFile(io.BytesIO(content)) as sound:
            channels, rate, subtype = sound.channels, sound.samplerate, sound.subtype
            _check_layout(name, channels, rate)
            floats = subtype in _FLOAT_SUBTYPES
            samples = sound.read(dtype="float64" if floats else "int16", always_2d=True)
    except soundfile.LibsndfileError as error:
        raise AudioFormatError(_unreadable(content, name, error.error_string)) from None
    if not len(samples):
        unfinished = _unfinished_wav(content)
        if unfinished is not None:
            # A recorder that never finished its header (a stream, a crash):
            # libsndfile believes the size field and reads nothing.
            warnings.warn(
                f"{name}: the 'data' chunk says 0 bytes but {unfinished[1]} follow; reading them", stacklevel=3
            )
            return _decode(_with_data_size(content, *unfinished), name)
    if floats:
        if not np.all(np.isfinite(samples)):
            raise AudioFormatError(f"{name}: float samples include NaN or infinity")
        samples = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)
    return AudioFrame(np.ascontiguousarray(samples.reshape(-1)), rate, channels)


def _check_layout(name: str, channels: int, rate: int) -> None:
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioFormatError(f"{name}: {channels} channels, expected 1..{MAX_CHANNELS}")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioFormatError(f"{name}: sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")


def _riff_chunks(content: bytes) -> list[tuple[bytes, int, int]] | None:
    """A WAV file's chunks as (kind, size field, offset of the body); None if not a WAV."""
    if len(content) < 12 or content[:4] not in (b"RIFF", b"RF64") or content[8:12] != b"WAVE":
        return None
    chunks, at = [], 12
    while at + 8 <= len(content):
        kind, size = content[at : at + 4], struct.unpack("<I", content[at + 4 : at + 8])[0]
        chunks.append((kind, size, at + 8))
        at += 8 + size + size % 2
    return chunks


def _unreadable(content: bytes, name: str, reason: str) -> str:
    """What libsndfile could not open, said in terms of what the file holds."""
    chunks = _riff_chunks(content)
    if chunks is None:
        return f"{name} is not a sound file libsndfile reads ({reason})"
    kinds = [kind for kind, _, _ in chunks]
    if b"data" not in kinds:
        return f"{name} is a WAV file with no 'data' chunk ({reason})"
    if b"fmt " not in kinds:
        return f"{name} is a WAV file with no 'fmt ' chunk ({reason})"
    if kinds.index(b"data") < kinds.index(b"fmt "):
        return f"{name}: the WAV 'data' chunk comes before 'fmt ' ({reason})"
    _, size, at = chunks[kinds.index(b"fmt ")]
    body = content[at : at + size]
    if len(body) < 16:
        return f"{name}: the WAV 'fmt ' chunk is {len(body)} bytes, expected at least 16 ({reason})"
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
    try:
        _check_layout(name, channels, rate)
    except AudioFormatError as error:
        return str(error)
    if tag == _WAV_FORMAT_EXTENSIBLE:
        guid = body[24:40]
        if len(guid) < 16 or guid[2:] != _WAV_GUID_TAIL:
            return f"{name}: an extensible WAV whose subformat GUID {guid.hex()} libsndfile does not know ({reason})"
        tag = struct.unpack("<H", guid[:2])[0]
    if bits in _WAV_SAMPLE_BITS.get(tag, ()):
        return f"{name}: a malformed WAV file ({reason})"
    kind = _WAV_FORMAT_NAMES.get(tag, f"format 0x{tag:04x}")
    return f"{name}: {bits}-bit {kind} WAV samples are not supported ({reason})"


def _unfinished_wav(content: bytes) -> tuple[int, int] | None:
    """Where the 'data' chunk's size field is and how many bytes follow it, when
    it says 0 but audio follows; None otherwise."""
    for kind, size, at in _riff_chunks(content) or ():
        if kind == b"data":
            following = len(content) - at
            return (at - 4, following) if size == 0 and following > 0 else None
    return None


def _with_data_size(content: bytes, field: int, size: int) -> bytes:
    patched = bytearray(content)
    patched[field : field + 4] = struct.pack("<I", min(size, 0xFFFFFFFF))
    patched[4:8] = struct.pack("<I", min(len(content) - 8, 0xFFFFFFFF))
    return bytes(patched)


def writable_format(path: PathLike) -> tuple[str, str]:
    """The (container, sample format) a file of this name is written in."""
    extension = os.path.splitext(os.fspath(path))[1].lower()
    try:
        return WRITABLE_FORMATS[extension]
    except KeyError:
        names = ", ".join(WRITABLE_FORMATS)
        raise AudioFormatError(f"{path}: cannot write {extension or 'a file without extension'}; use {names}") from None


def _as_frames(samples: np.ndarray, num_channels: int) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise AudioFormatError(f"a sound file needs 1-D int16 samples, got {samples.dtype} {samples.shape}")
    if len(samples) % num_channels:
        raise AudioFormatError(f"{len(samples)} samples cannot be split into {num_channels} channels")
    return samples.reshape(-1, num_channels)


def write_audio_file(path: PathLike, samples: np.ndarray, sample_rate: int, num_channels: int = 1) -> None:
    """Write interleaved int16 samples in the format of the file's extension
    (atomically: a temporary file, then a rename)."""
    container, subtype = writable_format(path)
    frames = _as_frames(samples, num_channels)
    if subtype == "OPUS" and sample_rate not in OPUS_SAMPLE_RATES:
        frames = soxr.resample(frames, sample_rate, OPUS_SAMPLE_RATES[-1])
        sample_rate = OPUS_SAMPLE_RATES[-1]
    temporary = f"{os.fspath(path)}.partial"
    try:
        soundfile.write(temporary, frames, sample_rate, format=container, subtype=subtype)
    except soundfile.LibsndfileError as error:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise AudioFormatError(f"cannot write {path}: {error.error_string}") from None
    os.replace(temporary, path)


def wav_bytes(samples: np.ndarray, sample_rate: int, num_channels: int = 1) -> bytes:
    """Interleaved int16 samples as the bytes of a 16-bit PCM WAV file."""
    buffer = io.BytesIO()
    soundfile.write(buffer, _as_frames(samples, num_channels), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
