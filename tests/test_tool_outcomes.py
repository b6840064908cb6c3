"""What a tool's return value or exception becomes in the conversation: the
output the LLM sees, whether it is an error, whether the agent replies, and
whether the call hands off (README "Tools, hand-offs and tasks")."""

import datetime

import pytest

import voxtrio
from voxtrio.agent import AgentTaskCancelled
from voxtrio.chat import FunctionCall
from voxtrio.tools import (
    INTERNAL_ERROR,
    interrupted_outcome,
    outcome_from_error,
    outcome_from_result,
    rejected_outcome,
    unknown_function_outcome,
)

CALL = FunctionCall(name="lookup", arguments="{}", call_id="c1")
BILLING = voxtrio.Agent(id="billing")
SUPPORT = voxtrio.Agent(id="support")


def summary(outcome):
    output = outcome.output
    assert (output.call_id, output.name) == ("c1", "lookup") and outcome.call is CALL
    agent = outcome.agent.id if outcome.agent is not None else None
    return output.output, output.is_error, outcome.reply_required, agent


@pytest.mark.parametrize(
    "result, expected",
    [
        (None, ("", False, False, None)),  # nothing to say: no reply
        ("sunny", ("sunny", False, True, None)),  # a string asks for a reply
        ("", ("", False, True, None)),
        (3, ("3", False, True, None)),
        (2.5, ("2.5", False, True, None)),
        (False, ("false", False, True, None)),
        ([1, "a"], ('[1, "a"]', False, True, None)),
        ({"t": 20}, ('{"t": 20}', False, True, None)),
        ((1, 2), ("[1, 2]", False, True, None)),
        (BILLING, ("", False, False, "billing")),  # a hand-off, nothing to answer
        ((BILLING,), ("", False, False, "billing")),
        ((BILLING, None), ("", False, False, "billing")),
        ((BILLING, "transferring"), ("transferring", False, True, "billing")),
        (("transferring", BILLING), ("transferring", False, True, "billing")),
        ((BILLING, {"k": 1}), ('{"k": 1}', False, True, "billing")),
        ((BILLING, "a", "b"), ('["a", "b"]', False, True, "billing")),
        ((BILLING, SUPPORT), ("the tool returned more than one agent", True, True, None)),
        # what JSON cannot hold is written as text
        ({"on": datetime.date(2024, 5, 1)}, ('{"on": "2024-05-01"}', False, True, None)),
        ((BILLING, {"on": datetime.date(2024, 5, 1)}), ('{"on": "2024-05-01"}', False, True, "billing")),
        (object(), ("the tool returned an invalid output", True, True, None)),
    ],
)
def test_a_result_becomes_one_output_and_decides_the_reply_and_the_hand_off(result, expected):
    assert summary(outcome_from_result(CALL, result)) == expected


@pytest.mark.parametrize(
    "error, expected",
    [
        (voxtrio.ToolError("not for you"), ("not for you", True, True, None)),
        # an AgentTask unwound by the session: its caller is leaving too, no reply
        (AgentTaskCancelled("cancelled: closing", by_session=True), ("cancelled: closing", True, False, None)),
        (AgentTaskCancelled("cancelled by the caller"), ("cancelled by the caller", True, True, None)),
        (voxtrio.StopResponse(), ("", False, False, None)),
        (
            voxtrio.ToolArgumentsError("field 'city': missing required argument"),
            ("Error parsing arguments for `lookup`: field 'city': missing required argument", True, True, None),
        ),
        (RuntimeError("password=hunter2"), (INTERNAL_ERROR, True, True, None)),
    ],
)
def test_an_exception_becomes_one_error_output_that_hides_internals(error, expected):
    assert summary(outcome_from_error(CALL, error)) == expected
    assert INTERNAL_ERROR == "An internal error occurred"


def test_a_call_that_was_not_run_gets_an_error_and_the_unknown_name_lists_the_tools():
    assert summary(rejected_outcome(CALL, "tool_choice is none")) == ("tool_choice is none", True, False, None)
    assert summary(unknown_function_outcome(CALL, ["a", "b"])) == (
        "Unknown function: lookup - available tools: a, b", True, True, None
    )


def test_an_interrupted_speech_asks_no_reply_and_its_hand_off_does_not_happen():
    answered = interrupted_outcome(outcome_from_result(CALL, "sunny"))
    assert summary(answered) == ("sunny", False, False, None)
    handed = interrupted_outcome(outcome_from_result(CALL, (BILLING, "transferring")))
    assert summary(handed) == ("the agent handoff was interrupted and did not happen", True, False, None)
