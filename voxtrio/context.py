"""The session's context variables: who is running the code that runs now.

A leaf module (it imports nothing of voxtrio at run time), so that code
anywhere (an AgentTask awaited in a tool, a public API call made from a hook)
can ask without importing the session, which imports everything.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .session import AgentSession

# The session whose main() runs this task (set for every task it starts):
# user code called by the session's actors sees its session here.
inside_session: contextvars.ContextVar[AgentSession | None] = contextvars.ContextVar(
    "voxtrio_inside_session", default=None
)
