"""Session options: the flat keyword arguments of ``AgentSession`` as one value.

Defaults follow the reference's older flat API (preemptive generation off, no
VAD unless given). Options are frozen; ``update_options`` makes a new value and
the actors that depend on it receive it as a message.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Sequence, Union

import attrs

from .text import resolve_transforms
from .validation import check_bool, check_int, check_number, field_check

TurnDetectionMode = Literal["vad", "stt", "manual", "realtime_llm"]
TextTransform = Union[str, Callable[..., Any]]
DEFAULT_TEXT_TRANSFORMS: tuple[str, ...] = ("filter_markdown", "filter_emoji")


_seconds = field_check(check_number)
_optional_seconds = field_check(check_number, optional=True)
_count = field_check(check_int)
_optional_count = field_check(check_int, optional=True)
_flag = field_check(check_bool)


MIN_RETRY_DELAY = 0.1


@attrs.frozen(kw_only=True)
class APIConnectOptions:
    """How hard to try one provider request.

    The first retry waits 0.1 s, later ones ``retry_interval`` but never less
    than 0.1 s (a zero interval with a huge ``max_retry`` would otherwise
    spin at one instant); ``timeout`` bounds the wait for each piece of
    progress (connection, first byte, next chunk).
    """

    max_retry: int = attrs.field(default=3, validator=_count)
    retry_interval: float = attrs.field(default=2.0, validator=_seconds)
    timeout: float = attrs.field(default=10.0, validator=_seconds)

    def retry_delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (0-based)."""
        return MIN_RETRY_DELAY if attempt == 0 else max(MIN_RETRY_DELAY, self.retry_interval)


_per_request = attrs.validators.instance_of(APIConnectOptions)


@attrs.frozen(kw_only=True)
class SessionConnectOptions:
    stt_conn_options: APIConnectOptions = attrs.field(default=APIConnectOptions(), validator=_per_request)
    llm_conn_options: APIConnectOptions = attrs.field(default=APIConnectOptions(), validator=_per_request)
    tts_conn_options: APIConnectOptions = attrs.field(default=APIConnectOptions(), validator=_per_request)
    max_unrecoverable_errors: int = attrs.field(default=3, validator=_count)


@attrs.frozen(kw_only=True)
class SessionOptions:
    """Everything an ``AgentSession`` was configured with, resolved."""

    allow_interruptions: bool = attrs.field(default=True, validator=_flag)
    discard_audio_if_uninterruptible: bool = attrs.field(default=True, validator=_flag)
    min_interruption_duration: float = attrs.field(default=0.5, validator=_seconds)
    min_interruption_words: int = attrs.field(default=0, validator=_count)
    min_endpointing_delay: float = attrs.field(default=0.5, validator=_seconds)
    max_endpointing_delay: float = attrs.field(default=3.0, validator=_seconds)
    false_interruption_timeout: float | None = attrs.field(default=2.0, validator=_optional_seconds)
    resume_false_interruption: bool = attrs.field(default=True, validator=_flag)
    turn_detection: TurnDetectionMode | Any | None = None
    preemptive_generation: bool = attrs.field(default=False, validator=_flag)
    user_away_timeout: float | None = attrs.field(default=15.0, validator=_optional_seconds)
    max_tool_steps: int = attrs.field(default=3, validator=_count)
    min_consecutive_speech_delay: float = attrs.field(default=0.0, validator=_seconds)
    tts_text_transforms: Sequence[TextTransform] | None = DEFAULT_TEXT_TRANSFORMS
    aec_warmup_duration: float | None = attrs.field(default=None, validator=_optional_seconds)
    transcription_timeout: float | None = attrs.field(default=None, validator=_optional_seconds)
    session_close_transcript_timeout: float = attrs.field(default=2.0, validator=_seconds)
    user_turn_max_words: int | None = attrs.field(default=None, validator=_optional_count)
    user_turn_max_duration: float | None = attrs.field(default=None, validator=_optional_seconds)
    close_timeout: float = attrs.field(default=10.0, validator=_seconds)
    conn_options: SessionConnectOptions = attrs.field(
        default=SessionConnectOptions(), validator=attrs.validators.instance_of(SessionConnectOptions)
    )

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
        if not isinstance(self.turn_detection, str) and self.turn_detection is not None and not hasattr(
            self.turn_detection, "predict_end_of_turn"
        ):
            raise TypeError(
                f"turn_detection must be a mode name, an EndOfTurnDetector or None, got {self.turn_detection!r}"
            )
        if self.tts_text_transforms is not None and not isinstance(self.tts_text_transforms, (list, tuple)):
            raise TypeError(
                f"tts_text_transforms must be a list of names and callables, got {self.tts_text_transforms!r}"
            )
        resolve_transforms(self.tts_text_transforms)  # a bad name fails here, not mid-speech


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
