"""Function tools: what the LLM may call, and how results become chat items.

``@function_tool`` builds a JSON schema from a function's signature, type hints
and docstring, and a pydantic model that validates the LLM's arguments with
the same rules; ``FunctionTool.raw`` takes a schema as is (scenario files,
MCP). A :class:`Toolset` groups tools (and may hold a connection, as an MCP
server does). Arguments are parsed and checked before the function runs, and
every outcome, including a crash, becomes exactly one ``FunctionCallOutput``
(docs/behaviour.md, "Replies and tool outputs"): a string needs a reply,
``None`` does not, an ``Agent`` hands off, a ``ToolError`` is shown to the
LLM, anything else is reported as an internal error without detail.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import inspect
import json
import math
import re
import sys
import typing
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Generic,
    Iterable,
    Sequence,
    TypeVar,
    cast,
)

import attrs
import pydantic
import trio

from .chat import ChatContext, FunctionCall, FunctionCallOutput
from .errors import StopResponse, ToolError
from .providers.threads import run_in_worker
from .speech import status_of

if TYPE_CHECKING:
    from .agent import Agent
    from .session import AgentSession
    from .speech import SpeechHandle

UserData = TypeVar("UserData")


class ToolArgumentsError(ValueError):
    """The LLM's arguments for a tool are not valid JSON or do not fit its schema.

    The message names the field (``field 'order': ...``); the output the LLM
    sees also names the tool.
    """


@attrs.define(kw_only=True)
class RunContext(Generic[UserData]):
    """What a running tool can see and do.

    ``RunContext[MyData]`` types ``userdata``. ``agent`` is the agent whose
    reply called the tool (it stays the caller even if the conversation has
    moved on to another agent by the time the tool looks).
    """

    session: AgentSession
    speech_handle: SpeechHandle
    function_call: FunctionCall
    agent: Agent | None = None

    @property
    def userdata(self) -> UserData:
        return self.session.userdata  # type: ignore[no-any-return]

    @property
    def chat_ctx(self) -> ChatContext:
        """A copy of the calling agent's context, as it is now."""
        agent = self.agent if self.agent is not None else self.session.current_agent
        return agent.chat_ctx

    def disallow_interruptions(self) -> None:
        """Protect the rest of this speech (its later steps too) from the user."""
        self.speech_handle.allow_interruptions = False

    async def wait_for_playout(self) -> None:
        """Wait until the speech step that called this tool has played out.

        ``speech_handle.wait_for_playout()`` would wait for the whole speech,
        which includes this very tool: it raises instead of deadlocking.
        """
        await status_of(self.speech_handle).step_played.wait_value(True)


@attrs.define(kw_only=True)
class FunctionTool:
    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]
    context_parameter: str | None = None
    flags: frozenset[str] = frozenset()
    arguments_model: type[pydantic.BaseModel] | None = None

    @classmethod
    def raw(
        cls,
        *,
        name: str,
        description: str,
        parameters: dict[str, Any],
        function: Callable[..., Any],
        context_parameter: str | None = None,
    ) -> FunctionTool:
        """A tool described by a JSON schema given as is; arguments arrive as keywords."""
        schema = {"type": "object", "properties": {}, **parameters}
        return cls(
            name=name,
            description=description,
            parameters=schema,
            function=function,
            context_parameter=context_parameter,
        )

    def schema(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def parse_arguments(self, arguments: str) -> dict[str, Any]:
        """Decode and check the LLM's arguments; raise ToolArgumentsError naming the field.

        Arguments too big to read (an integer of thousands of digits, JSON
        nested thousands deep) are a parse error like any other, so the LLM
        is told what was wrong.
        """
        try:
            return self._parse_arguments(arguments)
        except RecursionError:
            raise ToolArgumentsError("arguments are nested too deeply to be read") from None

    def _parse_arguments(self, arguments: str) -> dict[str, Any]:
        text = arguments.strip() or "{}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise ToolArgumentsError(f"arguments are not valid JSON: {error.msg}") from None
        except ValueError:  # the only other failure: an integer longer than Python converts
            raise ToolArgumentsError(
                f"arguments cannot be read: an integer has more than {sys.get_int_max_str_digits()} digits"
            ) from None
        if not isinstance(value, dict):
            raise ToolArgumentsError(
                f"arguments must be a JSON object, got {type(value).__name__}"
            )
        if self.arguments_model is None:
            _check_object(value, self.parameters, path="")
            return value
        try:
            parsed = self.arguments_model.model_validate(value)
        except pydantic.ValidationError as error:
            raise ToolArgumentsError(_describe_validation_error(error)) from None
        return {field: getattr(parsed, field) for field in type(parsed).model_fields}

    async def call(self, arguments: dict[str, Any], context: RunContext) -> Any:
        """Call the function with checked arguments.

        A synchronous function runs in a worker thread (trio's default thread
        limiter), so one that blocks does not stop the event loop and every
        session on it. A thread cannot be cancelled: when the session cancels
        the call (its close deadline), the thread is abandoned, left to
        finish on its own and counted by :func:`voxtrio.providers.threads.abandoned_workers`.
        From the thread, reach the session through ``trio.from_thread.run_sync``.
        """
        kwargs = dict(arguments)
        if self.context_parameter is not None:
            kwargs[self.context_parameter] = context
        if _is_async_callable(self.function):
            result = self.function(**kwargs)
        else:
            result = await run_in_worker(
                functools.partial(self.function, **kwargs),
                limiter=trio.to_thread.current_default_thread_limiter(),
                abandon_on_cancel=True,
            )
        if inspect.isawaitable(result):
            result = await typing.cast(Awaitable[Any], result)
        return result


def _is_async_callable(function: Any) -> bool:
    while isinstance(function, functools.partial):
        function = function.func
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)
    )


def _describe_validation_error(error: pydantic.ValidationError) -> str:
    problems = []
    for detail in error.errors(include_url=False):
        location = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in detail["loc"]
        ).lstrip(".")
        message = detail["msg"]
        if detail["type"] == "extra_forbidden":
            message = "unexpected argument"
        elif detail["type"] == "missing":
            message = "missing required argument"
        problems.append(f"field '{location}': {message}")
    return "; ".join(problems)


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _check_value(value: Any, schema: dict[str, Any], path: str) -> None:
    expected = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        raise ToolArgumentsError(f"field '{path}': {value!r} is not one of {schema['enum']}")
    if expected is None:
        return
    expected_types = expected if isinstance(expected, list) else [expected]
    actual = _json_type_name(value)
    compatible = actual in expected_types or (actual == "integer" and "number" in expected_types)
    if not compatible:
        raise ToolArgumentsError(
            f"field '{path}': expected {' or '.join(expected_types)}, got {actual}"
        )
    if actual == "object" and "object" in expected_types:
        _check_object(value, schema, path)
    if actual == "array" and "items" in schema:
        for index, item in enumerate(value):
            _check_value(item, schema["items"], f"{path}[{index}]")


def _check_object(value: dict[str, Any], schema: dict[str, Any], path: str) -> None:
    properties = schema.get("properties", {})
    prefix = f"{path}." if path else ""
    for name in schema.get("required", ()):
        if name not in value:
            raise ToolArgumentsError(f"field '{prefix}{name}': missing required argument")
    if schema.get("additionalProperties") is False or (
        properties and schema.get("additionalProperties") is None
    ):
        for name in value:
            if name not in properties:
                raise ToolArgumentsError(f"field '{prefix}{name}': unexpected argument")
    for name, item in value.items():
        if name in properties:
            _check_value(item, properties[name], f"{prefix}{name}")


# ---------------------------------------------------------------------------
# @function_tool
# ---------------------------------------------------------------------------

_IGNORED_SECTIONS = (
    "returns", "return", "raises", "yields", "yield", "examples", "example", "note", "notes",
    "see also", "warning", "warnings", "references",
)
_ARG_SECTIONS = ("args", "arguments", "parameters", "params", "keyword args", "keyword arguments")


def parse_docstring(docstring: str) -> tuple[str, dict[str, str]]:
    """Split a docstring into its description and per-parameter descriptions.

    Google style (``Args:`` then ``name (type): text``), Sphinx style
    (``:param name: text``) and NumPy style (``Parameters`` underlined, then
    ``name : type`` and an indented description) are understood, because tool
    authors copy whichever their codebase already uses. Other sections
    (``Returns:``, ``Raises:``...) are left out of the description: the LLM
    needs to know what the tool does and what each argument means, not how it
    fails.
    """
    lines = inspect.cleandoc(docstring).splitlines() if docstring else []
    description: list[str] = []
    params: dict[str, str] = {}
    section = "description"
    current: str | None = None
    current_indent = 0
    numpy_style = False  # "name : type" lines, the description indented below
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        heading = stripped.rstrip(":").lower()
        underlined = index + 1 < len(lines) and set(lines[index + 1].strip()) == {"-"}
        if (stripped.endswith(":") or underlined) and heading in (*_ARG_SECTIONS, *_IGNORED_SECTIONS):
            section = "args" if heading in _ARG_SECTIONS else "ignored"
            numpy_style = underlined
            current = None
            index += 2 if underlined else 1
            continue
        sphinx = re.match(r":param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)", stripped)
        if sphinx:
            section, current, current_indent = "sphinx", sphinx.group(1), indent
            params[current] = sphinx.group(2).strip()
        elif stripped.startswith(":"):
            section, current = "ignored", None  # :returns:, :raises X:, :type x:
        elif section == "description":
            description.append(stripped)
        elif section in ("args", "sphinx"):
            entry = re.match(r"(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)", stripped)
            if not stripped:
                current = None if section == "args" else current
            elif entry and (current is None or indent <= current_indent):
                current, current_indent = entry.group(1).lstrip("*"), indent
                params[current] = "" if numpy_style else entry.group(3).strip()
            elif current is not None:
                params[current] = (params[current] + " " + stripped).strip()
        index += 1
    return " ".join(part for part in description if part).strip(), params


def _strip_titles(schema: Any) -> Any:
    """Drop pydantic's generated titles: they repeat the names and cost tokens."""
    if isinstance(schema, dict):
        return {
            key: _strip_titles(value)
            for key, value in schema.items()
            if not (key == "title" and isinstance(value, str))
        }
    if isinstance(schema, list):
        return [_strip_titles(item) for item in schema]
    return schema


def _is_context_annotation(annotation: Any) -> bool:
    return annotation is RunContext or typing.get_origin(annotation) is RunContext


def function_tool(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """Make a function callable by the LLM.

    The JSON schema comes from the signature: type hints give the types
    (anything pydantic understands: ``str``, ``int``, ``Literal``, enums,
    ``list[...]``, ``Optional``, dataclasses, pydantic models,
    ``Annotated[x, Field(...)]``), defaults make a parameter optional, and the
    docstring gives the description and each parameter's meaning. A parameter
    annotated ``RunContext`` receives the run context and is left out of the
    schema. The LLM's arguments are validated against the same model before
    the function runs, so the function receives typed values (an enum member,
    a model instance) and the LLM gets an error naming the field otherwise.

    A type that cannot be described raises ``TypeError`` naming the tool and
    the parameter, when the module is imported rather than mid-call.
    """

    def wrap(fn: Callable[..., Any]) -> FunctionTool:
        tool_name = name or fn.__name__
        doc_description, doc_params = parse_docstring(fn.__doc__ or "")
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception as error:
            raise TypeError(f"tool `{tool_name}`: cannot resolve its type hints: {error}") from None
        fields: dict[str, Any] = {}
        context_parameter = None
        for param in inspect.signature(fn).parameters.values():
            if param.name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            annotation = hints.get(param.name, Any)
            if _is_context_annotation(annotation) or (
                param.name in ("context", "ctx") and param.annotation is inspect.Parameter.empty
            ):
                context_parameter = param.name
                continue
            default = ... if param.default is inspect.Parameter.empty else param.default
            described = {"description": doc_params[param.name]} if param.name in doc_params else {}
            field = pydantic.Field(default, **described)
            fields[param.name] = (annotation, field)
        try:
            model = pydantic.create_model(  # type: ignore[call-overload]
                f"{tool_name}_arguments",
                __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False),
                **fields,
            )
            schema = _strip_titles(model.model_json_schema())
        except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as error:
            problem = str(error).splitlines()[0]
            culprit = next(
                (p for p, (annotation, _) in fields.items() if repr(annotation) in str(error)), None
            )
            where = f" parameter `{culprit}`" if culprit else ""
            raise TypeError(f"tool `{tool_name}`{where}: cannot describe it in a schema: {problem}") from None
        schema.setdefault("properties", {})
        schema.setdefault("required", [])
        return FunctionTool(
            name=tool_name,
            description=description if description is not None else doc_description,
            parameters=schema,
            function=fn,
            context_parameter=context_parameter,
            arguments_model=model,
        )

    return wrap(function) if function is not None else wrap


def find_function_tools(obj: object) -> list[FunctionTool]:
    """The ``@function_tool`` methods of an agent object, bound to it."""
    found: list[FunctionTool] = []
    for attr_name in dir(type(obj)):
        attribute = getattr(type(obj), attr_name, None)
        if isinstance(attribute, FunctionTool):
            bound = attribute.function.__get__(obj, type(obj))
            found.append(attrs.evolve(attribute, function=bound))
    return found


# ---------------------------------------------------------------------------
# Toolsets
# ---------------------------------------------------------------------------


class Toolset:
    """A group of tools given to an agent or a session as one item.

    A plain toolset is a name for a list of tools (``Toolset(id="billing",
    tools=[...])``). A toolset whose tools come from somewhere that must be
    opened first (an MCP server) overrides :meth:`connect`: the session enters
    it in a task it owns when the toolset's owner becomes active (at session
    start for session tools, at hand-off for an agent's) and leaves it when the
    owner is done, so a connection never outlives the session.
    """

    def __init__(self, *, id: str, tools: Sequence[FunctionTool | Toolset] = ()) -> None:
        self._id = id
        self._items = list(tools)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._id!r}>"

    @property
    def id(self) -> str:
        return self._id

    @property
    def tools(self) -> list[FunctionTool]:
        """The tools available now (empty until a connected toolset has connected)."""
        return flatten_tools(self._items)

    def toolsets(self) -> list[Toolset]:
        """This toolset and the ones inside it: what the session must connect."""
        nested = [t for item in self._items if isinstance(item, Toolset) for t in item.toolsets()]
        return [self, *nested]

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[None]:
        """Open whatever the tools need for as long as the block runs."""
        yield


def flatten_tools(items: Iterable[FunctionTool | Toolset]) -> list[FunctionTool]:
    """The tools of a mixed list of tools and toolsets; the first of a name wins."""
    found: dict[str, FunctionTool] = {}
    for item in items:
        tools = item.tools if isinstance(item, Toolset) else [item]
        for tool in tools:
            found.setdefault(tool.name, tool)
    return list(found.values())


def toolsets_of(items: Iterable[FunctionTool | Toolset]) -> list[Toolset]:
    return [toolset for item in items if isinstance(item, Toolset) for toolset in item.toolsets()]


def check_tool_items(items: Sequence[Any], owner: str) -> list[FunctionTool | Toolset]:
    """Reject what is not a tool, and two tools of one name, naming them."""
    names: set[str] = set()
    for item in items:
        if not isinstance(item, (FunctionTool, Toolset)):
            raise TypeError(
                f"{owner}: tools must be FunctionTool or Toolset objects (decorate the function "
                f"with @function_tool), got {item!r}"
            )
        for tool in item.tools if isinstance(item, Toolset) else [item]:
            if tool.name in names:
                raise ValueError(f"{owner}: two tools are named `{tool.name}`")
            names.add(tool.name)
    return list(items)


class ToolsetLease:
    """The connections of some toolsets, held open by service tasks.

    :func:`open_toolsets` starts one task per toolset in a nursery the session
    owns; :meth:`aclose` lets them leave their ``connect()`` blocks. A toolset
    that fails to connect is reported through ``on_error`` and offers no
    tools; the conversation goes on without them.
    """

    def __init__(self) -> None:
        self._closing = trio.Event()
        self._running = 0
        self._all_closed = trio.Event()
        self._all_closed.set()
        self._scopes: set[trio.CancelScope] = set()

    async def aclose(self, *, deadline: float = math.inf) -> None:
        """Leave the connections; past ``deadline`` (a server that does not
        answer the goodbye), cut them off and wait only for what the toolset
        itself shields from cancellation."""
        self._closing.set()
        with trio.move_on_at(deadline):
            await self._all_closed.wait()
        for scope in self._scopes:
            scope.cancel()
        await self._all_closed.wait()

    async def _serve(
        self,
        toolset: Toolset,
        on_error: Callable[[Toolset, BaseException], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._running += 1
        self._all_closed = trio.Event() if self._running == 1 else self._all_closed
        started = False
        scope = trio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                async with toolset.connect():
                    task_status.started()
                    started = True
                    await self._closing.wait()
        except Exception as error:
            on_error(toolset, error)
        finally:
            self._scopes.discard(scope)
            if not started:
                task_status.started()
            self._running -= 1
            if self._running == 0:
                self._all_closed.set()


async def open_toolsets(
    nursery: trio.Nursery,
    toolsets: Sequence[Toolset],
    on_error: Callable[[Toolset, BaseException], None],
) -> ToolsetLease:
    """Connect ``toolsets`` (one after the other) in tasks of ``nursery``."""
    lease = ToolsetLease()
    for toolset in toolsets:
        await nursery.start(lease._serve, toolset, on_error)
    return lease


# ---------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------

INTERNAL_ERROR = "An internal error occurred"


class HandoffTarget(abc.ABC):
    """What a tool returns to hand the conversation over: an :class:`voxtrio.Agent`.

    The agent module registers ``Agent`` here: it imports this module (an
    agent holds tools), so this one cannot import it back.
    """


@attrs.frozen(kw_only=True)
class ToolOutcome:
    """One call's result as the conversation will record it."""

    call: FunctionCall
    output: FunctionCallOutput
    reply_required: bool
    agent: Agent | None = None


def outcome_from_result(call: FunctionCall, result: Any) -> ToolOutcome:
    def output(text: str, *, is_error: bool = False) -> FunctionCallOutput:
        return FunctionCallOutput(call_id=call.call_id, name=call.name, output=text, is_error=is_error)

    if result is None:
        return ToolOutcome(call=call, output=output(""), reply_required=False)
    if isinstance(result, HandoffTarget):
        return ToolOutcome(call=call, output=output(""), reply_required=False, agent=cast("Agent", result))
    if isinstance(result, tuple):
        agents = [cast("Agent", item) for item in result if isinstance(item, HandoffTarget)]
        others = [item for item in result if not isinstance(item, HandoffTarget)]
        if len(agents) > 1:
            return ToolOutcome(
                call=call,
                output=output("the tool returned more than one agent", is_error=True),
                reply_required=True,
            )
        if agents:
            # (agent, x): hand off and answer x; the old agent still replies to
            # it, with tool_choice="none", while it drains (as the reference).
            if not others:
                return ToolOutcome(call=call, output=output(""), reply_required=False, agent=agents[0])
            value = others[0] if len(others) == 1 else others
            if value is None:
                return ToolOutcome(call=call, output=output(""), reply_required=False, agent=agents[0])
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            return ToolOutcome(call=call, output=output(text), reply_required=True, agent=agents[0])
    if isinstance(result, (str, int, float, bool, list, dict, tuple)):
        text = result if isinstance(result, str) else json.dumps(result, default=str)
        return ToolOutcome(call=call, output=output(text), reply_required=True)
    return ToolOutcome(
        call=call, output=output("the tool returned an invalid output", is_error=True), reply_required=True
    )


def outcome_from_error(call: FunctionCall, error: BaseException) -> ToolOutcome:
    def output(text: str, *, is_error: bool = True) -> FunctionCallOutput:
        return FunctionCallOutput(call_id=call.call_id, name=call.name, output=text, is_error=is_error)

    if isinstance(error, ToolError):
        # An AgentTask unwound by the session: its caller is leaving too, no reply.
        leaving = getattr(error, "by_session", False)
        return ToolOutcome(call=call, output=output(str(error)), reply_required=not leaving)
    if isinstance(error, StopResponse):
        return ToolOutcome(call=call, output=output("", is_error=False), reply_required=False)
    if isinstance(error, ToolArgumentsError):
        return ToolOutcome(
            call=call,
            output=output(f"Error parsing arguments for `{call.name}`: {error}"),
            reply_required=True,
        )
    return ToolOutcome(call=call, output=output(INTERNAL_ERROR), reply_required=True)


def unknown_function_outcome(call: FunctionCall, available: Sequence[str]) -> ToolOutcome:
    text = f"Unknown function: {call.name} - available tools: {', '.join(available)}"
    return ToolOutcome(
        call=call,
        output=FunctionCallOutput(call_id=call.call_id, name=call.name, output=text, is_error=True),
        reply_required=True,
    )


def rejected_outcome(call: FunctionCall, why: str) -> ToolOutcome:
    """A call that was not run: an error output, and no reply asked for."""
    output = FunctionCallOutput(call_id=call.call_id, name=call.name, output=why, is_error=True)
    return ToolOutcome(call=call, output=output, reply_required=False)


def interrupted_outcome(outcome: ToolOutcome) -> ToolOutcome:
    """An outcome recorded after its speech was cut off: no reply, no hand-off."""
    if outcome.agent is not None:
        text = "the agent handoff was interrupted and did not happen"
        output = FunctionCallOutput(
            call_id=outcome.call.call_id, name=outcome.call.name, output=text, is_error=True
        )
        return ToolOutcome(call=outcome.call, output=output, reply_required=False)
    return attrs.evolve(outcome, reply_required=False)
