"""The fault extension of docs/scenario-format.md: provider errors, stalls and hang-ups as data."""

import pytest

from voxtrio.testing import ScenarioError, load_scenario

from helpers import history, of, timeline

QUICK_RETRIES = {"max_retry": 1, "retry_interval": 0.5, "timeout": 1.0}


async def test_an_llm_error_before_any_output_is_retried_with_the_next_response(autojump_clock):
    lines = await timeline(
        options={"conn_options": {"llm_conn_options": QUICK_RETRIES}},
        stt=False,
        vad=None,
        llm=[
            {"input": "greet", "content": "Hello!", "error": {"kind": "status"}},
            {"input": "greet", "content": "Hello!"},
        ],
        tts=[{"input": "Hello!", "audio_duration": 1.0}],
        actions=[{"at": 0.0, "call": "generate_reply", "args": {"instructions": "greet"}}],
        end={"at": 3.0},
    )
    errors = of(lines, "error", source="llm")
    assert [(e["t"], e["recoverable"]) for e in errors] == [(0.1, True)]
    assert "status 500" in errors[0]["message"]
    # the retry waits 0.1 s, then answers normally
    assert [m["content"] for m in history(lines) if m["type"] == "message"] == ["Hello!"]


async def test_an_llm_drop_after_some_content_is_not_retried(autojump_clock):
    lines = await timeline(
        options={"conn_options": {"llm_conn_options": QUICK_RETRIES}},
        stt=False,
        vad=None,
        llm=[{"input": "greet", "content": "Hello there!", "error": {"kind": "connection", "after": 6}}],
        tts_default_chars_per_second=10,
        actions=[{"at": 0.0, "call": "generate_reply", "args": {"instructions": "greet"}}],
        end={"at": 3.0},
    )
    assert [(e["recoverable"], e["message"]) for e in of(lines, "error", source="llm")] == [
        (False, "scripted LLM error: connection dropped")
    ]
    # what was delivered before the drop is still spoken
    assert [m["content"] for m in history(lines) if m["type"] == "message"] == ["Hello "]


async def test_an_llm_stall_ends_by_the_progress_timeout(autojump_clock):
    lines = await timeline(
        options={"conn_options": {"llm_conn_options": {"max_retry": 0, "timeout": 1.5}}},
        stt=False,
        vad=None,
        llm=[{"input": "greet", "content": "Hello!", "error": {"kind": "timeout"}}],
        actions=[{"at": 0.0, "call": "generate_reply", "args": {"instructions": "greet"}}],
        end={"at": 4.0},
    )
    errors = of(lines, "error", source="llm")
    assert [(e["t"], e["recoverable"]) for e in errors] == [(1.5, False)]
    assert "no progress for 1.5 s" in errors[0]["message"]


async def test_a_tts_failure_is_used_once_then_the_plain_entry_answers(autojump_clock):
    lines = await timeline(
        options={"conn_options": {"tts_conn_options": QUICK_RETRIES}},
        stt=False,
        vad=None,
        tts=[
            {"input": "Hi.", "audio_duration": 1.0, "error": {"kind": "connection"}},
            {"input": "Hi.", "audio_duration": 2.0},
        ],
        actions=[{"at": 0.0, "call": "say", "args": {"text": "Hi."}}],
        end={"at": 4.0},
    )
    assert [e["recoverable"] for e in of(lines, "error", source="tts")] == [True]
    assert [(p["position"], p["interrupted"]) for p in of(lines, "playback_finished")] == [(2.0, False)]


async def test_a_tts_drop_after_some_audio_plays_what_came(autojump_clock):
    lines = await timeline(
        stt=False,
        vad=None,
        tts=[{"input": "Hi there you.", "audio_duration": 3.0, "error": {"kind": "connection", "after": 1.0}}],
        actions=[{"at": 0.0, "call": "say", "args": {"text": "Hi there you."}}],
        end={"at": 4.0},
    )
    assert [e["recoverable"] for e in of(lines, "error", source="tts")] == [False]
    assert [p["position"] for p in of(lines, "playback_finished")] == [1.0]


async def test_a_recognizer_fault_loses_the_audio_of_the_failed_stream(autojump_clock):
    lines = await timeline(
        options={"conn_options": {"stt_conn_options": {"max_retry": 2, "retry_interval": 0.5}}},
        user=[
            {"start": 0.5, "end": 1.5, "transcript": "lost words"},
            {"start": 3.0, "end": 4.0, "transcript": "heard words"},
        ],
        faults={"stt": [{"at": 1.6}]},
        end={"at": 6.0},
    )
    assert [(e["t"], e["recoverable"]) for e in of(lines, "error", source="stt")] == [(1.6, True)]
    assert [t["transcript"] for t in of(lines, "user_input_transcribed", is_final=True)] == ["heard words"]


async def test_a_vad_failure_closes_the_session_with_an_error(autojump_clock):
    lines = await timeline(faults={"vad": {"at": 1.0}}, end={"at": 5.0})
    close = of(lines, "close")
    assert [(c["t"], c["reason"]) for c in close] == [(1.0, "error")]


async def test_a_hang_up_closes_the_session(autojump_clock):
    lines = await timeline(faults={"transport": {"disconnect_at": 1.5}}, end={"at": 5.0})
    assert [(c["t"], c["reason"]) for c in of(lines, "close")] == [(1.5, "participant_disconnected")]


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"llm": [{"input": "x", "error": {"kind": "explode"}}]}, "llm[0].error.kind"),
        ({"tts": [{"input": "x", "audio_duration": 1, "error": {"at": 1}}]}, "tts[0].error.at"),
        ({"faults": {"stt": [{"at": 1, "kind": "timeout"}]}}, "faults.stt[0].kind"),
        ({"faults": {"vad": {}}}, "faults.vad.at"),
        ({"faults": {"network": {}}}, "faults.network"),
        ({"options": {"conn_options": {"llm_conn_options": {"retries": 1}}}}, "options.conn_options.llm_conn_options.retries"),
    ],
)
def test_malformed_faults_are_rejected_by_name(patch, field):
    with pytest.raises(ScenarioError) as error:
        load_scenario(patch)
    assert error.value.field == field
