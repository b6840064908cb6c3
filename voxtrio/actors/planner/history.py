"""History commits: each item in its agent's context and the session history, in its place."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from ...chat import AgentHandoff, ChatItem, ChatMessage
from ...events import ConversationItemAdded, EventBus, FunctionToolsExecuted
from ...faults import FAULTS
from ...state import SessionState
from ...tools import ToolOutcome, interrupted_outcome
from .stage import Stage

if TYPE_CHECKING:
    from ...agent import Agent
    from ...speech import SpeechHandle


class History:
    """The one writer of ``SessionState.history`` and of the agents' contexts
    (besides an AgentTask's merge back into its parent)."""

    def __init__(self, *, state: SessionState, bus: EventBus, stage: Stage) -> None:
        self._state = state
        self._bus = bus
        self._stage = stage

    def commit(
        self,
        item: ChatItem,
        *,
        seq: int | None = None,
        emit: bool = True,
        owner: Agent | None = None,
        speech: SpeechHandle | None = None,
    ) -> None:
        """Put an item in its agent's context and the session history, in its place.

        Its place is ``seq`` if given, else the place it already reserved, else
        now. Its agent is ``owner`` (the agent a speech was made for) if given,
        else the current one. ``speech`` is the handle that produced the item
        (its ``chat_items``).
        """
        if speech is not None and item not in speech.chat_items:
            speech.chat_items.append(item)
        if FAULTS.flip_interrupted_on_assistant_messages and item.type == "message" and item.role == "assistant":
            item.interrupted = not item.interrupted
        if seq is not None:
            item.seq = seq
        elif item.seq == math.inf:
            item.seq = self._bus.next_seq()
        item.created_at = trio.current_time()
        agent = owner if owner is not None else self._stage.agent
        if agent is not None:
            agent._chat_ctx.insert(item)
        self._state.history.insert(item)
        self._state.notify_committed(item)
        if emit:
            self._bus.emit(ConversationItemAdded(item=item))
        if FAULTS.commit_user_turns_twice and item.type == "message" and item.role == "user":
            again = ChatMessage(role="user", content=item.content)
            again.seq = self._bus.next_seq()
            self._state.history.insert(again)

    def commit_handoff(self, old: Agent | None, new: Agent) -> None:
        item = AgentHandoff(old_agent=old.id if old is not None else None, new_agent=new.id)
        item.seq = self._bus.next_seq()
        item.created_at = trio.current_time()
        self._state.history.insert(item)
        self._state.notify_committed(item, old, new)
        self._bus.emit(ConversationItemAdded(item=item))

    def emit_tools_executed(
        self, outcomes: list[ToolOutcome], handle: SpeechHandle, *, max_steps_reached: bool
    ) -> None:
        self._bus.emit(
            FunctionToolsExecuted(
                function_calls=tuple(outcome.call for outcome in outcomes),
                function_call_outputs=tuple(outcome.output for outcome in outcomes),
                max_steps_reached=max_steps_reached,
                speech_id=handle.id,
            )
        )

    def commit_tool_items(self, outcomes: list[ToolOutcome], handle: SpeechHandle, owner: Agent | None) -> None:
        """Each call with its output, whatever happened to the speech."""
        for outcome in outcomes:
            self.commit(outcome.call, emit=False, owner=owner, speech=handle)
            if FAULTS.drop_outputs_of_interrupted_tools and handle.interrupted:
                continue
            seq = outcome.call.seq if FAULTS.number_tool_outputs_as_their_calls else None
            self.commit(outcome.output, emit=False, owner=owner, speech=handle, seq=seq)

    def commit_interrupted_tools(self, outcomes: list[ToolOutcome], handle: SpeechHandle, owner: Agent | None) -> None:
        """Tools of a speech that was interrupted (or cut off at close): their
        outputs say so, and no reply follows."""
        outcomes = [interrupted_outcome(outcome) for outcome in outcomes]
        self.emit_tools_executed(outcomes, handle, max_steps_reached=False)
        self.commit_tool_items(outcomes, handle, owner)
