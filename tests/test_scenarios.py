"""Scenario files: the shipped ones replay exactly; the format is enforced."""

import json
import pathlib
import subprocess
import sys

import pytest

from voxtrio.testing import ScenarioError, compare_expected, load_scenario, run_scenario

SCENARIOS = sorted((pathlib.Path(__file__).parent / "scenarios").glob("*.json"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_replays_its_expected_timeline(path):
    scenario = load_scenario(json.loads(path.read_text()))
    assert scenario.expect, f"{path.name} has no expect list"
    lines = run_scenario(scenario)
    assert compare_expected(lines, scenario.expect) is None, compare_expected(lines, scenario.expect)


@pytest.mark.thorough
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_the_same_scenario_gives_byte_identical_timelines(path):
    scenario = load_scenario(json.loads(path.read_text()))
    first = json.dumps(run_scenario(scenario))
    second = json.dumps(run_scenario(scenario))
    assert first == second


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "voxtrio", "scenario", "run", *args], capture_output=True, text=True
    )


@pytest.mark.thorough
def test_cli_prints_json_lines_and_checks_expectations(tmp_path):
    source = json.loads((pathlib.Path(__file__).parent / "scenarios" / "barge_in.json").read_text())
    good = tmp_path / "good.json"
    good.write_text(json.dumps(source))
    result = run_cli(str(good), "--expect")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[-1]["event"] == "history"
    assert all({"t", "seq", "event"} <= set(line) for line in lines[:-1])

    source["expect"][5]["new"] = "away"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(source))
    result = run_cli(str(bad), "--expect")
    assert result.returncode == 1
    assert "line 6.new" in result.stderr


@pytest.mark.thorough
@pytest.mark.parametrize(
    "patch, field",
    [
        ({"speed": 2}, "speed"),
        ({"options": {"min_endpointing_dealy": 0.5}}, "options.min_endpointing_dealy"),
        ({"options": {"min_endpointing_delay": "fast"}}, "options.min_endpointing_delay"),
        ({"user": [{"start": 1, "end": 2, "transcirpt": "hi"}]}, "user[0].transcirpt"),
        ({"user": [{"start": 2, "end": 1}]}, "user[0].end"),
        ({"llm": [{"input": "x", "tool_calls": [{"name": "t", "args": {}}]}]}, "llm[0].tool_calls[0].args"),
        ({"tts": [{"input": "x"}]}, "tts[0].audio_duration"),
        ({"actions": [{"at": 1, "call": "dance"}]}, "actions[0].call"),
        ({"actions": [{"at": 1, "call": "say", "args": {"txt": "hi"}}]}, "actions[0].args.txt"),
        ({"agents": {"main": {"on_enter": [{"wait": 1}]}}}, "agents.main.on_enter[0].wait"),
        ({"agents": {"main": {"tools": ["missing"]}}}, "agents.main.tools[0]"),
        ({"tools": {"t": {"result": {"handoff": "nobody"}}}}, "tools.t.result.handoff"),
        ({"end": {"after": 3}}, "end.after"),
        ({"vad": {"min_silence": 0.5}}, "vad.min_silence"),
    ],
)
def test_unknown_or_malformed_fields_are_rejected_by_name(patch, field, tmp_path):
    with pytest.raises(ScenarioError) as error:
        load_scenario(patch)
    assert error.value.field == field
    path = tmp_path / "s.json"
    path.write_text(json.dumps(patch))
    result = run_cli(str(path))
    assert result.returncode == 2
    assert field in result.stderr


@pytest.mark.thorough
def test_invalid_json_exits_2(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{nope")
    assert run_cli(str(path)).returncode == 2


@pytest.mark.thorough
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_timelines_do_not_depend_on_the_order_trio_runs_simultaneous_tasks(path):
    """Tasks that wake at the same virtual instant may run in any order; what
    the session does must not depend on it (only on the script)."""
    scenario = load_scenario(json.loads(path.read_text()))

    def by_instant(lines):
        # Events of independent actors at the same instant may come in either
        # order; what happens at each instant may not change.
        instants = {}
        for line in lines:
            key = line.get("t", "end")
            instants.setdefault(key, []).append(
                json.dumps({k: v for k, v in line.items() if k != "seq"}, sort_keys=True)
            )
        return {t: sorted(events) for t, events in instants.items()}

    timelines = [by_instant(run_scenario(scenario, seed=seed)) for seed in range(6)]
    assert all(timeline == timelines[0] for timeline in timelines)
