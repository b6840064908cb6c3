"""Every log record names its session, the speech being spoken and the agent.

A session sets a :class:`LogContext` in a context variable before it starts
its actors, so every task it starts (they copy the context when spawned)
logs under it; the session updates the one object as speeches and agents
change. A record factory, installed once, copies its three fields onto every
record made in that context, whoever's logger it is (``session_id``,
``speech_id`` and ``agent``; None outside a session), so a handler can filter
one call out of a busy worker's logs, and :class:`JsonFormatter` writes them
as JSON lines.
"""

from __future__ import annotations

import contextvars
import json
import logging
from typing import Any

import attrs

from ..events import Event

CONTEXT_FIELDS = ("session_id", "speech_id", "agent")


@attrs.define
class LogContext:
    session_id: str
    agent: str | None = None
    speech_id: str | None = None

    def on_event(self, event: Event) -> None:
        kind = event.type
        if kind in ("speech_created", "playback_started"):
            self.speech_id = event.speech_id  # type: ignore[attr-defined]
        elif kind == "conversation_item_added" and event.item.type == "agent_handoff":  # type: ignore[attr-defined]
            self.agent = event.item.new_agent  # type: ignore[attr-defined]


current_log_context: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "voxtrio_log_context", default=None
)

_installed = False


def install_record_factory() -> None:
    """Wrap the logging record factory (once) to add the session's fields to each record."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        context = current_log_context.get()
        record.session_id = context.session_id if context is not None else None
        record.speech_id = context.speech_id if context is not None else None
        record.agent = context.agent if context is not None else None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the session's fields, the exception."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            document[field] = getattr(record, field, None)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document)
