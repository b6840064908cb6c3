"""Recording a session: what to keep, and where.

``AgentSession(record=True)`` or ``record=RecordingOptions(...)``. Each
session gets a directory named by its id under ``directory``:

* ``audio.ogg`` (or ``audio.wav``): the call in stereo, the user on the
  left, the agent on the right, on the session clock. The agent's track holds
  only what was played: a reply cut by the user stops where it was cut; one
  paused by a false interruption is silent until it resumes (and is gone if
  it never does).
  Written as the call goes: a crash loses at most the last second.
* ``transcript.json``: who said what when, tool calls, hand-offs,
  interruptions, per-turn latencies and the session's usage.
* ``events.jsonl``: every event of the session, one JSON object a line.
* ``log.jsonl``: the session's log records (voxtrio's loggers), as JSON lines.

``upload(directory)``, when given, is awaited once the session has closed
and every file is complete (bounded by the session's ``close_timeout``);
what to keep and for how long is the application's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal

import attrs

from ..validation import check_choice, check_int, check_number, field_check

# The rates libsndfile's Opus encoder takes.
OPUS_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)


def _check_rate(instance: Any, attribute: Any, value: int) -> None:
    check_int(value, "sample_rate", minimum=8_000)
    if instance.format == "ogg" and value not in OPUS_RATES:
        raise ValueError(f"sample_rate must be one of {OPUS_RATES} for OGG/Opus, got {value}")


@attrs.frozen(kw_only=True)
class RecordingOptions:
    audio: bool = True
    traces: bool = True
    """events.jsonl: the session's events, the trace of what happened."""
    logs: bool = True
    transcript: bool = True
    directory: str | os.PathLike[str] = "recordings"
    format: Literal["ogg", "wav"] = attrs.field(
        default="ogg", validator=field_check(check_choice, choices=("ogg", "wav"))
    )
    sample_rate: int = attrs.field(default=16_000, validator=_check_rate)
    flush_interval: float = attrs.field(
        default=0.5, validator=field_check(check_number, minimum=0.05, maximum=0.5)
    )
    """How often the audio reaches the disk (seconds of session time)."""
    upload: Callable[[Path], Awaitable[Any]] | None = None

    def session_directory(self, session_id: str) -> Path:
        return Path(self.directory) / session_id


def recording_options(record: bool | RecordingOptions) -> RecordingOptions | None:
    """What ``AgentSession(record=...)`` asks for, or None for no recording."""
    if isinstance(record, RecordingOptions):
        return record
    if record is True:
        return RecordingOptions()
    if record is False:
        return None
    raise TypeError(f"record must be a bool or a RecordingOptions, got {record!r:.60}")


__all__ = ["RecordingOptions", "recording_options"]
