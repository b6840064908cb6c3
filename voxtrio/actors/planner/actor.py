"""The Planner's actor: its inbox, what each message does, and the activity's lifecycle.

Everything else is done by the parts it builds in ``__init__``, each given
only what it needs (none of them sees the actor): see the package docstring.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Union, assert_never

import trio


from ..._sync import Flag, Future
from ...agent import Agent
from ...events import EventBus
from ...links import RealtimeControl
from ...messages import (
    DrainActivity,
    EndOfTurnPending,
    FunctionCallsCancelled,
    GenerateReply,
    HandoffRequested,
    Interrupt,
    OptionsChanged,
    PlannerMessage,
    PlayoutStalled,
    PreemptiveTranscript,
    RealtimeResponse,
    RunAgentTask,
    Say,
    StartActivity,
    UserActivity,
    UserInterrupted,
    UserTurnCompleted,
    UserTurnExceeded,
)
from ...speech import SpeechFactory, status_of
from ...state import SessionState
from .activity import Activity
from .agent_state import AgentStatus
from .agent_tasks import AgentTasks
from .barge_in import BargeIn
from .history import History
from .notes import ScheduleSpeech, StopAccepting
from .playout import Playout
from .preemptive import Preemptive
from .realtime_reply import RealtimeReplies
from .reply import ReplyRequest, ReplyResult, ReplyStep
from .say import SayStep
from .speeches import SpeechRun, SpeechScheduler
from .stage import Stage
from .tool_runner import ToolRunner
from .user_turns import UserTurns
from .workers import Workers

if TYPE_CHECKING:
    from ...session import AgentSession

Message = Union[PlannerMessage, ScheduleSpeech, StopAccepting]


class Planner:
    def __init__(
        self,
        *,
        session: AgentSession,
        bus: EventBus,
        state: SessionState,
        stage: Stage,
        speech_factory: SpeechFactory,
        speaker_inbox: trio.MemorySendChannel[Any],
        turn_inbox: trio.MemorySendChannel[Any] | None,
        session_inbox: trio.MemorySendChannel[Any],
        can_pause: bool = False,
        realtime: RealtimeControl | None = None,
    ) -> None:
        self._state = state
        self._stage = stage
        self._session_inbox = session_inbox
        self.inbox, self._inbox = trio.open_memory_channel[Message](math.inf)
        # Agents whose on_exit started (set once it returned): a close during a
        # hand-off waits for the hand-off's on_exit instead of running it again.
        self._exits: dict[Agent, Flag] = {}
        # The parts, each built with what it needs.
        workers = self._workers = Workers(state=state, bus=bus)
        agent_status = self._agent_status = AgentStatus(
            state=state, bus=bus, turn_inbox=turn_inbox, session_inbox=session_inbox
        )
        history = self._history = History(state=state, bus=bus, stage=stage)
        speeches = self._speeches = SpeechScheduler(
            state=state, stage=stage, bus=bus, workers=workers, agent_status=agent_status
        )
        self._playout = Playout(
            state=state,
            stage=stage,
            speaker_inbox=speaker_inbox,
            planner_inbox=self.inbox,
            agent_status=agent_status,
            speeches=speeches,
        )
        self._tools = ToolRunner(bus=bus, stage=stage, workers=workers, history=history, session=session)
        self._say = SayStep(
            bus=bus, speeches=speeches, playout=self._playout, history=history, speaker_inbox=speaker_inbox
        )
        self._reply = ReplyStep(
            state=state,
            bus=bus,
            stage=stage,
            speeches=speeches,
            playout=self._playout,
            history=history,
            tools=self._tools,
            agent_status=agent_status,
            speaker_inbox=speaker_inbox,
            session_inbox=session_inbox,
        )
        # A realtime model's responses (None: the session has no RealtimeLink).
        self._realtime = None
        if realtime is not None:
            self._realtime = RealtimeReplies(
                state=state,
                bus=bus,
                stage=stage,
                speeches=speeches,
                playout=self._playout,
                history=history,
                tools=self._tools,
                agent_status=agent_status,
                factory=speech_factory,
                link=realtime,
                speaker_inbox=speaker_inbox,
                session_inbox=session_inbox,
            )
        self._activity = Activity(
            state=state,
            stage=stage,
            history=history,
            agent_status=agent_status,
            session=session,
            bus=bus,
            realtime=realtime,
        )
        self._agent_tasks = AgentTasks(
            state=state, stage=stage, bus=bus, workers=workers, speeches=speeches, activity=self._activity
        )
        self._barge_in = BargeIn(
            state=state,
            stage=stage,
            bus=bus,
            agent_status=agent_status,
            speeches=speeches,
            workers=workers,
            speaker_inbox=speaker_inbox,
            can_pause=can_pause,
        )
        self._preemptive = Preemptive(
            state=state, stage=stage, bus=bus, speeches=speeches, factory=speech_factory
        )
        self._user_turns = UserTurns(
            state=state,
            stage=stage,
            bus=bus,
            workers=workers,
            history=history,
            speeches=speeches,
            barge_in=self._barge_in,
            preemptive=self._preemptive,
            agent_tasks=self._agent_tasks,
            factory=speech_factory,
            planner_inbox=self.inbox,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._run(task_status)
        finally:
            self._user_turns.commit_unhandled()

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            self._workers.open(nursery)
            nursery.start_soon(self._speeches.run_queue, self._barge_in.step_played)
            task_status.started()
            while True:
                self._handle(await self._inbox.receive())
                # Messages posted together (say, an API call followed by another at
                # the same instant) are handled together, before any other task
                # runs: what they mean does not depend on task scheduling.
                while True:
                    try:
                        message = self._inbox.receive_nowait()
                    except trio.WouldBlock:
                        break
                    self._handle(message)

    def _handle(self, message: Message) -> None:
        match message:
            case PlayoutStalled():
                self._playout.on_stalled(message)
            case Say():
                # Spawned below, the speech counts as planner work from here on.
                self._state.count_posted_speech(-1)
                self._start_say(message)
            case GenerateReply():
                self._state.count_posted_speech(-1)
                self._start_reply(message)
            case Interrupt():
                self._speeches.interrupt_all(force=message.force, reply=message.reply)
            case UserTurnCompleted():
                self._user_turns.completed(message)
            case UserInterrupted():
                self._barge_in.interrupt(message.reason)
            case UserActivity():
                self._barge_in.on_user_activity(message.speaking)
            case EndOfTurnPending():
                self._barge_in.on_end_of_turn_pending(message)
            case PreemptiveTranscript():
                self._preempt(message)
            case UserTurnExceeded():
                self._user_turns.exceeded(message)
            case StartActivity():
                self._start_activity(message)
            case DrainActivity():
                self._workers.start_uncounted(self._drain, message)
            case OptionsChanged():
                self._stage.options = message.options
            case RunAgentTask():
                self._agent_tasks.request(message)
            case StopAccepting():
                self._speeches.stop_accepting()
                message.reply.set_result(None)
            case ScheduleSpeech():
                self._speeches.schedule(message.handle)
            case RealtimeResponse():
                if self._realtime is not None:
                    self._realtime.created(message)
            case FunctionCallsCancelled():
                if self._realtime is not None:
                    self._realtime.withdrawn(message.call_ids)
            case _:
                assert_never(message)

    # -- speeches ---------------------------------------------------------------

    def _start_say(self, message: Say) -> None:
        run = self._speeches.adopt(message.handle)
        text_send, text_receive = trio.open_memory_channel[str](math.inf)
        # Synthesis is requested now, so TTS requests keep the order of the calls.
        segment_id = self._playout.synthesize_now(run, text_receive, message.audio)
        self._speeches.spawn(run, self._say_step(run, message, segment_id, text_send))
        self._speeches.schedule(message.handle)

    async def _say_step(
        self, run: SpeechRun, message: Say, segment_id: str, text_send: trio.MemorySendChannel[str]
    ) -> None:
        result = await self._say.run(run, message, segment_id, text_send)
        spoken = result is not None and result.text and message.add_to_chat_ctx
        if self._realtime is not None and spoken and self._stage.realtime(run.owner):
            assert result is not None
            self._realtime.spoken(result.text)

    def _start_reply(self, message: GenerateReply) -> None:
        stage = self._stage
        if self._realtime is not None and stage.realtime():
            self._realtime.requested(message)
            return
        tools = stage.tools()
        if message.tools is not None:
            tools = [tool for tool in tools if tool.name in set(message.tools)]
        base = message.chat_ctx if message.chat_ctx is not None else stage.agent_ctx()
        current = self._state.current_speech
        cut_off = None
        if current is not None and current.interrupted and not status_of(current).step_played:
            cut_off = current
            if self._speeches.may_start("speech"):
                self._agent_status.set("thinking")  # straight from speaking to the new reply
        request = ReplyRequest(
            chat_ctx=base,
            tools=tools,
            tool_choice=message.tool_choice,
            new_message=message.user_message,
            instructions=message.instructions,
            cut_off=cut_off,
        )
        run = self._speeches.adopt(message.handle)
        self._speeches.spawn(run, self._reply_steps(run, request))
        self._speeches.schedule(message.handle)

    def _preempt(self, message: PreemptiveTranscript) -> None:
        prepared = self._preemptive.prepare(message)
        if prepared is not None:
            handle, request = prepared
            run = self._speeches.adopt(handle)
            self._speeches.spawn(run, self._reply_steps(run, request))

    async def _reply_steps(self, run: SpeechRun, request: ReplyRequest) -> None:
        """One reply step, then what its tools ask for (a follow-up step is a new task)."""
        result = await self._reply.run(run, request)
        if result is not None:
            self._end_tool_step(run, result)

    def _end_tool_step(self, run: SpeechRun, result: ReplyResult) -> None:
        """Tool outputs are committed with their calls in one step, whatever
        happened to the speech; a follow-up step runs on the same handle when an
        output needs a reply, ``max_tool_steps`` times, then once more with
        ``tool_choice="none"`` so the agent never goes silent."""
        handle = run.handle
        if handle.interrupted:
            self._history.commit_interrupted_tools(result.outcomes, handle, run.owner)
            return
        accepting = self._speeches.may_start("tool_step")
        end = self._tools.settle(run, result.outcomes, result.request.tool_choice, accepting=accepting)
        if end.handoff is not None:
            self._state.count_handoff(+1)
            self._session_inbox.send_nowait(HandoffRequested(agent=end.handoff))
        self._history.commit_tool_items(result.outcomes, handle, run.owner)
        follow_up = self._tools.follow_up_context(run, result.ctx, result.outcomes, result.step_started)
        if follow_up is not None:
            request = ReplyRequest(
                chat_ctx=follow_up, tools=result.request.tools, tool_choice=end.follow_up_tool_choice
            )
            self._speeches.spawn(run, self._reply_steps(run, request))
            self._speeches.schedule(handle, force=True)

    # -- the activity's lifecycle ----------------------------------------------------

    def _start_activity(self, message: StartActivity) -> None:
        agent = message.agent
        self._exits.pop(agent, None)  # an agent handed back to exits again later
        self._activity.become(agent, carry_history=message.carry_history)
        self._speeches.open()
        if self._agent_status.current == "initializing":
            self._agent_status.set("listening")
        message.reply.set_result(None)
        self._workers.start(self._workers.run_hook(f"{agent.id}.on_enter", agent.on_enter, agent), "on_enter")

    async def _drain(self, message: DrainActivity) -> None:
        """Finish the activity: on_exit, then every speech and tool step ends.

        The drain task itself is not counted as Planner work; the Session
        bounds the whole wait with its close deadline.
        """
        self._speeches.block_turns()
        # No turn will use a reply prepared ahead any more: a drain cancels it.
        self._preemptive.drop()
        if message.interrupt:
            self._speeches.interrupt_all(force=True, reply=None)
        await self._agent_tasks.unwind("the session is closing" if self._state.closing else "handing off")
        agent = self._stage.agent
        if message.run_on_exit and agent is not None:
            exited = self._exits.get(agent)
            if exited is None:
                exited = self._exits[agent] = Flag()
                try:
                    await self._workers.run_hook(f"{agent.id}.on_exit", agent.on_exit, agent)
                finally:
                    exited.set()
            else:
                # A close during a hand-off: the hand-off's on_exit is already
                # running; the close waits for it too (under its own deadline).
                await exited.wait_value(True)
        # Through the inbox: speeches on_exit asked for are queued before the door closes.
        closed: Future[None] = Future()
        self.inbox.send_nowait(StopAccepting(closed))
        await closed
        await self._workers.idle.wait_value(True)
        message.reply.set_result(None)
