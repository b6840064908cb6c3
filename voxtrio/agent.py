"""Agent: the instructions, tools and hooks that define one role in a call.

An agent's values beat the session's: ``Agent(tts=None)`` turns the session's
TTS off while it is active, ``Agent(llm=other)`` answers with another model.
The hooks are user code; the session runs each of them in a nursery it owns,
under the close deadline, never while holding anything another actor needs.

What an agent knows of the conversation when it takes over is its own
``chat_ctx`` (what its constructor got) plus what its ``carry_history``
policy brings from the agent before it:

* ``"none"`` (the default, as in the reference): nothing; pass
  ``chat_ctx=`` yourself to choose;
* ``"messages"``: the previous agent's user and assistant messages;
* ``"full"``: those and its tool calls with their outputs.

The previous agent's instructions never carry over, and ``session.history``
keeps everything whatever the policy.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Generic, Literal, Sequence, TypeVar

from ._sync import Future
from .chat import ChatContext, ChatMessage
from .context import inside_session
from .errors import ToolError
from .events import UserTurnExceeded
from .options import NOT_GIVEN, is_given
from .tools import FunctionTool, HandoffTarget, Toolset, check_tool_items, find_function_tools, flatten_tools

if TYPE_CHECKING:
    from .session import AgentSession

INSTRUCTIONS_ID = "voxtrio.agent.instructions"

CarryHistory = Literal["none", "messages", "full"]
CARRY_HISTORY_POLICIES: tuple[str, ...] = ("none", "messages", "full")


def check_carry_history(value: Any, owner: str) -> CarryHistory:
    if value not in CARRY_HISTORY_POLICIES:
        raise ValueError(
            f"{owner}: carry_history must be one of {', '.join(CARRY_HISTORY_POLICIES)}, got {value!r}"
        )
    return value  # type: ignore[no-any-return]


def carry_over(source: ChatContext, target: ChatContext, policy: CarryHistory) -> None:
    """Copy what ``policy`` carries from ``source`` into ``target`` (by id, once)."""
    if policy == "none":
        return
    target.merge(source, exclude_function_calls=policy != "full")


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Agent:
    def __init__(
        self,
        *,
        instructions: str = "",
        tools: Sequence[FunctionTool | Toolset] = (),
        chat_ctx: ChatContext | None = None,
        id: str | None = None,
        carry_history: CarryHistory = "none",
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
        self._tools = check_tool_items([*tools, *find_function_tools(self)], owner=repr(self))
        self.carry_history = check_carry_history(carry_history, repr(self))
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
        """The tools the LLM can call (toolsets expanded)."""
        return flatten_tools(self._tools)

    @property
    def tool_items(self) -> list[FunctionTool | Toolset]:
        """The tools and toolsets as given."""
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

    def _bind(self, session: AgentSession) -> None:
        """Belong to ``session``. An agent serves one running session at a time:
        its context, hooks and tools speak for one call, and a tool run for
        one caller must not speak into another caller's call."""
        other = self._session
        if other is not None and other is not session and other._closed is not None:
            raise RuntimeError(
                f"{self!r} is already running in another session; an Agent object serves "
                "one session at a time: make one per call"
            )
        self._session = session

    def update_instructions(self, instructions: str) -> None:
        self._instructions = instructions

    def update_tools(self, tools: Sequence[FunctionTool | Toolset]) -> None:
        """Replace the tools; the next LLM step sees the new ones.

        Toolsets with a connection are connected when the agent becomes
        active: one added later is not connected.
        """
        self._tools = check_tool_items(list(tools), owner=repr(self))

    def override(self, name: str, session_value: Any) -> Any:
        """This agent's value for ``name`` if it set one, else the session's."""
        value = getattr(self, name, NOT_GIVEN)
        return value if is_given(value) else session_value

    # -- hooks (user code) ----------------------------------------------------

    async def on_enter(self) -> None:
        """Called when the agent becomes active."""

    async def on_exit(self) -> None:
        """Called when the agent is about to hand over or the session closes."""

    async def on_user_turn_exceeded(self, event: UserTurnExceeded) -> None:
        """Called when the user talks past ``user_turn_max_words``/``_max_duration``.

        ``event`` is a :class:`voxtrio.events.UserTurnExceeded`. The user's
        words so far are already in the history (crossing the limit ends their
        turn) and no reply was started for them: this hook decides it. By default
        the agent politely cuts in, once, without tools and without being
        interruptible.
        """
        session = self.session
        current = session.current_speech
        if current is not None and not current.done():
            return  # a reply is already on its way
        session.generate_reply(
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


HandoffTarget.register(Agent)  # a tool that returns an agent hands over to it

T = TypeVar("T")


class AgentTaskCancelled(ToolError):
    """The AgentTask ended without a result.

    ``by_session`` is true when the session unwound it (closing, or handing the
    conversation to another agent); the agent that awaited it is leaving too,
    so its tool's error output asks for no reply.
    """

    def __init__(self, message: str, *, by_session: bool = False) -> None:
        super().__init__(message)
        self.by_session = by_session


class AgentTask(Agent, Generic[T]):
    """An inline sub-agent: awaited from a tool or a hook, it returns a value.

    ``result = await CollectEmail()`` inside a tool (or ``on_enter`` /
    ``on_exit``) pauses the agent that awaits it: the task becomes the current
    agent (its ``on_enter`` runs, the user's turns go to it, its tools are the
    ones the LLM sees) until it calls :meth:`complete`. Then its ``on_exit``
    runs, what it said and heard is merged into the parent's context (tool
    calls too if ``preserve_function_call_history``), the parent is current
    again, and the await returns the result, or raises the error given to
    ``complete``.

    Only one task runs at a time per agent: parallel tool calls that each
    await a task run them one after the other; a task may await a task of its
    own (nested). Closing the session, or a hand-off, unwinds running tasks
    innermost first: each await raises :class:`AgentTaskCancelled`.
    """

    def __init__(self, *, preserve_function_call_history: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.preserve_function_call_history = preserve_function_call_history
        self._outcome: Future[T] = Future()
        self._started = False

    @property
    def done(self) -> bool:
        return self._outcome.done()

    def complete(self, result: T | BaseException) -> None:
        """Finish the task with ``result`` (or make the await raise it)."""
        if self._outcome.done():
            error = self._outcome.exception()
            if isinstance(error, AgentTaskCancelled) and error.by_session:
                return  # the session ended it first (closing, handing off)
            raise RuntimeError(f"{self!r} is already complete")
        if isinstance(result, BaseException):
            self._outcome.set_exception(result)
        else:
            self._outcome.set_result(result)

    def cancel(self) -> None:
        """Give up: the await raises AgentTaskCancelled (a ToolError the LLM sees)."""
        if not self._outcome.done():
            self._outcome.set_exception(AgentTaskCancelled(f"AgentTask {self.id} is cancelled"))

    def _cancel_by_session(self, why: str) -> None:
        if not self._outcome.done():
            self._outcome.set_exception(
                AgentTaskCancelled(f"AgentTask {self.id} is cancelled: {why}", by_session=True)
            )

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._run_inline().__await__()

    async def _run_inline(self) -> T:
        if self._started:
            raise RuntimeError(f"{self!r} was already awaited; an AgentTask runs once")
        session = inside_session.get()
        if session is None:
            raise RuntimeError("an AgentTask can only be awaited inside a running session")
        self._started = True
        return await session._run_agent_task(self)
