"""The session's context variables: who is running the code that runs now.

A leaf module (it imports nothing of voxtrio at run time), so that code
anywhere (an AgentTask awaited in a tool, a public API call made from a hook)
can ask without importing the session, which imports everything.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .agent import Agent
    from .session import AgentSession
    from .speech import SpeechHandle

# The session whose main() runs this task (set for every task it starts):
# user code called by the session's actors sees its session here.
inside_session: contextvars.ContextVar[AgentSession | None] = contextvars.ContextVar(
    "voxtrio_inside_session", default=None
)

# The agent on whose behalf user code runs (set for tools, on_enter and
# on_exit: the places an AgentTask may be awaited from), and the Planner task
# it runs in.
current_caller: contextvars.ContextVar[Agent | None] = contextvars.ContextVar(
    "voxtrio_current_caller", default=None
)
current_worker: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "voxtrio_current_worker", default=None
)

# Set while a tool runs, to the handle whose step called it.
current_tool_speech: contextvars.ContextVar[SpeechHandle | None] = contextvars.ContextVar(
    "voxtrio_current_tool_speech", default=None
)
