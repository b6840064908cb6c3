"""ElevenLabs streaming synthesis: ``TTS(voice_id=..., model=...)`` over the
stream-input WebSocket.

The protocol, from ElevenLabs' AsyncAPI description of
``/v1/text-to-speech/{voice_id}/stream-input`` and its guide "Generate audio
in real-time":

- handshake: ``?model_id=...&output_format=pcm_24000&sync_alignment=true``
  (``language_code`` optional) with the ``xi-api-key`` header;
- we send ``{"text": " ", "voice_settings": ..., "generation_config": ...}``
  first (the initial text must be one space), then the text, each piece
  ending with a space, ``"flush": true`` forcing audio for what was sent
  so far, and ``{"text": ""}`` to end the input;
- ElevenLabs sends ``{"audio": <base64 PCM>, "alignment": {"chars",
  "charStartTimesMs", "charsDurationsMs"}, "normalizedAlignment": ...}``,
  alignment times relative to that chunk of audio, then ``{"isFinal": true}``;
  an error is ``{"message", "error", "code"}`` and a close with that code
  (1008 ``input_timeout_exceeded`` after 20 s without text, for instance).

Text goes out word by word as the LLM writes it, and each sentence's end
with ``flush``, so the first sentence is heard while the LLM writes the rest
(without ``flush`` ElevenLabs waits for 120 characters). The characters' alignment becomes word timings, so an
interrupted reply records the words that were heard. One connection per
segment: it opens as the segment starts (before its text exists, hiding the
handshake behind the LLM's first tokens) and is closed, at once, when the
Speaker cancels the segment on an interruption.
"""

from __future__ import annotations

import functools
import json
import urllib.parse
from typing import Any, Mapping, Sequence

import trio

from .base import TTS_REQUEST_STARTED
from ..options import APIConnectOptions
from ..text import SentenceSplitter
from . import base
from .api_common import api_key as api_key_of
from .base import DEFAULT_CONN_OPTIONS, SynthesizedAudio, TTSCapabilities
from .streamed_audio import CharacterAligner, PCMStream, with_words
from .vendor_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    close_code_error,
    closed_error,
    connect,
    json_object,
    protocol_error,
    run_beside,
    websocket_url,
)

VENDOR = "ElevenLabs"
KEY_VARIABLE = "ELEVEN_API_KEY"
DEFAULT_BASE_URL = "wss://api.elevenlabs.io"
PCM_SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100)


class TTS(base.TTS):
    """ElevenLabs text-to-speech, streamed in and out.

    ``sample_rate`` picks the ``pcm_<rate>`` output format. ``voice_settings``
    (stability, similarity_boost, style, use_speaker_boost, speed) and
    ``chunk_length_schedule`` go in the first message, as ElevenLabs requires.
    ``alignment="normalized"`` times the normalized text (numbers spelled
    out) instead of the text as written.
    """

    def __init__(
        self,
        *,
        voice_id: str,
        model: str = "eleven_flash_v2_5",
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        sample_rate: int = 24_000,
        language_code: str | None = None,
        voice_settings: Mapping[str, Any] | None = None,
        chunk_length_schedule: Sequence[int] | None = None,
        alignment: str = "original",
        extra_query: Mapping[str, Any] | None = None,
    ) -> None:
        if sample_rate not in PCM_SAMPLE_RATES:
            raise ValueError(f"ElevenLabs streams PCM at {PCM_SAMPLE_RATES} Hz, not {sample_rate}")
        if alignment not in ("original", "normalized"):
            raise ValueError(f"alignment must be 'original' or 'normalized', got {alignment!r}")
        self.voice_id = voice_id
        self.model = model
        self.sample_rate = sample_rate
        self.capabilities = TTSCapabilities(streaming=True, aligned_transcript=True)
        self._api_key = api_key_of(api_key, KEY_VARIABLE, VENDOR)
        self._alignment_key = "alignment" if alignment == "original" else "normalizedAlignment"
        self._url = websocket_url(
            base_url,
            f"/v1/text-to-speech/{urllib.parse.quote(voice_id, safe='')}/stream-input",
            {
                "model_id": model,
                "output_format": f"pcm_{sample_rate}",
                "sync_alignment": True,
                "language_code": language_code,
                **(extra_query or {}),
            },
        )
        first: dict[str, Any] = {"text": " "}
        if voice_settings:
            first["voice_settings"] = dict(voice_settings)
        if chunk_length_schedule:
            first["generation_config"] = {"chunk_length_schedule": list(chunk_length_schedule)}
        self._first_message = json.dumps(first)

    async def stream(
        self,
        text: trio.MemoryReceiveChannel[str],
        audio: trio.MemorySendChannel[SynthesizedAudio],
        *,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        async with connect(
            self._url,
            headers={"xi-api-key": self._api_key},
            vendor=VENDOR,
            key_variable=KEY_VARIABLE,
            timeout=conn_options.timeout,
        ) as ws:
            await ws.send_message(self._first_message)
            await run_beside(
                functools.partial(self._receive, ws, audio), functools.partial(self._send_text, ws, text, audio)
            )

    async def _send_text(
        self, ws: WebSocketConnection, text: trio.MemoryReceiveChannel[str], audio: trio.MemorySendChannel[Any]
    ) -> None:
        """Words go out as they complete (ElevenLabs buffers them by its chunk
        schedule), and the end of each sentence with ``flush``, so a sentence
        is heard as soon as it is written, however short."""
        splitter = SentenceSplitter()
        written = ""  # all the text so far
        sent = 0  # how much of it went out
        boundary = 0  # where the last complete sentence ends
        started = False

        async def send(upto: int, *, flush: bool) -> None:
            nonlocal sent, started
            piece = written[sent:upto].strip()
            if not piece and not flush:
                return
            if not started:
                started = True
                await audio.send(TTS_REQUEST_STARTED)
            message: dict[str, Any] = {"text": piece + " "}  # every piece ends with one space
            if flush:
                message["flush"] = True
            await ws.send_message(json.dumps(message))
            sent = max(sent, upto)

        try:
            async for chunk in text:
                written += chunk
                sentences = splitter.push(chunk)
                for sentence in sentences:
                    found = written.find(sentence, boundary)
                    boundary = found + len(sentence) if found >= 0 else len(written)
                if sentences:
                    await send(boundary, flush=True)
                cut = max(written.rfind(" "), written.rfind("\n")) + 1
                if cut > sent:
                    await send(cut, flush=False)
            if written[sent:].strip() or (started and sent > boundary):
                await send(len(written), flush=True)
            await ws.send_message(json.dumps({"text": ""}))
        except ConnectionClosed:
            return  # the receiver reports why

    async def _receive(self, ws: WebSocketConnection, audio: trio.MemorySendChannel[SynthesizedAudio]) -> None:
        pcm = PCMStream(self.sample_rate, vendor=VENDOR)
        aligner = CharacterAligner()
        while True:
            try:
                message = await ws.get_message()
            except ConnectionClosed as closed:
                raise closed_error(closed.reason, vendor=VENDOR) from None
            data = json_object(message, vendor=VENDOR)
            if data.get("error"):
                code = data.get("code")
                raise close_code_error(
                    code if isinstance(code, int) else 1011,
                    f"{VENDOR} reported {data.get('error') or 'an error'}: {data.get('message') or ''}".rstrip(": "),
                )
            try:
                at = pcm.seconds
                frames = pcm.decode(data["audio"]) if data.get("audio") else []
                words = []
                alignment = data.get(self._alignment_key) or data.get("alignment") or data.get("normalizedAlignment")
                if alignment:
                    words = aligner.push(
                        alignment["chars"], alignment["charStartTimesMs"], alignment["charsDurationsMs"], at=at
                    )
                if data.get("isFinal"):
                    words += aligner.flush()
            except (KeyError, TypeError, ValueError):
                raise protocol_error(VENDOR, "an audio message that does not follow its documented shape", message) from None
            for item in with_words(frames, words, at=at, sample_rate=self.sample_rate):
                await audio.send(item)
            if data.get("isFinal"):
                return
