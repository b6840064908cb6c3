"""Session options: the flat keyword arguments of ``AgentSession`` as one value.

Defaults follow the reference's older flat API (preemptive generation off, no
VAD unless given). Options are frozen; ``update_options`` makes a new value and
the actors that depend on it receive it as a message.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Sequence, Union

import attrs

TurnDetectionMode = Literal["vad", "stt", "manual", "realtime_llm"]
TextTransform = Union[str, Callable[..., Any]]
DEFAULT_TEXT_TRANSFORMS: tuple[str, ...] = ("filter_markdown", "filter_emoji")


def _non_negative(instance: object, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class APIConnectOptions:
    """How hard to try one provider request.

    The first retry waits 0.1 s, later ones ``retry_interval``; ``timeout`` bounds
    the wait for each piece of progress (connection, first byte, next chunk).
    """

    max_retry: int = attrs.field(default=3, validator=_non_negative)
    retry_interval: float = attrs.field(default=2.0, validator=_non_negative)
    timeout: float = attrs.field(default=10.0, validator=_non_negative)

    def retry_delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (0-based)."""
        return 0.1 if attempt == 0 else self.retry_interval


@attrs.frozen(kw_only=True)
class SessionConnectOptions:
    stt_conn_options: APIConnectOptions = APIConnectOptions()
    llm_conn_options: APIConnectOptions = APIConnectOptions()
    tts_conn_options: APIConnectOptions = APIConnectOptions()
    max_unrecoverable_errors: int = attrs.field(default=3, validator=_non_negative)


@attrs.frozen(kw_only=True)
class SessionOptions:
    """Everything an ``AgentSession`` was configured with, resolved."""

    allow_interruptions: bool = True
    discard_audio_if_uninterruptible: bool = True
    min_interruption_duration: float = attrs.field(default=0.5, validator=_non_negative)
    min_interruption_words: int = attrs.field(default=0, validator=_non_negative)
    min_endpointing_delay: float = attrs.field(default=0.5, validator=_non_negative)
    max_endpointing_delay: float = attrs.field(default=3.0, validator=_non_negative)
    false_interruption_timeout: float | None = attrs.field(default=2.0, validator=_non_negative)
    resume_false_interruption: bool = True
    turn_detection: TurnDetectionMode | Any | None = None
    preemptive_generation: bool = False
    user_away_timeout: float | None = attrs.field(default=15.0, validator=_non_negative)
    max_tool_steps: int = attrs.field(default=3, validator=_non_negative)
    min_consecutive_speech_delay: float = attrs.field(default=0.0, validator=_non_negative)
    tts_text_transforms: Sequence[TextTransform] | None = DEFAULT_TEXT_TRANSFORMS
    aec_warmup_duration: float | None = attrs.field(default=None, validator=_non_negative)
    transcription_timeout: float | None = attrs.field(default=None, validator=_non_negative)
    session_close_transcript_timeout: float = attrs.field(default=2.0, validator=_non_negative)
    user_turn_max_words: int | None = None
    user_turn_max_duration: float | None = None
    close_timeout: float = attrs.field(default=10.0, validator=_non_negative)
    conn_options: SessionConnectOptions = SessionConnectOptions()

    def __attrs_post_init__(self) -> None:
        if self.max_endpointing_delay < self.min_endpointing_delay:
            raise ValueError(
                f"max_endpointing_delay ({self.max_endpointing_delay}) must be >= "
                f"min_endpointing_delay ({self.min_endpointing_delay})"
            )
        if isinstance(self.turn_detection, str) and self.turn_detection not in (
            "vad",
            "stt",
            "manual",
            "realtime_llm",
        ):
            raise ValueError(
                f"turn_detection must be 'vad', 'stt', 'manual', 'realtime_llm', a detector "
                f"object or None, got {self.turn_detection!r}"
            )


SESSION_OPTION_NAMES = frozenset(a.name for a in attrs.fields(SessionOptions))


class _NotGiven:
    """Marks an argument the caller did not pass (``None`` can be a real value)."""

    _instance: _NotGiven | None = None

    def __new__(cls) -> _NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()


def is_given(value: object) -> bool:
    return value is not NOT_GIVEN
