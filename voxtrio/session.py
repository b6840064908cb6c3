"""AgentSession: the public face of a running voice session.

``session.main(agent, transport)`` is the session: it starts the actors in a
nursery it owns, activates the agent, and returns when the session has closed,
with nothing of the session still running. Embed it with
``trio.run(session.main, agent)`` or ``await nursery.start(session.main, agent)``
(which returns once the agent is listening).

The methods here are the reference's ``AgentSession`` API. The synchronous ones
(``say``, ``generate_reply``, ``interrupt``...) only create a handle and post a
message to the actor that does the work; what they must answer at once comes
from the state the actors publish (:mod:`voxtrio.state`).
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
from typing import Any, AsyncIterable, Sequence

import attrs
import trio

from ._sync import Future
from .actors.audio_in import AudioIn
from .actors.planner import Planner, Stage
from .actors.realtime import RealtimeLink
from .actors.recognizer import Recognizer
from .actors.recorder import Recorder
from .actors.supervisor import CloseInfo, SessionSupervisor
from .actors.speaker import Speaker
from .actors.turn import Turn
from .actors.vad import VADActor
from .agent import Agent, AgentTask, CarryHistory, check_carry_history
from .chat import ChatContext, ChatMessage
from .context import current_caller, current_tool_speech, current_worker, inside_session
from .errors import SessionClosedError, root_cause
from .events import CloseEvent, Event, EventBus
from .links import Links
from .messages import (
    ClearUserTurn,
    CommitUserTurn,
    DrainRequested,
    GenerateReply,
    Interrupt,
    OptionsChanged,
    RunAgentTask,
    Say,
    SetAudioInput,
)
from .options import NOT_GIVEN, SESSION_OPTION_NAMES, SessionConnectOptions, SessionOptions, is_given
from .providers.base import LLM, STT, TTS, VAD
from .recording import RecordingOptions, recording_options
from .run_result import RunResult
from .speech import SpeechFactory, SpeechHandle, SpeechSource
from .state import SessionState
from .telemetry import LogContext, SessionTelemetry, SessionUsage, current_log_context
from .telemetry.logging import install_record_factory
from .tools import (
    FunctionTool,
    Toolset,
    ToolsetLease,
    check_tool_items,
    flatten_tools,
    open_toolsets,
    toolsets_of,
)
from .transports.base import Transport
from .validation import (
    check_async_iterable,
    check_bool,
    check_number,
    check_str,
    check_type,
)

logger = logging.getLogger("voxtrio.session")

TOOL_CHOICES = ("auto", "required", "none")


def _check_flag_or_default(value: Any, name: str) -> None:
    if is_given(value):
        check_bool(value, name)


def _options_with(base: SessionOptions | None, changes: dict[str, Any], what: str) -> SessionOptions:
    """``base`` (or the defaults) with ``changes``, each checked: a wrong value
    fails here, naming the option, instead of inside an actor."""
    unknown = set(changes) - SESSION_OPTION_NAMES
    if unknown:
        raise TypeError(f"unknown {what}(s): {', '.join(sorted(unknown))}")
    if isinstance(changes.get("tts_text_transforms"), list):
        changes = {**changes, "tts_text_transforms": tuple(changes["tts_text_transforms"])}
    return SessionOptions(**changes) if base is None else attrs.evolve(base, **changes)


def _only_cancellation(error: BaseException) -> bool:
    """Whether ``error`` is the session being cancelled from outside: a
    ``Cancelled``, or (from nested nurseries) a group of nothing else."""
    if isinstance(error, BaseExceptionGroup):
        return error.subgroup(lambda e: not isinstance(e, (trio.Cancelled, BaseExceptionGroup))) is None
    return isinstance(error, trio.Cancelled)


class AgentSession:
    """A voice conversation: hear, decide, speak, hand over, close.

    Keyword arguments are the reference's flat options (see
    :class:`voxtrio.options.SessionOptions` for each one and its default),
    plus the providers, session-wide ``tools`` and ``userdata``. Session tools
    (and toolsets, such as MCP servers) are offered to every agent and survive
    hand-offs; an agent's own tool of the same name wins.
    """

    def __init__(
        self,
        *,
        stt: STT | None = None,
        vad: VAD | None = None,
        llm: LLM | None = None,
        tts: TTS | None = None,
        tools: Sequence[FunctionTool | Toolset] = (),
        userdata: Any = NOT_GIVEN,
        conn_options: SessionConnectOptions | None = None,
        record: bool | RecordingOptions = False,
        max_recorded_events: int = 10_000,
        **options: Any,
    ) -> None:
        if conn_options is not None:
            options["conn_options"] = conn_options
        self._options = _options_with(None, options, "AgentSession option")
        self.stt, self.vad, self.llm, self.tts = stt, vad, llm, tts
        self._tools = check_tool_items(list(tools), owner="AgentSession")
        self._userdata = userdata
        self._run: RunResult | None = None
        self._recording = recording_options(record)
        self._record = self._recording is not None
        self.id = f"session_{secrets.token_hex(6)}"
        """Names the session in logs, traces and its recording's directory."""
        self.usage = SessionUsage()
        """Tokens, characters and audio seconds used so far, per provider and model."""
        self._bus = EventBus(max_recorded=max_recorded_events)
        self._state = SessionState()
        self._speech_ids = itertools.count(1)
        self._planner: Planner | None = None
        self._stage: Stage | None = None
        self._speech_factory: SpeechFactory | None = None
        self._speaker: Speaker | None = None
        self._supervisor: SessionSupervisor | None = None
        # the running session's links (the Turn's, the Recognizer's... inboxes)
        self._links: Links | None = None
        self._closed: trio.Event | None = None
        self.recorder: Recorder | None = None
        self.last_close: CloseEvent | None = None

    # -- running -------------------------------------------------------------------

    async def main(
        self,
        agent: Agent,
        transport: Transport | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the session until it closes. Nothing it started outlives it.

        It returns once the session has closed, whatever went wrong inside:
        a provider, transport or toolset that fails, user code (hooks, tools,
        callbacks) that raises an ``Exception``, is an ``error`` event (and
        a close with reason ``error`` past the error budget). It raises only
        for what is not an ``Exception`` (``KeyboardInterrupt``,
        ``SystemExit``...) from user code, after closing with reason
        ``error``, for a cancellation from outside (reason ``job_shutdown``),
        and at once when ``agent`` is not an Agent or is already running in
        another session.
        """
        if self._state.running or self._closed is not None:
            raise RuntimeError("this session is already running")
        check_type(agent, Agent, "agent", "an Agent")
        agent._bind(self)
        state = self._state = SessionState()
        state.extra["audio_output"] = transport is not None and transport.audio_output is not None
        if transport is not None:
            transport.attach(self)
        self._closed = trio.Event()
        bus = self._bus
        supervisor: SessionSupervisor | None = None
        self._supervisor = None
        token = inside_session.set(self)
        info = CloseInfo("error", None, ())
        # Every task the session starts copies this context: their records name the session.
        install_record_factory()
        log_context = LogContext(session_id=self.id, agent=agent.id)
        log_token = current_log_context.set(log_context)
        self.usage = SessionUsage()
        telemetry = SessionTelemetry(
            session_id=self.id, agent_label=agent.id, started_at=trio.current_time(), usage=self.usage
        )
        recorder = self.recorder = Recorder(options=self._recording, session_id=self.id)
        for subscriber in (log_context, telemetry, recorder):
            bus.on("*", subscriber.on_event)
        try:
            options = self._options
            has_input = transport is not None and type(transport).read_audio is not Transport.read_audio
            vad = agent.override("vad", self.vad)
            stt = agent.override("stt", self.stt)
            speaker_tts = agent.override("tts", self.tts)
            has_stt = has_input and stt is not None
            has_vad = has_input and vad is not None
            # A VAD that decides in microseconds runs inside AudioIn.
            detector = vad.detector() if has_vad else None
            streaming = has_stt and stt.capabilities.streaming
            links = self._links = Links.open(
                audio_input=has_input,
                recognizer=None if not has_stt else "streaming" if streaming else "segmented",
                vad_actor=has_vad and detector is None,
            )
            speaker = self._speaker = Speaker(
                tts=speaker_tts,
                transport=transport,
                bus=bus,
                options=options,
                session_inbox=links.supervisor,
                recorder=recorder.inbox if self._record else None,
            )
            # What the Planner publishes of its agent and options, and the
            # handle factory both sides share: neither calls the other.
            self._stage = Stage(options=options, llm=self.llm, tts=self.tts, session_tools=self._tools)
            self._speech_factory = SpeechFactory(bus=bus, state=state, ids=self._speech_ids)
            planner = self._planner = Planner(
                session=self,
                bus=bus,
                state=state,
                stage=self._stage,
                speech_factory=self._speech_factory,
                speaker_inbox=speaker.inbox,
                turn_inbox=links.turn,
                session_inbox=links.supervisor,
                can_pause=speaker.can_pause,
                realtime=links.realtime.control,
            )
            supervisor = self._supervisor = SessionSupervisor(
                bus=bus,
                state=state,
                options=options,
                inbox=links.supervisor_inbox,
                to_self=links.supervisor,
                planner=planner.inbox,
                turn=links.turn,
            )
            turn = Turn(
                bus=bus,
                state=state,
                options=options,
                inbox=links.turn_inbox,
                events=links.turn_events_out,
                planner=planner.inbox,
                supervisor=links.supervisor,
                recognizer=links.recognizer.control if links.recognizer else None,
                audio_in=links.audio_in,
                has_stt=has_stt,
                has_vad=has_vad,
                realtime=links.realtime.control if links.realtime else None,
            )
            # A realtime model's conversation, opened when an agent on one is current.
            assert links.realtime is not None
            realtime_link = RealtimeLink(
                bus=bus,
                ends=links.realtime,
                turn_events=links.turn_events,
                planner=planner.inbox,
                supervisor=links.supervisor,
                conn_options=options.conn_options.llm_conn_options,
            )
            recognizer = vad_actor = audio_in = None
            if has_input:
                assert transport is not None
                ends = links.recognizer
                # Only a recognizer driven by VAD segments reads them.
                segmented = ends if ends is not None and not streaming else None
                if ends is not None:
                    recognizer = Recognizer(
                        stt=stt,
                        bus=bus,
                        options=options,
                        ends=ends,
                        turn_events=links.turn_events,
                        supervisor=links.supervisor,
                    )
                if links.vad_frames_out is not None:
                    vad_actor = VADActor(
                        vad=vad,
                        bus=bus,
                        frames=links.vad_frames_out,
                        turn_events=links.turn_events,
                        supervisor=links.supervisor,
                        recognizer_events=segmented.vad if segmented else None,
                    )
                assert links.audio_in_inbox is not None
                audio_in = AudioIn(
                    transport=transport,
                    bus=bus,
                    inbox=links.audio_in_inbox,
                    supervisor=links.supervisor,
                    vad=links.vad_frames,
                    recognizer=ends.audio if ends else None,
                    realtime=links.realtime.audio,
                    recorder=recorder.inbox if self._record else None,
                    turn=links.turn,
                    state=state,
                    flush_recognizer=streaming,
                    vad_detector=detector,
                    vad_events=(
                        [links.turn_events.clone()] + ([segmented.vad] if segmented else [])
                        if detector is not None
                        else []
                    ),
                )
            async with trio.open_nursery() as actors:
                for actor in (supervisor, recorder, speaker, turn, planner, realtime_link, recognizer, vad_actor, audio_in):
                    if actor is not None:
                        await actors.start(actor.run)
                # Providers with work of their own (a fallback adapter's probes) do it here.
                providers = (self.stt, stt, self.llm, agent.override("llm", self.llm), self.tts, speaker_tts)
                for provider in {id(p): p for p in providers if hasattr(p, "run_background")}.values():
                    await actors.start(provider.run_background, bus.emit)
                supervisor.mark_running()
                session_toolsets = ToolsetLease()
                # A close asked for while a toolset connects (a server that does
                # not answer) cuts the start-up short.
                with supervisor.until_close():
                    session_toolsets = await open_toolsets(
                        actors, toolsets_of(self._tools), supervisor.report_toolset_error
                    )
                    await supervisor.start_agent(agent)
                task_status.started()
                info = await supervisor.finished
                await session_toolsets.aclose(deadline=supervisor.close_deadline())
                actors.cancel_scope.cancel()
        except BaseException as error:
            if _only_cancellation(error):
                info = CloseInfo("job_shutdown", None, ())
            else:
                info = CloseInfo("error", error, ())
            raise
        finally:
            inside_session.reset(token)
            if supervisor is not None:
                supervisor.mark_closed()
            state.accepting_speech = False
            state.agent_state = "initializing"
            state.user_state = "listening"
            state.current_speech = None
            cause = None if info.error is None else root_cause(info.error)
            error_text = None if cause is None else f"{type(cause).__name__}: {cause}"
            self.last_close = bus.emit(  # type: ignore[assignment]
                CloseEvent(
                    reason=info.reason, error=error_text, cancelled=info.cancelled, usage=self.usage.to_dict()
                )
            )
            bus.close_subscribers()
            for subscriber in (log_context, telemetry, recorder):
                bus.off("*", subscriber.on_event)
            current_log_context.reset(log_token)
            self._closed.set()
            self._closed = None
            await self._finish_recording(recorder)
            if transport is not None:
                # Shielded (a cancelled session still closes its transport) but
                # bounded: a transport that never finishes closing is left behind.
                with trio.CancelScope(shield=True) as closing:
                    closing.deadline = trio.current_time() + self._options.close_timeout
                    await transport.aclose()
                if closing.cancelled_caught:
                    logger.warning(
                        "%r did not finish closing within close_timeout (%g s)",
                        transport,
                        self._options.close_timeout,
                    )

    async def _finish_recording(self, recorder: Recorder) -> None:
        """The transcript, then the upload hook: shielded, bounded by close_timeout."""
        with trio.CancelScope(shield=True) as closing:
            closing.deadline = trio.current_time() + self._options.close_timeout
            try:
                await recorder.aclose()
            except Exception:
                logger.exception("finishing the recording of %s failed", self.id)
        if closing.cancelled_caught:
            logger.warning("the recording upload of %s did not finish within close_timeout", self.id)

    # -- lifecycle -------------------------------------------------------------------

    def shutdown(self, *, drain: bool = True) -> None:
        """Close soon: let queued speech play first when ``drain`` is true."""
        check_bool(drain, "drain")
        if self._state.running and self._supervisor is not None:
            self._supervisor.request_close(reason="user_initiated", drain=drain)

    async def aclose(self) -> None:
        """Close now (interrupting speech) and wait until the session has ended.

        Bounded by ``close_timeout`` even if a tool or hook never returns. Called
        from inside the session (a tool, a hook), it only asks for the close.
        """
        closed = self._closed
        if not self._state.running or closed is None or self._supervisor is None:
            return
        self._supervisor.request_close(reason="user_initiated", drain=False)
        if inside_session.get() is not self:
            await closed.wait()

    async def drain(self) -> None:
        """Stop taking new turns, run on_exit and wait for every speech to finish."""
        self._check_running()
        assert self._links is not None
        done: Future[None] = Future()
        self._links.supervisor.send_nowait(DrainRequested(reply=done))
        await done

    async def __aenter__(self) -> AgentSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- speaking ------------------------------------------------------------------------

    def say(
        self,
        text: str | AsyncIterable[str],
        *,
        audio: AsyncIterable[Any] | None = None,
        allow_interruptions: bool | Any = NOT_GIVEN,
        add_to_chat_ctx: bool = True,
    ) -> SpeechHandle:
        if not isinstance(text, str):
            check_async_iterable(text, "text", what="a string or an async iterable of strings")
        check_async_iterable(audio, "audio", optional=True, what="an async iterable of AudioFrames")
        _check_flag_or_default(allow_interruptions, "allow_interruptions")
        check_bool(add_to_chat_ctx, "add_to_chat_ctx")
        self._check_accepting()
        tts = self.current_agent.override("tts", self.tts)
        if audio is None and tts is None and self._has_audio_output():
            raise RuntimeError("say() needs a TTS, or pre-rendered audio=, to speak text")
        handle = self._create_handle(source="say", allow_interruptions=allow_interruptions)
        assert self._planner is not None
        self._planner.inbox.send_nowait(
            Say(handle=handle, text=text, audio=audio, add_to_chat_ctx=add_to_chat_ctx)
        )
        return handle

    def generate_reply(
        self,
        *,
        user_input: str | ChatMessage | None = None,
        instructions: str | None = None,
        tool_choice: str | Any = NOT_GIVEN,
        tools: Sequence[str] | None = None,
        allow_interruptions: bool | Any = NOT_GIVEN,
        chat_ctx: ChatContext | None = None,
    ) -> SpeechHandle:
        if user_input is not None:
            check_type(user_input, (str, ChatMessage), "user_input", "a string, a ChatMessage or None")
        check_str(instructions, "instructions", optional=True)
        if tools is not None:
            check_type(tools, (list, tuple), "tools", "a list of tool names or None")
            for name in tools:
                check_type(name, str, "tools", "a list of tool names (strings)")
        _check_flag_or_default(allow_interruptions, "allow_interruptions")
        if chat_ctx is not None:
            check_type(chat_ctx, ChatContext, "chat_ctx", "a ChatContext or None")
        choosing = is_given(tool_choice) and tool_choice is not None
        if choosing:
            check_type(tool_choice, str, "tool_choice", "'auto', 'required', 'none', a tool name or None")
        self._check_accepting()
        if choosing:
            self._check_tool_choice(tool_choice)
        assert self._stage is not None
        if self._stage.llm_for() is None:
            raise RuntimeError("generate_reply() needs an LLM")
        if not is_given(tool_choice):
            # Inside a tool, a reply should not call tools again unless asked to.
            tool_choice = "none" if current_tool_speech.get() is not None else None
        message = user_input
        if isinstance(user_input, str):
            message = ChatMessage(role="user", content=user_input)
        handle = self._create_handle(source="generate_reply", allow_interruptions=allow_interruptions)
        self._planner.inbox.send_nowait(
            GenerateReply(
                handle=handle,
                user_message=message,  # type: ignore[arg-type]
                instructions=instructions,
                tool_choice=tool_choice,
                tools=tools,
                chat_ctx=chat_ctx,
            )
        )
        return handle

    def interrupt(self, *, force: bool = False) -> Future[None]:
        """Interrupt the current speech and the queued ones (up to the first
        protected one). The returned future resolves when they are done.

        Raises RuntimeError if the current speech does not allow interruptions
        and ``force`` is false.
        """
        check_bool(force, "force")
        self._check_running()
        current = self._state.current_speech
        if current is not None and not current.done() and not current.interrupted:
            if not force and not current.allow_interruptions:
                raise RuntimeError(
                    f"the current speech {current.id} does not allow interruptions; "
                    "use interrupt(force=True)"
                )
        reply: Future[None] = Future()
        assert self._planner is not None
        self._planner.inbox.send_nowait(Interrupt(force=force, reply=reply))
        return reply

    def set_audio_input_enabled(self, enabled: bool) -> None:
        """Turn the user's audio on or off (push-to-talk). Turning it off while
        the user speaks ends their speech there."""
        check_bool(enabled, "enabled")
        self._check_running()
        assert self._links is not None
        self._links.turn.send_nowait(SetAudioInput(enabled))

    def commit_user_turn(
        self, *, transcript_timeout: float = 2.0, skip_reply: bool = False
    ) -> Future[str]:
        check_number(transcript_timeout, "transcript_timeout")
        check_bool(skip_reply, "skip_reply")
        self._check_running()
        assert self._links is not None
        reply: Future[str] = Future()
        self._links.turn.send_nowait(
            CommitUserTurn(transcript_timeout=transcript_timeout, skip_reply=skip_reply, reply=reply)
        )
        return reply

    def clear_user_turn(self) -> None:
        self._check_running()
        assert self._links is not None
        self._links.turn.send_nowait(ClearUserTurn())

    def update_agent(
        self, agent: Agent, *, carry_history: CarryHistory | None = None
    ) -> Future[None]:
        """Hand the conversation to ``agent``: the current one drains and exits first.

        ``carry_history`` ("none", "messages" or "full") overrides the new
        agent's own policy for this hand-off (see :class:`voxtrio.Agent`).
        The returned future resolves once the new agent is current.
        """
        check_type(agent, Agent, "agent", "an Agent")
        if carry_history is not None:
            check_carry_history(carry_history, "update_agent")
        self._check_running()
        agent._bind(self)
        assert self._supervisor is not None
        done: Future[None] = Future()
        self._supervisor.request_handoff(agent, reply=done, carry_history=carry_history)
        return done

    async def run(self, *, user_input: str) -> RunResult:
        """Say ``user_input`` as the user (as text) and wait until the agent is done.

        Done means nothing is left to do: every speech played (tool steps
        included), every hand-off happened, every hook returned, except what
        waits for the user's next turn (an AgentTask asking a question). The
        :class:`~voxtrio.testing.RunResult` (:mod:`voxtrio.run_result`) holds
        what the turn added to the conversation (messages, function calls and
        outputs, hand-offs) with ``expect`` assertions over them. A failed LLM
        request raises here. Meant for tests: with the scripted providers of ``voxtrio.testing`` on
        trio's MockClock a run takes milliseconds.
        """
        check_str(user_input, "user_input")
        self._check_accepting()
        if self._run is not None:
            raise RuntimeError("nested runs are not supported: await the first run")
        result = RunResult(user_input=user_input)
        self._run = result
        try:
            await result._watch(self, self._state, self._closed)
        finally:
            self._run = None
        return result

    async def _run_agent_task(self, task: AgentTask[Any]) -> Any:
        """Run an AgentTask for the tool or hook that awaits it (see AgentTask)."""
        caller = current_caller.get()
        if caller is None:
            raise RuntimeError(
                "an AgentTask can only be awaited from a tool, on_enter or on_exit"
            )
        self._check_running()
        assert self._planner is not None
        reply: Future[Any] = Future()
        self._planner.inbox.send_nowait(
            RunAgentTask(
                task=task,
                caller=caller,
                handle=current_tool_speech.get(),
                worker=current_worker.get(),
                reply=reply,
            )
        )
        return await reply

    def update_options(self, **changes: Any) -> None:
        self._options = _options_with(self._options, changes, "option")
        if self._state.running:
            # Every actor that reads options hears of the change.
            links = self._links
            assert links is not None and self._planner is not None and self._speaker is not None
            recognizer = links.recognizer.control if links.recognizer is not None else None
            for inbox in (links.supervisor, self._planner.inbox, links.turn, self._speaker.inbox, recognizer):
                if inbox is not None:
                    inbox.send_nowait(OptionsChanged(self._options))

    # -- events -----------------------------------------------------------------------------

    def on(self, name: str, callback: Any = None) -> Any:
        """Register ``callback`` for event ``name`` (or use as a decorator)."""
        if callback is None:
            return lambda fn: self.on(name, fn)
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r:.60}")
        self._bus.on(name, callback)
        return callback

    def off(self, name: str, callback: Any) -> None:
        self._bus.off(name, callback)

    def emit(self, event: Event) -> Event:
        """Put ``event`` in the session's ordered log (numbered, timed, passed to
        ``on`` callbacks and ``events()`` iterators) and return it as logged:
        how a transport reports what only it sees, a keypress on a phone line."""
        return self._bus.emit(event)

    def events(self) -> trio.MemoryReceiveChannel[Event]:
        """Every event from now on, in order; the iteration ends after ``close``."""
        return self._bus.subscribe()

    @property
    def recorded_events(self) -> list[Event]:
        return list(self._bus.recorded)

    # -- state --------------------------------------------------------------------------------

    @property
    def options(self) -> SessionOptions:
        return self._options

    @property
    def history(self) -> ChatContext:
        return self._state.history

    @property
    def agent_state(self) -> str:
        return self._state.agent_state

    @property
    def user_state(self) -> str:
        return self._state.user_state

    @property
    def current_speech(self) -> SpeechHandle | None:
        return self._state.current_speech

    @property
    def current_agent(self) -> Agent:
        if self._state.current_agent is None:
            raise RuntimeError("the session has no agent (it is not running)")
        return self._state.current_agent

    @property
    def userdata(self) -> Any:
        if not is_given(self._userdata):
            raise ValueError("userdata is not set; pass AgentSession(userdata=...)")
        return self._userdata

    @userdata.setter
    def userdata(self, value: Any) -> None:
        self._userdata = value

    @property
    def running(self) -> bool:
        return self._state.running

    # -- internals ----------------------------------------------------------------------------

    def _check_running(self) -> None:
        if not self._state.running:
            if self._closed is not None:
                raise SessionClosedError("the session is closing")
            if self.last_close is not None:
                raise SessionClosedError("the session is closed")
            raise SessionClosedError("the session is not running: start it with session.main(agent) first")

    def _check_tool_choice(self, tool_choice: str) -> None:
        if tool_choice in TOOL_CHOICES:
            return
        names = [tool.name for tool in flatten_tools([*self.current_agent.tool_items, *self._tools])]
        if tool_choice not in names:
            raise ValueError(
                f"tool_choice must be one of {', '.join(map(repr, TOOL_CHOICES))} or the name of a tool "
                f"of the current agent ({', '.join(names) or 'it has none'}), got {tool_choice!r}"
            )

    def _check_accepting(self) -> None:
        self._check_running()
        # Once a close is asked for, only the session's own code (on_exit, a tool
        # finishing its reply) may still add speech, and only while it drains.
        closing_from_outside = self._state.closing and inside_session.get() is not self
        if closing_from_outside or not self._state.accepting_speech:
            raise SessionClosedError(
                "the session is draining or closing: it accepts no new speech"
            )

    def _has_audio_output(self) -> bool:
        return self._state.extra.get("audio_output", False)

    def _create_handle(self, *, source: SpeechSource, allow_interruptions: Any = NOT_GIVEN) -> SpeechHandle:
        assert self._stage is not None and self._speech_factory is not None
        if not is_given(allow_interruptions):
            allow_interruptions = self._stage.allow_interruptions()
        return self._speech_factory.create(source=source, allow_interruptions=bool(allow_interruptions))
