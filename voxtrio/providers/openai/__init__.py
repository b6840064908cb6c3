"""OpenAI, and every server that speaks its HTTP API (``base_url=``).

    from voxtrio.providers import openai
    session = voxtrio.AgentSession(stt=openai.STT(), llm=openai.LLM(model="gpt-4o-mini"),
                                   tts=openai.TTS(voice="ash"), vad=...)

Needs ``pip install 'voxtrio[openai]'`` and ``OPENAI_API_KEY`` (or ``api_key=``).
"""

from .llm import LLM
from .stt import STT
from .tts import TTS

__all__ = ["LLM", "STT", "TTS"]
