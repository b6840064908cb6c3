"""Spans of a session, built from its event stream with LiveKit Agents' names.

The tree (the reference's names and nesting, so dashboards built for it read
voxtrio's traces)::

    agent_session
    ├── user_speaking                 the user's voice activity
    ├── user_turn                     start of speech to the turn's commit
    │   ├── stt_request               one recognition (non-streaming STT)
    │   └── eou_detection             end of speech to the commit
    └── agent_turn                    one speech, created to done
        ├── llm_request               per LLM call (model, tokens, ttft)
        ├── function_tool             per tool call (name, arguments, output)
        ├── tts_request               per synthesis (characters, ttfb)
        └── agent_speaking            what played (lk.interrupted)

Every time is the event's own trio time (``created_at``; a request's start is
its end less its duration), converted once to nanoseconds since the epoch at
the session's start, so a trace taken under trio's MockClock has exact
durations. Nothing here runs a task: the tracer is a synchronous subscriber
of the session's events, called as each one is emitted.
"""

from __future__ import annotations

import json
import time
from typing import Any

import trio
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from ..events import (
    CloseEvent,
    ConversationItemAdded,
    ErrorEvent,
    Event,
    FunctionToolsExecuted,
    MetricsCollected,
    PlaybackFinished,
    PlaybackStarted,
    SpeechCreated,
    UserInputTranscribed,
    UserStateChanged,
)
from . import attributes as attr
from .usage import model_name, provider_name

TRACER_NAME = "voxtrio"


class SessionClock:
    """Trio time to OpenTelemetry nanoseconds: wall time at the start, trio time after."""

    def __init__(self, trio_origin: float) -> None:
        self._trio_origin = trio_origin
        self._epoch_ns = time.time_ns()

    def ns(self, t: float) -> int:
        return self._epoch_ns + round((t - self._trio_origin) * 1e9)


class SessionTracer:
    def __init__(
        self,
        tracer: trace.Tracer,
        *,
        clock: SessionClock,
        session_id: str,
        agent_label: str,
        started_at: float,
    ) -> None:
        self._tracer = tracer
        self._clock = clock
        self._agent = agent_label
        self._session = tracer.start_span(
            "agent_session",
            start_time=clock.ns(started_at),
            attributes={
                attr.SESSION_ID: session_id,
                attr.GEN_AI_CONVERSATION_ID: session_id,
                attr.AGENT_LABEL: agent_label,
            },
        )
        self._session_context = trace.set_span_in_context(self._session)
        # Open spans, by what closes them.
        self._user_speaking: Span | None = None
        self._user_turn: Span | None = None
        self._user_transcript: list[str] = []
        self._agent_turns: dict[str, Span] = {}
        self._agent_speaking: dict[str, Span] = {}
        # The turn an error with no speech id belongs to: the last one started.
        self._last_agent_turn: str | None = None

    # -- helpers -------------------------------------------------------------------------

    def _start(self, name: str, at: float, parent: Span | None, **attributes: Any) -> Span:
        context = self._session_context if parent is None else trace.set_span_in_context(parent)
        return self._tracer.start_span(
            name,
            context=context,
            start_time=self._clock.ns(at),
            attributes={k: v for k, v in attributes.items() if v is not None},
        )

    def _span(self, name: str, start: float, end: float, parent: Span | None, **attributes: Any) -> Span:
        span = self._start(name, start, parent, **attributes)
        span.end(end_time=self._clock.ns(end))
        return span

    def _turn_of(self, speech_id: str | None) -> Span | None:
        return self._agent_turns.get(speech_id) if speech_id is not None else None

    # -- the events ------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event)

    def _on_user_state_changed(self, event: UserStateChanged) -> None:
        t = event.created_at
        if event.new_state == "speaking":
            if self._user_speaking is None:
                self._user_speaking = self._start("user_speaking", t, None)
            if self._user_turn is None:
                self._user_turn = self._start("user_turn", t, None, **{attr.AGENT_LABEL: self._agent})
                self._user_transcript = []
        elif self._user_speaking is not None:
            self._user_speaking.end(end_time=self._clock.ns(t))
            self._user_speaking = None

    def _on_user_input_transcribed(self, event: UserInputTranscribed) -> None:
        if event.is_final and event.transcript:
            self._user_transcript.append(event.transcript)

    def _on_metrics_collected(self, event: MetricsCollected) -> None:
        t, figures = event.created_at, event.metrics
        if event.kind == "eou":
            self._end_user_turn(t, figures)
        elif event.kind == "stt" and "duration" in figures:
            self._span(
                "stt_request",
                t - figures["duration"],
                t,
                self._user_turn,
                **_model_attributes(event.provider),
                **{attr.STT_AUDIO_DURATION: figures.get("audio_duration")},
            )
        elif event.kind == "llm":
            usage = {
                attr.GEN_AI_USAGE_INPUT_TOKENS: figures.get("prompt_tokens"),
                attr.GEN_AI_USAGE_OUTPUT_TOKENS: figures.get("completion_tokens"),
                attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: figures.get("prompt_cached_tokens"),
            }
            self._span(
                "llm_request",
                t - figures["duration"],
                t,
                self._turn_of(event.speech_id),
                **_model_attributes(event.provider),
                **usage,
                **{
                    attr.GEN_AI_OPERATION_NAME: "chat",
                    attr.RESPONSE_TTFT: figures.get("ttft"),
                    attr.LLM_METRICS: _json(figures),
                },
            )
        elif event.kind == "tts":
            self._span(
                "tts_request",
                t - figures["duration"],
                t,
                self._turn_of(event.speech_id),
                **_model_attributes(event.provider),
                **{
                    attr.TTS_LABEL: _label(event.provider),
                    attr.TTS_CHARACTERS: figures.get("characters"),
                    attr.RESPONSE_TTFB: figures.get("ttfb"),
                    attr.TTS_METRICS: _json(figures),
                },
            )

    def _end_user_turn(self, t: float, figures: dict[str, Any]) -> None:
        delay = figures.get("end_of_utterance_delay", 0.0)
        speech_end = t - figures.get("on_user_turn_completed_delay", 0.0) - delay
        turn = self._user_turn
        if turn is None:  # a turn committed without voice activity (text input, push-to-talk)
            turn = self._start("user_turn", speech_end, None, **{attr.AGENT_LABEL: self._agent})
        self._span(
            "eou_detection",
            speech_end,
            t,
            turn,
            **{
                attr.EOU_DELAY: figures.get("endpointing_delay"),
                attr.END_OF_TURN_DELAY: delay,
                attr.TRANSCRIPTION_DELAY: figures.get("transcription_delay"),
                attr.EOU_PROBABILITY: figures.get("end_of_turn_probability"),
            },
        )
        turn.set_attribute(attr.USER_TRANSCRIPT, " ".join(self._user_transcript))
        turn.end(end_time=self._clock.ns(t))
        self._user_turn = None
        self._user_transcript = []

    def _on_speech_created(self, event: SpeechCreated) -> None:
        span = self._start(
            "agent_turn",
            event.created_at,
            None,
            **{
                attr.SPEECH_ID: event.speech_id,
                attr.AGENT_LABEL: self._agent,
                attr.SPEECH_SOURCE: event.source,
            },
        )
        self._agent_turns[event.speech_id] = span
        self._last_agent_turn = event.speech_id
        handle = event.speech_handle
        if handle is not None:
            # Done is when the speech is over, played, cut or failed: the handle knows.
            handle.add_done_callback(lambda h: self._end_agent_turn(h.id, h.interrupted))

    def _end_agent_turn(self, speech_id: str, interrupted: bool) -> None:
        span = self._agent_turns.pop(speech_id, None)
        if span is not None:
            span.set_attribute(attr.SPEECH_INTERRUPTED, interrupted)
            span.end(end_time=self._clock.ns(trio.current_time()))

    def _on_playback_started(self, event: PlaybackStarted) -> None:
        turn = self._turn_of(event.speech_id)
        if turn is not None and event.speech_id not in self._agent_speaking:
            self._agent_speaking[event.speech_id] = self._start(
                "agent_speaking", event.created_at, turn, **{attr.SPEECH_ID: event.speech_id}
            )

    def _on_playback_finished(self, event: PlaybackFinished) -> None:
        span = self._agent_speaking.pop(event.speech_id, None)
        if span is not None:
            span.set_attribute(attr.SPEECH_INTERRUPTED, event.interrupted)
            span.end(end_time=self._clock.ns(event.created_at))

    def _on_function_tools_executed(self, event: FunctionToolsExecuted) -> None:
        parent = self._turn_of(event.speech_id)
        for call, output in zip(event.function_calls, event.function_call_outputs):
            span = self._start(
                "function_tool",
                call.created_at or event.created_at,
                parent,
                **{
                    attr.FUNCTION_TOOL_ID: call.call_id,
                    attr.FUNCTION_TOOL_NAME: call.name,
                    attr.FUNCTION_TOOL_ARGS: call.arguments,
                    attr.FUNCTION_TOOL_OUTPUT: output.output,
                    attr.FUNCTION_TOOL_IS_ERROR: output.is_error,
                },
            )
            if output.is_error:
                span.set_status(Status(StatusCode.ERROR, output.output))
            span.end(end_time=self._clock.ns(event.created_at))

    def _on_conversation_item_added(self, event: ConversationItemAdded) -> None:
        item = event.item
        if item.type == "agent_handoff":
            self._agent = item.new_agent
            self._session.add_event(
                "agent_handoff",
                {attr.HANDOFF_FROM: item.old_agent or "", attr.HANDOFF_TO: item.new_agent},
                timestamp=self._clock.ns(event.created_at),
            )

    def _on_error(self, event: ErrorEvent) -> None:
        span: Span = self._session
        if event.source == "stt" and self._user_turn is not None:
            span = self._user_turn
        elif event.source in ("llm", "tts", "tool", "agent"):
            span = self._turn_of(self._last_agent_turn) or self._session
        error = event.error if isinstance(event.error, Exception) else Exception(event.message)
        span.record_exception(
            error,
            attributes={attr.ERROR_SOURCE: event.source, attr.ERROR_RECOVERABLE: event.recoverable},
            timestamp=self._clock.ns(event.created_at),
        )
        if not event.recoverable:
            span.set_status(Status(StatusCode.ERROR, event.message))

    def _on_close(self, event: CloseEvent) -> None:
        end = self._clock.ns(event.created_at)
        for span in (*self._agent_speaking.values(), *self._agent_turns.values()):
            span.end(end_time=end)
        for span in (self._user_speaking, self._user_turn):
            if span is not None:
                span.end(end_time=end)
        self._agent_speaking.clear()
        self._agent_turns.clear()
        self._user_speaking = self._user_turn = None
        self._session.set_attribute(attr.CLOSE_REASON, event.reason)
        if event.error is not None:
            self._session.set_status(Status(StatusCode.ERROR, event.error))
        self._session.end(end_time=end)


def _model_attributes(provider: Any) -> dict[str, Any]:
    if provider is None:
        return {}
    return {attr.GEN_AI_REQUEST_MODEL: model_name(provider), attr.GEN_AI_PROVIDER_NAME: provider_name(provider)}


def _label(provider: Any) -> str | None:
    return None if provider is None else f"{provider_name(provider)}.{type(provider).__name__}"


def _json(figures: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in sorted(figures.items()) if isinstance(v, (int, float, str, bool))})
