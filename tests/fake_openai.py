"""OpenAI's HTTP API as the loopback server speaks it (from the API reference):
Chat Completions chunks, transcriptions, speech, errors."""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np

from loopback_http import LoopbackServer, Reply, Request, Stream, sse

KEY = "test-openai-key"


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def server() -> LoopbackServer:
    return LoopbackServer(
        authorized=lambda request: request.headers.get("authorization") == f"Bearer {KEY}",
        unauthorized=Reply.json(
            error_body("Incorrect API key provided.", code="invalid_api_key"), status=401
        ),
    )


def chunk(delta: dict[str, Any] | None = None, finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
    """A ``chat.completion.chunk`` with one choice (or ``choices=[]`` via extra)."""
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}],
        "usage": None,
    }
    body.update(extra)
    return body


def completion(
    text: Sequence[str] = (),
    *,
    tool_calls: Sequence[tuple[str, str, Sequence[str]]] = (),
    usage: tuple[int, int, int] = (12, 5, 0),
    interleave: bool = False,
) -> tuple[bytes, ...]:
    """The SSE frames of one streamed completion: a role chunk, the text
    pieces, each tool call as (id, name, argument fragments) -- its id and
    name in the first fragment's delta, by index -- the finishing chunk, the
    usage chunk (``choices`` empty) and ``[DONE]``. ``interleave`` sends the
    calls' fragments in turn (index 0, 1, 0, 1...) instead of one call after
    the other."""
    frames = [sse(chunk({"role": "assistant", "content": ""}))]
    frames += [sse(chunk({"content": piece})) for piece in text]
    parts: list[list[dict[str, Any]]] = []
    for index, (call_id, name, fragments) in enumerate(tool_calls):
        pieces = [
            {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        ]
        pieces += [{"index": index, "function": {"arguments": fragment}} for fragment in fragments]
        parts.append(pieces)
    if interleave:
        order = [piece for round_ in itertools.zip_longest(*parts) for piece in round_ if piece]
    else:
        order = [piece for pieces in parts for piece in pieces]
    frames += [sse(chunk({"tool_calls": [piece]})) for piece in order]
    frames.append(sse(chunk({}, finish_reason="tool_calls" if tool_calls else "stop")))
    prompt, completion_tokens, cached = usage
    frames.append(
        sse(
            chunk(
                choices=[],
                usage={
                    "prompt_tokens": prompt,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt + completion_tokens,
                    "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0},
                },
            )
        )
    )
    frames.append(b"data: [DONE]\n\n")
    return tuple(frames)


def text_stream(text: Sequence[str], **options: Any) -> Stream:
    return Stream(completion(text), **options)


def transcription(text: str) -> Reply:
    return Reply.json({"text": text, "usage": {"type": "duration", "seconds": 1}})


def pcm(seconds: float, rate: int = 24_000) -> bytes:
    """Raw 16-bit little-endian PCM, a quiet tone (not silence: bytes differ)."""
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 220 * t) * 3000).astype("<i2").tobytes()


def speech(seconds: float, *, pieces: int = 4, **options: Any) -> Stream:
    """``/audio/speech`` with ``response_format=pcm``: the audio in ``pieces``
    chunks of odd sizes (a chunk may end inside a sample)."""
    audio = pcm(seconds)
    cuts = [round(len(audio) * i / pieces) + (1 if 0 < i < pieces else 0) for i in range(pieces + 1)]
    chunks = tuple(audio[a:b] for a, b in zip(cuts, cuts[1:]))
    return Stream(chunks, content_type="application/octet-stream", **options)


def last_user_text(request: Request) -> str:
    return [m for m in request.json()["messages"] if m["role"] == "user"][-1]["content"]
