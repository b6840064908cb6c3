"""Preemptive generation (docs/behaviour.md): the reply to a final transcript, before the turn commits.

Speculative work is side-effect free: it is never scheduled (so no tool runs,
no audio plays) until the committed turn turns out to be the same; then it is
used, else cancelled and counted as wasted.
"""

from __future__ import annotations

import re

import attrs

from ...chat import ChatContext, ChatMessage
from ...events import EventBus, MetricsCollected
from ...messages import PreemptiveTranscript
from ...speech import SpeechFactory, SpeechHandle
from ...state import SessionState
from .reply import ReplyRequest
from .speeches import SpeechScheduler
from .stage import Stage

# Preemptive generation gives up on very long user turns and after a few tries.
PREEMPTIVE_MAX_SPEECH = 10.0
PREEMPTIVE_MAX_RETRIES = 3


@attrs.define
class _Preemptive:
    """A reply generated speculatively from a final transcript."""

    handle: SpeechHandle
    transcript: str
    # The agent's context it was generated from (it must not have changed).
    context: list[tuple[str, str]]
    message: ChatMessage


class Preemptive:
    def __init__(
        self,
        *,
        state: SessionState,
        stage: Stage,
        bus: EventBus,
        speeches: SpeechScheduler,
        factory: SpeechFactory,
    ) -> None:
        self._state = state
        self._stage = stage
        self._bus = bus
        self._speeches = speeches
        self._factory = factory
        # The reply prepared ahead, if any.
        self._current: _Preemptive | None = None
        # Replies prepared since the last user turn was handled.
        self._attempts = 0

    def prepare(self, message: PreemptiveTranscript) -> tuple[SpeechHandle, ReplyRequest] | None:
        """The speech to prepare and its reply step (the actor spawns it), or None."""
        stage = self._stage
        if not stage.options.preemptive_generation or not self._speeches.may_start("preemptive_reply"):
            return None
        if stage.llm_for() is None or stage.agent is None:
            return None
        current = self._state.current_speech
        if current is not None and not current.done() and not current.interrupted:
            return None
        if message.speech_duration > PREEMPTIVE_MAX_SPEECH or self._attempts >= PREEMPTIVE_MAX_RETRIES:
            return None
        self.drop()
        self._attempts += 1
        context = stage.agent.chat_ctx
        user_message = ChatMessage(role="user", content=message.transcript)
        handle = self._factory.create(source="generate_reply", allow_interruptions=stage.allow_interruptions())
        self._current = _Preemptive(
            handle=handle, transcript=message.transcript, context=_context_key(context), message=user_message
        )
        return handle, ReplyRequest(chat_ctx=context, tools=stage.tools(), tool_choice=None, new_message=user_message)

    def take(self, message: ChatMessage, turn_ctx: ChatContext) -> SpeechHandle | None:
        """The prepared speech, if it answers this very turn (else it is cancelled)."""
        preemptive, self._current = self._current, None
        if preemptive is not None and _same_words(preemptive.transcript, message.content) and (
            preemptive.context == _context_key(turn_ctx)
        ):
            preemptive.message.content = message.content
            preemptive.message.metrics = message.metrics
            preemptive.message.seq = message.seq
            return preemptive.handle
        if preemptive is not None:
            self._cancel(preemptive)
        return None

    def report_reused(self) -> None:
        self._bus.emit(MetricsCollected(kind="preemptive", metrics={"reused": True, "wasted_llm_calls": 0}))

    def reset_attempts(self) -> None:
        self._attempts = 0

    def drop(self) -> None:
        if self._current is not None:
            preemptive, self._current = self._current, None
            self._cancel(preemptive)

    def _cancel(self, preemptive: _Preemptive) -> None:
        preemptive.handle.interrupt(force=True)
        self._bus.emit(MetricsCollected(kind="preemptive", metrics={"reused": False, "wasted_llm_calls": 1}))


def _same_words(a: str, b: str) -> bool:
    def words(text: str) -> list[str]:
        return re.findall(r"\w+", text.casefold())

    return words(a) == words(b)


def _context_key(context: ChatContext) -> list[tuple[str, str]]:
    return [(item.id, str(item.to_dict())) for item in context.items]
