"""What a session used, per provider and model: the numbers a bill is made of.

Read from the session's own ``metrics_collected`` events, so every provider is
counted the same way, streaming STT included (its recognizer reports the audio
it sent). ``session.usage`` is the running total; the ``close`` event and the
recorded transcript carry it as it stood at the end.
"""

from __future__ import annotations

from typing import Any

import attrs

from ..events import Event, MetricsCollected


def provider_name(provider: Any) -> str:
    """``openai``, ``deepgram``, ``scripted``...: the module the provider lives in."""
    if provider is None:
        return "unknown"
    module = type(provider).__module__.split(".")
    if module[:2] == ["voxtrio", "providers"] and len(module) > 2:
        return module[2].removesuffix("_llm").removesuffix("_stt").removesuffix("_tts")
    if module[:2] == ["voxtrio", "testing"]:
        return "scripted"
    return module[0]


def model_name(provider: Any) -> str:
    model = getattr(provider, "model", None)
    return model if isinstance(model, str) else type(provider).__name__


@attrs.define(kw_only=True)
class LLMUsage:
    provider: str
    model: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_cached_tokens: int = 0


@attrs.define(kw_only=True)
class TTSUsage:
    provider: str
    model: str
    requests: int = 0
    characters: int = 0
    audio_duration: float = 0.0


@attrs.define(kw_only=True)
class STTUsage:
    provider: str
    model: str
    requests: int = 0
    audio_duration: float = 0.0


@attrs.define
class SessionUsage:
    """Running totals, one entry per (provider, model) of each kind."""

    llm: dict[tuple[str, str], LLMUsage] = attrs.Factory(dict)
    tts: dict[tuple[str, str], TTSUsage] = attrs.Factory(dict)
    stt: dict[tuple[str, str], STTUsage] = attrs.Factory(dict)

    def on_event(self, event: Event) -> None:
        if not isinstance(event, MetricsCollected) or event.kind not in ("llm", "tts", "stt", "realtime"):
            return
        key = (provider_name(event.provider), model_name(event.provider))
        figures = event.metrics
        if event.kind in ("llm", "realtime"):
            llm = self.llm.setdefault(key, LLMUsage(provider=key[0], model=key[1]))
            llm.requests += 1
            llm.prompt_tokens += int(figures.get("prompt_tokens", 0))
            llm.completion_tokens += int(figures.get("completion_tokens", 0))
            llm.prompt_cached_tokens += int(figures.get("prompt_cached_tokens", 0))
        elif event.kind == "tts":
            tts = self.tts.setdefault(key, TTSUsage(provider=key[0], model=key[1]))
            tts.requests += 1
            tts.characters += int(figures.get("characters", 0))
            tts.audio_duration += float(figures.get("audio_duration", 0.0))
        else:
            stt = self.stt.setdefault(key, STTUsage(provider=key[0], model=key[1]))
            stt.requests += 1
            stt.audio_duration += float(figures.get("audio_duration", 0.0))

    def to_dict(self) -> dict[str, Any]:
        def rows(table: dict[tuple[str, str], Any]) -> list[dict[str, Any]]:
            out = []
            for entry in table.values():
                row = attrs.asdict(entry)
                if "audio_duration" in row:
                    row["audio_duration"] = round(row["audio_duration"], 3)
                out.append(row)
            return out

        return {"llm": rows(self.llm), "tts": rows(self.tts), "stt": rows(self.stt)}
