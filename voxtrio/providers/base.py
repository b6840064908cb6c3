"""The provider protocols: VAD, STT, LLM, TTS and RealtimeModel.

A provider is a trio-native object whose streaming work is one async function
reading from one channel and writing to another. The session's actors own the
channels, the tasks and the retries; a provider only speaks its engine's or
vendor's protocol. ``capabilities`` tells the session what a provider can do,
so the pipeline adapts (a non-streaming STT is driven by VAD segments, a
non-streaming TTS is fed one sentence at a time).

Errors: raise :class:`voxtrio.errors.APIError` (or a subclass) with
``retryable`` set honestly; the session retries per ``APIConnectOptions``.
Anything else a provider raises, and anything it sends that its protocol does
not allow (checked by the ``check_*`` functions below, as it arrives), is a
final failure of that request: an ``error`` event naming the provider, counted
toward ``max_unrecoverable_errors``; the session goes on.
"""

from __future__ import annotations

import abc
import math
from typing import TYPE_CHECKING, Any, AsyncContextManager, Literal, Protocol, Sequence, Union

import attrs

from ..audio import AudioFrame
from ..errors import APIError, ProviderOutputError
from ..options import APIConnectOptions
from ..validation import check_bool, check_choice, check_number, check_str, field_check

if TYPE_CHECKING:
    import trio

    from ..chat import ChatContext
    from ..tools import FunctionTool

ToolChoice = Union[Literal["auto", "required", "none"], str]

DEFAULT_CONN_OPTIONS = APIConnectOptions()


def _shown(value: Any) -> str:
    """What a provider sent, for the error that says it is not allowed."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


# ---------------------------------------------------------------------------
# Hearing: what a VAD and a recognizer report (the actors pass it on as is)
# ---------------------------------------------------------------------------


_time = field_check(check_number, minimum=-math.inf, finite=True)
_duration = field_check(check_number, finite=True)
_optional_time = field_check(check_number, minimum=-math.inf, optional=True, finite=True)


@attrs.frozen(kw_only=True)
class VADEvent:
    """One VAD observation; times are audio time (``AudioFrame.timestamp``).

    ``start_of_speech`` comes once speech has lasted the VAD's minimum speech
    duration; ``inference`` reports progress while speaking; ``end_of_speech``
    comes after the minimum silence, and carries the silence it waited, so the
    true end of speech is ``timestamp - silence_duration``. Every field is
    checked when the event is made (a NaN time is a ``ValueError``): a VAD
    that cannot say when speech happened fails, it does not lose turns.
    """

    kind: Literal["start_of_speech", "inference", "end_of_speech"] = attrs.field(
        validator=field_check(check_choice, choices=("start_of_speech", "inference", "end_of_speech"))
    )
    timestamp: float = attrs.field(validator=_time)
    speech_duration: float = attrs.field(validator=_duration)
    silence_duration: float = attrs.field(validator=_duration)
    speaking: bool = attrs.field(validator=field_check(check_bool))
    probability: float = attrs.field(default=1.0, validator=_time)
    inference_duration: float = attrs.field(default=0.0, validator=_duration)
    raw_accumulated_silence: float = attrs.field(default=0.0, validator=_duration)


@attrs.frozen(kw_only=True)
class STTEvent:
    """A recognizer result: interim or final text, or a speech boundary.

    ``start_of_speech``/``end_of_speech`` only matter with
    ``turn_detection="stt"``. ``start_time``/``end_time`` are audio time when the
    recognizer knows them. Checked when made, like :class:`VADEvent`.
    """

    kind: Literal["start_of_speech", "interim", "final", "end_of_speech"] = attrs.field(
        validator=field_check(check_choice, choices=("start_of_speech", "interim", "final", "end_of_speech"))
    )
    text: str = attrs.field(default="", validator=field_check(check_str))
    language: str | None = attrs.field(default=None, validator=field_check(check_str, optional=True))
    confidence: float = attrs.field(default=1.0, validator=_time)
    start_time: float | None = attrs.field(default=None, validator=_optional_time)
    end_time: float | None = attrs.field(default=None, validator=_optional_time)


# ---------------------------------------------------------------------------
# VAD
# ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class VADCapabilities:
    update_interval: float = 0.032
    """Seconds of audio between two inference events."""


class VADDetector(Protocol):
    """One stream's voice activity, decided synchronously frame by frame."""

    def push(self, frame: AudioFrame) -> list[VADEvent]:
        """The events this 20 ms frame causes (often none)."""


class VAD(abc.ABC):
    """Voice activity detection over the pipeline's 16 kHz mono frames."""

    capabilities: VADCapabilities = VADCapabilities()
    min_silence_duration: float = 0.5
    min_speech_duration: float = 0.05

    def detector(self) -> VADDetector | None:
        """A fresh per-stream detector, for a VAD cheap enough to run inline.

        A VAD that decides a frame in microseconds (an energy threshold)
        returns one, and the session runs it inside AudioIn, saving the task
        switch per frame that ``run`` costs. A model VAD returns None (the
        default) and gets its own actor and task.
        """
        return None

    @abc.abstractmethod
    async def run(
        self,
        frames: trio.MemoryReceiveChannel[AudioFrame],
        events: trio.MemorySendChannel[VADEvent],
    ) -> None:
        """Read frames until the channel closes; send speech start/inference/end events.

        One call is one stream: recurrent state lives in the call, not the object,
        so one VAD object can serve many sessions.
        """


# ---------------------------------------------------------------------------
# STT
# ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class STTCapabilities:
    streaming: bool
    interim_results: bool = False
    aligned_transcript: bool = False
    offline_recognize: bool = True
    speech_boundaries: bool = False
    """Sends ``start_of_speech``/``end_of_speech`` events of its own (what
    ``turn_detection="stt"`` follows)."""


@attrs.frozen(kw_only=True)
class STTUsage:
    """Sent by a streaming STT on its events channel, between its transcripts:
    ``audio_duration`` seconds of audio went to the service since the last
    report, and a final transcript came ``latency`` seconds after the end of
    the audio it covers was sent. The Recognizer reports it as a
    ``metrics_collected`` event (kind ``stt``) and sends it no further."""

    audio_duration: float
    latency: float | None = None


@attrs.frozen
class STTReconnected:
    """Sent by a streaming STT on its events channel when it lost its
    connection and opened a new one itself, within the retry budget, without
    losing audio. The Recognizer reports ``error`` as a recoverable ``error``
    event; a stream that gives up raises instead."""

    error: BaseException


STTStreamItem = Union[STTEvent, STTUsage, STTReconnected]


class STT(abc.ABC):
    capabilities: STTCapabilities

    async def stream(
        self,
        frames: trio.MemoryReceiveChannel[AudioFrame],
        events: trio.MemorySendChannel[STTStreamItem],
        *,
        language: str | None = None,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        """Streaming recognition: read frames until closed, send interim/final events.

        Only for ``capabilities.streaming``. An empty ``AudioFrame`` (no samples)
        asks for a flush: finalize what was heard so far. Usage and reconnection
        reports (:class:`STTUsage`, :class:`STTReconnected`) may go on the same
        channel.
        """
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    async def recognize(
        self,
        audio: AudioFrame,
        *,
        language: str | None = None,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> STTEvent:
        """Recognize one utterance (non-streaming STTs, driven by VAD segments)."""
        raise NotImplementedError(f"{type(self).__name__} cannot recognize a buffer")


def check_stt_event(event: Any) -> STTEvent:
    """``event`` if it is a transcript or a speech boundary, else
    :class:`ProviderOutputError` (the Recognizer takes ``STTUsage`` and
    ``STTReconnected`` before it asks)."""
    if not isinstance(event, STTEvent):
        raise ProviderOutputError(
            f"the STT sent {_shown(event)}, not an STTEvent, STTUsage or STTReconnected", output=event
        )
    return event


# ---------------------------------------------------------------------------
# LLM
# ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ToolCallChunk:
    """A complete function call parsed from the model's output."""

    name: str
    arguments: str
    call_id: str


@attrs.frozen(kw_only=True)
class UsageChunk:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_cached_tokens: int = 0
    """Of ``prompt_tokens``, those the provider read from its prompt cache."""


LLMChunk = Union[str, ToolCallChunk, UsageChunk]


def check_llm_chunk(chunk: Any) -> LLMChunk:
    """``chunk`` if an LLM stream may send it, else :class:`ProviderOutputError`."""
    if isinstance(chunk, str) or isinstance(chunk, UsageChunk):
        return chunk
    if isinstance(chunk, ToolCallChunk):
        for name in ("name", "arguments", "call_id"):
            if not isinstance(getattr(chunk, name), str):
                raise ProviderOutputError(
                    f"the LLM sent a ToolCallChunk whose {name} is {_shown(getattr(chunk, name))}, not a string",
                    output=chunk,
                )
        return chunk
    raise ProviderOutputError(
        f"the LLM sent {_shown(chunk)}, not text, a ToolCallChunk or a UsageChunk", output=chunk
    )


@attrs.frozen(kw_only=True)
class LLMCapabilities:
    tool_calls: bool = True
    structured_output: bool = False


class LLM(abc.ABC):
    capabilities: LLMCapabilities = LLMCapabilities()
    model: str = "unknown"

    @abc.abstractmethod
    async def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: Sequence[FunctionTool],
        tool_choice: ToolChoice | None,
        output: trio.MemorySendChannel[LLMChunk],
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        """Stream one completion: text deltas (str), then tool calls and usage.

        Return when the completion is complete; do not close ``output``.
        """


# ---------------------------------------------------------------------------
# TTS
# ---------------------------------------------------------------------------

# A TTS provider may send this before its first audio to say when it started
# working on the text (time-to-first-byte is measured from there).
TTS_REQUEST_STARTED = "tts-request-started"


@attrs.frozen(kw_only=True)
class TimedWord:
    """A word of the synthesized text and when it is heard, in seconds of the
    segment's audio."""

    text: str
    start: float
    end: float


@attrs.frozen(kw_only=True)
class SynthesizedAudio:
    """A chunk of synthesized audio and the words it carries, timed from the
    chunk's first sample (a word may have begun in an earlier chunk: its start
    is then negative). A chunk with no samples only carries words."""

    frame: AudioFrame
    words: tuple[TimedWord, ...] = ()


def check_synthesized_audio(item: Any) -> SynthesizedAudio:
    """``item`` if a TTS may send it, else :class:`ProviderOutputError`."""
    if not isinstance(item, SynthesizedAudio):
        raise ProviderOutputError(f"the TTS sent {_shown(item)}, not a SynthesizedAudio", output=item)
    if not isinstance(item.frame, AudioFrame):
        raise ProviderOutputError(
            f"the TTS sent a SynthesizedAudio whose frame is {_shown(item.frame)}, not an AudioFrame",
            output=item,
        )
    if not all(isinstance(word, TimedWord) for word in item.words):
        raise ProviderOutputError("the TTS sent word timings that are not TimedWords", output=item)
    return item


@attrs.frozen(kw_only=True)
class TTSCapabilities:
    streaming: bool
    aligned_transcript: bool = False


class TTS(abc.ABC):
    capabilities: TTSCapabilities
    sample_rate: int = 24_000
    num_channels: int = 1

    async def stream(
        self,
        text: trio.MemoryReceiveChannel[str],
        audio: trio.MemorySendChannel[SynthesizedAudio],
        *,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        """Streaming synthesis of one segment: read text until closed, send audio."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    async def synthesize(
        self,
        text: str,
        audio: trio.MemorySendChannel[SynthesizedAudio],
        *,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        """Synthesize one piece of text (a sentence) and send its audio."""
        raise NotImplementedError(f"{type(self).__name__} cannot synthesize a sentence")


# ---------------------------------------------------------------------------
# Realtime (speech-to-speech) models
# ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RealtimeCapabilities:
    turn_detection: bool
    """The model finds the user's turns itself and says so
    (:class:`InputSpeechStarted`, :class:`InputSpeechStopped`)."""
    user_transcription: bool
    """It sends the user's words (:class:`InputTranscription`)."""
    audio_output: bool = True
    """It speaks (:class:`ResponseAudio`); False: text only, for a TTS to speak."""
    auto_tool_reply_generation: bool = False
    """It answers a tool's output by itself (no ``reply=True`` needed)."""
    can_disable_turn_detection: bool = True
    message_truncation: bool = True
    """``interrupt(item_id=..., played=...)`` makes it forget what was not heard."""


@attrs.frozen
class InputSpeechStarted:
    """The model heard the user start speaking, at ``audio_time`` seconds on
    the clock of the frames given to ``push_audio``; ``item_id`` names the
    user message the speech will become."""

    audio_time: float
    item_id: str = ""


@attrs.frozen
class InputSpeechStopped:
    """The user stopped speaking at ``audio_time``: the model takes its turn
    (and answers by itself when its turn detection creates responses)."""

    audio_time: float
    item_id: str = ""


@attrs.frozen
class InputTranscription:
    """What the user said in message ``item_id``: all of it so far (not a
    delta), ``final`` once the transcription is complete."""

    item_id: str
    text: str
    final: bool


@attrs.frozen
class ResponseCreated:
    """The model started response ``response_id`` (asked for, or its own
    answer to a turn)."""

    response_id: str


@attrs.frozen
class ResponseAudio:
    """A 20 ms frame (the last of an item may be shorter) of what the model
    says in assistant message ``item_id``, at the model's ``sample_rate``."""

    response_id: str
    item_id: str
    frame: AudioFrame


@attrs.frozen
class ResponseTextDelta:
    """Text the model writes (text-only output: a TTS speaks it)."""

    response_id: str
    item_id: str
    delta: str


@attrs.frozen
class ResponseTranscriptDelta:
    """The words of the audio the model speaks, as it speaks them."""

    response_id: str
    item_id: str
    delta: str


@attrs.frozen
class RealtimeFunctionCall:
    """The model calls a tool; its output goes back with ``send_tool_output``."""

    response_id: str
    item_id: str
    call_id: str
    name: str
    arguments: str


@attrs.frozen
class FunctionCallsCancelled:
    """The model withdrew calls it made (the user spoke over them): their
    outputs are not wanted, and tools with side effects may undo them."""

    call_ids: tuple[str, ...]


@attrs.frozen(kw_only=True)
class RealtimeUsage:
    """Tokens one response cost, as the vendor counts them."""

    input_tokens: int = 0
    output_tokens: int = 0
    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    input_cached_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0


RealtimeResponseStatus = Literal["completed", "cancelled", "incomplete", "failed"]


@attrs.frozen(kw_only=True)
class ResponseDone:
    """Response ``response_id`` is over: ``status`` says how (``reason``:
    why it was cut short, such as ``turn_detected`` or ``max_output_tokens``).
    ``first_audio_delay``: seconds from the user's end of speech (or the
    request for it) to its first audio, when it had audio."""

    response_id: str
    status: RealtimeResponseStatus
    reason: str | None = None
    usage: RealtimeUsage | None = None
    first_audio_delay: float | None = None


@attrs.frozen
class RealtimeError:
    """The vendor reported an error the session survives (a refused request,
    a failed response, a failed transcription): ``error`` says which, as the
    session's error types do. A connection that cannot be restored is not an
    event: the session's ``async with`` raises it."""

    error: APIError


@attrs.frozen
class RealtimeReconnected:
    """The connection was lost (``error``) and a new one opened, the
    conversation restored onto it; input audio sent while it was down is
    lost (``lost_audio`` seconds)."""

    error: APIError
    lost_audio: float = 0.0


RealtimeEvent = Union[
    InputSpeechStarted,
    InputSpeechStopped,
    InputTranscription,
    ResponseCreated,
    ResponseAudio,
    ResponseTextDelta,
    ResponseTranscriptDelta,
    RealtimeFunctionCall,
    FunctionCallsCancelled,
    ResponseDone,
    RealtimeError,
    RealtimeReconnected,
]


class RealtimeSession(abc.ABC):
    """One live conversation with a realtime model, opened by
    :meth:`RealtimeModel.session` (an ``async with``: its tasks live in a
    nursery of the session's own, and leaving the block closes it).

    Audio goes in with :meth:`push_audio`; everything the model does comes
    out on ``events``, a bounded channel, in the order it happened. Read it
    promptly: the model sends audio faster than real time, and while the
    channel is full the session stops reading from the vendor (the user's
    speech events wait too), so the reader keeps its own playout queue.
    """

    events: trio.MemoryReceiveChannel[RealtimeEvent]

    @abc.abstractmethod
    async def push_audio(self, frame: AudioFrame) -> None:
        """The user's audio (mono, any one rate), stamped with audio time."""

    @abc.abstractmethod
    async def commit_audio(self) -> None:
        """End the user's turn now (turn detection off: push-to-talk)."""

    @abc.abstractmethod
    async def clear_audio(self) -> None:
        """Forget the user's audio not yet committed."""

    @abc.abstractmethod
    async def generate_reply(self, *, instructions: str | None = None) -> None:
        """Ask for a response (after the current one, if one is running)."""

    @abc.abstractmethod
    async def interrupt(self, *, item_id: str | None = None, played: float = 0.0) -> None:
        """Stop the running response, and make the model forget what the
        user did not hear: of assistant message ``item_id``, only the first
        ``played`` seconds of audio were played."""

    @abc.abstractmethod
    async def send_tool_output(self, call_id: str, output: str, *, reply: bool = True) -> None:
        """The output of the tool call ``call_id``; ``reply``: and a response
        to it (False for all but the last of several calls)."""

    @abc.abstractmethod
    async def add_message(self, role: Literal["user", "assistant", "system"], text: str) -> None:
        """Add a message to the conversation (a ``say()`` spoken by a TTS)."""

    @abc.abstractmethod
    async def update_instructions(self, instructions: str) -> None:
        """Replace the instructions for the responses to come."""

    @abc.abstractmethod
    async def update_tools(self, tools: Sequence[FunctionTool]) -> None:
        """Replace the tools the model may call."""


class RealtimeModel(abc.ABC):
    """A model that hears audio and speaks audio itself (speech to speech).

    ``sample_rate`` is the rate of its :class:`ResponseAudio` frames.
    ``generate_reply_timeout``: how long a request for a response waits for
    the model to start it before the speech that asked gives up (None: the
    session's ``llm_conn_options.timeout``), so that no handle waits forever.
    """

    capabilities: RealtimeCapabilities
    sample_rate: int
    generate_reply_timeout: float | None = None

    @abc.abstractmethod
    def session(
        self,
        *,
        instructions: str = "",
        chat_ctx: ChatContext | None = None,
        tools: Sequence[FunctionTool] = (),
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> AsyncContextManager[RealtimeSession]:
        """Open a conversation that starts from ``chat_ctx``.

        Entering it connects and configures the model (a refused key or a
        refused configuration raises there); a lost connection is restored
        within ``conn_options``' retry budget, and one that cannot be is
        raised by the ``async with``.
        """


# ---------------------------------------------------------------------------
# End-of-turn detection
# ---------------------------------------------------------------------------


class EndOfTurnDetector(abc.ABC):
    """Predicts whether the user has finished their turn (a turn-detector model).

    When the probability is below ``unlikely_threshold`` the session waits for
    ``max_endpointing_delay`` instead of ``min_endpointing_delay`` before it
    commits the turn.
    """

    unlikely_threshold: float = 0.15
    requires_vad: bool = False

    def supports_language(self, language: str | None) -> bool:
        return True

    @abc.abstractmethod
    async def predict_end_of_turn(self, chat_ctx: ChatContext, transcript: str) -> float | None:
        """The probability that ``transcript`` ends the user's turn, or None."""
