"""G.711 μ-law and A-law, as lookup tables built with numpy.

The tables follow the ITU-T G.711 reference quantizers exactly as CPython's
``audioop`` implemented them (``lin2ulaw``/``ulaw2lin``, ``lin2alaw``/
``alaw2lin`` at width 2), so the codecs are bit-exact replacements for a
module that Python 3.13 removed: 65,536 entries map every int16 sample to
its code, 256 map every code back. A 20 ms telephone frame (160 samples) is
one fancy-indexing operation each way.
"""

from __future__ import annotations

import numpy as np

_SIGN_BIT = 0x80
_QUANT_MASK = 0x0F
_SEG_SHIFT = 4
_SEG_MASK = 0x70

# Upper ends of the eight segments (14-bit μ-law, 13-bit A-law magnitudes).
_ULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159


def _all_samples() -> np.ndarray:
    """Every int16 value, indexed by its bit pattern read as uint16."""
    return np.arange(65_536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _ulaw_encoder() -> np.ndarray:
    pcm = _all_samples() >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = np.searchsorted(_ULAW_SEGMENT_ENDS, magnitude, side="left")
    code = (np.minimum(segment, 7) << 4) | ((magnitude >> (np.minimum(segment, 7) + 1)) & _QUANT_MASK)
    code = np.where(segment >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _ulaw_decoder() -> np.ndarray:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    t = ((code & _QUANT_MASK) << 3) + _ULAW_BIAS
    t = t << ((code & _SEG_MASK) >> _SEG_SHIFT)
    return np.where(code & _SIGN_BIT, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _alaw_encoder() -> np.ndarray:
    pcm = _all_samples() >> 3  # 13-bit
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5)
    magnitude = np.where(negative, -pcm - 1, pcm)
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, magnitude, side="left")
    shift = np.where(segment < 2, 1, np.minimum(segment, 7))
    code = (np.minimum(segment, 7) << _SEG_SHIFT) | ((magnitude >> shift) & _QUANT_MASK)
    code = np.where(segment >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _alaw_decoder() -> np.ndarray:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    t = (code & _QUANT_MASK) << 4
    segment = (code & _SEG_MASK) >> _SEG_SHIFT
    t = np.where(segment == 0, t + 8, t + 0x108)
    t = np.where(segment > 1, t << np.maximum(segment - 1, 0), t)
    return np.where(code & _SIGN_BIT, t, -t).astype(np.int16)


ULAW_ENCODE = _ulaw_encoder()
ULAW_DECODE = _ulaw_decoder()
ALAW_ENCODE = _alaw_encoder()
ALAW_DECODE = _alaw_decoder()


def ulaw_encode(samples: np.ndarray) -> bytes:
    """int16 PCM to μ-law bytes."""
    return ULAW_ENCODE[np.ascontiguousarray(samples, np.int16).view(np.uint16)].tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    """μ-law bytes to int16 PCM."""
    return ULAW_DECODE[np.frombuffer(data, np.uint8)]


def alaw_encode(samples: np.ndarray) -> bytes:
    """int16 PCM to A-law bytes."""
    return ALAW_ENCODE[np.ascontiguousarray(samples, np.int16).view(np.uint16)].tobytes()


def alaw_decode(data: bytes) -> np.ndarray:
    """A-law bytes to int16 PCM."""
    return ALAW_DECODE[np.frombuffer(data, np.uint8)]
