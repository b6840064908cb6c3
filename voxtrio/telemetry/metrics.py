"""OpenTelemetry metrics of a session, from its events.

Histograms (seconds): ``voxtrio.turn.first_audio_latency`` (the user's end of
speech to the first audio of the answer, the number a caller feels),
``voxtrio.llm.ttft``, ``voxtrio.tts.ttfb``, ``voxtrio.eou.delay``, and
OpenTelemetry's GenAI ``gen_ai.client.token.usage`` (tokens, by
``gen_ai.token.type``). Counters: ``voxtrio.interruptions``,
``voxtrio.false_interruptions``, ``voxtrio.errors`` (by ``voxtrio.error.source``),
``voxtrio.tool_calls`` (by ``lk.function_tool.name``). Every point carries
the agent's label; the provider and model where there is one.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics

from ..events import Event, MetricsCollected
from . import attributes as attr
from .usage import model_name, provider_name

METER_NAME = "voxtrio"


class SessionMetrics:
    def __init__(self, meter: metrics.Meter, *, agent_label: str) -> None:
        self._agent = agent_label
        seconds = {"unit": "s"}
        self.first_audio = meter.create_histogram(
            "voxtrio.turn.first_audio_latency", description="End of user speech to the first agent audio", **seconds
        )
        self.ttft = meter.create_histogram("voxtrio.llm.ttft", description="LLM time to first token", **seconds)
        self.ttfb = meter.create_histogram("voxtrio.tts.ttfb", description="TTS time to first byte", **seconds)
        self.eou_delay = meter.create_histogram(
            "voxtrio.eou.delay", description="End of user speech to the turn's commit", **seconds
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens per LLM request"
        )
        self.interruptions = meter.create_counter("voxtrio.interruptions", description="Speeches cut by the user")
        self.false_interruptions = meter.create_counter(
            "voxtrio.false_interruptions", description="Pauses for user sound that was no interruption"
        )
        self.errors = meter.create_counter("voxtrio.errors", description="Error events, by source")
        self.tool_calls = meter.create_counter("voxtrio.tool_calls", description="Tool calls, by tool")

    def on_timing(self, kind: str, entry: dict[str, Any]) -> None:
        """A ConversationLog listener: each finished turn's end-of-speech-to-audio figure."""
        if kind == "timing" and entry.get("first_audio") is not None:
            self.first_audio.record(entry["first_audio"], self._labels())

    def _labels(self, provider: Any = None) -> dict[str, Any]:
        labels: dict[str, Any] = {attr.AGENT_LABEL: self._agent}
        if provider is not None:
            labels[attr.GEN_AI_PROVIDER_NAME] = provider_name(provider)
            labels[attr.GEN_AI_REQUEST_MODEL] = model_name(provider)
        return labels

    def on_event(self, event: Event) -> None:
        kind = event.type
        if isinstance(event, MetricsCollected):
            figures = event.metrics
            if event.kind == "llm":
                labels = self._labels(event.provider)
                self.ttft.record(figures["ttft"], labels)
                for key, token_type in (("prompt_tokens", "input"), ("completion_tokens", "output")):
                    if key in figures:
                        self.tokens.record(figures[key], {**labels, attr.GEN_AI_TOKEN_TYPE: token_type})
            elif event.kind == "tts" and "ttfb" in figures:
                self.ttfb.record(figures["ttfb"], self._labels(event.provider))
            elif event.kind == "eou":
                self.eou_delay.record(figures.get("end_of_utterance_delay", 0.0), self._labels())
        elif kind == "playback_finished" and event.interrupted:  # type: ignore[attr-defined]
            self.interruptions.add(1, self._labels())
        elif kind == "agent_false_interruption":
            self.false_interruptions.add(1, self._labels())
        elif kind == "error":
            self.errors.add(1, {**self._labels(), attr.ERROR_SOURCE: event.source})  # type: ignore[attr-defined]
        elif kind == "function_tools_executed":
            for call in event.function_calls:  # type: ignore[attr-defined]
                self.tool_calls.add(1, {**self._labels(), attr.FUNCTION_TOOL_NAME: call.name})
        elif kind == "conversation_item_added" and event.item.type == "agent_handoff":  # type: ignore[attr-defined]
            self._agent = event.item.new_agent  # type: ignore[attr-defined]
