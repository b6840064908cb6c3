"""DTMF: the keypad's dual tones, made and heard.

``send_dtmf`` plays the keys in the call's audio (in band): every media
stream carries them, whatever the provider's REST API offers, and a phone
menu at the other end hears them as a keypad. Each key is its row and column
frequencies together (ITU-T Q.23) for ``tone`` seconds, then ``gap`` seconds
of silence (Q.24 asks for at least 40 ms of each; 100 ms is the usual).

:class:`DTMFDetector` hears keys in audio (Goertzel power at the eight
frequencies over 25.6 ms blocks, the classic 205-sample block at 8 kHz): the
loopback test peers use it to check what an agent pressed.
"""

from __future__ import annotations

import numpy as np

KEYPAD = "123A456B789C*0#D"
ROWS = (697.0, 770.0, 852.0, 941.0)
COLUMNS = (1209.0, 1336.0, 1477.0, 1633.0)
PAUSES = {"w": 0.5, "W": 1.0}


def key_frequencies(key: str) -> tuple[float, float]:
    index = KEYPAD.index(key.upper())
    return ROWS[index // 4], COLUMNS[index % 4]


def check_digits(digits: str) -> str:
    """``digits`` if every character is a key (0-9 * # A-D) or a pause (w, W)."""
    bad = sorted({c for c in digits if c.upper() not in KEYPAD and c not in PAUSES})
    if bad or not digits:
        raise ValueError(
            f"DTMF digits are 0-9, *, #, A-D (w: wait 0.5 s, W: 1 s); got {digits!r}"
            + (f" (bad: {''.join(bad)})" if bad else "")
        )
    return digits


def dtmf_tones(
    digits: str, sample_rate: int, *, tone: float = 0.1, gap: float = 0.1, amplitude: float = 0.3
) -> np.ndarray:
    """int16 audio that presses ``digits`` on a phone line."""
    check_digits(digits)
    pieces = []
    t = np.arange(int(round(tone * sample_rate))) / sample_rate
    silence = np.zeros(int(round(gap * sample_rate)), np.int16)
    for key in digits:
        if key in PAUSES:
            pieces.append(np.zeros(int(round(PAUSES[key] * sample_rate)), np.int16))
            continue
        low, high = key_frequencies(key)
        wave = amplitude / 2 * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
        pieces += [(wave * 32767).astype(np.int16), silence]
    return np.concatenate(pieces)


class DTMFDetector:
    """Keys pressed in a stream of audio at ``sample_rate``, in order."""

    def __init__(self, sample_rate: int, *, block: float = 0.0256, threshold: float = 0.35) -> None:
        self.sample_rate = sample_rate
        self.block = max(1, int(round(block * sample_rate)))
        self.threshold = threshold
        t = np.arange(self.block) / sample_rate
        self._probes = np.array([np.exp(-2j * np.pi * f * t) for f in (*ROWS, *COLUMNS)])
        self._pending = np.zeros(0, np.float64)
        self._current: str | None = None
        self._seen = 0
        self.keys: list[str] = []

    def push(self, samples: np.ndarray) -> list[str]:
        """Feed audio; returns the keys that started in it."""
        self._pending = np.concatenate([self._pending, samples.astype(np.float64)])
        found = []
        while len(self._pending) >= self.block:
            block, self._pending = self._pending[: self.block], self._pending[self.block :]
            key = self._key(block)
            if key is not None and key == self._current:
                self._seen += 1
                if self._seen == 2:  # two blocks in a row: a key, not a blip
                    found.append(key)
            else:
                self._current, self._seen = key, 1 if key else 0
        self.keys += found
        return found

    def _key(self, block: np.ndarray) -> str | None:
        energy = float(np.dot(block, block))
        if energy < self.block * 100.0**2:
            return None
        power = np.abs(self._probes @ block) ** 2 * 2 / self.block
        row, column = int(np.argmax(power[:4])), int(np.argmax(power[4:]))
        if (power[row] + power[4 + column]) < self.threshold * energy:
            return None
        return KEYPAD[row * 4 + column]
