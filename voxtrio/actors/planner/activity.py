"""Which agent the conversation is with: the one transition every hand-off goes through."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ...agent import INSTRUCTIONS_ID, Agent, CarryHistory, carry_over
from ...chat import ChatMessage
from ...events import EventBus
from ...links import RealtimeControl
from ...messages import ActivityChanged, RealtimeClose, RealtimeConfigure, RealtimeOpen
from ...providers.base import RealtimeModel
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
        bus: EventBus,
        realtime: RealtimeControl | None = None,
    ) -> None:
        self._state = state
        self._bus = bus
        # The RealtimeLink (None: no realtime model), told of each agent on its model.
        self._realtime = realtime
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
        model = self._stage.llm_for(agent)
        if self._realtime is not None:
            self._switch_model(old, agent)
        # Its turn-taking overrides apply from now on (an AgentTask's too).
        capabilities = model.capabilities if isinstance(model, RealtimeModel) else None
        self._agent_status.send_to_turn(ActivityChanged(agent, realtime=capabilities))

    def _switch_model(self, old: Agent | None, new: Agent) -> None:
        """An agent on the same realtime model goes on with the same conversation;
        one on another opens a new one from the conversation so far; one on no
        realtime model closes it."""
        assert self._realtime is not None
        before = self._stage.llm_for(old) if old is not None else None
        after = self._stage.llm_for(new)
        if isinstance(after, RealtimeModel):
            tools = self._stage.tools()
            if after is before:
                self._realtime.send_nowait(RealtimeConfigure(instructions=new.instructions, tools=tools))
                return
            chat_ctx = new._chat_ctx.copy()
            chat_ctx.remove(INSTRUCTIONS_ID)
            self._realtime.send_nowait(
                RealtimeOpen(model=after, instructions=new.instructions, chat_ctx=chat_ctx, tools=tools)
            )
        elif isinstance(before, RealtimeModel):
            self._realtime.send_nowait(RealtimeClose())
