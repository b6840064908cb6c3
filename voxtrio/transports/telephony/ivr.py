"""Hearing a phone menu: a menu that repeats itself, and a line gone silent.

An agent that calls a business meets its IVR: prompts that play again when
nobody chooses, and silences while the menu waits for a key. Both are
reported as session events the agent can act on (``session.on(...)``), and
by default answered the way the reference's ``IVRActivity`` does, with a
reply (the LLM sees the history, the transcripts of the menu included, and
the tools, ``send_dtmf`` among them):

* :class:`LoopDetector`: TF-IDF cosine similarity of each final transcript
  of the other side with the ones before it (the last ``window``); when
  ``consecutive`` transcripts in a row each resemble an earlier one by more
  than ``threshold``, the menu is looping (``ivr_loop_detected``). The
  parameters are the reference's (20, 0.85, 3); the vectors are sklearn's
  defaults (lowercased words of two or more letters, raw counts, smoothed
  IDF ``ln((1 + n) / (1 + df)) + 1``, L2-normalized), in numpy.
* the silence timer: when the other side is not speaking and the agent is
  listening (not thinking, not speaking) for ``max_silence`` seconds, once per
  quiet spell (``line_silence_detected``).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import trio

from ...errors import SessionClosedError
from ...events import IVRLoopDetected, LineSilenceDetected

if TYPE_CHECKING:
    from ...session import AgentSession

_WORD = re.compile(r"(?u)\b\w\w+\b")

LOOP_INSTRUCTIONS = (
    "The phone menu on the line is repeating itself. Choose an option now: press the key that "
    "matches the goal (send_dtmf), or say the option."
)
SILENCE_INSTRUCTIONS = "The line has been silent for a while. Say something or press a key to move on."


class LoopDetector:
    """Notices transcripts that keep repeating (see the module docstring)."""

    def __init__(self, *, window: int = 20, threshold: float = 0.85, consecutive: int = 3) -> None:
        if window < 2 or not 0.0 <= threshold <= 1.0 or consecutive < 1:
            raise ValueError("window >= 2, 0 <= threshold <= 1 and consecutive >= 1 are needed")
        self.window = window
        self.threshold = threshold
        self.consecutive = consecutive
        self._chunks: list[list[str]] = []
        self._similar_in_a_row = 0

    def reset(self) -> None:
        self._chunks.clear()
        self._similar_in_a_row = 0

    def add(self, text: str) -> bool:
        """Add a final transcript; True when it completes a loop (the detector then resets)."""
        self._chunks = [*self._chunks, _WORD.findall(text.lower())][-self.window :]
        if len(self._chunks) >= 2 and self.similarity_to_earlier() > self.threshold:
            self._similar_in_a_row += 1
        else:
            self._similar_in_a_row = 0
        if self._similar_in_a_row >= self.consecutive:
            self.reset()
            return True
        return False

    def similarity_to_earlier(self) -> float:
        """The highest cosine similarity of the last transcript with an earlier one."""
        vocabulary = sorted({word for chunk in self._chunks for word in chunk})
        if not vocabulary:
            return 0.0
        index = {word: i for i, word in enumerate(vocabulary)}
        counts = np.zeros((len(self._chunks), len(vocabulary)))
        for row, chunk in enumerate(self._chunks):
            for word in chunk:
                counts[row, index[word]] += 1
        documents = (counts > 0).sum(axis=0)
        idf = np.log((1 + len(self._chunks)) / (1 + documents)) + 1
        vectors = counts * idf
        norms = np.linalg.norm(vectors, axis=1)
        norms[norms == 0] = 1.0
        vectors /= norms[:, None]
        return float(np.max(vectors[:-1] @ vectors[-1]))


class IVRDetector:
    """Watches a session for a looping menu and a silent line (see the module docstring).

    ``respond``: also ask the agent for a reply, as the reference does; the
    events are emitted either way. Run :meth:`run` in a nursery next to the
    session (``PhoneCall.run(..., ivr_detection=True)`` does).
    """

    def __init__(
        self,
        session: AgentSession,
        *,
        max_silence: float = 5.0,
        loop_detector: LoopDetector | None = None,
        respond: bool = True,
    ) -> None:
        self.session = session
        self.max_silence = max_silence
        self.loops = loop_detector or LoopDetector()
        self.respond = respond
        self._user_state = "listening"
        self._agent_state = "initializing"
        self._quiet_since: float | None = None  # when the current quiet spell began
        self._reported = False  # the current quiet spell was already reported
        self._changed = trio.Event()

    def _on_transcript(self, event: Any) -> None:
        if event.is_final and event.transcript and self.loops.add(event.transcript):
            self.session.emit(IVRLoopDetected(transcript=event.transcript, repetitions=self.loops.consecutive))
            self._reply(instructions=LOOP_INSTRUCTIONS, allow_interruptions=False)

    def _on_state(self, event: Any) -> None:
        if event.type == "user_state_changed":
            self._user_state = event.new_state
        else:
            self._agent_state = event.new_state
        self._update()

    def _update(self) -> None:
        quiet = self._user_state in ("listening", "away") and self._agent_state == "listening"
        if not quiet:
            self._quiet_since = None
            self._reported = False
        elif self._quiet_since is None and not self._reported:
            self._quiet_since = trio.current_time()
        self._changed.set()

    def _reply(self, **options: Any) -> None:
        if not self.respond:
            return
        try:
            self.session.generate_reply(**options)
        except (RuntimeError, SessionClosedError):
            pass  # closing, or no LLM: the event alone tells the application

    async def run(self) -> None:
        """Watch until cancelled."""
        session = self.session
        session.on("user_input_transcribed", self._on_transcript)
        session.on("user_state_changed", self._on_state)
        session.on("agent_state_changed", self._on_state)
        if session.running:  # the states so far (their events came before this watcher)
            self._user_state, self._agent_state = session.user_state, session.agent_state
            self._update()
        try:
            while True:
                quiet_since = self._quiet_since
                deadline = math.inf if quiet_since is None else quiet_since + self.max_silence
                with trio.move_on_at(deadline):
                    await self._changed.wait()
                    self._changed = trio.Event()
                    continue
                if self._quiet_since == quiet_since and session.running:
                    self._quiet_since, self._reported = None, True
                    session.emit(LineSilenceDetected(duration=self.max_silence))
                    self._reply(instructions=SILENCE_INSTRUCTIONS)
        finally:
            session.off("user_input_transcribed", self._on_transcript)
            session.off("user_state_changed", self._on_state)
            session.off("agent_state_changed", self._on_state)
