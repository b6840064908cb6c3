"""Anthropic's Messages API, streamed, with tools.

    from voxtrio.providers import anthropic
    session = voxtrio.AgentSession(llm=anthropic.LLM(model="claude-haiku-4-5"), ...)

Needs ``pip install 'voxtrio[anthropic]'`` and ``ANTHROPIC_API_KEY`` (or ``api_key=``).

The stream is a sequence of named events: ``message_start`` (the input token
counts), then per content block a ``content_block_start``, its
``content_block_delta`` events (``text_delta`` for text, ``input_json_delta``
for a tool's input, in fragments) and a ``content_block_stop``; then
``message_delta`` (the stop reason and the cumulative output tokens) and
``message_stop``. ``ping`` events keep the connection alive; an ``error``
event (``overloaded_error``...) ends the stream with the status it stands for.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import trio

from ..errors import APIStatusError
from ..options import APIConnectOptions
from .base import (
    DEFAULT_CONN_OPTIONS,
    LLM as BaseLLM,
    LLMCapabilities,
    LLMChunk,
    ToolCallChunk,
    ToolChoice,
    UsageChunk,
)
from .http_api import HTTPClient, decode_event, protocol_error, set_options
from .api_common import api_key as api_key_of

if TYPE_CHECKING:
    from ..chat import ChatContext
    from ..tools import FunctionTool

VENDOR = "Anthropic"
KEY_ENV = "ANTHROPIC_API_KEY"
DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"

# The HTTP status each error type of the API stands for (an error event in a
# stream has only the type).
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class LLM(BaseLLM):
    """A Claude model. ``max_tokens`` is required by the API (1024 here unless
    given); ``parallel_tool_calls=False`` asks for at most one tool use."""

    capabilities = LLMCapabilities(tool_calls=True)

    def __init__(
        self,
        *,
        model: str = "claude-haiku-4-5",
        base_url: str | None = None,
        api_key: str | None = None,
        max_tokens: int = 1024,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        stop_sequences: Sequence[str] | None = None,
        tool_choice: ToolChoice | None = None,
        parallel_tool_calls: bool | None = None,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.model = model
        key = api_key_of(api_key, KEY_ENV, "anthropic.LLM")
        headers = {"x-api-key": key, "anthropic-version": API_VERSION, **(extra_headers or {})}
        self._http = HTTPClient(
            base_url=base_url or DEFAULT_BASE_URL, headers=headers, vendor=VENDOR, key_env=KEY_ENV
        )
        self._tool_choice = tool_choice
        self._parallel_tool_calls = parallel_tool_calls
        self._options = set_options(
            extra_body,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            stop_sequences=list(stop_sequences) if stop_sequences else None,
        )

    def __repr__(self) -> str:
        return f"anthropic.LLM({self.model!r} at {self._http.base_url})"

    def request_body(
        self, chat_ctx: ChatContext, tools: Sequence[FunctionTool], tool_choice: ToolChoice | None
    ) -> dict[str, Any]:
        """The JSON body of one streaming Messages request."""
        system, messages = anthropic_messages(chat_ctx)
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True, **self._options}
        if system:
            body["system"] = system
        if tools:
            body["tools"] = [
                {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}
                for tool in tools
            ]
            choice = tool_choice if tool_choice is not None else self._tool_choice
            wire: dict[str, Any] | None = None
            if choice == "auto":
                wire = {"type": "auto"}
            elif choice == "required":
                wire = {"type": "any"}
            elif choice == "none":
                wire = {"type": "none"}
            elif choice is not None:
                wire = {"type": "tool", "name": choice}
            if self._parallel_tool_calls is False and (wire is None or wire["type"] != "none"):
                wire = {**(wire or {"type": "auto"}), "disable_parallel_tool_use": True}
            if wire is not None:
                body["tool_choice"] = wire
        return body

    async def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: Sequence[FunctionTool],
        tool_choice: ToolChoice | None,
        output: trio.MemorySendChannel[LLMChunk],
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        reader = _StreamReader(output)

        async def on_event(event: Any) -> bool:
            return event.event != "ping" and await reader.read(decode_event(event, VENDOR))

        body = self.request_body(chat_ctx, tools, tool_choice)
        if not await self._http.post_stream("/v1/messages", body, conn_options=conn_options, on_event=on_event):
            raise protocol_error(VENDOR, "a stream that ended before message_stop")


class _StreamReader:
    """The state of one message stream: the blocks under way and the usage."""

    def __init__(self, output: trio.MemorySendChannel[LLMChunk]) -> None:
        self._output = output
        self._tools: dict[int, dict[str, str]] = {}  # index -> id, name, input so far
        self._usage: dict[str, int] = {}

    async def read(self, data: Any) -> bool:
        """Act on one event; True when the message is complete."""
        kind = data["type"]
        if kind == "message_start":
            self._usage.update(_counts(data["message"].get("usage") or {}))
        elif kind == "content_block_start":
            block = data["content_block"]
            if block["type"] == "tool_use":
                self._tools[int(data["index"])] = {"id": block["id"], "name": block["name"], "input": ""}
            elif block["type"] == "text" and block.get("text"):
                await self._output.send(block["text"])
        elif kind == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta" and delta["text"]:
                await self._output.send(delta["text"])
            elif delta["type"] == "input_json_delta":
                self._tools[int(data["index"])]["input"] += delta["partial_json"]
        elif kind == "content_block_stop":
            tool = self._tools.pop(int(data["index"]), None)
            if tool is not None:
                await self._output.send(
                    ToolCallChunk(name=tool["name"], arguments=tool["input"] or "{}", call_id=tool["id"])
                )
        elif kind == "message_delta":
            self._usage.update(_counts(data.get("usage") or {}))  # cumulative counts
        elif kind == "message_stop":
            usage = self._usage
            cached = usage.get("cache_read_input_tokens", 0)
            await self._output.send(
                UsageChunk(
                    prompt_tokens=usage.get("input_tokens", 0) + cached + usage.get("cache_creation_input_tokens", 0),
                    completion_tokens=usage.get("output_tokens", 0),
                    prompt_cached_tokens=cached,
                )
            )
            return True
        elif kind == "error":
            raise stream_error(data.get("error") or {})
        # Other events (thinking blocks, new event types) carry nothing to say.
        return False


def _counts(usage: Mapping[str, Any]) -> dict[str, int]:
    return {key: int(value) for key, value in usage.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}


def stream_error(error: Mapping[str, Any]) -> APIStatusError:
    """An ``error`` event as the status error it stands for (overloaded: 529, retryable)."""
    kind = str(error.get("type", "api_error"))
    status = ERROR_STATUS.get(kind, 500)
    message = f"{VENDOR} stream error {status} {kind}: {error.get('message', '')}"
    if status in (401, 403):
        message += f" (check {KEY_ENV} or the api_key argument)"
    return APIStatusError(message, status_code=status, body=dict(error))


def anthropic_messages(chat_ctx: ChatContext) -> tuple[str, list[dict[str, Any]]]:
    """The conversation as the Messages API wants it: ``(system, messages)``.

    System messages before the conversation (the agent's instructions) are the
    ``system`` prompt; one that comes later (``generate_reply(instructions=...)``)
    is a user turn, where it keeps its place. Function calls are ``tool_use``
    blocks of the assistant's turn, their outputs ``tool_result`` blocks of the
    next user turn; consecutive items of one role make one message. A tool use
    whose arguments were not a JSON object is sent with an empty input (its
    result says what was wrong). The API needs a user message to answer: an
    empty conversation gets ``"."``.
    """
    system: list[str] = []
    messages: list[dict[str, Any]] = []

    def add(role: str, block: dict[str, Any]) -> None:
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].append(block)
        else:
            messages.append({"role": role, "content": [block]})

    for item in chat_ctx.items:
        if item.type == "message":
            if not item.content:
                continue  # the API rejects an empty text block
            if item.role in ("system", "developer") and not messages:
                system.append(item.content)
            else:
                add("assistant" if item.role == "assistant" else "user", {"type": "text", "text": item.content})
        elif item.type == "function_call":
            add("assistant", {"type": "tool_use", "id": item.call_id, "name": item.name, "input": _input(item.arguments)})
        elif item.type == "function_call_output":
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": item.call_id, "is_error": item.is_error}
            if item.output:
                result["content"] = item.output
            add("user", result)
    if not messages:
        messages.append({"role": "user", "content": [{"type": "text", "text": "."}]})
    return "\n\n".join(system), messages


def _input(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
