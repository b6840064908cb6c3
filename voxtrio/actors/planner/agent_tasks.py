"""The AgentTask stack: inline sub-agents awaited by a tool or hook.

An AgentTask awaited by a tool or hook becomes the current agent until it
completes (a stack: tasks may nest); the awaiting speech is protected from
the user meanwhile, and is not counted as work a run waits for.
"""

from __future__ import annotations

from typing import Any

import attrs
import trio

from ..._sync import Flag
from ...agent import Agent, AgentTask, AgentTaskCancelled
from ...events import ErrorEvent, EventBus
from ...messages import RunAgentTask
from ...speech import status_of
from ...state import SessionState
from .activity import Activity
from .speeches import SpeechScheduler
from .stage import Stage
from .workers import Workers


@attrs.define(eq=False)
class _TaskFrame:
    task: AgentTask[Any]
    # The agent that awaits it, current again once it completes.
    parent: Agent
    # Set once the task is off the stack and its caller answered.
    finished: Flag = attrs.Factory(Flag)


class AgentTasks:
    """Runs the AgentTasks awaited by tools and hooks, one switch at a time.

    Invariant: ``switching`` is set while a task is being switched to or
    from (``SessionState.agent_switching`` says so to a run).
    """

    def __init__(
        self,
        *,
        state: SessionState,
        stage: Stage,
        bus: EventBus,
        workers: Workers,
        speeches: SpeechScheduler,
        activity: Activity,
    ) -> None:
        self._state = state
        self._stage = stage
        self._bus = bus
        self._workers = workers
        self._speeches = speeches
        self._activity = activity
        # The running tasks, outermost first.
        self._stack: list[_TaskFrame] = []
        # Tasks asked for and not started, in the order they were asked for.
        self._requests: list[RunAgentTask] = []
        # An AgentTask is starting or ending (a user turn waits: who is it for?).
        self.switching = Flag(False)

    def request(self, request: RunAgentTask) -> None:
        if request.handle is not None:
            status_of(request.handle).interruption_holds += 1
        # The caller waits for the user from now on: a run need not wait for it.
        self._workers.park(request.worker, +1)
        if not self._speeches.may_start("agent_task"):
            # A task cannot start on an agent that is leaving (the reference's PR #7268).
            self._answer(
                request,
                error=AgentTaskCancelled(
                    f"AgentTask {request.task.id} cannot start: the agent is handing off "
                    "or the session is closing",
                    by_session=True,
                ),
            )
            return
        self._requests.append(request)
        self._start_next()

    def _answer(self, request: RunAgentTask, *, result: Any = None, error: BaseException | None = None) -> None:
        if request.handle is not None:
            status_of(request.handle).interruption_holds -= 1
        self._workers.park(request.worker, -1)
        if error is not None:
            request.reply.set_exception(error)
        else:
            request.reply.set_result(result)

    def _set_switching(self, switching: bool) -> None:
        self.switching.set(switching)
        self._state.agent_switching = switching
        self._state.update_idle()

    def _start_next(self) -> None:
        """Start the first waiting task whose caller is the current agent.

        A task awaited by the current agent starts at once (so a task may nest
        one of its own); one awaited by a paused agent waits until that agent
        is current again (parallel awaits run one after the other).
        """
        if self.switching:
            return
        for request in self._requests:
            if request.caller is self._stage.agent:
                self._requests.remove(request)
                self._set_switching(True)
                self._workers.start_uncounted(self._run, request, name=f"agent task {request.task.id}")
                return

    async def _run(self, request: RunAgentTask) -> None:
        task, parent = request.task, request.caller
        frame = _TaskFrame(task=task, parent=parent)
        self._stack.append(frame)
        try:
            self._activity.become(task)
            self._set_switching(False)
            # From the instant it completes the task is being switched away from,
            # before this task gets to run again: a run must not see an idle gap.
            task._outcome.add_done_callback(lambda _: self._set_switching(True))
            self._workers.start(self._workers.run_hook(f"{task.id}.on_enter", task.on_enter, task), "on_enter")
            await task._outcome.settled()
            # What the task still says (the reply to the tool that completed it) is its own.
            await self._speeches.wait_for_speeches_of(task)
            with trio.move_on_after(self._stage.options.close_timeout) as deadline:
                await self._workers.run_hook(f"{task.id}.on_exit", task.on_exit, task)
            if deadline.cancelled_caught:
                self._bus.emit(
                    ErrorEvent(
                        source="agent",
                        message=f"{task.id}.on_exit did not return within close_timeout; cancelled",
                        recoverable=True,
                    )
                )
            parent._chat_ctx.merge(task._chat_ctx, exclude_function_calls=not task.preserve_function_call_history)
            self._stack.remove(frame)
            self._activity.become(parent)
        finally:
            if frame in self._stack:
                self._stack.remove(frame)
            error = task._outcome.exception() if task._outcome.done() else AgentTaskCancelled(
                f"AgentTask {task.id} ended without a result", by_session=True
            )
            result = None if error is not None else task._outcome.result()
            self._answer(request, result=result, error=error)
            # Tasks its own tools asked for and never got to run end with it.
            for orphan in [r for r in self._requests if r.caller is task]:
                self._requests.remove(orphan)
                self._answer(
                    orphan,
                    error=AgentTaskCancelled(
                        f"AgentTask {orphan.task.id} cannot start: {task.id} has finished", by_session=True
                    ),
                )
            frame.finished.set()
            self._set_switching(False)
            self._start_next()

    async def unwind(self, why: str) -> None:
        """End every running AgentTask, innermost first, and every waiting one."""
        for request in list(self._requests):
            self._requests.remove(request)
            self._answer(
                request,
                error=AgentTaskCancelled(f"AgentTask {request.task.id} is cancelled: {why}", by_session=True),
            )
        while self._stack:
            frame = self._stack[-1]
            frame.task._cancel_by_session(why)
            await frame.finished.wait_value(True)
