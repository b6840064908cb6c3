"""The scripted demo (`voxtrio demo --scripted`): a scripted conversation, narrated.

It runs the real actors (turn-taking, planner, tools, speaker, interruption,
drain) on scripted providers, so it needs no models and no network: the
demo for a machine without ``voxtrio[local]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import trio
import trio.testing

from .testing.scenario import load_scenario, play, seeded_trio_scheduler

DEMO_SCENARIO: dict[str, Any] = {
    "name": "demo",
    "agents": {
        "main": {
            "instructions": "You are a friendly weather assistant.",
            "tools": ["get_weather"],
            "on_enter": [{"say": {"text": "Hi! Ask me about the weather anywhere."}}],
        }
    },
    "tools": {
        "get_weather": {
            "description": "Get the weather for a city.",
            "parameters": {"city": {"type": "string"}},
            "required": ["city"],
            "steps": [{"sleep": 0.4}],
            "result": "It is 21 degrees and sunny in {city}.",
        }
    },
    "user": [
        {"start": 3.5, "end": 5.5, "transcript": "What's the weather in Lisbon?"},
        {"start": 12.0, "end": 13.4, "transcript": "Tell me a long story."},
        {"start": 16.0, "end": 16.8, "transcript": "Actually, stop."},
    ],
    "llm": [
        {
            "input": "What's the weather in Lisbon?",
            "content": "Let me check.",
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Lisbon"}, "call_id": "c1"}],
        },
        {"input": "It is 21 degrees and sunny in Lisbon.", "content": "Lisbon is sunny, 21 degrees."},
        {
            "input": "Tell me a long story.",
            "content": "Once upon a time, in a city by the sea, there lived a lighthouse keeper "
            "who counted the waves every night.",
        },
        {"input": "Actually, stop.", "content": "Sure, I will stop there."},
    ],
    "tts_default_chars_per_second": 15,
    "end": {"drain_after_last_user": 3.0},
}


def _describe(line: dict[str, Any]) -> str | None:
    event = line["event"]
    if event == "user_state_changed":
        return "user starts speaking" if line["new"] == "speaking" else "user stops speaking"
    if event == "agent_state_changed":
        return f"agent is {line['new']}"
    if event == "user_input_transcribed" and line["is_final"]:
        return f'heard: "{line["transcript"]}"'
    if event == "conversation_item_added":
        item = line["item"]
        if item["type"] == "message":
            cut = " [interrupted]" if item["interrupted"] else ""
            return f'{item["role"]}: "{item["content"]}"{cut}'
        return None
    if event == "function_tools_executed":
        calls = ", ".join(f"{c['name']}({c['arguments']})" for c in line["calls"])
        outputs = ", ".join(o["output"] for o in line["outputs"])
        return f"tool {calls} -> {outputs}"
    if event == "metrics_collected" and line["kind"] == "eou":
        return f"end of turn after {line['end_of_utterance_delay']:.2f}s of silence"
    if event == "playback_finished" and line["interrupted"]:
        return f"agent audio cut at {line['position']:.2f}s"
    if event == "close":
        return f"session closed ({line['reason']})"
    return None


def main(args: argparse.Namespace) -> int:
    scenario = load_scenario(DEMO_SCENARIO)
    print("voxtrio demo: a scripted voice conversation (scripted speech providers, real actors)")
    print("time   what happened")

    def show(line: dict[str, Any]) -> None:
        if line["event"] == "history":
            return
        text = _describe(line)
        if text:
            print(f"{line['t']:5.2f}s {text}", flush=True)

    clock = trio.testing.MockClock(autojump_threshold=0) if args.fast else None
    with seeded_trio_scheduler(0):
        lines = trio.run(lambda: play(scenario, on_line=show), clock=clock)
    print("\nhistory:")
    for item in lines[-1]["items"]:
        print("  " + json.dumps(item))
    return 0


if __name__ == "__main__":
    sys.exit(main(argparse.Namespace(fast="--fast" in sys.argv)))
