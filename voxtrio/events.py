"""What a session tells its application, and the one ordered log it goes through.

Every event gets a sequence number from the session's single counter (the same
counter that orders the chat history) and the virtual time it was emitted at.
Callbacks registered with ``session.on`` run synchronously, in registration
order; ``session.events()`` iterators receive the same events in the same
order. Events are control traffic (tens per second at most), so subscriber
queues are unbounded; the recorded log is bounded.
"""

from __future__ import annotations

import collections
import logging
import math
from typing import Any, Callable, ClassVar, Literal

import attrs
import trio

from .chat import ChatItem, FunctionCall, FunctionCallOutput

logger = logging.getLogger("voxtrio")

AgentState = Literal["initializing", "listening", "thinking", "speaking"]
UserState = Literal["listening", "speaking", "away"]
CloseReason = Literal[
    "error", "job_shutdown", "participant_disconnected", "user_initiated", "task_completed"
]


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@attrs.frozen(kw_only=True)
class Event:
    type: ClassVar[str] = "event"
    seq: int = -1
    created_at: float = 0.0

    def payload(self) -> dict[str, Any]:
        """The fields that describe what happened (for timelines and logs)."""
        return {}


@attrs.frozen(kw_only=True)
class AgentStateChanged(Event):
    type: ClassVar[str] = "agent_state_changed"
    old_state: AgentState
    new_state: AgentState

    def payload(self) -> dict[str, Any]:
        return {"old": self.old_state, "new": self.new_state}


@attrs.frozen(kw_only=True)
class UserStateChanged(Event):
    type: ClassVar[str] = "user_state_changed"
    old_state: UserState
    new_state: UserState

    def payload(self) -> dict[str, Any]:
        return {"old": self.old_state, "new": self.new_state}


@attrs.frozen(kw_only=True)
class UserInputTranscribed(Event):
    type: ClassVar[str] = "user_input_transcribed"
    transcript: str
    is_final: bool
    language: str | None = None

    def payload(self) -> dict[str, Any]:
        return {"transcript": self.transcript, "is_final": self.is_final}


@attrs.frozen(kw_only=True)
class UserTranscriptionTimeout(Event):
    """The user spoke (VAD) but no transcript came within ``transcription_timeout``."""

    type: ClassVar[str] = "user_transcription_timeout"
    speech_duration: float
    vad_speech_started_at: float | None

    def payload(self) -> dict[str, Any]:
        return {
            "speech_duration": _r(self.speech_duration),
            "vad_speech_started_at": _r(self.vad_speech_started_at),
        }


@attrs.frozen(kw_only=True)
class SpeechCreated(Event):
    type: ClassVar[str] = "speech_created"
    speech_id: str
    source: Literal["say", "generate_reply", "tool_response"]
    user_initiated: bool
    speech_handle: Any = attrs.field(default=None, repr=False)

    def payload(self) -> dict[str, Any]:
        return {
            "speech_id": self.speech_id,
            "source": self.source,
            "user_initiated": self.user_initiated,
        }


@attrs.frozen(kw_only=True)
class PlaybackStarted(Event):
    type: ClassVar[str] = "playback_started"
    speech_id: str

    def payload(self) -> dict[str, Any]:
        return {"speech_id": self.speech_id}


@attrs.frozen(kw_only=True)
class PlaybackFinished(Event):
    type: ClassVar[str] = "playback_finished"
    speech_id: str
    position: float
    interrupted: bool

    def payload(self) -> dict[str, Any]:
        return {
            "speech_id": self.speech_id,
            "position": _r(self.position),
            "interrupted": self.interrupted,
        }


@attrs.frozen(kw_only=True)
class ConversationItemAdded(Event):
    type: ClassVar[str] = "conversation_item_added"
    item: ChatItem

    def payload(self) -> dict[str, Any]:
        return {"item": self.item.to_dict()}


@attrs.frozen(kw_only=True)
class FunctionToolsExecuted(Event):
    type: ClassVar[str] = "function_tools_executed"
    function_calls: tuple[FunctionCall, ...]
    function_call_outputs: tuple[FunctionCallOutput, ...]
    max_steps_reached: bool = False
    # The speech whose LLM step asked for these calls (for its agent_turn span).
    speech_id: str | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "calls": [
                {"name": c.name, "arguments": c.arguments, "call_id": c.call_id}
                for c in self.function_calls
            ],
            "outputs": [
                {"call_id": o.call_id, "output": o.output, "is_error": o.is_error}
                for o in self.function_call_outputs
            ],
        }


@attrs.frozen(kw_only=True)
class AgentFalseInterruption(Event):
    type: ClassVar[str] = "agent_false_interruption"
    resumed: bool

    def payload(self) -> dict[str, Any]:
        return {"resumed": self.resumed}


@attrs.frozen(kw_only=True)
class MetricsCollected(Event):
    """``kind`` is eou, llm, tts, stt, vad or realtime; ``metrics`` holds seconds (and counts)."""

    type: ClassVar[str] = "metrics_collected"
    kind: Literal["eou", "llm", "tts", "stt", "vad", "preemptive", "realtime"]
    metrics: dict[str, Any]
    # The speech an llm or tts request was for, and the provider that served
    # it (usage per provider and model); neither is part of the timeline.
    speech_id: str | None = None
    provider: Any = attrs.field(default=None, repr=False, eq=False)

    def payload(self) -> dict[str, Any]:
        figures = {
            k: (_r(v) if isinstance(v, float) else v) for k, v in sorted(self.metrics.items())
        }
        return {"kind": self.kind, **figures}


@attrs.frozen(kw_only=True)
class ErrorEvent(Event):
    type: ClassVar[str] = "error"
    source: Literal["stt", "llm", "tts", "vad", "realtime", "transport", "agent", "tool", "session"]
    message: str
    recoverable: bool
    error: BaseException | None = attrs.field(default=None, repr=False, eq=False)

    def payload(self) -> dict[str, Any]:
        return {"source": self.source, "message": self.message, "recoverable": self.recoverable}


@attrs.frozen(kw_only=True)
class ActiveProviderChanged(Event):
    """A fallback adapter (``voxtrio.FallbackLLM``...) moved to another provider:
    the one it used failed, or a better one it had left is healthy again."""

    type: ClassVar[str] = "active_provider_changed"
    source: Literal["stt", "llm", "tts"]
    active: str
    previous: str
    reason: str

    def payload(self) -> dict[str, Any]:
        return {"source": self.source, "active": self.active, "previous": self.previous, "reason": self.reason}


@attrs.frozen(kw_only=True)
class CloseEvent(Event):
    """The session ended. ``cancelled`` names user code cut off by ``close_timeout``."""

    type: ClassVar[str] = "close"
    reason: CloseReason
    error: str | None = None
    cancelled: tuple[str, ...] = ()
    # session.usage at the close (voxtrio.telemetry.UsageSummary.to_dict()).
    usage: dict[str, Any] | None = attrs.field(default=None, eq=False)

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"reason": self.reason, "error": self.error}
        if self.cancelled:
            payload["cancelled"] = list(self.cancelled)
        return payload


@attrs.frozen(kw_only=True)
class DTMFReceived(Event):
    """The caller pressed a key of the phone's keypad (a telephony transport)."""

    type: ClassVar[str] = "dtmf_received"
    digit: str
    duration: float | None = None

    def payload(self) -> dict[str, Any]:
        return {"digit": self.digit, "duration": _r(self.duration)}


@attrs.frozen(kw_only=True)
class IVRLoopDetected(Event):
    """What the other end of the line says keeps repeating (a phone menu played again)."""

    type: ClassVar[str] = "ivr_loop_detected"
    transcript: str
    repetitions: int

    def payload(self) -> dict[str, Any]:
        return {"transcript": self.transcript, "repetitions": self.repetitions}


@attrs.frozen(kw_only=True)
class LineSilenceDetected(Event):
    """Neither side has said anything on the line for ``duration`` seconds."""

    type: ClassVar[str] = "line_silence_detected"
    duration: float

    def payload(self) -> dict[str, Any]:
        return {"duration": _r(self.duration)}


EVENT_TYPES = {
    cls.type: cls
    for cls in (
        AgentStateChanged,
        UserStateChanged,
        UserInputTranscribed,
        UserTranscriptionTimeout,
        SpeechCreated,
        PlaybackStarted,
        PlaybackFinished,
        ConversationItemAdded,
        FunctionToolsExecuted,
        AgentFalseInterruption,
        MetricsCollected,
        ErrorEvent,
        ActiveProviderChanged,
        CloseEvent,
        DTMFReceived,
        IVRLoopDetected,
        LineSilenceDetected,
    )
}


class EventBus:
    """The session's ordered log: one sequence counter, callbacks, subscribers."""

    def __init__(self, *, max_recorded: int = 10_000) -> None:
        self._seq = 0
        self._callbacks: dict[str, list[Callable[[Any], Any]]] = collections.defaultdict(list)
        self._subscribers: list[trio.MemorySendChannel[Event]] = []
        self.recorded: collections.deque[Event] = collections.deque(maxlen=max_recorded)
        self._undelivered: collections.deque[Event] = collections.deque()
        self._delivering = False

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @property
    def last_seq(self) -> int:
        """The last number handed out (items numbered later come after it)."""
        return self._seq

    def on(self, name: str, callback: Callable[[Any], Any]) -> Callable[[], None]:
        if name not in EVENT_TYPES and name != "*":
            raise ValueError(f"unknown event {name!r}; known events: {sorted(EVENT_TYPES)}")
        self._callbacks[name].append(callback)
        return lambda: self.off(name, callback)

    def off(self, name: str, callback: Callable[[Any], Any]) -> None:
        if callback in self._callbacks.get(name, []):
            self._callbacks[name].remove(callback)

    def subscribe(self) -> trio.MemoryReceiveChannel[Event]:
        send, receive = trio.open_memory_channel[Event](math.inf)
        self._subscribers.append(send)
        return receive

    def emit(self, event: Event) -> Event:
        event = attrs.evolve(event, seq=self.next_seq(), created_at=trio.current_time())
        self.recorded.append(event)
        # A callback may emit in turn (a say() from a handler emits
        # speech_created): that event waits until this one has reached every
        # callback and subscriber, so each of them sees seq in increasing order.
        self._undelivered.append(event)
        if not self._delivering:
            self._delivering = True
            try:
                while self._undelivered:
                    self._deliver(self._undelivered.popleft())
            finally:
                self._delivering = False
        return event

    def _deliver(self, event: Event) -> None:
        for callback in (*self._callbacks.get(event.type, ()), *self._callbacks.get("*", ())):
            try:
                callback(event)
            except Exception:
                logger.exception("event callback for %r failed", event.type)
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(send)

    def close_subscribers(self) -> None:
        for send in self._subscribers:
            send.close()
        self._subscribers.clear()


# ---------------------------------------------------------------------------
# What the agent's hooks are given
# ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class UserTurnExceeded:
    """The user has talked past ``user_turn_max_words`` or ``_max_duration``:
    what ``Agent.on_user_turn_exceeded`` is given."""

    transcript: str
    accumulated_transcript: str
    word_count: int
    duration: float
