"""The session's published state: written by one owner each, read by anyone.

Actors never read each other's attributes; what the public API must answer
synchronously (``session.agent_state``, ``current_speech``, ``history``...) is
published here by the actor that owns it. Each field names its single writer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from .chat import ChatContext

if TYPE_CHECKING:
    from .agent import Agent
    from .events import AgentState, UserState
    from .speech import SpeechHandle


@attrs.define
class SessionState:
    # Planner
    agent_state: AgentState = "initializing"
    current_speech: SpeechHandle | None = None
    current_agent: Agent | None = None
    history: ChatContext = attrs.Factory(ChatContext)
    accepting_speech: bool = False
    running_user_code: dict[int, str] = attrs.Factory(dict)
    # Turn
    user_state: UserState = "listening"
    # Session
    running: bool = False
    closing: bool = False
    close_requested_at: float | None = None  # trio time of the first close request
    extra: dict[str, Any] = attrs.Factory(dict)
