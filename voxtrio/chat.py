"""The conversation: chat items and the ordered context an LLM reads.

Items are ordered by ``seq``, a number taken from the session's one event
counter when the item's place in the conversation is decided (a user turn when
it commits, an assistant reply when it starts playing, a tool call when it
starts running). Wall-clock stamps are kept for metrics only, never for order:
two items can share a timestamp, never a sequence number.
"""

from __future__ import annotations

import bisect
import itertools
import json
from typing import Any, Iterable, Literal, Union

import attrs

ChatRole = Literal["system", "user", "assistant", "developer"]

_ids = itertools.count(1)


def _unordered_seq() -> float:
    # Items built by user code before the session numbers them sort after
    # everything numbered so far, in creation order.
    return float("inf")


@attrs.define(kw_only=True, eq=False)
class ChatMessage:
    role: ChatRole
    content: str
    id: str = attrs.Factory(lambda: f"item_{next(_ids)}")
    interrupted: bool = False
    created_at: float = 0.0
    seq: float = attrs.Factory(_unordered_seq)
    metrics: dict[str, float] = attrs.Factory(dict)
    type: Literal["message"] = attrs.field(default="message", init=False)

    @property
    def text_content(self) -> str:
        return self.content

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "message",
            "role": self.role,
            "content": self.content,
            "interrupted": self.interrupted,
        }


@attrs.define(kw_only=True, eq=False)
class FunctionCall:
    name: str
    arguments: str
    call_id: str
    id: str = attrs.Factory(lambda: f"item_{next(_ids)}")
    created_at: float = 0.0
    seq: float = attrs.Factory(_unordered_seq)
    type: Literal["function_call"] = attrs.field(default="function_call", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "function_call",
            "name": self.name,
            "arguments": self.arguments,
            "call_id": self.call_id,
        }


@attrs.define(kw_only=True, eq=False)
class FunctionCallOutput:
    call_id: str
    name: str
    output: str
    is_error: bool
    id: str = attrs.Factory(lambda: f"item_{next(_ids)}")
    created_at: float = 0.0
    seq: float = attrs.Factory(_unordered_seq)
    type: Literal["function_call_output"] = attrs.field(
        default="function_call_output", init=False
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "function_call_output",
            "call_id": self.call_id,
            "output": self.output,
            "is_error": self.is_error,
        }


@attrs.define(kw_only=True, eq=False)
class AgentHandoff:
    old_agent: str | None
    new_agent: str
    id: str = attrs.Factory(lambda: f"item_{next(_ids)}")
    created_at: float = 0.0
    seq: float = attrs.Factory(_unordered_seq)
    type: Literal["agent_handoff"] = attrs.field(default="agent_handoff", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "agent_handoff", "old_agent": self.old_agent, "new_agent": self.new_agent}


ChatItem = Union[ChatMessage, FunctionCall, FunctionCallOutput, AgentHandoff]


class ChatContext:
    """An ordered list of chat items (ordered by ``seq``)."""

    def __init__(self, items: Iterable[ChatItem] = ()) -> None:
        self._items: list[ChatItem] = []
        for item in items:
            self.insert(item)

    @property
    def items(self) -> list[ChatItem]:
        return self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._items)

    def copy(self) -> ChatContext:
        context = ChatContext()
        context._items = list(self._items)
        return context

    def insert(self, item: ChatItem) -> None:
        """Insert by sequence number; equal numbers keep insertion order."""
        if self._items and self._items[-1].seq <= item.seq:
            self._items.append(item)
        else:
            index = bisect.bisect_right([i.seq for i in self._items], item.seq)
            self._items.insert(index, item)

    def add_message(self, *, role: ChatRole, content: str, **fields: Any) -> ChatMessage:
        message = ChatMessage(role=role, content=content, **fields)
        self.insert(message)
        return message

    def get(self, item_id: str) -> ChatItem | None:
        return next((item for item in self._items if item.id == item_id), None)

    def remove(self, item_id: str) -> None:
        self._items = [item for item in self._items if item.id != item_id]

    def merge(self, other: ChatContext, *, exclude_function_calls: bool = False) -> None:
        """Add the items of ``other`` that are not here yet (matched by id)."""
        known = {item.id for item in self._items}
        for item in other.items:
            if item.id in known:
                continue
            if exclude_function_calls and item.type in ("function_call", "function_call_output"):
                continue
            if item.type == "message" and item.role == "system":
                continue
            self.insert(item)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [item.to_dict() for item in self._items]

    def to_json(self) -> str:
        return json.dumps(self.to_dicts())
