"""The weather desk of ``weather_agent.py`` on cloud providers, chosen by the keys you have.

Each role takes the first provider whose key is set, and the offline model otherwise,
so with no key at all this is the offline demo's pipeline::

    LLM   OPENAI_API_KEY -> openai.LLM        ANTHROPIC_API_KEY -> anthropic.LLM      else SmolLM
    STT   DEEPGRAM_API_KEY -> deepgram.STT    OPENAI_API_KEY -> openai.STT            else Whisper
    TTS   ELEVEN_API_KEY -> elevenlabs.TTS    CARTESIA_API_KEY -> cartesia.TTS
          OPENAI_API_KEY -> openai.TTS                                                else Piper
    VAD   Silero (offline, always)

``VOXTRIO_LLM`` / ``VOXTRIO_STT`` / ``VOXTRIO_TTS`` force a choice (``openai``,
``anthropic``, ``deepgram``, ``elevenlabs``, ``cartesia`` or ``offline``);
``OPENAI_MODEL``, ``ANTHROPIC_MODEL``, ``ELEVEN_VOICE_ID`` and ``CARTESIA_VOICE`` pick a
model or voice. Install the extras of the vendors you use
(``pip install 'voxtrio[openai,deepgram,elevenlabs]'``), then::

    voxtrio serve examples/cloud_agent.py     # talk to it in a browser
    voxtrio start examples/cloud_agent.py     # answer LiveKit rooms (LIVEKIT_URL, ...)

``pipeline()`` is the hook both commands use to build the session's providers; it
builds them once per process, since every provider serves many sessions (a stream's
state lives in the call, not in the object).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import voxtrio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from weather_agent import ROUTES, PackingAdviser, WeatherDesk  # noqa: E402

__all__ = ["WeatherDesk", "PackingAdviser", "entrypoint", "pipeline"]  # WeatherDesk answers first

# Voices of the vendors' own libraries, used in their documentation's examples.
DEFAULT_ELEVEN_VOICE = "21m00Tcm4TlvDq8ikWAM"  # "Rachel"
DEFAULT_CARTESIA_VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"  # "Barbershop Man"


def _offline_llm() -> Any:
    from voxtrio.providers.smollm_llm import SmolLM

    return SmolLM(routes=ROUTES)


def _offline_stt() -> Any:
    from voxtrio.providers.whisper_stt import WhisperSTT

    return WhisperSTT(window=10.0)


def _offline_tts() -> Any:
    from voxtrio.providers.piper_tts import PiperTTS

    return PiperTTS()


def _openai_llm() -> Any:
    from voxtrio.providers import openai

    return openai.LLM(model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))


def _anthropic_llm() -> Any:
    from voxtrio.providers import anthropic

    return anthropic.LLM(model=os.environ.get("ANTHROPIC_MODEL", "claude-haiku-4-5"))


def _deepgram_stt() -> Any:
    from voxtrio.providers import deepgram

    return deepgram.STT(model="nova-3")


def _openai_stt() -> Any:
    from voxtrio.providers import openai

    return openai.STT()


def _elevenlabs_tts() -> Any:
    from voxtrio.providers import elevenlabs

    return elevenlabs.TTS(voice_id=os.environ.get("ELEVEN_VOICE_ID", DEFAULT_ELEVEN_VOICE))


def _cartesia_tts() -> Any:
    from voxtrio.providers import cartesia

    return cartesia.TTS(voice=os.environ.get("CARTESIA_VOICE", DEFAULT_CARTESIA_VOICE))


def _openai_tts() -> Any:
    from voxtrio.providers import openai

    return openai.TTS()


# Per role, in order of preference: (name, the key that enables it, its builder).
CHOICES: dict[str, list[tuple[str, str | None, Callable[[], Any]]]] = {
    "llm": [
        ("openai", "OPENAI_API_KEY", _openai_llm),
        ("anthropic", "ANTHROPIC_API_KEY", _anthropic_llm),
        ("offline", None, _offline_llm),
    ],
    "stt": [
        ("deepgram", "DEEPGRAM_API_KEY", _deepgram_stt),
        ("openai", "OPENAI_API_KEY", _openai_stt),
        ("offline", None, _offline_stt),
    ],
    "tts": [
        ("elevenlabs", "ELEVEN_API_KEY", _elevenlabs_tts),
        ("cartesia", "CARTESIA_API_KEY", _cartesia_tts),
        ("openai", "OPENAI_API_KEY", _openai_tts),
        ("offline", None, _offline_tts),
    ],
}


def choose(role: str, environ: dict[str, str] | None = None) -> str:
    """The provider name for ``role`` that this environment selects."""
    environ = dict(os.environ) if environ is None else environ
    choices = CHOICES[role]
    forced = environ.get(f"VOXTRIO_{role.upper()}")
    if forced:
        names = [name for name, _, _ in choices]
        if forced not in names:
            raise ValueError(f"VOXTRIO_{role.upper()}={forced!r}: choose one of {', '.join(names)}")
        return forced
    return next(name for name, key, _ in choices if key is None or environ.get(key))


_providers: dict[str, Any] = {}


def pipeline() -> dict[str, Any]:
    """The session's providers (``AgentSession(**pipeline())``), built at the first call."""
    if not _providers:
        from voxtrio.providers.silero_vad import SileroVAD

        _providers["vad"] = SileroVAD(min_silence_duration=0.4)
        for role, choices in CHOICES.items():
            name = choose(role)
            _providers[role] = next(build for choice, _, build in choices if choice == name)()
            kind = type(_providers[role])
            print(f"  {role}: {name} ({kind.__module__}.{kind.__name__})", flush=True)
    return dict(_providers)


async def entrypoint(ctx: Any) -> None:
    """A LiveKit job (``voxtrio start examples/cloud_agent.py``): one call in one room."""
    session = voxtrio.AgentSession(min_endpointing_delay=0.5, **pipeline())
    await ctx.run(session, WeatherDesk())
