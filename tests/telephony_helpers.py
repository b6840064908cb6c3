"""Shared pieces of the telephony tests: credentials, a server on loopback, a scripted pipeline."""

from __future__ import annotations

import base64
import contextlib
from typing import Any, AsyncIterator, Callable

import numpy as np
import trio

import voxtrio
from voxtrio.audio_files import read_audio_file
from voxtrio.providers.energy_vad import EnergyVAD
from voxtrio.testing import LLMResponse, ScriptedLLM
from voxtrio.testing.model_free import ToneTTS
from voxtrio.testing.phone import LinesSTT, PlivoWire, TelnyxWire, TwilioWire, VonageWire
from voxtrio.transports.telephony import Plivo, TelephonyServer, Telnyx, Twilio, Vonage

TWILIO_TOKEN = "twilio-auth-token-for-tests"
PLIVO_TOKEN = "plivo-auth-token-for-tests"
VONAGE_SECRET = "vonage-signature-secret-for-tests"
PROVIDERS = ("twilio", "telnyx", "plivo", "vonage")

QUESTION = "What is the weather like in Paris today?"
ANSWER = "It is sunny in Paris today with a light breeze from the west and a high of twenty four degrees."
INTERRUPTION = "Wait, stop. What about tomorrow?"
SECOND_ANSWER = "Tomorrow it will rain."


def telnyx_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def public_b64(private_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


class Credentials:
    """One set of secrets for the four providers, and their wires for fake callers."""

    def __init__(self) -> None:
        self.telnyx_private = telnyx_key()

    def providers(self, **rest: Any) -> list[Any]:
        return [
            Twilio(auth_token=TWILIO_TOKEN, **rest.get("twilio", {})),
            Telnyx(public_key=public_b64(self.telnyx_private), **rest.get("telnyx", {})),
            Plivo(auth_token=PLIVO_TOKEN, **rest.get("plivo", {})),
            Vonage(signature_secret=VONAGE_SECRET, **rest.get("vonage", {})),
        ]

    def wire(self, provider: str, **options: Any) -> Any:
        if provider == "twilio":
            return TwilioWire(TWILIO_TOKEN, **options)
        if provider == "telnyx":
            return TelnyxWire(self.telnyx_private, **options)
        if provider == "plivo":
            return PlivoWire(PLIVO_TOKEN, **options)
        return VonageWire(VONAGE_SECRET, **options)


@contextlib.asynccontextmanager
async def running_server(entrypoint: Callable[..., Any], providers: list[Any], **options: Any) -> AsyncIterator[TelephonyServer]:
    server = TelephonyServer(entrypoint, providers, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()


def fixture_audio(name: str) -> np.ndarray:
    from pathlib import Path

    return read_audio_file(Path(__file__).parent / "fixtures" / "phone" / f"{name}.wav").data


def weather_session(**options: Any) -> voxtrio.AgentSession:
    """The scripted pipeline: an energy VAD, the caller's lines, a scripted LLM, a tone per word."""
    llm = ScriptedLLM([LLMResponse(input=QUESTION, content=ANSWER), LLMResponse(input=INTERRUPTION, content=SECOND_ANSWER)])
    options.setdefault("min_endpointing_delay", 0.3)
    options.setdefault("min_interruption_duration", 0.3)
    return voxtrio.AgentSession(
        vad=EnergyVAD(), stt=LinesSTT([QUESTION, INTERRUPTION]), llm=llm, tts=ToneTTS(), **options
    )
