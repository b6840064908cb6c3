"""Every message the actors exchange: the protocol of voxtrio.

Read top to bottom, this module is the data flow of a session::

    transport ──AudioFrame──► AudioIn ──AudioFrame──► VAD ──VADEvent──► Turn
                                 │                     └──VADEvent──► Recognizer
                                 ├──AudioFrame──► Recognizer ──STTEvent──► Turn
                                 └──RecordAudio──► Recorder
    Turn ──UserTurnCompleted / UserInterrupted / UserActivity──► Planner
    Turn ──SessionState.user_silent (a flag: the reply hold-off)──► Planner, Speaker
    Turn ──SetRecognizerMuted──► AudioIn ; Turn ──FlushRecognizer / ResetRecognizer──► Recognizer
    AudioIn ──InputEnded──► Turn  (the input is over; the recognizer was flushed)
    Planner ──AgentSpeech / ActivityChanged──► Turn    (what the agent is doing)
    Planner ──SynthesizeSegment / PlaySegment / PausePlayout──► Speaker
    AudioIn ──AudioFrame──► RealtimeLink ──VADEvent / STTEvent (the server's)──► Turn
    RealtimeLink ──RealtimeResponse / FunctionCallsCancelled──► Planner ──RealtimeInterrupt / ...──► RealtimeLink
    Turn ──RealtimeCommitAudio / RealtimeClearAudio──► RealtimeLink  (commit_user_turn, clear_user_turn)
    Speaker ──PlayoutStarted / PlayoutResult──► Planner  (through the request's reply slot)
    anyone ──ProviderFailed / CloseRequested / HandoffRequested──► Session
    AgentSession (the public API) ──Say / GenerateReply / Interrupt / ...──► Planner
    a tool or hook awaiting an AgentTask ──RunAgentTask──► Planner

Messages are frozen and slotted. A few carry a ``reply`` :class:`Future` (the
answer to a request) or a channel end (a stream that belongs to the request);
everything else is plain data. Audio and VAD/STT events travel on bounded
channels; the control messages below them are rare and travel on unbounded
inboxes so that a public API call never blocks. The channels themselves, and
their sizes, are in :mod:`voxtrio.links`; the unions at the end say what each
actor's inbox carries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence, Union

import attrs
import trio

from ._sync import Flag, Future
from .audio import AudioFrame
from .events import UserTurnExceeded
from .options import NOT_GIVEN
from .providers.base import (
    FunctionCallsCancelled,
    RealtimeCapabilities,
    RealtimeFunctionCall,
    ResponseAudio,
    ResponseDone,
    ResponseTextDelta,
    ResponseTranscriptDelta,
    STTEvent,
    VADEvent,
)

if TYPE_CHECKING:
    import trio

    from .agent import Agent, AgentTask, CarryHistory
    from .chat import ChatContext, ChatMessage
    from .events import CloseReason
    from .options import SessionOptions
    from .speech import SpeechHandle

# The audio path's message is the frame itself (voxtrio.audio); what the VAD and
# the recognizer report is part of their provider protocols (voxtrio.providers.base).
__all__ = ["AudioFrame", "STTEvent", "VADEvent"]


# ---------------------------------------------------------------------------
# AudioIn control and the recorder
# ---------------------------------------------------------------------------


@attrs.frozen
class SetAudioInput:
    """Turn the audio input on or off (push-to-talk); off synthesizes end of speech."""

    enabled: bool


@attrs.frozen
class ListenWith:
    """Send the user's audio to the realtime model (True) or to the VAD and the recognizer."""

    realtime: bool


@attrs.frozen
class SetRecognizerMuted:
    """Send silence instead of the user's audio to the recognizer (protected speech)."""

    muted: bool


@attrs.frozen
class InputEnded:
    """AudioIn to Turn: the transport's input is over, and the streaming
    recognizer was asked to finalize what it heard (a last transcript may
    still come; a closing session waits for it)."""


@attrs.frozen
class RecordAudio:
    track: Literal["user", "agent"]
    frame: AudioFrame
    # Session time it was sent at: the user's frame has just arrived (it ends
    # now), the agent's was just written to the output (it plays from now, or
    # after what is queued there).
    at: float = attrs.field(factory=lambda: trio.current_time())


# ---------------------------------------------------------------------------
# Recognizer control (Turn -> Recognizer)
# ---------------------------------------------------------------------------


@attrs.frozen
class FlushRecognizer:
    """Ask for a final transcript of what was heard so far (commit_user_turn)."""


@attrs.frozen
class ResetRecognizer:
    """Drop buffered audio and restart the stream (clear_user_turn)."""


# ---------------------------------------------------------------------------
# Turn -> Planner: the user's side of the conversation
# ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class UserTurnCompleted:
    """The user's turn ended: the Planner replies (unless ``skip_reply``).

    ``metrics`` holds the end-of-utterance figures, measured on the audio clock
    from ``stopped_speaking_at`` (the last voiced audio).
    """

    transcript: str
    started_speaking_at: float | None
    stopped_speaking_at: float | None
    confidence: float = 1.0
    skip_reply: bool = False
    metrics: dict[str, float] = attrs.Factory(dict)
    #: Set when the turn ended because it crossed the user-turn limit: the
    #: Planner runs ``on_user_turn_exceeded`` once the turn is in the history.
    exceeded: UserTurnExceeded | None = None


@attrs.frozen(kw_only=True)
class UserInterrupted:
    """The user's audio activity should cut the agent off (VAD or transcript)."""

    reason: Literal["vad", "transcript"]
    transcript: str = ""


@attrs.frozen(kw_only=True)
class UserActivity:
    """The user started or stopped talking (VAD start/end of speech)."""

    speaking: bool
    at: float


@attrs.frozen(kw_only=True)
class EndOfTurnPending:
    """An end-of-turn decision is open (``pending``) or settled (and whether it
    committed a turn that gets a reply, which cuts a paused speech off); a
    false-interruption resume waits for it to settle."""

    pending: bool
    committed: bool = False


@attrs.frozen(kw_only=True)
class PreemptiveTranscript:
    """A final transcript before the turn commits: start speculative LLM work."""

    transcript: str
    speech_duration: float


# ---------------------------------------------------------------------------
# Planner -> Turn: what the agent is doing
# ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class AgentSpeech:
    """The agent's state and whether its current speech may be interrupted."""

    state: str
    interruptible: bool
    has_current_speech: bool
    interrupted: bool = False
    tools_running: bool = False

    @property
    def speaking(self) -> bool:
        return self.state == "speaking"


@attrs.frozen
class ActivityChanged:
    """A new agent is active: its turn-taking overrides apply from now on.

    ``realtime``: what the realtime model it hears and speaks through can
    do (None: it has none); the user's audio goes to the RealtimeLink then,
    not to the VAD and the recognizer.
    """

    agent: Agent
    realtime: RealtimeCapabilities | None = None


@attrs.frozen(kw_only=True)
class CloseUserTurn:
    """The session is closing: commit what the user said last, waiting at most
    ``timeout`` for its final transcript."""

    timeout: float
    reply: Future[None]


# ---------------------------------------------------------------------------
# Public API -> Planner
# ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Say:
    handle: SpeechHandle
    text: Any  # str or an async iterable of str
    audio: Any = None  # an async iterable of AudioFrame, or None
    add_to_chat_ctx: bool = True


@attrs.frozen(kw_only=True)
class GenerateReply:
    handle: SpeechHandle
    user_message: ChatMessage | None = None
    instructions: str | None = None
    tool_choice: str | None = None
    tools: Sequence[str] | None = None
    chat_ctx: ChatContext | None = None


@attrs.frozen(kw_only=True)
class Interrupt:
    """Interrupt the current and queued speeches; ``reply`` resolves when they are done."""

    force: bool
    reply: Future[None]


@attrs.frozen(kw_only=True)
class CommitUserTurn:
    """Commit the user's turn now (push-to-talk); ``reply`` gets the transcript."""

    transcript_timeout: float
    skip_reply: bool
    reply: Future[str]


@attrs.frozen
class ClearUserTurn:
    pass


@attrs.frozen
class OptionsChanged:
    options: SessionOptions


# ---------------------------------------------------------------------------
# Session <-> Planner: the agent's activity lifecycle
# ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class StartActivity:
    """Make ``agent`` the current agent and run its ``on_enter``.

    ``carry_history`` overrides the agent's own policy for this hand-off.
    """

    agent: Agent
    reply: Future[None]
    carry_history: CarryHistory | None = None


@attrs.frozen(kw_only=True)
class RunAgentTask:
    """Run ``task`` inline for ``caller`` (the agent whose tool or hook awaits it).

    The Planner starts it once ``caller`` is the current agent (tasks awaited
    in parallel run one after the other) and answers ``reply`` with the
    task's result when it completes. ``handle`` is the caller's speech, which
    the user cannot interrupt meanwhile; ``worker`` names the Planner task
    that waits (it does not keep a run from finishing while it waits).
    """

    task: AgentTask[Any]
    caller: Agent
    handle: SpeechHandle | None
    worker: int | None
    reply: Future[Any]


@attrs.frozen(kw_only=True)
class DrainActivity:
    """Stop taking turns, run ``on_exit`` (unless ``run_on_exit`` is false) and let
    every speech finish (tool replies included). ``interrupt`` cuts them off first."""

    interrupt: bool
    reply: Future[None]
    run_on_exit: bool = True


# ---------------------------------------------------------------------------
# Planner -> Speaker: speaking
# ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SynthesizeSegment:
    """Start turning ``text`` into audio now, so it is ready when it may play.

    ``text`` is a channel end the Planner feeds and closes; ``audio`` replaces
    synthesis with pre-rendered frames. The Speaker keeps the segment until a
    :class:`PlaySegment` or :class:`DiscardSegment` names it.
    """

    segment_id: str
    speech_id: str
    text: trio.MemoryReceiveChannel[str]
    audio: Any = None
    tts: Any = NOT_GIVEN  # the current agent's TTS (None: none); NOT_GIVEN: the session's


@attrs.frozen(kw_only=True)
class PlaySegment:
    """Play a synthesized segment; ``started`` resolves at the first audible frame,
    ``reply`` with the :class:`PlayoutResult` once it played out or was cut off.

    An interruptible speech never starts while the user speaks: its first frame
    waits for ``hold_while_user_speaks`` (the Planner's "user is silent" flag)."""

    segment_id: str
    handle: SpeechHandle
    started: Future[float | None]
    reply: Future[PlayoutResult]
    hold_while_user_speaks: Flag | None = None  # true while the user is silent
    # told True when the device runs dry waiting for audio, False when it plays again
    on_stall: Callable[[bool], None] | None = None


@attrs.frozen
class PlayoutStalled:
    """The speech's audio ran out before its end (a slow or stuck TTS): nothing
    is playing until more comes (``stalled`` False again). The agent is not
    speaking meanwhile."""

    handle: SpeechHandle
    stalled: bool


@attrs.frozen
class DiscardSegment:
    segment_id: str


@attrs.frozen
class PausePlayout:
    """Freeze the play head (false-interruption detection); audio stays queued."""


@attrs.frozen
class ResumePlayout:
    pass


@attrs.frozen(kw_only=True)
class PlayoutResult:
    """What the user actually heard of one segment."""

    position: float
    interrupted: bool
    text: str
    started_at: float | None
    finished_at: float
    synthesized_text: str = ""
    error: BaseException | None = None


# ---------------------------------------------------------------------------
# RealtimeLink <-> Planner: a realtime model's responses, and what the Planner asks of it
# ---------------------------------------------------------------------------

# What one response of the model says, in order; ResponseDone ends it.
ResponseOutput = Union[ResponseAudio, ResponseTranscriptDelta, ResponseTextDelta, RealtimeFunctionCall, ResponseDone]


@attrs.frozen(kw_only=True)
class RealtimeResponse:
    """The model started response ``response_id``: the Planner speaks it.

    ``output`` is the response's own stream (its audio comes faster than
    real time and the Speaker plays it at real-time pace: the link never
    waits on it, so that the user's speech events are never held up).
    """

    response_id: str
    output: trio.MemoryReceiveChannel[ResponseOutput]


@attrs.frozen(kw_only=True)
class RealtimeReplyRequested:
    """``generate_reply()``: ask the model for a response."""

    instructions: str | None = None


@attrs.frozen(kw_only=True)
class RealtimeInterrupt:
    """Stop the running response; of message ``item_id`` the user heard ``played`` seconds."""

    item_id: str | None
    played: float


@attrs.frozen(kw_only=True)
class RealtimeToolOutput:
    call_id: str
    output: str
    reply: bool


@attrs.frozen(kw_only=True)
class RealtimeOpen:
    """Start a conversation with ``model`` (closing the one running), from ``chat_ctx``."""

    model: Any
    instructions: str
    chat_ctx: ChatContext
    tools: Sequence[Any]


@attrs.frozen
class RealtimeCommitAudio:
    """``commit_user_turn()``: the user's audio so far is their turn (the model transcribes it)."""


@attrs.frozen
class RealtimeClearAudio:
    """``clear_user_turn()``: forget the user's audio not committed yet."""


@attrs.frozen
class RealtimeClose:
    """The current agent does not use a realtime model: close the conversation."""


@attrs.frozen(kw_only=True)
class RealtimeConfigure:
    """Another agent on the same model is current (a hand-off, an AgentTask):
    its instructions and tools from now on."""

    instructions: str
    tools: Sequence[Any]


@attrs.frozen(kw_only=True)
class RealtimeAddMessage:
    """What the agent said through its TTS (a ``say()``), so the model knows it."""

    role: Literal["user", "assistant", "system"]
    text: str


# ---------------------------------------------------------------------------
# Anyone -> Session: supervision
# ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ProviderFailed:
    """A provider request failed for good (after its retries)."""

    source: Literal["stt", "llm", "tts", "vad", "realtime"]
    error: BaseException


@attrs.frozen(kw_only=True)
class ErrorCountReset:
    """Progress was made: forget earlier unrecoverable errors of these sources."""

    sources: tuple[Literal["stt", "llm", "tts"], ...]


@attrs.frozen(kw_only=True)
class HandoffRequested:
    """Hand the conversation to ``agent``. The sender has already counted it in
    ``SessionState.handoffs_pending``; the Session uncounts it when done."""

    agent: Agent
    reply: Future[None] | None = None
    carry_history: CarryHistory | None = None


@attrs.frozen(kw_only=True)
class CloseRequested:
    reason: CloseReason
    drain: bool
    error: BaseException | None = None


@attrs.frozen(kw_only=True)
class DrainRequested:
    reply: Future[None]


PlannerMessage = Union[
    PlayoutStalled,
    Say,
    GenerateReply,
    Interrupt,
    UserTurnCompleted,
    UserInterrupted,
    UserActivity,
    EndOfTurnPending,
    UserTurnExceeded,
    PreemptiveTranscript,
    StartActivity,
    DrainActivity,
    OptionsChanged,
    RunAgentTask,
    RealtimeResponse,
    FunctionCallsCancelled,
]
TurnMessage = Union[
    VADEvent,
    STTEvent,
    InputEnded,
    AgentSpeech,
    ActivityChanged,
    CommitUserTurn,
    ClearUserTurn,
    CloseUserTurn,
    SetAudioInput,
    OptionsChanged,
]
# What the Turn hears on its event link: the VAD's and the recognizer's
# observations (a VAD provider writes there itself: checked as it arrives).
TurnEvent = Union[VADEvent, STTEvent]
RecognizerMessage = Union[FlushRecognizer, ResetRecognizer, OptionsChanged]
RealtimeLinkMessage = Union[
    RealtimeOpen,
    RealtimeClose,
    RealtimeReplyRequested, RealtimeInterrupt, RealtimeToolOutput, RealtimeAddMessage, RealtimeConfigure,
    RealtimeCommitAudio, RealtimeClearAudio,
]
AudioInMessage = Union[SetRecognizerMuted, SetAudioInput, ListenWith]
SpeakerMessage = Union[
    SynthesizeSegment, PlaySegment, DiscardSegment, PausePlayout, ResumePlayout, OptionsChanged
]
SessionMessage = Union[
    ProviderFailed, ErrorCountReset, HandoffRequested, CloseRequested, DrainRequested, OptionsChanged
]
