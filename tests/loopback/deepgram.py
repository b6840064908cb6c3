"""A local Deepgram live-transcription server (``/v1/listen``), from Deepgram's docs.

Sources: the "Live Audio" API reference (handshake, query parameters,
``Authorization: Token``), "Endpointing & Interim Results" (``is_final``,
``speech_final``), "Utterance End" (``UtteranceEnd``, ``last_word_end``),
"Speech Started" (``SpeechStarted``, ``timestamp``), "Audio Keep Alive"
(``KeepAlive``; no audio or KeepAlive for 10 s closes with 1011 NET-0001),
"Finalize" (``from_finalize``), "Close Stream" (remaining results, then a
``Metadata`` summary, then the close), and the troubleshooting guide
(handshake refusals carry a ``dg-error`` header; errors close the stream
with a code and a payload such as ``DATA-0000``).

How it "recognizes": test audio is silence (zeros) and utterances, each a
constant sample value; ``transcripts`` maps a value to what was said. A
voiced run is one utterance, its words spread evenly over it. Results are
timed in seconds of audio this connection received, as Deepgram's are.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Mapping

import numpy as np
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .server import ConnectionLog, Fault, FakeServer, apply_fault, dumps

NO_DATA_TIMEOUT = 10.0  # Deepgram closes a connection that gets no audio nor KeepAlive for 10 s
FINALIZE_AFTER = 0.3  # with endpointing off, the silence after which this server finalizes anyway


class FakeDeepgram(FakeServer):
    def __init__(
        self,
        transcripts: Mapping[int, str],
        *,
        api_key: str = "test-key",
        faults: list[Fault | None] | tuple[Fault | None, ...] = (),
        interim_every: float = 0.2,
        silence_final_every: float = 1.0,
    ) -> None:
        super().__init__(faults=faults)
        self.transcripts = dict(transcripts)
        self.api_key = api_key
        self.interim_every = interim_every
        self.silence_final_every = silence_final_every
        self.request_ids: list[str] = []  # one per accepted connection (the dg-request-id header)

    def serves(self, path: str) -> bool:
        return path == "/v1/listen"

    def expected_key_value(self) -> str:
        return f"Token {self.api_key}"

    def reject_key(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return 401, [(b"dg-error", b"Invalid credentials.")], b'{"err_code":"INVALID_AUTH"}'

    def accept_headers(self) -> list[tuple[bytes, bytes]]:
        self.request_ids.append(str(uuid.uuid4()))
        return [(b"dg-request-id", self.request_ids[-1].encode())]

    async def serve(self, ws: WebSocketConnection, log: ConnectionLog) -> None:
        await _Stream(self, ws, log, self.request_ids[-1]).run()


class _Stream:
    def __init__(self, server: FakeDeepgram, ws: WebSocketConnection, log: ConnectionLog, request_id: str) -> None:
        self.server = server
        self.ws = ws
        self.log = log
        self.rate = int(log.param("sample_rate") or 16000)
        self.interim = log.param("interim_results") == "true"
        self.vad_events = log.param("vad_events") == "true"
        endpointing = log.param("endpointing")
        self.endpointing = 0.01 if endpointing is None else (None if endpointing == "false" else int(endpointing) / 1000)
        utterance_end = log.param("utterance_end_ms")
        self.utterance_end = None if utterance_end is None else int(utterance_end) / 1000
        self.t = 0.0  # seconds of audio received
        self.span_start = 0.0  # start of what is not final yet
        self.value: int | None = None  # the utterance being heard
        self.utterance_start = 0.0
        self.voiced_until = 0.0
        self.last_interim = 0.0
        self.finalized_words = 0  # words of the utterance already sent as final
        self.last_word_end: float | None = None  # awaiting an UtteranceEnd
        self.fault = log.fault
        self.request_id = request_id

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_message(dumps(message))

    async def run(self) -> None:
        try:
            while True:
                with trio.move_on_after(NO_DATA_TIMEOUT) as waiting:
                    message = await self.ws.get_message()
                if waiting.cancelled_caught:
                    await self.ws.aclose(1011, "NET-0001")
                    return
                if isinstance(message, bytes):
                    if await self.audio(message):
                        return
                    continue
                command = json.loads(message)
                self.log.texts.append(command)
                kind = command.get("type")
                if kind == "Finalize":
                    await self.finalize(from_finalize=True)
                elif kind == "CloseStream":
                    await self.finalize(from_finalize=False)
                    await self.send({
                        "type": "Metadata", "transaction_key": "deprecated", "request_id": self.request_id,
                        "sha256": "0" * 64, "created": "2026-01-01T00:00:00.000Z",
                        "duration": round(self.t, 3), "channels": 1,
                    })
                    await self.ws.aclose(1000)
                    return
        except ConnectionClosed:
            self.log.client_gone_at = trio.current_time()

    async def audio(self, data: bytes) -> bool:
        samples = np.frombuffer(data, "<i2")
        if not len(samples):
            await self.ws.aclose(1008, "DATA-0000")  # what an empty frame does to a real stream
            return True
        duration = len(samples) / self.rate
        self.t += duration
        self.log.audio_seconds += duration
        value = int(np.abs(samples).max())
        if value:
            if self.value != value:
                await self.end_utterance()
                self.value, self.utterance_start, self.finalized_words = value, self.t - duration, 0
                self.last_interim = self.utterance_start
                if self.vad_events:
                    await self.send({"type": "SpeechStarted", "channel": [0, 1], "timestamp": round(self.utterance_start, 3)})
            self.voiced_until = self.t
            if self.interim and self.t - self.last_interim >= self.server.interim_every - 1e-9:
                self.last_interim = self.t
                await self.results(self.heard_words(partial=True), is_final=False)
        elif self.value is not None:
            silence = self.t - self.voiced_until
            if self.endpointing is not None and silence >= self.endpointing - 1e-9:
                await self.end_utterance(speech_final=True)
            elif self.endpointing is None and silence >= FINALIZE_AFTER - 1e-9:
                await self.end_utterance(speech_final=False)  # final, but no endpoint

        else:
            await self.maybe_utterance_end()
            if self.t - self.span_start >= self.server.silence_final_every - 1e-9:
                await self.results([], is_final=True)
        fault = self.fault
        if fault is not None and fault.kind not in ("reject", "stall_handshake") and self.log.audio_seconds >= fault.after - 1e-9:
            self.fault = None
            return await apply_fault(self.ws, fault)
        return False

    def words(self) -> list[str]:
        assert self.value is not None
        return self.server.transcripts.get(self.value, "").split()

    def heard_words(self, *, partial: bool) -> list[dict[str, Any]]:
        """The utterance's words heard so far, spread over the voiced audio."""
        words = self.words()
        start, end = self.utterance_start, self.voiced_until
        if partial:
            # An interim holds the words whose share of the audio has been heard,
            # assuming a word every 0.3 s; never all of them.
            count = min(len(words) - 1, max(1, int((end - start) / 0.3)))
            words = words[:count]
        step = (end - start) / max(1, len(words))
        return [
            {"word": w.lower().strip(".,?!"), "punctuated_word": w, "start": round(start + i * step, 3),
             "end": round(start + (i + 1) * step, 3), "confidence": 0.98}
            for i, w in enumerate(words)
        ]

    async def results(self, words: list[dict[str, Any]], *, is_final: bool, speech_final: bool = False,
                      from_finalize: bool = False) -> None:
        message: dict[str, Any] = {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(self.t - self.span_start, 3),
            "start": round(self.span_start, 3),
            "is_final": is_final,
            "speech_final": speech_final,
            "channel": {"alternatives": [{
                "transcript": " ".join(w["punctuated_word"] for w in words),
                "confidence": 0.98 if words else 0.0,
                "words": words,
            }]},
            "metadata": {"request_id": self.request_id, "model_info": {"name": "general-nova-3", "version": "test", "arch": "nova-3"}, "model_uuid": "test"},
        }
        if from_finalize:
            message["from_finalize"] = True
        await self.send(message)
        if is_final:
            self.span_start = self.t

    async def end_utterance(self, *, speech_final: bool = True) -> None:
        if self.value is None:
            return
        words = self.heard_words(partial=False)[self.finalized_words:]
        await self.results(words, is_final=True, speech_final=speech_final)
        self.last_word_end = self.voiced_until
        self.value = None
        await self.maybe_utterance_end()

    async def maybe_utterance_end(self) -> None:
        if self.utterance_end is None or self.last_word_end is None:
            return
        if self.t - self.last_word_end >= self.utterance_end - 1e-9:
            await self.send({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": round(self.last_word_end, 3)})
            self.last_word_end = None

    async def finalize(self, *, from_finalize: bool) -> None:
        """Everything received comes back final (Finalize, CloseStream)."""
        if self.t - self.span_start <= 1e-9:
            return  # nothing buffered: Deepgram sends nothing
        words: list[dict[str, Any]] = []
        if self.value is not None:
            words = self.heard_words(partial=False)[self.finalized_words:]
            self.finalized_words += len(words)
        await self.results(words, is_final=True, from_finalize=from_finalize)

