"""What the Turn's parts read of the settings, and how they start tasks.

:class:`TurnDetection` is the turn-detection mode with its fallbacks, chosen
once whenever the settings change, so that each rule that differs by mode
reads one named property instead of comparing mode strings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

import attrs
import trio

from ...options import SessionOptions
from ...providers.base import EndOfTurnDetector, RealtimeCapabilities

if TYPE_CHECKING:
    from ...agent import Agent


@attrs.frozen
class TurnDetection:
    """How the end of the user's turn is decided (docs/behaviour.md, "Turn detection").

    ``mode`` is "vad", "stt", "manual" or None, the default: the VAD's end of
    speech when there is a VAD, else the recognizer's finals (and the mode of
    an end-of-turn ``detector``). A mode the session cannot run (no VAD, no
    recognizer, "realtime_llm" without a realtime model) falls back to None.
    With a realtime model whose server finds the turns (``server_turns``),
    "realtime_llm" is the default: its turn events arrive as the VAD's.
    """

    mode: str | None
    # the end-of-turn model consulted before each commit (only with mode None)
    detector: EndOfTurnDetector | None
    # the VAD's end of speech ends the utterance (mode "vad" or None, with a VAD)
    vad_driven: bool

    @classmethod
    def resolve(cls, wanted: Any, *, has_stt: bool, has_vad: bool, server_turns: bool = False) -> TurnDetection:
        if server_turns and wanted in ("realtime_llm", None):
            return cls._of("realtime_llm", None, has_vad)
        if isinstance(wanted, EndOfTurnDetector):
            if wanted.requires_vad and not has_vad:
                return cls._of(None, None, has_vad)
            return cls._of(None, wanted, has_vad)
        if (wanted == "vad" and not has_vad) or (wanted == "stt" and not has_stt):
            return cls._of(None, None, has_vad)
        if wanted == "realtime_llm":
            return cls._of(None, None, has_vad)  # needs a RealtimeModel with server-side turn detection
        return cls._of(wanted, None, has_vad)

    @classmethod
    def _of(cls, mode: str | None, detector: EndOfTurnDetector | None, has_vad: bool) -> TurnDetection:
        return cls(mode=mode, detector=detector, vad_driven=mode in ("vad", None, "realtime_llm") and has_vad)

    @property
    def manual(self) -> bool:
        """Only commit_user_turn() ends a turn; the user's audio never cuts the agent off."""
        return self.mode == "manual"

    @property
    def server_turns(self) -> bool:
        """A realtime model's server found the user's speech: it cuts the agent off at once."""
        return self.mode == "realtime_llm"

    @property
    def recognizer_bounds(self) -> bool:
        """The recognizer's start and end of speech move the user state and end the utterance."""
        return self.mode == "stt"


@attrs.define
class TurnSettings:
    """The session's options with the current agent's overrides, and what
    the session can hear with. Owned by the Turn actor, which replaces
    ``options``/``agent`` as they change; its parts read them."""

    options: SessionOptions
    # the session hears the user's words (a recognizer) / their voice (a VAD)
    has_stt: bool
    has_vad: bool
    # a realtime model's server detects the turns (its events come as the VAD's)
    server_turns: bool = False
    # a realtime model hears the user (the user's audio goes to it)
    has_realtime: bool = False
    # what the pipeline hears with, while a realtime model hears instead
    _pipeline: tuple[bool, bool] = attrs.field(init=False, default=(False, False))
    # the current agent, whose turn-taking overrides win over the options
    agent: Agent | None = None
    detection: TurnDetection = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._pipeline = (self.has_stt, self.has_vad)
        self.resolve()

    def listen_with(self, realtime: RealtimeCapabilities | None) -> bool:
        """Hear through a realtime model with these capabilities (None: the
        pipeline's VAD and recognizer); True if that changed who hears."""
        was = self.has_realtime
        if realtime is None:
            self.has_stt, self.has_vad = self._pipeline
            self.server_turns = self.has_realtime = False
        else:
            self.has_stt, self.has_vad = realtime.user_transcription, realtime.turn_detection
            self.server_turns, self.has_realtime = realtime.turn_detection, True
        return was != self.has_realtime

    def resolve(self) -> None:
        """Choose the turn detection again (the options or the agent changed)."""
        self.detection = TurnDetection.resolve(
            self.get("turn_detection"), has_stt=self.has_stt, has_vad=self.has_vad, server_turns=self.server_turns
        )

    def get(self, name: str) -> Any:
        value = getattr(self.options, name)
        if self.agent is not None:
            value = self.agent.override(name, value)
        return value


class Tasks:
    """Starts the Turn's timers and waits in the actor's nursery (given once it runs)."""

    def __init__(self) -> None:
        self.nursery: trio.Nursery | None = None

    def start(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        assert self.nursery is not None
        self.nursery.start_soon(fn, *args)
