"""Helpers for tests: play scenario data and read its timeline."""

from __future__ import annotations

from typing import Any

from voxtrio.faults import FAULTS
from voxtrio.testing import load_scenario, play


async def timeline(**scenario: Any) -> list[dict[str, Any]]:
    """Play scenario fields (as in a scenario file) on the current virtual clock."""
    return await play(load_scenario(scenario))


def of(lines: list[dict[str, Any]], event: str, **match: Any) -> list[dict[str, Any]]:
    return [
        line
        for line in lines
        if line.get("event") == event and all(line.get(k) == v for k, v in match.items())
    ]


def states(lines: list[dict[str, Any]], event: str = "agent_state_changed") -> list[tuple[float, str]]:
    return [(line["t"], line["new"]) for line in of(lines, event)]


def history(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert lines[-1]["event"] == "history"
    return lines[-1]["items"]


def messages(lines: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    return [
        (item["role"], item["content"], item["interrupted"])
        for item in history(lines)
        if item["type"] == "message"
    ]


STORY = {
    "user": [{"start": 0.5, "end": 2.5, "transcript": "Tell me a story."}],
    "llm": [{"input": "Tell me a story.", "content": "Here is a long story for you ... the end."}],
    "tts": [{"input": "Here is a long story for you ... the end.", "audio_duration": 10.0}],
}


def inject(monkeypatch: Any, fault: str) -> None:
    """Switch on one deliberate bug of ``voxtrio.faults`` for this test."""
    monkeypatch.setattr(FAULTS, fault, True)
