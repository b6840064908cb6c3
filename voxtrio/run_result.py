"""RunResult: what one ``session.run(user_input=...)`` added to the conversation.

A run says something as the user and waits until the session has nothing
left to do (docs/behaviour.md, "session.run()"). Meanwhile it records every
item the conversation gains, in history order: assistant messages, function
calls, their outputs and agent hand-offs (the user's own input is not an event). ``result.expect``
walks those events with assertions, so a test reads like the conversation::

    result = await session.run(user_input="What's the weather in Paris?")
    result.expect.next_event().is_function_call(name="get_weather", arguments={"city": "Paris"})
    result.expect.next_event().is_function_call_output(output="sunny")
    result.expect.next_event().is_message(role="assistant")
    result.expect.no_more_events()

A failed assertion raises ``AssertionError`` listing the events with the one
that failed marked, so the test output shows what happened instead.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any, AsyncIterator, Literal, Union

import attrs
import trio

from ._sync import Flag
from .chat import AgentHandoff, ChatItem, ChatMessage, FunctionCall, FunctionCallOutput
from .options import NOT_GIVEN, is_given

if TYPE_CHECKING:
    from .agent import Agent
    from .session import AgentSession
    from .speech import SpeechHandle
    from .state import SessionState

EventType = Literal["message", "function_call", "function_call_output", "agent_handoff"]


@contextlib.asynccontextmanager
async def running(session: AgentSession, agent: Agent, transport: Any = None) -> AsyncIterator[AgentSession]:
    """Run ``session`` with ``agent`` for the block, then close it.

    The session runs in a nursery of the block, so nothing of it outlives it::

        async with running(voxtrio.AgentSession(llm=llm), MyAgent()) as session:
            result = await session.run(user_input="hi")
    """
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, agent, transport)
        try:
            yield session
        finally:
            await session.aclose()


@attrs.frozen
class ChatMessageEvent:
    item: ChatMessage
    type: Literal["message"] = "message"


@attrs.frozen
class FunctionCallEvent:
    item: FunctionCall
    type: Literal["function_call"] = "function_call"


@attrs.frozen
class FunctionCallOutputEvent:
    item: FunctionCallOutput
    type: Literal["function_call_output"] = "function_call_output"


@attrs.frozen
class AgentHandoffEvent:
    item: AgentHandoff
    old_agent: Agent | None
    new_agent: Agent
    type: Literal["agent_handoff"] = "agent_handoff"


RunEvent = Union[ChatMessageEvent, FunctionCallEvent, FunctionCallOutputEvent, AgentHandoffEvent]


class RunResult:
    """The events of one run, in conversation order, and assertions over them."""

    def __init__(self, *, user_input: str) -> None:
        self.user_input = user_input
        self._events: list[tuple[float, RunEvent]] = []
        self._handles: list[SpeechHandle] = []
        self._input_message: ChatMessage | None = None
        self._done = Flag()
        self._expect: RunAssert | None = None

    def __repr__(self) -> str:
        return f"<RunResult {self.user_input!r}: {len(self._events)} events>"

    @property
    def events(self) -> list[RunEvent]:
        return [event for _, event in sorted(self._events, key=lambda entry: entry[0])]

    @property
    def expect(self) -> RunAssert:
        """The cursor over the events: each ``next_event()`` moves it on."""
        if self._expect is None:
            if not self.done():
                raise RuntimeError("the run is not done yet: await session.run(...) first")
            self._expect = RunAssert(self.events)
        return self._expect

    def done(self) -> bool:
        return self._done.value

    # -- recording (the session's side) -------------------------------------------

    def _item_committed(self, item: ChatItem, old_agent: Any, new_agent: Any) -> None:
        if item is self._input_message:
            return
        event: RunEvent
        if isinstance(item, ChatMessage):
            if item.role not in ("assistant", "user"):
                return
            event = ChatMessageEvent(item)
        elif isinstance(item, FunctionCall):
            event = FunctionCallEvent(item)
        elif isinstance(item, FunctionCallOutput):
            event = FunctionCallOutputEvent(item)
        elif isinstance(item, AgentHandoff):
            event = AgentHandoffEvent(item, old_agent=old_agent, new_agent=new_agent)
        else:  # pragma: no cover - every ChatItem kind is above
            return
        self._events.append((item.seq, event))

    def _speech_created(self, event: Any) -> None:
        if event.speech_handle is not None:
            self._handles.append(event.speech_handle)

    async def _watch(self, session: AgentSession, state: SessionState, closed: trio.Event | None) -> None:
        """Say the input, then wait until the session is idle (or closed)."""
        state.commit_listeners.append(self._item_committed)
        stop_watching = session._bus.on("speech_created", self._speech_created)
        try:
            self._input_message = ChatMessage(role="user", content=self.user_input)
            session.generate_reply(user_input=self._input_message)
            async with trio.open_nursery() as nursery:

                async def until_idle() -> None:
                    await state.idle.wait_value(True)
                    nursery.cancel_scope.cancel()

                async def until_closed() -> None:
                    if closed is not None:
                        await closed.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(until_idle)
                nursery.start_soon(until_closed)
            if not state.idle.value or not state.running:
                raise RuntimeError("the session closed before the run was done")
        finally:
            state.commit_listeners.remove(self._item_committed)
            stop_watching()
            self._done.set()
        errors = [h.exception() for h in self._handles if h.done() and h.exception() is not None]
        if errors:
            raise errors[-1]


# ---------------------------------------------------------------------------
# assertions
# ---------------------------------------------------------------------------


def _describe(event: RunEvent) -> str:
    if isinstance(event, ChatMessageEvent):
        flag = " (interrupted)" if event.item.interrupted else ""
        return f"message {event.item.role}: {event.item.content!r}{flag}"
    if isinstance(event, FunctionCallEvent):
        return f"function_call {event.item.name}({event.item.arguments})"
    if isinstance(event, FunctionCallOutputEvent):
        error = " (error)" if event.item.is_error else ""
        return f"function_call_output {event.item.output!r}{error}"
    return f"agent_handoff {event.item.old_agent} -> {event.item.new_agent}"


def _format_events(events: list[RunEvent], selected: int | None) -> str:
    if not events:
        return "  (the run has no events)"
    lines = []
    for index, event in enumerate(events):
        marker = ">>>" if index == selected else "   "
        lines.append(f"{marker} [{index}] {_describe(event)}")
    return "\n".join(lines)


class RunAssert:
    """A cursor over a run's events: ``next_event()`` moves it, ``[i]`` does not."""

    def __init__(self, events: list[RunEvent]) -> None:
        self._events = events
        self._index = 0

    def _fail(self, message: str, index: int | None = None) -> None:
        __tracebackhide__ = True
        raise AssertionError(f"{message}\nrun events:\n{_format_events(self._events, index)}")

    def __getitem__(self, key: int | slice) -> Any:
        __tracebackhide__ = True
        if isinstance(key, slice):
            return EventRangeAssert(self._events[key], self)
        try:
            event = self._events[key]
        except IndexError:
            self._fail(f"there is no event {key}")
        index = key if key >= 0 else len(self._events) + key
        return EventAssert(event, self, index)

    def next_event(self, *, type: EventType | None = None) -> Any:
        """The next event (of ``type``, skipping others); fails past the end."""
        __tracebackhide__ = True
        while True:
            if self._index >= len(self._events):
                wanted = f" of type {type}" if type else ""
                self._fail(f"expected another event{wanted}, but there are no more", self._index)
            event, index = self._events[self._index], self._index
            self._index += 1
            if type is None or event.type == type:
                break
        asserted = EventAssert(event, self, index)
        if type == "message":
            return asserted.is_message()
        if type == "function_call":
            return asserted.is_function_call()
        if type == "function_call_output":
            return asserted.is_function_call_output()
        if type == "agent_handoff":
            return asserted.is_agent_handoff()
        return asserted

    def skip_next(self, count: int = 1) -> RunAssert:
        __tracebackhide__ = True
        for skipped in range(count):
            if self._index >= len(self._events):
                self._fail(f"tried to skip {count} event(s), but only {skipped} were left", self._index)
            self._index += 1
        return self

    def skip_next_event_if(
        self,
        *,
        type: EventType,
        role: Any = NOT_GIVEN,
        name: Any = NOT_GIVEN,
        arguments: Any = NOT_GIVEN,
        output: Any = NOT_GIVEN,
        is_error: Any = NOT_GIVEN,
        new_agent_type: Any = NOT_GIVEN,
    ) -> Any:
        """Skip the next event if it matches; return its assertion, or None."""
        if self._index >= len(self._events):
            return None
        asserted = EventAssert(self._events[self._index], self, self._index)
        try:
            if type == "message":
                matched: Any = asserted.is_message(role=role)
            elif type == "function_call":
                matched = asserted.is_function_call(name=name, arguments=arguments)
            elif type == "function_call_output":
                matched = asserted.is_function_call_output(output=output, is_error=is_error)
            elif type == "agent_handoff":
                matched = asserted.is_agent_handoff(new_agent_type=new_agent_type)
            else:
                raise ValueError(f"unknown event type {type!r}")
        except AssertionError:
            return None
        self._index += 1
        return matched

    def no_more_events(self) -> None:
        __tracebackhide__ = True
        if self._index < len(self._events):
            self._fail(
                f"expected no more events, but found {_describe(self._events[self._index])}",
                self._index,
            )

    def _range(self) -> EventRangeAssert:
        return EventRangeAssert(self._events, self)

    def contains_message(self, *, role: Any = NOT_GIVEN) -> ChatMessageAssert:
        __tracebackhide__ = True
        return self._range().contains_message(role=role)

    def contains_function_call(self, *, name: Any = NOT_GIVEN, arguments: Any = NOT_GIVEN) -> FunctionCallAssert:
        __tracebackhide__ = True
        return self._range().contains_function_call(name=name, arguments=arguments)

    def contains_function_call_output(
        self, *, output: Any = NOT_GIVEN, is_error: Any = NOT_GIVEN
    ) -> FunctionCallOutputAssert:
        __tracebackhide__ = True
        return self._range().contains_function_call_output(output=output, is_error=is_error)

    def contains_agent_handoff(self, *, new_agent_type: Any = NOT_GIVEN) -> AgentHandoffAssert:
        __tracebackhide__ = True
        return self._range().contains_agent_handoff(new_agent_type=new_agent_type)


class EventAssert:
    """One event, to be checked as a message, call, output or hand-off."""

    def __init__(self, event: RunEvent, parent: RunAssert, index: int) -> None:
        self._event = event
        self._parent = parent
        self._index = index

    def event(self) -> RunEvent:
        return self._event

    def _fail(self, message: str) -> None:
        __tracebackhide__ = True
        self._parent._fail(f"event {self._index}: {message}", self._index)

    def is_message(self, *, role: Any = NOT_GIVEN) -> ChatMessageAssert:
        __tracebackhide__ = True
        event = self._event
        if not isinstance(event, ChatMessageEvent):
            self._fail(f"expected a message, got {_describe(event)}")
        assert isinstance(event, ChatMessageEvent)
        if is_given(role) and event.item.role != role:
            self._fail(f"expected a {role} message, got {_describe(event)}")
        return ChatMessageAssert(event, self._parent, self._index)

    def is_function_call(self, *, name: Any = NOT_GIVEN, arguments: Any = NOT_GIVEN) -> FunctionCallAssert:
        """``arguments`` checks the keys it names (the call may have more)."""
        __tracebackhide__ = True
        event = self._event
        if not isinstance(event, FunctionCallEvent):
            self._fail(f"expected a function call, got {_describe(event)}")
        assert isinstance(event, FunctionCallEvent)
        if is_given(name) and event.item.name != name:
            self._fail(f"expected a call to {name}, got {_describe(event)}")
        if is_given(arguments):
            try:
                actual = json.loads(event.item.arguments or "{}")
            except json.JSONDecodeError:
                actual = None
            if not isinstance(actual, dict):
                self._fail(f"the call's arguments are not a JSON object: {event.item.arguments!r}")
            for key, value in arguments.items():
                if key not in actual or actual[key] != value:
                    self._fail(f"argument {key!r}: expected {value!r}, got {actual.get(key, '(missing)')!r}")
        return FunctionCallAssert(event, self._parent, self._index)

    def is_function_call_output(
        self, *, output: Any = NOT_GIVEN, is_error: Any = NOT_GIVEN
    ) -> FunctionCallOutputAssert:
        __tracebackhide__ = True
        event = self._event
        if not isinstance(event, FunctionCallOutputEvent):
            self._fail(f"expected a function call output, got {_describe(event)}")
        assert isinstance(event, FunctionCallOutputEvent)
        if is_given(output) and event.item.output != output:
            self._fail(f"expected output {output!r}, got {event.item.output!r}")
        if is_given(is_error) and event.item.is_error != is_error:
            self._fail(f"expected is_error={is_error}, got {_describe(event)}")
        return FunctionCallOutputAssert(event, self._parent, self._index)

    def is_agent_handoff(self, *, new_agent_type: Any = NOT_GIVEN) -> AgentHandoffAssert:
        __tracebackhide__ = True
        event = self._event
        if not isinstance(event, AgentHandoffEvent):
            self._fail(f"expected an agent hand-off, got {_describe(event)}")
        assert isinstance(event, AgentHandoffEvent)
        if is_given(new_agent_type) and not isinstance(event.new_agent, new_agent_type):
            self._fail(
                f"expected a hand-off to a {new_agent_type.__name__}, "
                f"got one to {type(event.new_agent).__name__}"
            )
        return AgentHandoffAssert(event, self._parent, self._index)


class EventRangeAssert:
    """Some events, to be searched: ``contains_*`` finds the first that matches."""

    def __init__(self, events: list[RunEvent], parent: RunAssert) -> None:
        self._events = events
        self._parent = parent

    def _find(self, check: Any, what: str) -> Any:
        __tracebackhide__ = True
        for index, event in enumerate(self._events):
            try:
                return check(EventAssert(event, self._parent, index))
            except AssertionError:
                continue
        self._parent._fail(f"no event matches: {what}")

    def contains_message(self, *, role: Any = NOT_GIVEN) -> ChatMessageAssert:
        __tracebackhide__ = True
        what = f"a {role} message" if is_given(role) else "a message"
        return self._find(lambda e: e.is_message(role=role), what)  # type: ignore[no-any-return]

    def contains_function_call(self, *, name: Any = NOT_GIVEN, arguments: Any = NOT_GIVEN) -> FunctionCallAssert:
        __tracebackhide__ = True
        what = f"a call to {name}" if is_given(name) else "a function call"
        return self._find(  # type: ignore[no-any-return]
            lambda e: e.is_function_call(name=name, arguments=arguments), what
        )

    def contains_function_call_output(
        self, *, output: Any = NOT_GIVEN, is_error: Any = NOT_GIVEN
    ) -> FunctionCallOutputAssert:
        __tracebackhide__ = True
        what = f"an output {output!r}" if is_given(output) else "a function call output"
        return self._find(  # type: ignore[no-any-return]
            lambda e: e.is_function_call_output(output=output, is_error=is_error), what
        )

    def contains_agent_handoff(self, *, new_agent_type: Any = NOT_GIVEN) -> AgentHandoffAssert:
        __tracebackhide__ = True
        what = f"a hand-off to a {new_agent_type.__name__}" if is_given(new_agent_type) else "a hand-off"
        return self._find(  # type: ignore[no-any-return]
            lambda e: e.is_agent_handoff(new_agent_type=new_agent_type), what
        )


class _TypedAssert:
    def __init__(self, event: Any, parent: RunAssert, index: int) -> None:
        self._event = event
        self._parent = parent
        self._index = index

    def event(self) -> Any:
        return self._event


class ChatMessageAssert(_TypedAssert):
    def event(self) -> ChatMessageEvent:
        return self._event  # type: ignore[no-any-return]

    def contains(self, text: str) -> ChatMessageAssert:
        """The message's text contains ``text`` (case-insensitive)."""
        __tracebackhide__ = True
        if text.lower() not in self._event.item.content.lower():
            self._parent._fail(
                f"event {self._index}: expected the message to contain {text!r}", self._index
            )
        return self


class FunctionCallAssert(_TypedAssert):
    def event(self) -> FunctionCallEvent:
        return self._event  # type: ignore[no-any-return]


class FunctionCallOutputAssert(_TypedAssert):
    def event(self) -> FunctionCallOutputEvent:
        return self._event  # type: ignore[no-any-return]


class AgentHandoffAssert(_TypedAssert):
    def event(self) -> AgentHandoffEvent:
        return self._event  # type: ignore[no-any-return]
