"""Traces, metrics and usage of a session, read through the OpenTelemetry SDK's
in-memory exporter and reader, on trio's MockClock (so every duration is exact)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import trio
from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.util._once import Once

import voxtrio
from voxtrio.telemetry import JsonFormatter, SessionTelemetry, SessionUsage, metrics_configured, tracing_configured
from voxtrio.testing.scripted import LLMResponse, ScriptedLLM
from voxtrio.testing import load_scenario, play
from voxtrio.testing.traces import span_tree

CALL = Path(__file__).parent / "fixtures" / "traced_call.json"


def _reset_globals() -> None:
    # What opentelemetry's own test utilities do: the globals can be set once per process.
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    metrics_internal._PROXY_METER_PROVIDER = metrics_internal._ProxyMeterProvider()


@pytest.fixture
def otel():
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    _reset_globals()
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    yield exporter, reader
    _reset_globals()


EXPECTED_TREE = """\
agent_session 0.000 +20.200 lk.agent_label='front'
├── user_speaking 0.550 +1.950
├── user_turn 0.550 +1.950 lk.agent_label='front' lk.pii.user_transcript='I have a billing question.'
│   └── eou_detection 2.000 +0.500
├── agent_turn 2.500 +0.800 lk.speech_id='speech_1' lk.agent_label='front' lk.interrupted=False
│   ├── llm_request 2.500 +0.300
│   └── function_tool 2.800 +0.500 lk.function_tool.name='transfer'
├── agent_turn 3.300 +2.067 lk.speech_id='speech_2' lk.agent_label='front' lk.interrupted=False
│   ├── tts_request 3.300 +0.300
│   └── agent_speaking 3.500 +1.867 lk.speech_id='speech_2' lk.interrupted=False
├── agent_turn 5.367 +2.433 lk.speech_id='speech_3' lk.agent_label='billing' lk.interrupted=False
│   ├── llm_request 5.367 +0.300
│   ├── tts_request 5.667 +0.300
│   └── agent_speaking 5.867 +1.933 lk.speech_id='speech_3' lk.interrupted=False
├── user_speaking 8.050 +1.950
├── user_turn 8.050 +1.950 lk.agent_label='billing' lk.pii.user_transcript='What is the balance of account A7?'
│   └── eou_detection 9.500 +0.500
├── agent_turn 10.000 +4.500 lk.speech_id='speech_4' lk.agent_label='billing' lk.interrupted=True
│   ├── llm_request 10.000 +0.300
│   ├── tts_request 10.300 +0.300
│   ├── function_tool 10.300 +1.000 lk.function_tool.name='balance'
│   ├── agent_speaking 10.500 +0.800 lk.speech_id='speech_4' lk.interrupted=False
│   ├── llm_request 11.300 +0.300
│   ├── tts_request 11.600 +0.300
│   └── agent_speaking 11.800 +2.700 lk.speech_id='speech_4' lk.interrupted=True
├── user_speaking 14.050 +1.450
├── user_turn 14.050 +1.450 lk.agent_label='billing' lk.pii.user_transcript='Thanks, that is all.'
│   └── eou_detection 15.000 +0.500
└── agent_turn 15.500 +1.033 lk.speech_id='speech_5' lk.agent_label='billing' lk.interrupted=False
    ├── llm_request 15.500 +0.300
    ├── tts_request 15.800 +0.300
    └── agent_speaking 16.000 +0.533 lk.speech_id='speech_5' lk.interrupted=False"""

SHOWN = ["lk.speech_id", "lk.agent_label", "lk.interrupted", "lk.function_tool.name", "lk.pii.user_transcript"]


async def test_a_call_with_a_tool_an_interruption_and_a_handoff_has_the_reference_span_tree(otel, autojump_clock):
    exporter, _ = otel
    await play(load_scenario(json.loads(CALL.read_text())))
    spans = exporter.get_finished_spans()
    assert "\n".join(span_tree(spans, attributes=SHOWN)) == EXPECTED_TREE
    # one trace: every span descends from agent_session
    assert len({span.context.trace_id for span in spans}) == 1


async def test_spans_carry_models_tokens_tool_payloads_and_the_handoff(otel, autojump_clock):
    exporter, _ = otel
    await play(load_scenario(json.loads(CALL.read_text())))
    spans = exporter.get_finished_spans()
    by_name = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    llm = by_name["llm_request"][0]
    assert llm.attributes["gen_ai.request.model"] == "scripted"
    assert llm.attributes["gen_ai.provider.name"] == "scripted"
    assert llm.attributes["lk.response.ttft"] == pytest.approx(0.3)  # its first chunk is the tool call
    balance = next(s for s in by_name["function_tool"] if s.attributes["lk.function_tool.name"] == "balance")
    assert json.loads(balance.attributes["lk.pii.function_tool.arguments"]) == {"account": "A7"}
    assert balance.attributes["lk.pii.function_tool.output"] == "The balance of A7 is 42 euros."
    assert balance.attributes["lk.function_tool.is_error"] is False
    tts = by_name["tts_request"][0]
    assert tts.attributes["voxtrio.tts.characters"] == 28
    assert tts.attributes["lk.response.ttfb"] == pytest.approx(0.2)
    (session,) = by_name["agent_session"]
    assert session.attributes["session.id"].startswith("session_")
    assert session.attributes["lk.close_reason"] == "user_initiated"
    handoffs = [(e.attributes["voxtrio.handoff.from"], e.attributes["voxtrio.handoff.to"]) for e in session.events]
    assert handoffs == [("", "front"), ("front", "billing")]


async def test_an_error_is_recorded_on_its_span(otel, autojump_clock):
    exporter, _ = otel
    await play(
        load_scenario(
            {
                "user": [{"start": 0.5, "end": 1.5, "transcript": "hello"}],
                "llm": [{"input": "hello", "content": "Hi.", "error": {"kind": "status", "retryable": False}}],
                "tts": [{"input": "Hi.", "audio_duration": 0.5}],
            }
        )
    )
    spans = exporter.get_finished_spans()
    turn = next(span for span in spans if span.name == "agent_turn")
    assert [event.name for event in turn.events][:1] == ["exception"]
    assert turn.events[0].attributes["voxtrio.error.source"] == "llm"
    session = next(span for span in spans if span.name == "agent_session")
    assert any(s.status.status_code == StatusCode.ERROR for s in (turn, session))


def _points(reader):
    found = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = list(metric.data.data_points)
    return found


async def test_metrics_count_turns_interruptions_and_tools(otel, autojump_clock):
    _, reader = otel
    await play(load_scenario(json.loads(CALL.read_text())))
    points = _points(reader)
    first_audio = {
        p.attributes["lk.agent_label"]: (p.count, round(p.sum, 6)) for p in points["voxtrio.turn.first_audio_latency"]
    }
    # end of speech to first audio: 2.0 -> 3.5 (the tool, then on_exit's say), 9.5 -> 10.5, 15.0 -> 16.0
    assert first_audio == {"front": (1, 1.5), "billing": (2, 2.0)}
    (interruptions,) = points["voxtrio.interruptions"]
    assert interruptions.value == 1
    tools = {p.attributes["lk.function_tool.name"]: p.value for p in points["voxtrio.tool_calls"]}
    assert tools == {"transfer": 1, "balance": 1}
    assert sum(p.count for p in points["voxtrio.llm.ttft"]) == 5
    assert sum(p.count for p in points["voxtrio.tts.ttfb"]) == 5
    assert sum(p.count for p in points["voxtrio.eou.delay"]) == 3
    assert round(sum(p.sum for p in points["voxtrio.eou.delay"]), 6) == 1.5


def test_without_an_sdk_the_session_does_not_trace_or_measure():
    assert not tracing_configured() and not metrics_configured()
    telemetry = SessionTelemetry(session_id="s", agent_label="a", started_at=0.0, usage=SessionUsage())
    assert (telemetry.tracer, telemetry.metrics) == (None, None)


def test_with_an_sdk_the_session_traces_and_measures(otel, autojump_clock):
    telemetry = SessionTelemetry(session_id="s", agent_label="a", started_at=0.0, usage=SessionUsage())
    assert telemetry.tracer is not None and telemetry.metrics is not None


async def test_usage_per_provider_and_model_is_in_session_usage_and_the_close_event(autojump_clock):
    session = voxtrio.AgentSession(llm=ScriptedLLM([LLMResponse(input="hi", content="Hello there.")]))
    closes = []
    session.on("close", closes.append)

    async def talk():
        await session.run(user_input="hi")
        session.shutdown()

    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent())
        nursery.start_soon(talk)
    assert session.usage.to_dict()["llm"] == [
        {"provider": "scripted", "model": "scripted", "requests": 1, "prompt_tokens": 0,
         "completion_tokens": 0, "prompt_cached_tokens": 0}
    ]
    assert closes[0].usage == session.usage.to_dict()


async def test_every_log_record_names_the_session_the_speech_and_the_agent(autojump_clock, caplog):
    session = voxtrio.AgentSession(llm=ScriptedLLM([LLMResponse(input="hi", content="Hello there.")]))
    # Logged from the session's own tasks (the planner adds the reply to the history).
    session.on(
        "conversation_item_added",
        lambda event: event.item.type == "message"
        and event.item.role == "assistant"
        and logging.getLogger("app").warning("speech created"),
    )

    async def talk():
        await session.run(user_input="hi")
        session.shutdown()

    with caplog.at_level(logging.WARNING, logger="app"):
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, voxtrio.Agent())
            nursery.start_soon(talk)
    (record,) = [r for r in caplog.records if r.name == "app"]
    assert (record.session_id, record.speech_id, record.agent) == (session.id, "speech_1", "default_agent")
    line = json.loads(JsonFormatter().format(record))
    assert (line["session_id"], line["speech_id"], line["message"]) == (session.id, "speech_1", "speech created")
    outside = logging.getLogger("app").makeRecord("app", logging.INFO, __file__, 1, "x", (), None)
    assert outside.session_id is None
