"""Chat Completions, streamed (server-sent events), with tools.

Text deltas go out as they arrive. A tool call arrives in pieces (its id and
name first, then its arguments in fragments, keyed by the call's ``index``;
several calls can interleave); each goes out whole when its choice finishes.
The last chunk before ``data: [DONE]`` carries the usage (asked for with
``stream_options.include_usage``), cached prompt tokens included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import attrs
import trio

from ...errors import APIError
from ...options import APIConnectOptions
from ..base import (
    DEFAULT_CONN_OPTIONS,
    LLM as BaseLLM,
    LLMCapabilities,
    LLMChunk,
    ToolCallChunk,
    ToolChoice,
    UsageChunk,
)
from ..http_api import decode_event, protocol_error, set_options
from .connection import VENDOR, openai_client

if TYPE_CHECKING:
    from ...chat import ChatContext
    from ...tools import FunctionTool


@attrs.define
class _PartialCall:
    """A tool call whose pieces are still arriving."""

    call_id: str = ""
    name: str = ""
    arguments: str = ""


class LLM(BaseLLM):
    """An OpenAI chat model, or any model behind an OpenAI-compatible server.

    ``base_url`` points it at Azure OpenAI's v1 endpoint, Groq, Together,
    Fireworks, OpenRouter, vLLM, Ollama, llama.cpp's server or LM Studio.
    Options left at None are not sent, so a server that does not know one is
    not asked for it; ``extra_body`` adds fields this class does not name.
    """

    capabilities = LLMCapabilities(tool_calls=True)

    def __init__(
        self,
        *,
        model: str = "gpt-4o-mini",
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_completion_tokens: int | None = None,
        tool_choice: ToolChoice | None = None,
        parallel_tool_calls: bool | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        presence_penalty: float | None = None,
        frequency_penalty: float | None = None,
        reasoning_effort: str | None = None,
        user: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.model = model
        self._http = openai_client(
            api_key_arg=api_key, base_url=base_url, extra_headers=extra_headers, provider="openai.LLM"
        )
        self._tool_choice = tool_choice
        self._options = set_options(
            extra_body,
            temperature=temperature,
            top_p=top_p,
            max_completion_tokens=max_completion_tokens,
            parallel_tool_calls=parallel_tool_calls,
            seed=seed,
            stop=list(stop) if isinstance(stop, (list, tuple)) else stop,
            presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty,
            reasoning_effort=reasoning_effort,
            user=user,
        )

    def __repr__(self) -> str:
        return f"openai.LLM({self.model!r} at {self._http.base_url})"

    def request_body(
        self, chat_ctx: ChatContext, tools: Sequence[FunctionTool], tool_choice: ToolChoice | None
    ) -> dict[str, Any]:
        """The JSON body of one streaming Chat Completions request."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": chat_messages(chat_ctx),
            "stream": True,
            "stream_options": {"include_usage": True},
            **self._options,
        }
        if tools:
            body["tools"] = [{"type": "function", "function": tool.schema()} for tool in tools]
            choice = tool_choice if tool_choice is not None else self._tool_choice
            if choice in ("auto", "required", "none"):
                body["tool_choice"] = choice
            elif choice is not None:
                body["tool_choice"] = {"type": "function", "function": {"name": choice}}
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
        calls: dict[int, _PartialCall] = {}
        finished = False

        async def on_event(event: Any) -> bool:
            nonlocal finished
            if event.data.startswith("[DONE]"):
                return True
            finished = await _read_chunk(decode_event(event, VENDOR), calls, output) or finished
            if finished:
                await _send_calls(calls, output)  # complete: the tools can start
            return False

        body = self.request_body(chat_ctx, tools, tool_choice)
        done = await self._http.post_stream("/chat/completions", body, conn_options=conn_options, on_event=on_event)
        if not (done or finished):
            raise protocol_error(VENDOR, "a stream that ended before its last chunk")
        await _send_calls(calls, output)


async def _send_calls(calls: dict[int, _PartialCall], output: trio.MemorySendChannel[LLMChunk]) -> None:
    for index in sorted(calls):
        call = calls.pop(index)
        if not call.name:
            raise protocol_error(VENDOR, f"tool call {index} without a function name")
        await output.send(
            ToolCallChunk(name=call.name, arguments=call.arguments, call_id=call.call_id or f"call_{index}")
        )


async def _read_chunk(
    chunk: Any, calls: dict[int, _PartialCall], output: trio.MemorySendChannel[LLMChunk]
) -> bool:
    """Send what one chunk says; True once the (first) choice has finished."""
    if chunk.get("error"):
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise APIError(f"{VENDOR} stream error: {message}", retryable=True, body=error)
    finished = False
    for choice in chunk.get("choices") or ():
        if choice.get("index", 0) != 0:
            continue  # n > 1 is never asked for
        delta = choice.get("delta") or {}
        text = delta.get("content") or delta.get("refusal")
        if text:
            await output.send(text)
        for part in delta.get("tool_calls") or ():
            call = calls.setdefault(int(part["index"]), _PartialCall())
            function = part.get("function") or {}
            # Some compatible servers repeat the id and name in every fragment.
            call.call_id = part.get("id") or call.call_id
            call.name = function.get("name") or call.name
            call.arguments += function.get("arguments") or ""
        finished = finished or bool(choice.get("finish_reason"))
    usage = chunk.get("usage")
    if usage:
        details = usage.get("prompt_tokens_details") or {}
        await output.send(
            UsageChunk(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                prompt_cached_tokens=int(details.get("cached_tokens") or 0),
            )
        )
    return finished


def chat_messages(chat_ctx: ChatContext) -> list[dict[str, Any]]:
    """The conversation as Chat Completions messages.

    Consecutive function calls are one assistant message with several
    ``tool_calls``; each output is a ``tool`` message answering its call id.
    An assistant message with no text (interrupted before its first word) is
    left out; hand-offs are not part of what the model reads.
    """
    messages: list[dict[str, Any]] = []
    for item in chat_ctx.items:
        if item.type == "message":
            if item.role == "assistant" and not item.content:
                continue
            messages.append({"role": item.role, "content": item.content})
        elif item.type == "function_call":
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments or "{}"},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "tool_calls": [call]})
        elif item.type == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
    return messages

