"""The session's published state: written by one owner each, read by anyone.

Actors never read each other's attributes; what the public API must answer
synchronously (``session.agent_state``, ``current_speech``, ``history``...) is
published here by the actor that owns it. Each field names its single writer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import attrs

from ._sync import Flag
from .chat import ChatContext, ChatItem

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
    # Planner: its tasks still to finish, not counting those parked on an AgentTask
    # that waits for the user; and whether an AgentTask is being switched to or from.
    planner_busy: int = 0
    agent_switching: bool = False
    # Planner and the API (+1 when asked), Session (-1 when the new agent started)
    handoffs_pending: int = 0
    # the API (+1 for each speech handle made), Planner (-1 when it takes it in)
    speeches_posted: int = 0
    # true when none of the above is going on: what session.run() waits for
    idle: Flag = attrs.Factory(lambda: Flag(True))
    # called with each item committed to the history (and, for a hand-off, the
    # old and new Agent objects); RunResult listens here
    commit_listeners: list[Callable[[ChatItem, Any, Any], None]] = attrs.Factory(list)
    # AudioIn: seconds of input the conversion to pipeline frames (resampling,
    # framing) holds back, i.e. how much later the pipeline hears the user
    # than the transport delivered them (reported in the eou metrics)
    input_delay: float = 0.0
    # Turn
    user_state: UserState = "listening"
    # False while replies must wait: the user is talking, or paused too briefly
    # (under half the endpointing delay) to have finished (docs/behaviour.md,
    # "The reply hold-off"). A flag rather than a message, so the Speaker sees
    # it the instant the Turn decides.
    user_silent: Flag = attrs.Factory(lambda: Flag(True))
    # Session
    running: bool = False
    closing: bool = False
    close_requested_at: float | None = None  # trio time of the first close request
    extra: dict[str, Any] = attrs.Factory(dict)

    def update_idle(self) -> None:
        self.idle.set(
            self.planner_busy == 0
            and self.handoffs_pending == 0
            and self.speeches_posted == 0
            and not self.agent_switching
        )

    def count_posted_speech(self, delta: int) -> None:
        self.speeches_posted += delta
        self.update_idle()

    def count_handoff(self, delta: int) -> None:
        self.handoffs_pending += delta
        self.update_idle()

    def notify_committed(self, item: ChatItem, old_agent: Any = None, new_agent: Any = None) -> None:
        for listener in list(self.commit_listeners):
            listener(item, old_agent, new_agent)
