"""Agent: the instructions, tools and hooks that define one role in a call.

An agent's values beat the session's: ``Agent(tts=None)`` turns the session's
TTS off while it is active. The hooks are user code; the session runs each of
them in a nursery it owns, under the close deadline, never while holding
anything another actor needs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Sequence

from .chat import ChatContext, ChatMessage
from .options import NOT_GIVEN, is_given
from .tools import FunctionTool, find_function_tools

if TYPE_CHECKING:
    from .session import AgentSession

INSTRUCTIONS_ID = "voxtrio.agent.instructions"


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Agent:
    def __init__(
        self,
        *,
        instructions: str = "",
        tools: Sequence[FunctionTool] = (),
        chat_ctx: ChatContext | None = None,
        id: str | None = None,
        stt: Any = NOT_GIVEN,
        vad: Any = NOT_GIVEN,
        llm: Any = NOT_GIVEN,
        tts: Any = NOT_GIVEN,
        allow_interruptions: Any = NOT_GIVEN,
        min_consecutive_speech_delay: Any = NOT_GIVEN,
        turn_detection: Any = NOT_GIVEN,
        min_endpointing_delay: Any = NOT_GIVEN,
        max_endpointing_delay: Any = NOT_GIVEN,
    ) -> None:
        if id is None:
            id = "default_agent" if type(self) is Agent else _snake_case(type(self).__name__)
        self._id = id
        self._instructions = instructions
        self._tools = [*tools, *find_function_tools(self)]
        self._chat_ctx = chat_ctx.copy() if chat_ctx is not None else ChatContext()
        self._session: AgentSession | None = None
        self.stt, self.vad, self.llm, self.tts = stt, vad, llm, tts
        self.allow_interruptions = allow_interruptions
        self.min_consecutive_speech_delay = min_consecutive_speech_delay
        self.turn_detection = turn_detection
        self.min_endpointing_delay = min_endpointing_delay
        self.max_endpointing_delay = max_endpointing_delay

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._id!r}>"

    @property
    def id(self) -> str:
        return self._id

    @property
    def label(self) -> str:
        return self._id

    @property
    def instructions(self) -> str:
        return self._instructions

    @property
    def tools(self) -> list[FunctionTool]:
        return list(self._tools)

    @property
    def chat_ctx(self) -> ChatContext:
        """A copy of this agent's own context (the session history is separate)."""
        return self._chat_ctx.copy()

    @property
    def session(self) -> AgentSession:
        if self._session is None:
            raise RuntimeError(f"{self!r} is not running in a session")
        return self._session

    def update_instructions(self, instructions: str) -> None:
        self._instructions = instructions

    def update_tools(self, tools: Sequence[FunctionTool]) -> None:
        self._tools = list(tools)

    def override(self, name: str, session_value: Any) -> Any:
        """This agent's value for ``name`` if it set one, else the session's."""
        value = getattr(self, name, NOT_GIVEN)
        return value if is_given(value) else session_value

    # -- hooks (user code) ----------------------------------------------------

    async def on_enter(self) -> None:
        """Called when the agent becomes active."""

    async def on_exit(self) -> None:
        """Called when the agent is about to hand over or the session closes."""

    async def on_user_turn_exceeded(self, event: Any) -> None:
        """Called when the user talks past ``user_turn_max_words``/``_max_duration``.

        ``event`` is a :class:`voxtrio.messages.UserTurnExceeded`. By default the
        agent politely cuts in, once, without tools and without being interruptible.
        """
        session = self.session
        current = session.current_speech
        if current is not None and not current.done():
            return  # a reply is already on its way
        session.generate_reply(
            user_input=event.transcript or event.accumulated_transcript,
            instructions=(
                "The user has been talking for a long time. Politely cut in: summarize "
                "briefly what you understood and ask them to continue in shorter turns."
            ),
            allow_interruptions=False,
            tool_choice="none",
        )

    async def on_user_turn_completed(self, turn_ctx: ChatContext, new_message: ChatMessage) -> None:
        """Called when the user finished a turn, before the reply is generated.

        Edits to ``turn_ctx`` apply to this reply only; edits to ``new_message``
        are kept. Raise ``StopResponse`` to skip the reply.
        """
