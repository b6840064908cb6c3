"""Function tools: what the LLM may call, and how results become chat items.

``@function_tool`` builds a JSON schema from a function's signature, type hints
and docstring; ``FunctionTool.raw`` takes a schema as is (scenario files, MCP).
Arguments are parsed and checked before the function runs, and every outcome,
including a crash, becomes exactly one ``FunctionCallOutput`` (the rules of the
reference, A.13): a string needs a reply, ``None`` does not, an ``Agent`` hands
off, a ``ToolError`` is shown to the LLM, anything else is reported as an
internal error without detail.
"""

from __future__ import annotations

import enum
import inspect
import json
import types
import typing
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Literal, Sequence

import attrs

from .chat import FunctionCall, FunctionCallOutput
from .errors import StopResponse, ToolError

if TYPE_CHECKING:
    from .agent import Agent
    from .session import AgentSession
    from .speech import SpeechHandle


class ToolArgumentsError(ValueError):
    """The LLM's arguments for a tool are not valid JSON or do not fit its schema."""


@attrs.define(kw_only=True)
class RunContext:
    """What a running tool can see and do."""

    session: AgentSession
    speech_handle: SpeechHandle
    function_call: FunctionCall

    @property
    def userdata(self) -> Any:
        return self.session.userdata

    def disallow_interruptions(self) -> None:
        self.speech_handle.allow_interruptions = False

    async def wait_for_playout(self) -> None:
        """Wait until the speech step that called this tool has played out."""
        await self.speech_handle._wait_for_generation()


@attrs.define(kw_only=True)
class FunctionTool:
    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]
    context_parameter: str | None = None
    flags: frozenset[str] = frozenset()

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
        text = arguments.strip() or "{}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise ToolArgumentsError(f"arguments are not valid JSON: {error.msg}") from None
        if not isinstance(value, dict):
            raise ToolArgumentsError(
                f"arguments must be a JSON object, got {type(value).__name__}"
            )
        _check_object(value, self.parameters, path="")
        return value

    async def call(self, arguments: dict[str, Any], context: RunContext) -> Any:
        kwargs = dict(arguments)
        if self.context_parameter is not None:
            kwargs[self.context_parameter] = context
        result = self.function(**kwargs)
        if inspect.isawaitable(result):
            result = await typing.cast(Awaitable[Any], result)
        return result


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


def _schema_for(annotation: Any) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    if annotation is str:
        return {"type": "string"}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is float:
        return {"type": "number"}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"type": "string", "enum": [member.value for member in annotation]}
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (list, Sequence, tuple) or annotation in (list, tuple):
        return {"type": "array", **({"items": _schema_for(args[0])} if args else {})}
    if origin is dict or annotation is dict:
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            inner = _schema_for(members[0])
            if "type" in inner:
                inner = {**inner, "type": [inner["type"], "null"]}
            return inner
        return {"anyOf": [_schema_for(a) for a in members]}
    raise TypeError(f"cannot describe the type {annotation!r} in a tool schema")


def _parameter_docs(docstring: str) -> tuple[str, dict[str, str]]:
    """Split a docstring into its description and 'Args:' entries."""
    lines = inspect.cleandoc(docstring).splitlines() if docstring else []
    description: list[str] = []
    params: dict[str, str] = {}
    in_args = False
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        if stripped.lower() in ("args:", "arguments:", "parameters:"):
            in_args = True
            continue
        if in_args:
            if not stripped:
                current = None
                continue
            if ":" in stripped and not line.startswith(" " * 8):
                name, _, text = stripped.partition(":")
                current = name.split("(")[0].strip()
                params[current] = text.strip()
            elif current:
                params[current] += " " + stripped
        else:
            description.append(stripped)
    return " ".join(d for d in description if d).strip(), params


def function_tool(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """Make a function callable by the LLM.

    A parameter annotated ``RunContext`` (or named ``context``) receives the run
    context and is left out of the schema.
    """

    def wrap(fn: Callable[..., Any]) -> FunctionTool:
        doc_description, doc_params = _parameter_docs(fn.__doc__ or "")
        hints = typing.get_type_hints(fn, include_extras=False)
        properties: dict[str, Any] = {}
        required: list[str] = []
        context_parameter = None
        for param in inspect.signature(fn).parameters.values():
            if param.name == "self":
                continue
            annotation = hints.get(param.name, param.annotation)
            if annotation is RunContext or param.name in ("context", "ctx"):
                context_parameter = param.name
                continue
            schema = _schema_for(annotation)
            if param.name in doc_params:
                schema["description"] = doc_params[param.name]
            properties[param.name] = schema
            if param.default is inspect.Parameter.empty:
                required.append(param.name)
        return FunctionTool(
            name=name or fn.__name__,
            description=description if description is not None else doc_description,
            parameters={
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
            function=fn,
            context_parameter=context_parameter,
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
# Outcomes
# ---------------------------------------------------------------------------

INTERNAL_ERROR = "An internal error occurred"


@attrs.frozen(kw_only=True)
class ToolOutcome:
    """One call's result as the conversation will record it."""

    call: FunctionCall
    output: FunctionCallOutput
    reply_required: bool
    agent: Agent | None = None


def outcome_from_result(call: FunctionCall, result: Any) -> ToolOutcome:
    from .agent import Agent

    def output(text: str, *, is_error: bool = False) -> FunctionCallOutput:
        return FunctionCallOutput(call_id=call.call_id, name=call.name, output=text, is_error=is_error)

    if result is None:
        return ToolOutcome(call=call, output=output(""), reply_required=False)
    if isinstance(result, Agent):
        return ToolOutcome(call=call, output=output(""), reply_required=False, agent=result)
    if isinstance(result, tuple):
        agents = [item for item in result if isinstance(item, Agent)]
        others = [item for item in result if not isinstance(item, Agent)]
        if len(agents) > 1:
            return ToolOutcome(
                call=call,
                output=output("the tool returned more than one agent", is_error=True),
                reply_required=True,
            )
        if agents:
            text = "" if not others else str(others[0] if len(others) == 1 else others)
            return ToolOutcome(
                call=call, output=output(text), reply_required=False, agent=agents[0]
            )
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
        return ToolOutcome(call=call, output=output(str(error)), reply_required=True)
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


def interrupted_outcome(outcome: ToolOutcome) -> ToolOutcome:
    """An outcome recorded after its speech was cut off: no reply, no hand-off."""
    if outcome.agent is not None:
        text = "the agent handoff was interrupted and did not happen"
        output = FunctionCallOutput(
            call_id=outcome.call.call_id, name=outcome.call.name, output=text, is_error=True
        )
        return ToolOutcome(call=outcome.call, output=output, reply_required=False)
    return attrs.evolve(outcome, reply_required=False)
