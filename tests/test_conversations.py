"""The property-based conversation harness: generated conversations keep every invariant.

The "ci" hypothesis profile (tests/conftest.py) plays a few hundred generated
conversations, the same ones on every run; ``--hypothesis-profile=deep`` plays
thousands of fresh ones. A failure is shrunk to the smallest scenario that
still fails and written to ``voxtrio-failures/`` (or ``$VOXTRIO_FAILURE_DIR``),
ready for ``voxtrio scenario run``; once fixed, it becomes a regression file in
tests/scenarios/.
"""

import json
import pathlib
import subprocess
import sys

import pytest
from hypothesis import event, given, settings

from voxtrio.testing import load_scenario
from voxtrio.testing.invariants import (
    InvariantViolation,
    check_conversation,
    check_invariants,
    observe,
)
from voxtrio.testing.strategies import conversations

from helpers import inject

SCENARIOS = sorted((pathlib.Path(__file__).parent / "scenarios").glob("*.json"))


def features(observation):
    """What a conversation exercised (reported by --hypothesis-show-statistics)."""
    events = observation.events
    seen = {f"close: {e.reason}" for e in events if e.type == "close"}
    checks = {
        "a tool ran": lambda e: e.type == "function_tools_executed",
        "speech cut off": lambda e: e.type == "playback_finished" and e.interrupted,
        "hand-off": lambda e: e.type == "conversation_item_added" and e.item.type == "agent_handoff"
        and e.item.old_agent is not None,
        "false interruption": lambda e: e.type == "agent_false_interruption",
        "provider error": lambda e: e.type == "error" and e.source in ("llm", "tts", "stt", "vad"),
        "user turn": lambda e: e.type == "conversation_item_added" and getattr(e.item, "role", "") == "user",
    }
    seen.update(name for name, check in checks.items() if any(check(e) for e in events))
    return sorted(seen)


def check_generated(conversation, name):
    observation = check_conversation(conversation, name=name)
    for feature in features(observation):
        event(feature)


@pytest.mark.property
@given(conversations())
def test_generated_conversations_keep_every_invariant(conversation):
    check_generated(conversation, "generated_conversation")


@pytest.mark.property
@settings(max_examples=max(1, settings.default.max_examples // 2))
@given(conversations(faults=False, max_turns=3))
def test_generated_conversations_without_faults_keep_every_invariant(conversation):
    check_generated(conversation, "generated_conversation_without_faults")


@pytest.mark.property
@settings(max_examples=max(1, settings.default.max_examples // 2))
@given(conversations(realtime=True, max_turns=3))
def test_generated_conversations_on_a_realtime_model_keep_every_invariant(conversation):
    check_generated(conversation, "generated_realtime_conversation")


@pytest.mark.thorough
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_scenario_file_keeps_every_invariant(path):
    scenario = load_scenario(json.loads(path.read_text()))
    assert [str(v) for v in check_invariants(observe(scenario))] == []


@pytest.mark.property
def test_the_harness_catches_a_runtime_that_drops_outputs_on_interruption(monkeypatch, tmp_path):
    inject(monkeypatch, "drop_outputs_of_interrupted_tools")
    tried = []

    # Same settings as the property test above (the active profile).
    @given(conversations())
    def conversations_keep_every_invariant(conversation):
        tried.append(conversation)
        check_conversation(conversation, directory=tmp_path, name="dropped_output")

    with pytest.raises(InvariantViolation) as caught:
        conversations_keep_every_invariant()
    assert len(tried) <= settings.default.max_examples + 1  # within the profile
    assert {v.invariant for v in caught.value.violations} == {"function_calls"}
    assert "has no output in history" in str(caught.value)

    # The shrunk scenario is a small, valid scenario file that still fails
    # the same way (with the fault in place) ...
    path = caught.value.path
    assert path == tmp_path / "dropped_output.json"
    shrunk = json.loads(path.read_text())
    assert len(shrunk.get("llm", [])) <= 2 and len(shrunk.get("user", [])) <= 2
    replayed = check_invariants(observe(load_scenario(shrunk)))
    assert {v.invariant for v in replayed} == {"function_calls"}
    # ... and the command line replays it (without the fault: it keeps the invariants).
    result = subprocess.run(
        [sys.executable, "-m", "voxtrio", "scenario", "run", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["event"] == "history"
    monkeypatch.undo()
    assert check_invariants(observe(load_scenario(shrunk))) == []


@pytest.mark.property
def test_the_readme_property_example_runs():
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## Property tests"):readme.index("## Scenarios: conversations as data")]
    code = section[section.index("```python\n") + len("```python\n"):]
    code = code[: code.index("```")].replace("max_examples=200", "max_examples=8")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    namespace["test_weather_agent_keeps_the_invariants"]()


@pytest.mark.property
@settings(max_examples=max(1, settings.default.max_examples // 2))
@given(conversations(hostile=True))
def test_hostile_conversations_keep_every_invariant(conversation):
    """A careless application and broken providers: wrong arguments at random
    times, providers that raise anything or send junk, a transport that sends
    something else than audio or breaks. session.main still returns on its own,
    within the close bound, nothing outlives it, and every failure is exactly
    one error event naming its source."""
    check_generated(conversation, "hostile_conversation")


@pytest.mark.property
def test_the_hostile_harness_catches_a_runtime_that_loses_provider_errors(monkeypatch, tmp_path):
    inject(monkeypatch, "report_api_errors_only")

    @settings(max_examples=max(1, settings.default.max_examples // 4))
    @given(conversations(hostile=True))
    def hostile_conversations_keep_every_invariant(conversation):
        check_conversation(conversation, directory=tmp_path, name="lost_error", shrink=False, replay=False)

    with pytest.raises(InvariantViolation) as caught:
        hostile_conversations_keep_every_invariant()
    assert "failures_reported" in {v.invariant for v in caught.value.violations}
    assert "appears in 0 error event(s)" in str(caught.value)
