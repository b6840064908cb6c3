"""Who user code runs for: read by AgentSession when a tool or hook awaits an AgentTask."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...agent import Agent

# The agent on whose behalf user code runs (set for tools, on_enter and
# on_exit: the places an AgentTask may be awaited from), and the Planner task
# it runs in.
current_caller: contextvars.ContextVar[Agent | None] = contextvars.ContextVar(
    "voxtrio_current_caller", default=None
)
current_worker: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "voxtrio_current_worker", default=None
)
