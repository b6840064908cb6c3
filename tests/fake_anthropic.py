"""Anthropic's Messages API as the loopback server speaks it (from the API
reference): the streaming events and the error shapes."""

from __future__ import annotations

from typing import Any, Sequence

from loopback_http import LoopbackServer, Reply, sse

KEY = "test-anthropic-key"


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_test"}


def server() -> LoopbackServer:
    return LoopbackServer(
        authorized=lambda request: request.headers.get("x-api-key") == KEY
        and request.headers.get("anthropic-version") == "2023-06-01",
        unauthorized=Reply.json(error_body("authentication_error", "invalid x-api-key"), status=401),
    )


def event(name: str, **data: Any) -> bytes:
    return sse({"type": name, **data}, event=name)


def message(
    text: Sequence[str] = (),
    *,
    tool_uses: Sequence[tuple[str, str, Sequence[str]]] = (),
    usage: tuple[int, int, int, int] = (20, 7, 0, 0),
    stop: bool = True,
) -> tuple[bytes, ...]:
    """The events of one streamed message: message_start, a ping, a text block
    (its deltas), each tool use as (id, name, partial_json fragments), then
    message_delta with the stop reason and output tokens, message_stop.
    ``usage`` is (input, output, cache read, cache creation) tokens."""
    input_tokens, output_tokens, cache_read, cache_creation = usage
    frames = [
        event(
            "message_start",
            message={
                "id": "msg_test",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-test",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": input_tokens,
                    "output_tokens": 1,
                    "cache_read_input_tokens": cache_read,
                    "cache_creation_input_tokens": cache_creation,
                },
            },
        ),
        event("ping"),
    ]
    index = 0
    if text:
        frames.append(event("content_block_start", index=index, content_block={"type": "text", "text": ""}))
        frames += [
            event("content_block_delta", index=index, delta={"type": "text_delta", "text": piece}) for piece in text
        ]
        frames.append(event("content_block_stop", index=index))
        index += 1
    for tool_id, name, fragments in tool_uses:
        frames.append(
            event(
                "content_block_start",
                index=index,
                content_block={"type": "tool_use", "id": tool_id, "name": name, "input": {}},
            )
        )
        frames += [
            event("content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": fragment})
            for fragment in fragments
        ]
        frames.append(event("content_block_stop", index=index))
        index += 1
    frames.append(
        event(
            "message_delta",
            delta={"stop_reason": "tool_use" if tool_uses else "end_turn", "stop_sequence": None},
            usage={"output_tokens": output_tokens},
        )
    )
    if stop:
        frames.append(event("message_stop"))
    return tuple(frames)
