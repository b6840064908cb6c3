"""Traces, metrics, usage and log context of a session, from its own events.

:class:`SessionTelemetry` subscribes to the session's event stream (a
synchronous callback, so each event is seen at its own trio time and nothing
runs after ``session.main``). It uses only the OpenTelemetry API: the
application configures the SDK and its exporters (``pip install
voxtrio[otel]``, see docs/tracing.md). With no SDK configured the tracer and
the meter are OpenTelemetry's proxies, and the session does not subscribe
them at all, so telemetry costs nothing (bench/telemetry_overhead.py).
"""

from __future__ import annotations

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace

from ..events import Event
from ..transcript import ConversationLog
from .logging import JsonFormatter, LogContext, current_log_context, install_record_factory
from .metrics import METER_NAME, SessionMetrics
from .tracing import TRACER_NAME, SessionClock, SessionTracer
from .usage import LLMUsage, SessionUsage, STTUsage, TTSUsage

__all__ = [
    "JsonFormatter",
    "LLMUsage",
    "LogContext",
    "STTUsage",
    "SessionTelemetry",
    "SessionUsage",
    "TTSUsage",
    "current_log_context",
    "tracing_configured",
    "metrics_configured",
]


def tracing_configured() -> bool:
    """Whether the application installed a tracer provider (an SDK)."""
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def metrics_configured() -> bool:
    """Whether the application installed a meter provider (an SDK)."""
    provider = otel_metrics.get_meter_provider()
    return not isinstance(provider, otel_metrics.NoOpMeterProvider) and type(provider).__name__ != "_ProxyMeterProvider"


class SessionTelemetry:
    """One session's subscribers: tracer and metrics when configured; usage always."""

    def __init__(self, *, session_id: str, agent_label: str, started_at: float, usage: SessionUsage) -> None:
        self.usage = usage
        self.tracer: SessionTracer | None = None
        self.metrics: SessionMetrics | None = None
        self._timings: ConversationLog | None = None
        if tracing_configured():
            self.tracer = SessionTracer(
                trace.get_tracer(TRACER_NAME),
                clock=SessionClock(started_at),
                session_id=session_id,
                agent_label=agent_label,
                started_at=started_at,
            )
        if metrics_configured():
            self.metrics = SessionMetrics(otel_metrics.get_meter(METER_NAME), agent_label=agent_label)
            # The turn timings (end of speech to first audio) are the ConversationLog's.
            self._timings = ConversationLog()
            self._timings.listen(self.metrics.on_timing)

    def on_event(self, event: Event) -> None:
        self.usage.on_event(event)
        if self.tracer is not None:
            self.tracer.on_event(event)
        if self.metrics is not None:
            assert self._timings is not None
            self._timings.on_event(event)
            self.metrics.on_event(event)


