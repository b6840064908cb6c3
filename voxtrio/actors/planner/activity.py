"""Which agent the conversation is with: the one transition every hand-off goes through."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ...agent import INSTRUCTIONS_ID, Agent, CarryHistory, carry_over
from ...chat import ChatMessage
from ...messages import ActivityChanged
from ...state import SessionState
from .agent_state import AgentStatus
from .history import History
from .stage import Stage

if TYPE_CHECKING:
    from ...session import AgentSession


class Activity:
    """Makes an agent current (writes ``Stage.agent`` and ``SessionState.current_agent``)."""

    def __init__(
        self,
        *,
        state: SessionState,
        stage: Stage,
        history: History,
        agent_status: AgentStatus,
        session: AgentSession,
    ) -> None:
        self._state = state
        self._stage = stage
        self._history = history
        self._agent_status = agent_status
        # What the agent is bound to (its session property).
        self._session = session

    def become(self, agent: Agent, *, carry_history: CarryHistory | None = None) -> None:
        """Make ``agent`` current: its instructions, what it carries over, the hand-off item."""
        old = self._stage.agent
        self._stage.agent = agent
        self._history.commit_handoff(old, agent)
        agent._bind(self._session)
        agent._chat_ctx.remove(INSTRUCTIONS_ID)
        if agent.instructions:
            agent._chat_ctx.insert(
                ChatMessage(role="system", content=agent.instructions, id=INSTRUCTIONS_ID, seq=-math.inf)
            )
        if old is not None:
            carry_over(old._chat_ctx, agent._chat_ctx, carry_history or agent.carry_history)
        self._state.current_agent = agent
        # Its turn-taking overrides apply from now on (an AgentTask's too).
        self._agent_status.send_to_turn(ActivityChanged(agent))
