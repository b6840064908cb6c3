"""Each invariant of the conversation harness can fail: a deliberately broken
runtime (a fault of ``voxtrio.faults`` switched on, or a wrapped public
method) breaks it on a small conversation, and the check names it. (A check that cannot fail would prove nothing.)"""

import json
import pathlib

import attrs
import pytest
import trio
from hypothesis import given, settings

import voxtrio.actors.supervisor as session_actor
from voxtrio.actors.recorder import Recorder
from voxtrio.events import ErrorEvent, EventBus
from voxtrio.testing import load_scenario
from voxtrio.testing.invariants import (
    InvariantViolation,
    check_close,
    check_close_timeout,
    check_conversation,
    check_function_calls,
    check_history_order,
    check_invariants,
    check_main_returns,
    check_no_audio_over_user,
    check_no_resume_over_user,
    check_speaking_means_audio,
    check_speech_handles,
    check_state_transitions,
    check_user_turns,
    observe,
)
from voxtrio.testing.scripted import ScriptedAudioOutput, ScriptedLLM
from voxtrio.testing.shrinking import reduce_scenario
from voxtrio.testing.strategies import conversations

from helpers import inject

SCENARIOS = pathlib.Path(__file__).parent / "scenarios"


def scenario(name):
    data = json.loads((SCENARIOS / f"{name}.json").read_text())
    data.pop("expect", None)
    return data


def names(violations):
    return sorted({v.invariant for v in violations})


def assert_only(check, data, invariant, **observe_args):
    observation = observe(data, **observe_args)
    found = check(observation)
    assert found, f"{check.__name__} found nothing"
    assert names(found) == [invariant]
    return found


# -- the checks hold on a healthy runtime (the scenario files are checked in test_conversations) --


def test_a_healthy_conversation_keeps_every_invariant():
    assert check_invariants(observe(scenario("tool_call"))) == []


# -- each check fails on its own fault --------------------------------------------------------


def test_main_returns_catches_a_task_that_outlives_the_session(monkeypatch):
    run = Recorder.run

    async def leaky_run(self, *, task_status=trio.TASK_STATUS_IGNORED):
        trio.lowlevel.spawn_system_task(trio.sleep_forever, name="leaked-by-recorder")
        await run(self, task_status=task_status)

    monkeypatch.setattr(Recorder, "run", leaky_run)
    found = assert_only(check_main_returns, scenario("barge_in"), "main_returns")
    assert "leaked-by-recorder" in str(found[0])


def test_main_returns_catches_an_awaited_call_that_never_returns(monkeypatch):
    inject(monkeypatch, "leave_drain_unanswered_at_close")  # the old bug
    found = assert_only(check_main_returns, scenario("drain_returns_when_the_session_closes"), "main_returns")
    assert "['drain']" in str(found[0])


def test_main_returns_catches_a_session_that_never_closes(monkeypatch):
    inject(monkeypatch, "close_never_finishes")
    observation = observe(scenario("barge_in"), time_limit=5.0)
    assert observation.gave_up
    assert "did not close" in str(check_main_returns(observation)[0])


@pytest.mark.thorough  # 200,000 task steps
def test_main_returns_catches_a_livelock(monkeypatch):
    # A loop of checkpoints that never sleeps: virtual time stands still, so
    # no time limit would ever end the run.
    inject(monkeypatch, "close_spins")
    observation = observe(scenario("barge_in"))
    assert observation.livelocked_at is not None and not observation.gave_up
    assert "livelock" in str(check_main_returns(observation)[0])


def test_close_catches_an_event_after_close(monkeypatch):
    close_subscribers = EventBus.close_subscribers

    def late_event(self):
        self.emit(ErrorEvent(source="session", message="too late", recoverable=True))
        close_subscribers(self)

    monkeypatch.setattr(EventBus, "close_subscribers", late_event)
    found = assert_only(check_close, scenario("barge_in"), "close_once")
    assert "events after close: ['error']" in str(found[0])


def test_close_timeout_catches_a_close_that_overruns(monkeypatch):
    # A negative grace moves the drain deadline past close_timeout.
    monkeypatch.setattr(session_actor, "CLOSE_GRACE", -1.0)
    found = assert_only(check_close_timeout, scenario("close_deadline_records_cancelled_tool"), "close_timeout")
    assert "more than close_timeout=2 s" in str(found[0])


def test_function_calls_catches_outputs_dropped_on_interruption(monkeypatch):
    inject(monkeypatch, "drop_outputs_of_interrupted_tools")
    data = {
        "stt": False,
        "vad": None,
        "agents": {"main": {"tools": ["slow"]}},
        "tools": {"slow": {"steps": [{"sleep": 2.0}], "result": "done"}},
        "llm": [{"input": "go", "content": "Working on it.", "tool_calls": [{"name": "slow", "call_id": "x"}]}],
        "tts_default_chars_per_second": 10,
        "actions": [
            {"at": 0.0, "call": "generate_reply", "args": {"instructions": "go"}},
            {"at": 1.0, "call": "interrupt"},
        ],
        "end": {"at": 4.0},
    }
    found = assert_only(check_function_calls, data, "function_calls")
    assert "call 'x' has no output in history" in str(found[0])


def test_function_calls_catches_a_tool_abandoned_at_close(monkeypatch):
    inject(monkeypatch, "forget_tools_abandoned_at_close")
    found = assert_only(check_function_calls, scenario("close_deadline_records_cancelled_tool"), "function_calls")
    assert "'lookup' began to run 1 time(s) but the history has 0" in str(found[0])


def test_state_transitions_catch_a_change_that_was_not_announced(monkeypatch):
    inject(monkeypatch, "think_silently")
    found = assert_only(check_state_transitions, scenario("tool_call"), "state_transitions")
    assert "but the state was" in str(found[0])


def test_speaking_means_audio_catches_a_silent_speaking_agent(monkeypatch):
    inject(monkeypatch, "ignore_playout_stalls")
    found = assert_only(check_speaking_means_audio, scenario("tts_stall_is_not_speaking"), "speaking_means_audio")
    assert "'speaking' with no audio playing from t=1.0 to t=3.5" in str(found[0])


def test_no_audio_over_user_catches_an_ignored_barge_in(monkeypatch):
    inject(monkeypatch, "ignore_barge_in")
    found = assert_only(check_no_audio_over_user, scenario("barge_in"), "no_audio_over_user")
    assert "played" in str(found[0]) and "over the user speaking 5-6 s" in str(found[0])


def test_no_resume_over_user_catches_a_paused_reply_resuming_over_the_user():
    # The timer of a false interruption that the user's second noise (7.0-7.45 s)
    # did not cancel: the reply resumes at 7.3, in the middle of the noise.
    observation = observe(scenario("false_interruption_waits_for_the_last_sound"))
    assert check_no_resume_over_user(observation) == []
    [resumed] = observation.of("agent_false_interruption")
    early = attrs.evolve(resumed, created_at=observation.origin + 7.3)
    observation.events[observation.events.index(resumed)] = early
    found = check_no_resume_over_user(observation)
    assert [str(v) for v in found] == [
        "[no_resume_over_user] the paused speech resumed at t=7.3 while the user was making sound (7-7.45 s)"
    ]
    # A resume the user could not have caused: the VAD had no update to hear them yet.
    observation.events[observation.events.index(early)] = attrs.evolve(resumed, created_at=observation.origin + 7.02)
    assert check_no_resume_over_user(observation) == []


def test_speech_handles_catch_a_cut_speech_recorded_as_heard_in_full(monkeypatch):
    inject(monkeypatch, "flip_interrupted_on_assistant_messages")
    found = assert_only(check_speech_handles, scenario("barge_in"), "speech_handles")
    assert "0 playout(s) heard in full but 1 uninterrupted assistant message(s)" in str(found[0])


def test_history_order_catches_two_items_in_one_place(monkeypatch):
    inject(monkeypatch, "number_tool_outputs_as_their_calls")
    found = assert_only(check_history_order, scenario("tool_call"), "history_order")
    assert "history seq does not increase: function_call" in str(found[0])


def test_user_turns_catch_a_turn_committed_twice(monkeypatch):
    inject(monkeypatch, "commit_user_turns_twice")
    found = assert_only(check_user_turns, scenario("barge_in"), "user_turns")
    assert "'Tell me a story.' is not a new run of final transcripts" in str(found[0])


def test_determinism_catches_a_replay_that_differs(monkeypatch, tmp_path):
    calls = []
    chat = ScriptedLLM.chat

    async def drifting_chat(self, **kwargs):
        calls.append(None)
        await trio.sleep(0.01 * len(calls))  # a clock that is not the script's
        await chat(self, **kwargs)

    monkeypatch.setattr(ScriptedLLM, "chat", drifting_chat)
    with pytest.raises(InvariantViolation) as caught:
        check_conversation(scenario("barge_in"), shrink=False, directory=tmp_path)
    assert names(caught.value.violations) == ["determinism"]
    assert caught.value.path.exists()


# -- the pieces the checks stand on ----------------------------------------------------------


def test_the_output_model_knows_when_audio_was_audible():
    output = ScriptedAudioOutput(can_pause=True)
    output.log = [
        ("write", 0.0, 0.1),
        ("write", 0.0, 0.1),  # queued behind the first: plays 0.1-0.2
        ("write", 0.5, 0.1),  # after a dry spell
        ("pause", 0.55, 0.0),
        ("resume", 1.0, 0.0),  # the 0.05 s left plays 1.0-1.05
        ("write", 2.0, 1.0),
        ("clear", 2.3, 0.0),
    ]
    intervals = [(round(start, 6), round(end, 6)) for start, end in output.playing_intervals()]
    assert intervals == [(0.0, 0.2), (0.5, 0.55), (1.0, 1.05), (2.0, 2.3)]


def test_shrinking_keeps_only_what_the_failure_needs():
    data = {
        "name": "big",
        "options": {"min_endpointing_delay": 1.0, "max_tool_steps": 2},
        "user": [
            {"start": 0.5, "end": 1.37, "transcript": "Hello there."},
            {"start": 3.0, "end": 4.0, "transcript": "Stop!"},
            {"start": 6.0, "end": 6.2},
        ],
        "llm": [{"input": "Hello there.", "content": "Hi!"}, {"input": "Stop!", "content": "Okay."}],
        "actions": [{"at": 2.0, "call": "say", "args": {"text": "Welcome!"}}],
        "end": {"at": 9.0},
    }

    def still_fails(candidate):  # "fails" while someone says Stop! after 2 s
        return any(s.get("transcript") == "Stop!" and s["start"] > 2 for s in candidate.get("user", []))

    assert reduce_scenario(data, still_fails) == {
        "name": "big",
        "user": [{"start": 3, "end": 4, "transcript": "Stop!"}],
    }


@pytest.mark.property
@settings(max_examples=25)
@given(conversations())
def test_generated_conversations_are_valid_scenarios(conversation):
    # plain JSON, as a scenario file would hold it, and accepted by the loader
    assert json.loads(json.dumps(conversation)) == conversation
    loaded = load_scenario(conversation)
    assert loaded.name == "generated"
    # what was generated is what will be played
    options = dict(conversation.get("options", {}))
    assert set(loaded.options) == set(options)
    options.pop("conn_options", None)  # (loaded as ConnOptions)
    assert {k: loaded.options[k] for k in options} == options
    assert [(s.start, s.end, s.transcript) for s in loaded.user] == [
        (s["start"], s["end"], s["transcript"]) for s in conversation.get("user", [])
    ]
    assert len(loaded.llm) == len(conversation.get("llm", []))
    assert len(loaded.actions) == len(conversation.get("actions", []))
    # the user's speeches come one after another, never overlapping
    assert all(a.end <= b.start for a, b in zip(loaded.user, loaded.user[1:]))
    # every tool an agent names is defined
    for agent in loaded.agents.values():
        assert set(agent.get("tools", [])) <= set(loaded.tools)
