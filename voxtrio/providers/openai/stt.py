"""Transcriptions (``/audio/transcriptions``): one request per utterance.

Not a streaming recognizer: the session cuts the user's audio into utterances
with its VAD and uploads each as a 16-bit WAV (multipart form), so this STT
needs a ``vad=``.
"""

from __future__ import annotations

import json
from typing import Mapping

from ...audio import AudioFrame
from ...audio_files import wav_bytes
from ..base import STTEvent
from ...options import APIConnectOptions
from ..base import DEFAULT_CONN_OPTIONS, STT as BaseSTT, STTCapabilities
from ..http_api import protocol_error
from .connection import VENDOR, openai_client


class STT(BaseSTT):
    """OpenAI's speech to text (``gpt-4o-mini-transcribe``, ``gpt-4o-transcribe``,
    ``whisper-1``), or a compatible server's.

    ``language`` (ISO-639-1, "en"; a region such as "en-US" is cut to "en")
    and ``prompt`` (words to expect, the style to keep) are sent when set.
    """

    capabilities = STTCapabilities(streaming=False, interim_results=False)

    def __init__(
        self,
        *,
        model: str = "gpt-4o-mini-transcribe",
        language: str | None = None,
        prompt: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.model = model
        self.language = language
        self.prompt = prompt
        self._http = openai_client(
            api_key_arg=api_key, base_url=base_url, extra_headers=extra_headers, provider="openai.STT"
        )

    def __repr__(self) -> str:
        return f"openai.STT({self.model!r} at {self._http.base_url})"

    async def recognize(
        self,
        audio: AudioFrame,
        *,
        language: str | None = None,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> STTEvent:
        language = language or self.language
        form = {"model": self.model, "response_format": "json"}
        if language:
            form["language"] = language.split("-")[0].lower()
        if self.prompt:
            form["prompt"] = self.prompt
        upload = {"file": ("speech.wav", wav_bytes(audio.data, audio.sample_rate, audio.num_channels), "audio/wav")}
        async with self._http.request(
            "POST", "/audio/transcriptions", data=form, files=upload, conn_options=conn_options
        ) as response:
            content = await response.aread()
        try:
            text = json.loads(content)["text"]
            if not isinstance(text, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise protocol_error(VENDOR, f"a transcription without text: {content[:200]!r}", content) from None
        return STTEvent(kind="final", text=text.strip(), language=language)
