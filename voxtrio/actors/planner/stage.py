"""The Stage: the current agent and options, as every part of the Planner reads them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ...chat import ChatContext
from ...providers.base import RealtimeModel
from ...tools import FunctionTool, flatten_tools

if TYPE_CHECKING:
    from ...agent import Agent
    from ...options import SessionOptions
    from ...providers.base import LLM


@attrs.define
class Stage:
    """What the Planner's parts read and only the Planner's actor writes.

    An agent may override the session's providers and some options; each
    resolution below says whose value wins. AgentSession reads
    :meth:`allow_interruptions` and :meth:`llm` too (for a new speech's
    default and its ``generate_reply()`` check): this is the Planner's
    published view, so the API sees what the Planner will do.
    """

    # The session's options, as the Planner last heard of them (OptionsChanged).
    options: SessionOptions
    # The session's LLM and TTS, for an agent that does not bring its own.
    llm: LLM | None
    tts: Any
    # The session's own tools, offered after the current agent's.
    session_tools: list[FunctionTool]
    # The agent the conversation is with now (an AgentTask while one runs).
    agent: Agent | None = None

    def llm_for(self, owner: Agent | None = None) -> LLM | None:
        """The LLM of ``owner`` (the agent a speech speaks for), else of the current agent."""
        agent = owner if owner is not None else self.agent
        return agent.override("llm", self.llm) if agent else self.llm

    def realtime(self, owner: Agent | None = None) -> bool:
        """The agent speaks through a realtime model (its responses come from the RealtimeLink)."""
        return isinstance(self.llm_for(owner), RealtimeModel)

    def tts_for(self, owner: Agent | None) -> Any:
        agent = owner if owner is not None else self.agent
        return agent.override("tts", self.tts) if agent else self.tts

    def tools(self) -> list[FunctionTool]:
        """The current agent's tools, then the session's (an agent's tool wins a name)."""
        agent_tools = self.agent.tool_items if self.agent else []
        return flatten_tools([*agent_tools, *self.session_tools])

    def allow_interruptions(self) -> bool:
        if self.agent is None:
            return self.options.allow_interruptions
        return bool(self.agent.override("allow_interruptions", self.options.allow_interruptions))

    def min_consecutive_speech_delay(self) -> float:
        value = self.options.min_consecutive_speech_delay
        return float(self.agent.override("min_consecutive_speech_delay", value)) if self.agent else value

    def agent_ctx(self) -> ChatContext:
        return self.agent._chat_ctx if self.agent else ChatContext()
