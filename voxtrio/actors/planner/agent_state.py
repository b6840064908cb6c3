"""The agent's state (listening, thinking, speaking) and what the Turn hears of it."""

from __future__ import annotations

from typing import Any

import trio

from ...events import AgentState, AgentStateChanged, EventBus
from ...faults import FAULTS
from ...messages import AgentSpeech, ErrorCountReset
from ...state import SessionState


class AgentStatus:
    """Writes ``SessionState.agent_state`` (with its event) and tells the Turn
    what the agent is doing, each time that may have changed: the Turn's
    barge-in decisions read nothing else of the Planner."""

    def __init__(
        self,
        *,
        state: SessionState,
        bus: EventBus,
        turn_inbox: trio.MemorySendChannel[Any] | None,
        session_inbox: trio.MemorySendChannel[Any],
    ) -> None:
        self._state = state
        self._bus = bus
        self._turn = turn_inbox
        self._session_inbox = session_inbox
        # Speeches that played and wait for their tools (the Turn's "tools running").
        self._running_tools = 0

    @property
    def current(self) -> AgentState:
        return self._state.agent_state

    def set(self, new: AgentState) -> None:
        old = self._state.agent_state
        if old == new:
            return
        self._state.agent_state = new
        if FAULTS.think_silently and new == "thinking":
            return
        self._bus.emit(AgentStateChanged(old_state=old, new_state=new))
        if new == "speaking":
            self._session_inbox.send_nowait(ErrorCountReset(sources=("llm", "tts")))
        self.notify_turn()

    def tools_running(self, delta: int) -> None:
        self._running_tools += delta
        self.notify_turn()

    def notify_turn(self) -> None:
        if self._turn is None:
            return
        current = self._state.current_speech
        self._turn.send_nowait(
            AgentSpeech(
                state=self._state.agent_state,
                interruptible=current.allow_interruptions if current is not None else True,
                has_current_speech=current is not None and not current.done(),
                interrupted=current is not None and current.interrupted,
                tools_running=self._running_tools > 0,
            )
        )

    def send_to_turn(self, message: Any) -> None:
        if self._turn is not None:
            self._turn.send_nowait(message)
