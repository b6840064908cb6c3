"""The user's turn being built: what was heard, and when, on the audio clock."""

from __future__ import annotations

import math
import re

import attrs
import trio


def count_words(text: str) -> int:
    return len(re.findall(r"\w+(?:'\w+)?", text))


@attrs.define
class AudioClock:
    """Audio time (``AudioFrame.timestamp``) against trio time.

    Endpointing is measured on the audio clock; timers run on trio's. The
    offset is taken from each VAD event as it arrives (0 until the first).
    """

    # trio time = audio time + offset; None until a VAD event was seen
    offset: float | None = None

    def observe(self, audio_time: float) -> None:
        self.offset = trio.current_time() - audio_time

    def to_trio_time(self, audio_time: float) -> float:
        return audio_time + (self.offset if self.offset is not None else 0.0)

    def now(self) -> float:
        return trio.current_time() - (self.offset if self.offset is not None else 0.0)


@attrs.define
class Utterance:
    """What the user has said in the turn not yet committed.

    Invariants: ``transcript`` is only final text (the finals, space-joined)
    and ``confidences`` has one entry per final in it; both are empty right
    after a commit or a clear. ``interim`` is newer than every final in
    ``transcript``. ``speech_started`` is None while no speech belongs to
    the turn. Times are audio time unless named ``_trio``.
    """

    # the VAD says the user is talking: from its start of speech to its end of
    # speech (or until the input is turned off)
    speaking: bool = False
    # the recognizer says the user is talking (its own start/end of speech)
    stt_speaking: bool = False
    # the recognizer reported an end of speech since the VAD's last start of speech
    stt_eos_received: bool = False
    # when the turn's first speech began
    speech_started: float | None = None
    # the last voiced audio: where the endpointing delay is counted from
    last_voiced: float | None = None
    # the turn's final transcripts, and what the recognizer says it heard since
    transcript: str = ""
    interim: str = ""
    language: str | None = None
    confidences: list[float] = attrs.Factory(list)
    # when the turn's last non-empty final arrived (audio time; None: none yet)
    final_at: float | None = None
    # when the last final of any kind arrived (trio time), and an event set
    # (then replaced) at each one: a flush waits on it
    final_at_trio: float = -math.inf
    final_arrived: trio.Event = attrs.Factory(trio.Event)
    # a turn was committed since the user last started speaking
    committed_since_speech: bool = False
    # the transcript last offered to the Planner for preemptive generation
    preempted_transcript: str = ""
    # the input ended and the recognizer was flushed: its last final may follow
    last_words_pending: bool = False

    def words(self) -> int:
        """The words heard so far, finals and interim."""
        return count_words(f"{self.transcript} {self.interim}")

    def final_heard(self) -> None:
        """A final transcript arrived (empty or not): a waiting flush is answered."""
        self.last_words_pending = False
        self.interim = ""
        self.final_at_trio = trio.current_time()
        self.final_arrived.set()
        self.final_arrived = trio.Event()

    def add_final(self, text: str, language: str | None, confidence: float, audio_now: float) -> None:
        self.transcript = f"{self.transcript} {text}".strip()
        self.language = language or self.language
        self.confidences.append(confidence)
        self.final_at = audio_now

    def confidence(self) -> float:
        return sum(self.confidences) / len(self.confidences) if self.confidences else 1.0

    def _forget_words(self) -> None:
        self.transcript = ""
        self.confidences.clear()
        self.final_at = None
        self.preempted_transcript = ""

    def committed(self) -> None:
        """The turn went to the Planner: the next one starts empty (its speech
        start is kept while the user is still talking)."""
        self._forget_words()
        self.committed_since_speech = True
        if not self.speaking:
            self.speech_started = None

    def clear(self) -> None:
        """clear_user_turn(): everything heard is dropped."""
        self._forget_words()
        self.interim = ""
        self.last_voiced = self.speech_started = None
