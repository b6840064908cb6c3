"""ConversationLog: who said what when, the tools that ran, and how long each turn took.

Built from the session's events alone, so any transport (or an application)
can keep one. Times are seconds on the trio clock from ``origin`` (a file
transport sets it to the moment its first audio went in, so the log lines up
with the input file).

Each user turn gets a :class:`TurnTiming`: from the end of the user's speech
to the first audio of the answer, and its parts:

* ``end_of_utterance``: end of speech to the turn's commit. It holds the VAD's
  silence wait, the recognition (``stt``, its decode time, is reported
  apart) and any endpointing delay left after it;
* ``llm``: commit to the first sentence reaching the TTS (the LLM's first
  token and the rest of that sentence; a tool call and the tool, when the turn
  used one);
* ``tts``: that sentence to its first audio;
* ``first_audio``: the whole, end of speech to first agent audio.
"""

from __future__ import annotations

import json
import statistics
from typing import TYPE_CHECKING, Any, Callable

import attrs

from .events import Event

if TYPE_CHECKING:
    from .session import AgentSession


@attrs.define(kw_only=True)
class TurnTiming:
    user_text: str = ""
    speech_end: float = 0.0
    committed: float = 0.0
    end_of_utterance: float = 0.0
    transcription: float | None = None
    stt: float | None = None
    llm_ttft: float | None = None
    tts_started: float | None = None
    tts: float | None = None
    first_audio_at: float | None = None
    tool_calls: list[str] = attrs.Factory(list)

    @property
    def llm(self) -> float | None:
        return None if self.tts_started is None else self.tts_started - self.committed

    @property
    def first_audio(self) -> float | None:
        return None if self.first_audio_at is None else self.first_audio_at - self.speech_end

    def to_dict(self) -> dict[str, Any]:
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "user": self.user_text,
            "first_audio": r(self.first_audio),
            "end_of_utterance": r(self.end_of_utterance),
            "stt": r(self.stt),
            "llm": r(self.llm),
            "llm_ttft": r(self.llm_ttft),
            "tts": r(self.tts),
            "tool_calls": list(self.tool_calls),
        }


STAGES = ("first_audio", "end_of_utterance", "stt", "llm", "tts")


class ConversationLog:
    def __init__(self) -> None:
        self.origin: float | None = None
        self.entries: list[dict[str, Any]] = []
        self.turns: list[TurnTiming] = []
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._last_stt: float | None = None
        self._playback_started: float | None = None
        self._pending_user: TurnTiming | None = None
        self.last_event_at: float | None = None

    def attach(self, session: AgentSession) -> None:
        session.on("*", self.on_event)

    def listen(self, callback: Callable[[str, dict[str, Any]], None]) -> None:
        """``callback(kind, data)`` for each entry ("user", "assistant", "tool", "handoff")
        and each finished turn timing ("timing")."""
        self._listeners.append(callback)

    def _time(self, t: float) -> float:
        if self.origin is None:
            self.origin = t
        return round(t - self.origin, 3)

    def _add(self, kind: str, entry: dict[str, Any]) -> None:
        if kind != "timing":
            self.entries.append(entry)
        for listener in self._listeners:
            listener(kind, entry)

    def on_event(self, event: Event) -> None:
        now = event.created_at
        self.last_event_at = now
        kind = event.type
        payload: Any = event
        if kind == "metrics_collected":
            metrics = payload.metrics
            if payload.kind == "stt":
                self._last_stt = metrics.get("duration")
            elif payload.kind == "eou":
                self._start_turn(now, metrics)
            elif payload.kind == "llm" and self.turns and self.turns[-1].llm_ttft is None:
                if self.turns[-1].first_audio_at is None:
                    self.turns[-1].llm_ttft = metrics.get("ttft")
            elif payload.kind == "tts" and self.turns and self.turns[-1].tts is None:
                turn = self.turns[-1]
                started = now - metrics.get("duration", 0.0)
                if started >= turn.committed:
                    turn.tts_started, turn.tts = started, metrics.get("ttfb")
                    self._maybe_finish(turn)
        elif kind == "playback_started":
            self._playback_started = now
            if self.turns and self.turns[-1].first_audio_at is None:
                self.turns[-1].first_audio_at = now
                self._maybe_finish(self.turns[-1])
        elif kind == "function_tools_executed":
            for call, output in zip(payload.function_calls, payload.function_call_outputs):
                if self.turns and self.turns[-1].first_audio_at is None:
                    self.turns[-1].tool_calls.append(call.name)
                self._add(
                    "tool",
                    {"t": self._time(now), "type": "tool_call", "name": call.name,
                     "arguments": json.loads(call.arguments or "{}"), "output": output.output,
                     "is_error": output.is_error},
                )
        elif kind == "conversation_item_added":
            self._on_item(now, payload.item)

    def _start_turn(self, now: float, metrics: dict[str, Any]) -> None:
        hook = metrics.get("on_user_turn_completed_delay", 0.0)
        delay = metrics.get("end_of_utterance_delay", 0.0)
        turn = TurnTiming(
            speech_end=now - hook - delay,
            committed=now,
            end_of_utterance=delay,
            transcription=metrics.get("transcription_delay"),
            stt=self._last_stt,
        )
        self._last_stt = None
        self.turns.append(turn)

    def _maybe_finish(self, turn: TurnTiming) -> None:
        if turn.first_audio_at is not None and turn.tts is not None:
            self._add("timing", turn.to_dict())

    def _on_item(self, now: float, item: Any) -> None:
        if item.type == "message" and item.role == "user":
            for turn in reversed(self.turns):
                if not turn.user_text:
                    turn.user_text = item.content
                    break
            speech_end = self.turns[-1].speech_end if self.turns else now
            self._add("user", {"t": self._time(now), "role": "user", "text": item.content,
                               "speech_end": self._time(speech_end)})
        elif item.type == "message" and item.role == "assistant":
            start = self._playback_started if self._playback_started is not None else now
            self._playback_started = None
            self._add("assistant", {"t": self._time(start), "role": "assistant", "text": item.content,
                                    "end": self._time(now), "interrupted": item.interrupted})
        elif item.type == "agent_handoff":
            self._add("handoff", {"t": self._time(now), "type": "handoff",
                                  "from": item.old_agent, "to": item.new_agent})

    def summary(self) -> dict[str, Any]:
        """Median and worst of each stage over the turns that produced audio."""
        done = [turn.to_dict() for turn in self.turns if turn.first_audio is not None]
        out: dict[str, Any] = {"turns": len(done)}
        for stage in STAGES:
            values = [d[stage] for d in done if d[stage] is not None]
            if values:
                out[stage] = {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "turn_timings": [turn.to_dict() for turn in self.turns],
            "summary": self.summary(),
        }
