"""WAV files: read any PCM or float WAV as int16, write int16 WAV.

Python's ``wave`` module (3.11) reads only plain integer PCM and rejects
WAVE_FORMAT_EXTENSIBLE, which sox, ffmpeg and most recorders write for more
than two channels or more than 16 bits. This reader walks the RIFF chunks
itself, so it takes 8/16/24/32-bit integer and 32/64-bit float samples, in
plain or extensible headers, at any rate and channel count voxtrio accepts;
everything else is an :class:`~voxtrio.errors.AudioFormatError` that says
what was found.
"""

from __future__ import annotations

import os
import struct
import warnings
from typing import BinaryIO, Union

import attrs
import numpy as np

from .audio import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from .errors import AudioFormatError

PathLike = Union[str, "os.PathLike[str]"]

_FORMAT_PCM = 0x0001
_FORMAT_FLOAT = 0x0003
_FORMAT_EXTENSIBLE = 0xFFFE


@attrs.frozen(eq=False)
class WavAudio:
    """Interleaved int16 samples with their rate and channel count."""

    samples: np.ndarray
    sample_rate: int
    num_channels: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.num_channels / self.sample_rate


def read_wav(path: PathLike) -> WavAudio:
    """Read a WAV file as int16 (floats are clipped to [-1, 1] and scaled)."""
    try:
        with open(path, "rb") as file:
            return _read(file, str(path))
    except OSError as error:
        raise AudioFormatError(f"cannot read {path}: {error.strerror or error}") from None


def _read(file: BinaryIO, name: str) -> WavAudio:
    header = file.read(12)
    if len(header) < 12 or header[:4] not in (b"RIFF", b"RF64") or header[8:12] != b"WAVE":
        raise AudioFormatError(f"{name} is not a WAV file (no RIFF/WAVE header)")
    fmt: tuple[int, int, int, int] | None = None
    while True:
        chunk = file.read(8)
        if len(chunk) < 8:
            raise AudioFormatError(f"{name} has no 'data' chunk")
        kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if kind == b"fmt ":
            fmt = _parse_fmt(file.read(size), name)
            if size % 2:
                file.read(1)
        elif kind == b"data":
            if fmt is None:
                raise AudioFormatError(f"{name}: the 'data' chunk comes before 'fmt '")
            data = file.read(size if size not in (0, 0xFFFFFFFF) else -1)
            if size == 0 and data:
                # A recorder that never finished its header (a stream, a crash).
                warnings.warn(
                    f"{name}: the 'data' chunk says 0 bytes but {len(data)} follow; reading them",
                    stacklevel=3,
                )
            return _decode(data, fmt, name)
        else:
            file.seek(size + (size % 2), os.SEEK_CUR)


def _parse_fmt(body: bytes, name: str) -> tuple[int, int, int, int]:
    if len(body) < 16:
        raise AudioFormatError(f"{name}: 'fmt ' chunk is {len(body)} bytes, expected at least 16")
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _FORMAT_EXTENSIBLE:
        if len(body) < 40:
            raise AudioFormatError(f"{name}: extensible 'fmt ' chunk is too short")
        tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the subformat GUID
    if tag not in (_FORMAT_PCM, _FORMAT_FLOAT):
        raise AudioFormatError(f"{name}: sample format 0x{tag:04x} is not PCM or float (compressed WAV?)")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioFormatError(f"{name}: {channels} channels, expected 1..{MAX_CHANNELS}")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioFormatError(f"{name}: sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
    valid = {_FORMAT_PCM: (8, 16, 24, 32), _FORMAT_FLOAT: (32, 64)}[tag]
    if bits not in valid:
        kind = "integer" if tag == _FORMAT_PCM else "float"
        raise AudioFormatError(f"{name}: {bits}-bit {kind} samples are not supported")
    if block_align != channels * bits // 8:
        raise AudioFormatError(f"{name}: block align {block_align} does not match {channels} x {bits} bits")
    return tag, channels, rate, bits


def _decode(data: bytes, fmt: tuple[int, int, int, int], name: str) -> WavAudio:
    tag, channels, rate, bits = fmt
    width = bits // 8
    usable = len(data) - len(data) % (width * channels)  # a truncated last frame is dropped
    data = data[:usable]
    if tag == _FORMAT_FLOAT:
        floats = np.frombuffer(data, "<f4" if bits == 32 else "<f8")
        if not np.all(np.isfinite(floats)):
            raise AudioFormatError(f"{name}: float samples include NaN or infinity")
        samples = (np.clip(floats, -1.0, 1.0) * 32767.0).round().astype(np.int16)
    elif bits == 8:  # unsigned, centred on 128
        samples = ((np.frombuffer(data, np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    elif bits == 16:
        samples = np.frombuffer(data, "<i2").astype(np.int16)
    elif bits == 24:
        raw = np.frombuffer(data, np.uint8).reshape(-1, 3)
        wide = (raw[:, 0].astype(np.int32) | (raw[:, 1].astype(np.int32) << 8) | (raw[:, 2].astype(np.int32) << 16))
        wide = np.where(wide >= 1 << 23, wide - (1 << 24), wide)
        samples = (wide >> 8).astype(np.int16)
    else:
        samples = (np.frombuffer(data, "<i4") >> 16).astype(np.int16)
    return WavAudio(np.ascontiguousarray(samples), rate, channels)


def wav_bytes(samples: np.ndarray, sample_rate: int, num_channels: int = 1) -> bytes:
    """Interleaved int16 samples as the bytes of a 16-bit PCM WAV file."""
    samples = np.asarray(samples)
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise AudioFormatError(f"a WAV needs 1-D int16 samples, got {samples.dtype} {samples.shape}")
    if len(samples) % num_channels:
        raise AudioFormatError(f"{len(samples)} samples cannot be split into {num_channels} channels")
    data = samples.astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    header += b"fmt " + struct.pack(
        "<IHHIIHH", 16, _FORMAT_PCM, num_channels, sample_rate, sample_rate * num_channels * 2, num_channels * 2, 16
    )
    header += b"data" + struct.pack("<I", len(data))
    return header + data


def write_wav(path: PathLike, samples: np.ndarray, sample_rate: int, num_channels: int = 1) -> None:
    """Write interleaved int16 samples as a 16-bit PCM WAV (atomically: a temp file, then rename)."""
    content = wav_bytes(samples, sample_rate, num_channels)
    temporary = f"{os.fspath(path)}.partial"
    with open(temporary, "wb") as file:
        file.write(content)
    os.replace(temporary, path)
