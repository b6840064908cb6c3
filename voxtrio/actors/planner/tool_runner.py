"""The tool runner: a reply step's tool calls, run as soon as they are parsed.

It never starts what follows a tool step: :meth:`ToolRunner.settle` says it
as data (a hand-off to ask for, the tool choice of a follow-up reply) and
the Planner's actor acts on it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Sequence

import attrs
import trio

from ..._sync import Flag
from ...chat import ChatContext, FunctionCall
from ...errors import StopResponse, ToolError
from ...events import ErrorEvent, EventBus
from ...providers.base import ToolCallChunk
from ...tools import (
    FunctionTool,
    RunContext,
    ToolArgumentsError,
    ToolOutcome,
    outcome_from_error,
    outcome_from_result,
    rejected_outcome,
    unknown_function_outcome,
)
from ...context import current_caller, current_tool_speech
from .history import History
from .speeches import SpeechRun
from .stage import Stage
from .workers import Workers

if TYPE_CHECKING:
    from ...agent import Agent
    from ...session import AgentSession

logger = logging.getLogger("voxtrio.planner")

TOOL_CANCELLED_OUTPUT = "the tool was cancelled: the session closed before it returned"
TOOL_WITHDRAWN_OUTPUT = "the tool was cancelled: the model withdrew the call before it returned"
TOOL_CHOICE_NONE_OUTPUT = "tool calls are not allowed in this step (tool_choice is 'none')"


@attrs.define(eq=False)
class ToolCalls:
    """The tool calls of one reply step, in the order the LLM made them."""

    # One per call: None while it runs, then what it returned (or raised).
    outcomes: list[ToolOutcome | None] = attrs.Factory(list)
    # Set once the LLM's calls are over and every call has returned.
    done: Flag = attrs.Factory(Flag)
    # The scope of each call running, by call id (a realtime model may withdraw it).
    running: dict[str, trio.CancelScope] = attrs.Factory(dict)
    # The calls the model withdrew: their outputs are not wanted.
    withdrawn: set[str] = attrs.Factory(set)

    def withdraw(self, call_ids: Sequence[str]) -> None:
        for call_id in call_ids:
            self.withdrawn.add(call_id)
            if call_id in self.running:
                self.running[call_id].cancel()

    def finished(self) -> list[ToolOutcome]:
        return [outcome for outcome in self.outcomes if outcome is not None]


@attrs.frozen
class ToolStepEnd:
    """What a finished tool step asks for: decided here, done by the actor."""

    # The agent one tool returned: the conversation is handed to it.
    handoff: Agent | None
    # The tool choice of the follow-up reply ("none": it may call no tool).
    follow_up_tool_choice: str


class ToolRunner:
    def __init__(
        self,
        *,
        bus: EventBus,
        stage: Stage,
        workers: Workers,
        history: History,
        session: AgentSession,
    ) -> None:
        self._bus = bus
        self._stage = stage
        self._workers = workers
        self._history = history
        # What a tool's RunContext.session is, and what a returned agent binds to.
        self._session = session

    async def execute(
        self,
        run: SpeechRun,
        calls: trio.MemoryReceiveChannel[ToolCallChunk],
        tools: list[FunctionTool],
        tool_choice: str | None,
        batch: ToolCalls,
    ) -> None:
        by_name = {tool.name: tool for tool in tools}
        outcomes = batch.outcomes
        try:
            async with trio.open_nursery() as nursery, calls:
                async for chunk in calls:
                    call = FunctionCall(name=chunk.name, arguments=chunk.arguments, call_id=chunk.call_id)
                    call.seq = self._bus.next_seq()
                    call.created_at = trio.current_time()
                    index = len(outcomes)
                    outcomes.append(None)
                    if tool_choice == "none":
                        # Answered, never run, and no reply asked for: this was the last round.
                        outcomes[index] = rejected_outcome(call, TOOL_CHOICE_NONE_OUTPUT)
                    elif chunk.name not in by_name:
                        outcomes[index] = unknown_function_outcome(call, list(by_name))
                    else:
                        nursery.start_soon(self._run_tool, run, by_name[chunk.name], call, batch, index)
        finally:
            batch.done.set()

    async def _run_tool(
        self, run: SpeechRun, tool: FunctionTool, call: FunctionCall, batch: ToolCalls, index: int
    ) -> None:
        handle = run.handle
        context = RunContext(session=self._session, speech_handle=handle, function_call=call, agent=run.owner)
        token = current_tool_speech.set(handle)
        caller_token = current_caller.set(run.owner)
        try:
            with trio.CancelScope() as batch.running[call.call_id], self._workers.user_code(f"tool {tool.name}"):
                try:
                    arguments = tool.parse_arguments(call.arguments)
                    result = await tool.call(arguments, context)
                except Exception as error:
                    if not isinstance(error, (StopResponse, ToolError, ToolArgumentsError)):
                        logger.exception("tool %s raised", tool.name)
                    batch.outcomes[index] = outcome_from_error(call, error)
                except BaseException:
                    withdrawn = call.call_id in batch.withdrawn
                    output = TOOL_WITHDRAWN_OUTPUT if withdrawn else TOOL_CANCELLED_OUTPUT
                    batch.outcomes[index] = rejected_outcome(call, output)
                    raise
                else:
                    batch.outcomes[index] = outcome_from_result(call, result)
        finally:
            batch.running.pop(call.call_id, None)
            current_tool_speech.reset(token)
            current_caller.reset(caller_token)

    def settle(self, run: SpeechRun, outcomes: list[ToolOutcome], tool_choice: str | None, *, accepting: bool) -> ToolStepEnd:
        """A tool step of a speech that was not interrupted ended: announce it
        and decide what follows (a tool that returned an agent hands off)."""
        status = run.status
        max_steps_reached = status.num_steps >= self._stage.options.max_tool_steps + 1
        status.num_steps += 1
        self._history.emit_tools_executed(outcomes, run.handle, max_steps_reached=max_steps_reached)
        agents = [outcome.agent for outcome in outcomes if outcome.agent is not None]
        draining = not accepting
        if len(agents) == 1:
            try:
                agents[0]._bind(self._session)
            except RuntimeError as error:
                self._bus.emit(ErrorEvent(source="agent", message=str(error), recoverable=True, error=error))
                agents = []
        handoff = None
        if len(agents) == 1:
            handoff = agents[0]
            draining = True
        elif len(agents) > 1:
            logger.error("more than one tool returned an agent; no hand-off")
        last_round = max_steps_reached or draining or tool_choice == "none"
        return ToolStepEnd(handoff=handoff, follow_up_tool_choice="none" if last_round else "auto")

    @staticmethod
    def follow_up_context(
        run: SpeechRun, ctx: ChatContext, outcomes: list[ToolOutcome], step_started: int
    ) -> ChatContext | None:
        """The context a reply to these outputs reads (None: none is asked for)."""
        if not any(outcome.reply_required for outcome in outcomes):
            return None
        follow_up = ctx.copy()
        # What the agent's context gained during this step: what it said, and
        # the conversation of an AgentTask a tool awaited (merged back into it).
        owner = run.owner
        gained: Any = owner._chat_ctx.items if owner is not None else []
        for item in gained:
            is_system = item.type == "message" and item.role == "system"
            if item.seq > step_started and not is_system and follow_up.get(item.id) is None:
                follow_up.insert(item)
        for outcome in outcomes:
            for item in (outcome.call, outcome.output):
                if follow_up.get(item.id) is None:
                    follow_up.insert(item)
        return follow_up
