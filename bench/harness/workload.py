"""The fixed inputs of "scripted call v1": audio, texts, timings (spec: docs/bench-workload.md).

Everything here is data or a pure function, computed once at import, so every
framework adapter feeds byte-identical audio and the same texts, and so the
harness's own per-frame cost is a list index rather than sample synthesis.
"""

from __future__ import annotations

import math
import re

import numpy as np

WORKLOAD = "scripted-call-v1"

# --- audio in: 16 kHz mono PCM16, 20 ms frames -------------------------------
IN_RATE = 16_000
FRAME_S = 0.020
IN_FRAME_SAMPLES = 320
SPEECH_HZ = 220.0
AMPLITUDE = 6000  # RMS ~ 4243, far above the VAD threshold
VAD_RMS_THRESHOLD = 500.0

# --- audio out: 24 kHz mono PCM16 --------------------------------------------
OUT_RATE = 24_000
OUT_CHUNK_SAMPLES = 480  # 20 ms, the unit a fake TTS pushes
TTS_HZ = 330.0
SINK_BUFFER_S = 0.200  # like rtc.AudioSource(queue_size_ms=200)

# --- fake provider timings ---------------------------------------------------
VAD_START_FRAMES = 10  # 0.2 s of speech activates
VAD_STOP_FRAMES = 10  # 0.2 s of silence deactivates
STT_FINAL_DELAY_S = 0.100  # after the last speech frame is fed
LLM_TTFT_S = 0.150
LLM_TOKEN_S = 0.010
TTS_TTFB_S = 0.100
TTS_S_PER_CHAR = 3.0 / 172  # spec: duration = chars x (3.0 s / 172), up to 20 ms

# --- turn-taking budget used by the metrics ----------------------------------
ENDPOINTING_S = 0.200
MIN_INTERRUPTION_S = 0.200
CALL_CAP_S = 85.0

# --- texts -------------------------------------------------------------------
REPLY = (
    "Sure, I can help with that. Your order shipped yesterday and it should "
    "arrive by Friday afternoon at the latest. Is there anything else you would "
    "like me to check for you today?"
)
TOOL_NAME = "lookup_order"
TOOL_RESULT = "Order 4711 shipped yesterday; estimated delivery Friday afternoon."
TOOL_TEXT = "can you check my order status please"
# Transcripts of the non-tool turns; turn k says OTHER_TEXTS[k].
OTHER_TEXTS = (
    "hi I need some help with an order I placed",
    "it was placed last week on the website",
    "I wanted to know where it is right now",
    "okay and when exactly will it arrive",
    "wait actually there is one more thing",
    "great thank you very much for your help",
)
INSTRUCTIONS = "You are a helpful customer-service voice agent. Keep answers short."


def _tokens(text: str) -> tuple[str, ...]:
    """Split the reply into the 40 LLM tokens the spec asks for.

    Words carry their leading space and punctuation is its own token, as BPE
    tokenizers mostly do (37 tokens); three long words are split in two to
    reach 40. The first sentence is then exactly 8 tokens, as the spec's
    critical-path budget (8 x 10 ms) assumes.
    """
    out: list[str] = []
    splits = {" yesterday": 7, " afternoon": 6, " anything": 4}
    for tok in re.findall(r" ?\w+|[^\w\s]", text):
        if tok in splits:
            out += [tok[: splits[tok]], tok[splits[tok] :]]
        else:
            out.append(tok)
    return tuple(out)


REPLY_TOKENS = _tokens(REPLY)
SENTENCES = tuple(re.split(r"(?<=[.?!]) ", REPLY))
FIRST_SENTENCE_TOKENS = 8
assert "".join(REPLY_TOKENS) == REPLY
assert len(REPLY_TOKENS) == 40
assert "".join(REPLY_TOKENS[:FIRST_SENTENCE_TOKENS]) == SENTENCES[0]

# Fake delays on the critical path of a reply (spec "Turn overhead"): TTFT, the
# tokens up to the end of sentence 1, and the TTS first byte. A tool turn adds
# one more TTFT (the LLM call that returns the tool call).
CRITICAL_PATH_S = LLM_TTFT_S + FIRST_SENTENCE_TOKENS * LLM_TOKEN_S + TTS_TTFB_S  # 0.33
TOOL_CRITICAL_PATH_S = CRITICAL_PATH_S + LLM_TTFT_S  # 0.48


def tts_chunk_count(text: str) -> int:
    """Number of 20 ms chunks the fake TTS returns for ``text``.

    Characters are counted on the stripped text, so a framework that keeps the
    separating space on a sentence gets the same audio as one that strips it.
    Integer arithmetic keeps the rounding exact: chars x 150/172 twenty-ms units.
    """
    chars = len(text.strip())
    return -(-chars * 150 // 172)


REPLY_CHUNKS = sum(tts_chunk_count(s) for s in SENTENCES)
REPLY_SAMPLES = REPLY_CHUNKS * OUT_CHUNK_SAMPLES  # what a complete reply delivers


def _sine(hz: float, rate: int, n: int) -> np.ndarray:
    t = np.arange(n) / rate
    return np.round(AMPLITUDE * np.sin(2 * math.pi * hz * t)).astype("<i2")


def _frames(pcm: np.ndarray, size: int) -> tuple[bytes, ...]:
    return tuple(pcm[i : i + size].tobytes() for i in range(0, len(pcm), size))


MAX_SPEECH_FRAMES = 100
# One continuous 2 s tone cut into frames, shared by every call and turn.
SPEECH_FRAMES = _frames(_sine(SPEECH_HZ, IN_RATE, MAX_SPEECH_FRAMES * IN_FRAME_SAMPLES), IN_FRAME_SAMPLES)
SILENCE_FRAME = bytes(2 * IN_FRAME_SAMPLES)
_MAX_TTS_CHUNKS = max(tts_chunk_count(s) for s in SENTENCES) + 1
TTS_CHUNKS = _frames(_sine(TTS_HZ, OUT_RATE, _MAX_TTS_CHUNKS * OUT_CHUNK_SAMPLES), OUT_CHUNK_SAMPLES)


def tts_audio(text: str) -> tuple[bytes, ...]:
    """The fake TTS's whole answer for one request: 20 ms PCM16 chunks at 24 kHz."""
    return TTS_CHUNKS[: tts_chunk_count(text)]


def is_speech(pcm: bytes | memoryview) -> bool:
    """Energy VAD decision for one window: RMS > 500.

    Compares the sum of squares instead of taking a square root; int64 cannot
    overflow for PCM16 windows of any realistic length.
    """
    a = np.frombuffer(pcm, dtype="<i2").astype(np.int64)
    return a.size > 0 and int(a @ a) > VAD_RMS_THRESHOLD**2 * a.size
