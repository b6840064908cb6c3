"""The weather desk of ``weather_agent.py`` on a speech-to-speech model (OpenAI Realtime).

No VAD, STT or TTS: the model hears the caller, finds the end of each turn on its
server, calls the desk's tools and speaks its answers itself; the session plays its
audio, keeps the history from its transcripts and, when the caller cuts in, tells it
how much of its answer was actually heard. The hand-off to the packing adviser keeps
the same model and conversation (new instructions and tools). With ``OPENAI_API_KEY``
set (``pip install 'voxtrio[openai]'``)::

    voxtrio serve examples/realtime_agent.py     # talk to it in a browser
    voxtrio start examples/realtime_agent.py     # answer LiveKit rooms (LIVEKIT_URL, ...)

``OPENAI_REALTIME_MODEL`` and ``OPENAI_VOICE`` pick the model and the voice.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import voxtrio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from weather_agent import PackingAdviser, WeatherDesk, _known_cities  # noqa: E402

__all__ = ["RealtimeWeatherDesk", "PackingAdviser", "entrypoint", "pipeline"]


class RealtimeWeatherDesk(WeatherDesk):
    async def on_enter(self) -> None:
        # The model greets the caller in its own voice (say() would need a TTS).
        self.session.generate_reply(
            instructions=f"Greet the caller as the weather desk; you know the weather in {_known_cities()}."
        )


_providers: dict[str, Any] = {}


def pipeline() -> dict[str, Any]:
    """The session's providers (``AgentSession(**pipeline())``): one realtime model for
    every agent, built at the first call (it serves many sessions)."""
    if not _providers:
        from voxtrio.providers import openai

        _providers["llm"] = openai.RealtimeModel(
            model=os.environ.get("OPENAI_REALTIME_MODEL", "gpt-realtime"),
            voice=os.environ.get("OPENAI_VOICE", "marin"),
        )
    return dict(_providers)


async def entrypoint(ctx: Any) -> None:
    """A LiveKit job (``voxtrio start examples/realtime_agent.py``): one call in one room."""
    session = voxtrio.AgentSession(**pipeline())
    await ctx.run(session, RealtimeWeatherDesk())
