"""Cartesia streaming synthesis: ``TTS(voice=..., model=...)`` over Cartesia's
TTS WebSocket, one context per segment.

The protocol, from Cartesia's API reference "Text to Speech (WebSocket)",
its "API conventions" page, the guide on contexts and continuations, and
the message types of its Python SDK (``WebsocketResponse``,
``GenerationRequest``, ``CancelContextRequest``):

- handshake: ``/tts/websocket?cartesia_version=<date>`` with the
  ``X-API-Key`` and ``Cartesia-Version`` headers;
- a generation request is ``{"model_id", "transcript", "voice": {"mode":
  "id", "id"}, "language", "context_id", "output_format": {"container":
  "raw", "encoding": "pcm_s16le", "sample_rate"}, "add_timestamps": true,
  "continue": true}``; further text on the same ``context_id`` continues
  the same utterance (prosody carries over), and a request with
  ``"continue": false`` (and an empty transcript) ends the input;
  ``{"context_id", "cancel": true}`` stops a context's generation;
- Cartesia sends ``{"type": "chunk", "data": <base64 PCM>, ...}``,
  ``{"type": "timestamps", "word_timestamps": {"words", "start", "end"}}``
  (seconds from the start of the context's audio), ``{"type":
  "flush_done"}``, ``{"type": "done", "done": true}`` and ``{"type":
  "error", "title", "message", "error_code", "status_code", "done": true}``
  (older API versions put the text in ``"error"``).

A segment's text goes out a sentence at a time as ``continue: true``
requests, so audio starts with the first sentence while the LLM writes
the rest. When the segment is cancelled (an interruption, a stall), the
context is cancelled on the wire before the connection closes, so Cartesia
stops generating (and billing) at once.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import uuid
from typing import Any, Mapping

import trio

from .base import TTS_REQUEST_STARTED
from ..errors import APIStatusError
from ..options import APIConnectOptions
from ..text import SentenceSplitter
from . import base
from .api_common import api_key as api_key_of
from .base import DEFAULT_CONN_OPTIONS, SynthesizedAudio, TimedWord, TTSCapabilities
from .streamed_audio import PCMStream, with_words
from .vendor_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    closed_error,
    connect,
    json_object,
    protocol_error,
    run_beside,
    websocket_url,
)

VENDOR = "Cartesia"
KEY_VARIABLE = "CARTESIA_API_KEY"
DEFAULT_BASE_URL = "wss://api.cartesia.ai"
DEFAULT_API_VERSION = "2025-04-16"
RAW_SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
# How long a cancelled segment waits to tell Cartesia to stop its context.
CANCEL_SEND_TIMEOUT = 0.5


class TTS(base.TTS):
    """Cartesia text-to-speech (Sonic), streamed in and out.

    ``max_buffer_delay_ms`` is how long Cartesia may wait for more text
    before generating; 0 (the default here) starts at once, since the text
    arrives in whole sentences. ``generation_config`` (volume, speed,
    emotion on sonic-3) and ``extra`` (any other documented request field)
    go in every request.
    """

    def __init__(
        self,
        *,
        voice: str,
        model: str = "sonic-3",
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = DEFAULT_API_VERSION,
        language: str | None = "en",
        sample_rate: int = 24_000,
        max_buffer_delay_ms: int | None = 0,
        generation_config: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if sample_rate not in RAW_SAMPLE_RATES:
            raise ValueError(f"Cartesia streams raw PCM at {RAW_SAMPLE_RATES} Hz, not {sample_rate}")
        self.voice = voice
        self.model = model
        self.sample_rate = sample_rate
        self.capabilities = TTSCapabilities(streaming=True, aligned_transcript=True)
        self._api_key = api_key_of(api_key, KEY_VARIABLE, VENDOR)
        self._api_version = api_version
        self._url = websocket_url(base_url, "/tts/websocket", {"cartesia_version": api_version})
        request: dict[str, Any] = {
            "model_id": model,
            "voice": {"mode": "id", "id": voice},
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": sample_rate},
            "add_timestamps": True,
        }
        if language is not None:
            request["language"] = language
        if max_buffer_delay_ms is not None:
            request["max_buffer_delay_ms"] = max_buffer_delay_ms
        if generation_config:
            request["generation_config"] = dict(generation_config)
        request.update(extra or {})
        self._request = request

    async def stream(
        self,
        text: trio.MemoryReceiveChannel[str],
        audio: trio.MemorySendChannel[SynthesizedAudio],
        *,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        context_id = str(uuid.uuid4())
        async with connect(
            self._url,
            headers={"X-API-Key": self._api_key, "Cartesia-Version": self._api_version},
            vendor=VENDOR,
            key_variable=KEY_VARIABLE,
            timeout=conn_options.timeout,
        ) as ws:
            context = _Context(self, ws, context_id)
            try:
                await run_beside(
                    functools.partial(context.receive, audio), functools.partial(context.send_text, text, audio)
                )
            finally:
                if context.open:
                    await context.cancel()


class _Context:
    """One context on one connection: the text sent, the audio received."""

    def __init__(self, tts: TTS, ws: WebSocketConnection, context_id: str) -> None:
        self.tts = tts
        self.ws = ws
        self.id = context_id
        self.open = False  # a request was sent and the context is not done
        self.receiving = trio.CancelScope()  # cancelled when no context is opened at all
        self.sent_words: collections.deque[str] = collections.deque()  # sent, not yet timestamped

    def request(self, transcript: str, *, more: bool) -> str:
        return json.dumps({**self.tts._request, "transcript": transcript, "context_id": self.id, "continue": more})

    async def send_text(self, text: trio.MemoryReceiveChannel[str], audio: trio.MemorySendChannel[Any]) -> None:
        splitter = SentenceSplitter()

        async def send(sentence: str) -> None:
            if not self.open:
                self.open = True
                await audio.send(TTS_REQUEST_STARTED)
            self.sent_words.extend(sentence.split())
            await self.ws.send_message(self.request(sentence + " ", more=True))

        try:
            async for chunk in text:
                for sentence in splitter.push(chunk):
                    await send(sentence)
            for sentence in splitter.flush():
                await send(sentence)
            if self.open:
                await self.ws.send_message(self.request("", more=False))
            else:
                self.receiving.cancel()  # nothing to say: no context was opened, nothing will come
        except ConnectionClosed:
            return  # the receiver reports why

    async def cancel(self) -> None:
        """Tell Cartesia to stop this context, even while being cancelled."""
        with trio.move_on_after(CANCEL_SEND_TIMEOUT, shield=True):
            try:
                await self.ws.send_message(json.dumps({"context_id": self.id, "cancel": True}))
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        self.open = False

    async def receive(self, audio: trio.MemorySendChannel[SynthesizedAudio]) -> None:
        pcm = PCMStream(self.tts.sample_rate, vendor=VENDOR)
        with self.receiving:
            while True:
                try:
                    message = await self.ws.get_message()
                except ConnectionClosed as closed:
                    raise closed_error(closed.reason, vendor=VENDOR) from None
                data = json_object(message, vendor=VENDOR)
                if data.get("context_id") not in (None, self.id):
                    continue  # not ours (one context per connection: should not happen)
                kind = data.get("type")
                if kind == "error":
                    self.open = False
                    raise _error(data)
                try:
                    items = self._items(kind, data, pcm)
                except (KeyError, TypeError, ValueError):
                    raise protocol_error(VENDOR, f"a {kind} message that does not follow its documented shape", message) from None
                for item in items:
                    await audio.send(item)
                if kind == "done" or data.get("done") is True:
                    self.open = False
                    return

    def _items(self, kind: Any, data: dict[str, Any], pcm: PCMStream) -> list[SynthesizedAudio]:
        rate = self.tts.sample_rate
        if kind == "chunk":
            at = pcm.seconds
            return with_words(pcm.decode(data["data"]), (), at=at, sample_rate=rate)
        if kind == "timestamps":
            timestamps = data["word_timestamps"]
            words = [
                TimedWord(text=self.as_written(str(word)), start=float(start), end=float(end))
                for word, start, end in zip(timestamps["words"], timestamps["start"], timestamps["end"], strict=True)
            ]
            # Timed on the context's clock: carried by an item of their own,
            # placed where the audio so far ends.
            return with_words((), words, at=pcm.seconds, sample_rate=rate)
        return []  # flush_done, phoneme_timestamps, and types added later


    def as_written(self, word: str) -> str:
        """The sent word that Cartesia timestamped as ``word``: its words come
        without their punctuation ("Hello, world!" is timed as "Hello",
        "world"), and what was heard goes into the history as it was written.
        A sent word Cartesia skipped (a lone symbol) is passed over."""
        bare = _bare(word)
        for index, sent in enumerate(itertools.islice(self.sent_words, _LOOKAHEAD)):
            if _bare(sent) == bare:
                for _ in range(index + 1):
                    written = self.sent_words.popleft()
                return written
        return word


# How many sent words a timestamped word may be looked for among.
_LOOKAHEAD = 4


def _bare(word: str) -> str:
    return "".join(char for char in word.casefold() if char.isalnum())


def _error(data: dict[str, Any]) -> APIStatusError:
    status = data.get("status_code")
    detail = ": ".join(str(part) for part in (data.get("title"), data.get("message")) if part) or data.get("error")
    code = f" [{data['error_code']}]" if data.get("error_code") else ""
    return APIStatusError(
        f"{VENDOR} reported an error{code}: {detail or 'no detail'}",
        status_code=status if isinstance(status, int) else -1,
        retryable=None if isinstance(status, int) else True,
        body=data,
    )
