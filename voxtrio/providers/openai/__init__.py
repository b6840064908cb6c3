"""OpenAI, and every server that speaks its HTTP API (``base_url=``).

    from voxtrio.providers import openai
    session = voxtrio.AgentSession(stt=openai.STT(), llm=openai.LLM(model="gpt-4o-mini"),
                                   tts=openai.TTS(voice="ash"), vad=...)

    realtime = openai.RealtimeModel(voice="marin")  # speech to speech, over a WebSocket

Needs ``pip install 'voxtrio[openai]'`` and ``OPENAI_API_KEY`` (or ``api_key=``).
"""

from typing import Any

from .llm import LLM
from .stt import STT
from .tts import TTS

__all__ = ["LLM", "STT", "TTS", "RealtimeModel", "ServerVAD", "SemanticVAD"]


def __getattr__(name: str) -> Any:
    # The realtime model needs trio-websocket; the HTTP providers do not.
    if name in ("RealtimeModel", "ServerVAD", "SemanticVAD"):
        from . import realtime

        return getattr(realtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
