"""Scenario files: a conversation as data, played on a virtual clock.

``load_scenario`` validates a scenario (``docs/scenario-format.md``): an unknown
field or a malformed value raises :class:`ScenarioError` naming the field.
``run_scenario`` plays it with the scripted providers under trio's
``MockClock`` and returns the timeline, one dict per line of output. The
same scenario gives the same timeline, byte for byte: the clock is virtual
and trio's scheduler is seeded.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any, Callable, Iterator, Mapping, Sequence

import attrs
import trio
import trio.testing

from ..agent import Agent
from ..errors import ToolError
from ..events import Event, MetricsCollected
from ..options import SESSION_OPTION_NAMES, APIConnectOptions, SessionConnectOptions, SessionOptions
from ..session import AgentSession
from ..text import BUILTIN_TRANSFORMS
from ..tools import FunctionTool
from ..validation import check_bool, check_int
from .scripted import (
    Fault,
    LLMResponse,
    ScriptedLLM,
    ScriptedSTT,
    ScriptedTransport,
    ScriptedTTS,
    ScriptedVAD,
    ToolCall,
    TTSResponse,
    UserSpeech,
    exception_from,
)


class ScenarioError(ValueError):
    """The scenario file is not valid; ``field`` is where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------

_NUMBER = (int, float)


def _expect_type(value: Any, types: Any, field: str, what: str) -> Any:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ScenarioError(field, f"expected {what}, got {json.dumps(value)}")
    if not isinstance(value, types):
        raise ScenarioError(field, f"expected {what}, got {json.dumps(value)[:60]}")
    return value


# The longest time a scenario may mention (a moment, a duration): an hour of
# conversation. A virtual clock makes waiting free, but not the work of every
# 20 ms frame until then.
MAX_SCENARIO_TIME = 3600.0


def _number(value: Any, field: str, *, minimum: float = 0.0, maximum: float = MAX_SCENARIO_TIME) -> float:
    _expect_type(value, _NUMBER, field, "a number")
    if not math.isfinite(value) or value < minimum:
        raise ScenarioError(field, f"expected a number >= {minimum:g}, got {value}")
    if value > maximum:
        raise ScenarioError(field, f"{value:g} is more than the limit of {maximum:g} (seconds of conversation)")
    return float(value)


def _checked(check: Callable[..., Any], value: Any, field: str, **limits: Any) -> Any:
    """Run one of voxtrio's argument checks, as a scenario error naming the field."""
    try:
        return check(value, field.rsplit(".", 1)[-1], **limits)
    except (TypeError, ValueError) as error:
        raise ScenarioError(field, str(error)) from None


def _options(values: Mapping[str, Any], field: str, base: Mapping[str, Any] = {}) -> None:
    """Check session options as AgentSession would (types, ranges, names of
    text transforms, and together: min_endpointing_delay <= max_endpointing_delay)."""
    fields = attrs.fields_dict(SessionOptions)
    for key, value in values.items():
        where = f"{field}.{key}"
        if key == "tts_text_transforms":
            if value is not None:
                for i, name in enumerate(_list(value, where)):
                    if _string(name, f"{where}[{i}]") not in BUILTIN_TRANSFORMS:
                        raise ScenarioError(
                            f"{where}[{i}]", f"unknown text transform {name!r}; built-ins: {sorted(BUILTIN_TRANSFORMS)}"
                        )
        elif key == "turn_detection":
            if value is not None and value not in ("vad", "stt", "manual", "realtime_llm"):
                raise ScenarioError(where, f"unknown turn detection mode {value!r}")
        elif key in fields and fields[key].validator is not None:
            try:
                fields[key].validator(None, fields[key], value)
            except (TypeError, ValueError) as error:
                raise ScenarioError(where, str(error)) from None
    together = {k: v for k, v in {**base, **values}.items() if k in fields and k != "conn_options"}
    if "tts_text_transforms" in together and together["tts_text_transforms"] is not None:
        together["tts_text_transforms"] = tuple(together["tts_text_transforms"])
    try:
        SessionOptions(**together)
    except (TypeError, ValueError) as error:
        # The field to name: the first of those given here that the message names.
        message = str(error)
        named = sorted((message.find(key), key) for key in values if key in message)
        raise ScenarioError(f"{field}.{named[0][1]}" if named else field, message) from None


def _call_args(call: str, args: Mapping[str, Any], field: str, *, tools: Sequence[str], options: Mapping[str, Any]) -> None:
    """Check the arguments of an API call (an action or a hook or tool step) by
    their types, as the call itself would."""
    for key, value in args.items():
        where = f"{field}.{key}"
        if key in ("allow_interruptions", "add_to_chat_ctx", "skip_reply", "force", "drain"):
            _checked(check_bool, value, where)
        elif key in ("text", "user_input", "instructions"):
            _string(value, where)
        elif key == "transcript_timeout":
            _number(value, where)
        elif key == "tools":
            for i, name in enumerate(_list(value, where)):
                _string(name, f"{where}[{i}]")
        elif key == "tool_choice":
            if value is not None and _string(value, where) not in ("auto", "required", "none", *tools):
                raise ScenarioError(where, f"expected 'auto', 'required', 'none' or a tool's name, got {value!r}")
    if call == "update_options":
        _options(args, field, base=options)


def _object(value: Any, field: str, allowed: set[str], required: set[str] = frozenset()) -> dict:  # type: ignore[assignment]
    _expect_type(value, dict, field, "an object")
    for key in value:
        if key not in allowed:
            raise ScenarioError(f"{field}.{key}" if field else key, "unknown field")
    for key in required:
        if key not in value:
            raise ScenarioError(f"{field}.{key}" if field else key, "missing required field")
    return value


def _list(value: Any, field: str) -> list:
    return _expect_type(value, list, field, "a list")


def _string(value: Any, field: str) -> str:
    return _expect_type(value, str, field, "a string")


def _bool(value: Any, field: str) -> bool:
    return _expect_type(value, bool, field, "true or false")


TOP_LEVEL = {
    "name", "description", "options", "vad", "stt", "audio_output", "agent", "agents", "tools",
    "user", "llm", "tts", "tts_default_chars_per_second", "actions", "end", "expect", "faults",
    "realtime",
}
FAULT_KINDS = ("connection", "status", "timeout", "crash", "junk")
STT_FAULT_KINDS = ("connection", "status", "crash", "junk")
CONN_OPTION_FIELDS = {"max_retry", "retry_interval", "timeout"}
CONN_OPTIONS_FIELDS = {"llm_conn_options", "tts_conn_options", "stt_conn_options", "max_unrecoverable_errors"}
STEP_KINDS = {"sleep", "say", "generate_reply", "update_agent", "shutdown", "interrupt"}
SAY_ARGS = {"text", "allow_interruptions", "add_to_chat_ctx"}
REPLY_ARGS = {"user_input", "instructions", "tool_choice", "allow_interruptions", "tools"}
ACTION_ARGS: dict[str, set[str]] = {
    "say": SAY_ARGS,
    "generate_reply": REPLY_ARGS,
    "interrupt": {"force"},
    "update_agent": {"agent"},
    "commit_user_turn": {"transcript_timeout", "skip_reply"},
    "clear_user_turn": set(),
    "update_options": set(SESSION_OPTION_NAMES),
    "shutdown": {"drain"},
    "aclose": set(),
}
SCENARIO_OPTIONS = set(SESSION_OPTION_NAMES) | {"max_unrecoverable_errors"}
# What an action marked as a misuse (``"raises"``) may expect the call to raise.
MISUSE_ERRORS = ("TypeError", "ValueError")


@attrs.frozen(kw_only=True)
class Scenario:
    name: str
    options: dict[str, Any]
    vad: dict[str, float] | None
    stt: bool
    can_pause: bool
    agent: str
    agents: dict[str, dict[str, Any]]
    tools: dict[str, dict[str, Any]]
    user: list[UserSpeech]
    llm: list[LLMResponse]
    tts: list[TTSResponse]
    tts_default_cps: float | None
    actions: list[dict[str, Any]]
    end: dict[str, float]
    expect: list[Any] | None
    raw: dict[str, Any] = attrs.field(repr=False)
    stt_faults: list[Fault] = attrs.Factory(list)
    vad_fail_at: float | None = None
    disconnect_at: float | None = None
    transport_fail_at: float | None = None
    transport_junk_at: tuple[float, ...] = ()
    # The agents speak through a ScriptedRealtimeModel (it hears ``user`` and answers as ``llm``).
    realtime: bool = False


def _validate_step(
    step: Any, field: str, agents: Mapping[str, Any], tools: Sequence[str] = (), options: Mapping[str, Any] = {}
) -> None:
    _expect_type(step, dict, field, "an object with one step")
    if len(step) != 1:
        raise ScenarioError(field, f"a step has exactly one of {sorted(STEP_KINDS)}")
    (kind, value), = step.items()
    where = f"{field}.{kind}"
    if kind not in STEP_KINDS:
        raise ScenarioError(where, "unknown field")
    if kind == "sleep":
        _number(value, where)
    elif kind == "update_agent":
        if _string(value, where) not in agents:
            raise ScenarioError(where, f"no agent named {value!r}")
    else:
        required = {"text"} if kind == "say" else set()
        _call_args(kind, _object(value, where, ACTION_ARGS[kind], required), where, tools=tools, options=options)


def _fault(value: Any, field: str, *, allowed: set[str], kinds: tuple[str, ...] = FAULT_KINDS) -> Fault:
    spec = _object(value, field, allowed)
    kind = _string(spec.get("kind", "connection"), f"{field}.kind")
    if kind not in kinds:
        raise ScenarioError(f"{field}.kind", f"expected one of {', '.join(kinds)}, got {kind!r}")
    extra = {}
    if "raise" in spec:
        if kind != "crash":
            raise ScenarioError(f"{field}.raise", "only a crash raises an exception of its own")
        extra["exception"] = _exception_text(spec["raise"], f"{field}.raise")
    return Fault(
        kind=kind,  # type: ignore[arg-type]
        retryable=_bool(spec.get("retryable", True), f"{field}.retryable"),
        after=_number(spec.get("after", 0.0), f"{field}.after"),
        at=_number(spec.get("at", 0.0), f"{field}.at"),
        **extra,
    )


def _exception_text(value: Any, field: str) -> str:
    if ":" not in _string(value, field):
        raise ScenarioError(field, "expected 'ErrorType: message'")
    return value  # type: ignore[no-any-return]


def _conn_options(value: Any, field: str) -> SessionConnectOptions:
    spec = _object(value, field, CONN_OPTIONS_FIELDS)
    kwargs: dict[str, Any] = {}
    for key, item in spec.items():
        where = f"{field}.{key}"
        if key == "max_unrecoverable_errors":
            kwargs[key] = _checked(check_int, item, where)
            continue
        per_request = _object(item, where, CONN_OPTION_FIELDS)
        kwargs[key] = APIConnectOptions(
            **{
                name: _checked(check_int, v, f"{where}.{name}")
                if name == "max_retry"
                else _number(v, f"{where}.{name}", maximum=math.inf)
                for name, v in per_request.items()
            }
        )
    return SessionConnectOptions(**kwargs)


def load_scenario(data: Any) -> Scenario:
    """Validate scenario data (already parsed from JSON)."""
    top = _object(data, "", TOP_LEVEL)

    options = dict(_object(top.get("options", {}), "options", SCENARIO_OPTIONS))
    for key, value in options.items():
        if key == "conn_options":
            options[key] = _conn_options(value, f"options.{key}")
        elif key == "max_unrecoverable_errors":
            _checked(check_int, value, f"options.{key}")
    _options({k: v for k, v in options.items() if k not in ("conn_options", "max_unrecoverable_errors")}, "options")

    vad = top.get("vad", {})
    if vad is not None:
        vad = _object(vad, "vad", {"min_speech_duration", "min_silence_duration"})
        # The VAD reports every min_speech_duration: it must be positive.
        vad = {
            k: _number(v, f"vad.{k}", minimum=0.001 if k == "min_speech_duration" else 0.0)
            for k, v in vad.items()
        }
    stt = _bool(top.get("stt", True), "stt")
    audio_output = _object(top.get("audio_output", {}), "audio_output", {"can_pause"})
    can_pause = _bool(audio_output.get("can_pause", False), "audio_output.can_pause")

    agents_raw = _object(top.get("agents", {"main": {}}), "agents", set(top.get("agents", {"main": {}})))
    tools_raw = _object(top.get("tools", {}), "tools", set(top.get("tools", {})))
    agents: dict[str, dict[str, Any]] = {}
    for name, spec in agents_raw.items():
        field = f"agents.{name}"
        spec = _object(
            spec, field, {"instructions", "tools", "on_enter", "on_user_turn_completed", "on_exit"}
        )
        _string(spec.get("instructions", ""), f"{field}.instructions")
        for i, tool in enumerate(_list(spec.get("tools", []), f"{field}.tools")):
            if _string(tool, f"{field}.tools[{i}]") not in tools_raw:
                raise ScenarioError(f"{field}.tools[{i}]", f"no tool named {tool!r}")
        for hook in ("on_enter", "on_user_turn_completed", "on_exit"):
            for i, step in enumerate(_list(spec.get(hook, []), f"{field}.{hook}")):
                _validate_step(step, f"{field}.{hook}[{i}]", agents_raw, list(tools_raw), options)
        agents[name] = spec
    agent = _string(top.get("agent", next(iter(agents), "main")), "agent")
    if agent not in agents:
        raise ScenarioError("agent", f"no agent named {agent!r}")

    tools: dict[str, dict[str, Any]] = {}
    for name, spec in tools_raw.items():
        field = f"tools.{name}"
        spec = _object(spec, field, {"description", "parameters", "required", "steps", "result", "raise"})
        _string(spec.get("description", ""), f"{field}.description")
        for param, schema in _object(spec.get("parameters", {}), f"{field}.parameters", set(spec.get("parameters", {}))).items():
            _expect_type(schema, dict, f"{field}.parameters.{param}", "a JSON schema object")
        for i, param in enumerate(_list(spec.get("required", []), f"{field}.required")):
            if _string(param, f"{field}.required[{i}]") not in spec.get("parameters", {}):
                raise ScenarioError(f"{field}.required[{i}]", f"no parameter named {param!r}")
        for i, step in enumerate(_list(spec.get("steps", []), f"{field}.steps")):
            _validate_step(step, f"{field}.steps[{i}]", agents, list(tools_raw), options)
        if "raise" in spec:
            _exception_text(spec["raise"], f"{field}.raise")
        result = spec.get("result")
        if isinstance(result, dict):
            _object(result, f"{field}.result", {"handoff"}, {"handoff"})
            if result["handoff"] not in agents:
                raise ScenarioError(f"{field}.result.handoff", f"no agent named {result['handoff']!r}")
        elif result is not None:
            _string(result, f"{field}.result")
        tools[name] = spec

    user: list[UserSpeech] = []
    for i, item in enumerate(_list(top.get("user", []), "user")):
        field = f"user[{i}]"
        item = _object(item, field, {"start", "end", "transcript", "stt_delay", "final"}, {"start", "end"})
        start, end = _number(item["start"], f"{field}.start"), _number(item["end"], f"{field}.end")
        if end < start:
            raise ScenarioError(f"{field}.end", f"ends at {end} before it starts at {start}")
        user.append(
            UserSpeech(
                start=start,
                end=end,
                transcript=_string(item.get("transcript", ""), f"{field}.transcript"),
                stt_delay=_number(item.get("stt_delay", 0.2), f"{field}.stt_delay"),
                final=_bool(item.get("final", True), f"{field}.final"),
            )
        )
    try:
        from .scripted import _sorted_speeches

        _sorted_speeches(user)
    except ValueError as error:
        raise ScenarioError("user", str(error)) from None

    llm: list[LLMResponse] = []
    for i, item in enumerate(_list(top.get("llm", []), "llm")):
        field = f"llm[{i}]"
        item = _object(item, field, {"input", "content", "tool_calls", "ttft", "duration", "error"}, {"input"})
        calls = []
        for j, call in enumerate(_list(item.get("tool_calls", []), f"{field}.tool_calls")):
            cfield = f"{field}.tool_calls[{j}]"
            call = _object(call, cfield, {"name", "arguments", "call_id"}, {"name"})
            arguments = call.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(_expect_type(arguments, dict, f"{cfield}.arguments", "an object or a string"))
            calls.append(
                ToolCall(
                    name=_string(call["name"], f"{cfield}.name"),
                    arguments=arguments,
                    call_id=_string(call.get("call_id", f"call_{i}_{j}"), f"{cfield}.call_id"),
                )
            )
        llm.append(
            LLMResponse(
                input=_string(item["input"], f"{field}.input"),
                content=_string(item.get("content", ""), f"{field}.content"),
                tool_calls=tuple(calls),
                ttft=_number(item.get("ttft", 0.1), f"{field}.ttft"),
                duration=_number(item.get("duration", 0.3), f"{field}.duration"),
                error=None
                if item.get("error") is None
                else _fault(item["error"], f"{field}.error", allowed={"kind", "retryable", "after", "raise"}),
            )
        )

    tts: list[TTSResponse] = []
    for i, item in enumerate(_list(top.get("tts", []), "tts")):
        field = f"tts[{i}]"
        item = _object(item, field, {"input", "audio_duration", "ttfb", "duration", "error"}, {"input", "audio_duration"})
        tts.append(
            TTSResponse(
                input=_string(item["input"], f"{field}.input"),
                audio_duration=_number(item["audio_duration"], f"{field}.audio_duration"),
                ttfb=_number(item.get("ttfb", 0.2), f"{field}.ttfb"),
                duration=_number(item.get("duration", 0.3), f"{field}.duration"),
                error=None
                if item.get("error") is None
                else _fault(item["error"], f"{field}.error", allowed={"kind", "retryable", "after", "raise"}),
            )
        )
    cps = top.get("tts_default_chars_per_second")
    if cps is not None:
        cps = _number(cps, "tts_default_chars_per_second", minimum=1e-9)

    actions = []
    for i, item in enumerate(_list(top.get("actions", []), "actions")):
        field = f"actions[{i}]"
        item = _object(item, field, {"at", "call", "args", "raises"}, {"at", "call"})
        _number(item["at"], f"{field}.at")
        call = _string(item["call"], f"{field}.call")
        if call not in ACTION_ARGS:
            raise ScenarioError(f"{field}.call", f"unknown call {call!r}; one of {sorted(ACTION_ARGS)}")
        args = _object(item.get("args", {}), f"{field}.args", ACTION_ARGS[call])
        if call == "update_agent" and "raises" not in item:
            if "agent" not in args or args["agent"] not in agents:
                raise ScenarioError(f"{field}.args.agent", "expected the name of an agent")
        if call == "say" and "text" not in args:
            raise ScenarioError(f"{field}.args.text", "missing required field")
        action = {"at": float(item["at"]), "call": call, "args": args}
        if "raises" in item:
            # A deliberate misuse: the arguments are the wrong ones on purpose,
            # and the call must refuse them with this error.
            action["raises"] = _string(item["raises"], f"{field}.raises")
            if action["raises"] not in MISUSE_ERRORS:
                raise ScenarioError(f"{field}.raises", f"expected one of {', '.join(MISUSE_ERRORS)}")
        else:
            _call_args(call, args, f"{field}.args", tools=list(tools), options=options)
        actions.append(action)

    end = _object(top.get("end", {"drain_after_last_user": 5.0}), "end", {"drain_after_last_user", "at"})
    if len(end) != 1:
        raise ScenarioError("end", "expected exactly one of drain_after_last_user, at")
    end = {k: _number(v, f"end.{k}") for k, v in end.items()}

    expect = top.get("expect")
    if expect is not None:
        _list(expect, "expect")

    faults = _object(top.get("faults", {}), "faults", {"stt", "vad", "transport"})
    stt_faults = [
        _fault(item, f"faults.stt[{i}]", allowed={"at", "kind", "retryable", "raise"}, kinds=STT_FAULT_KINDS)
        for i, item in enumerate(_list(faults.get("stt", []), "faults.stt"))
    ]
    vad_fail_at = None
    if faults.get("vad") is not None:
        vad_spec = _object(faults["vad"], "faults.vad", {"at"}, {"at"})
        vad_fail_at = _number(vad_spec["at"], "faults.vad.at")
    disconnect_at = transport_fail_at = None
    transport_junk_at: list[float] = []
    if faults.get("transport") is not None:
        transport_spec = _object(faults["transport"], "faults.transport", {"disconnect_at", "fail_at", "junk_at"})
        if not transport_spec:
            raise ScenarioError("faults.transport", "expected disconnect_at, fail_at or junk_at")
        if "disconnect_at" in transport_spec:
            disconnect_at = _number(transport_spec["disconnect_at"], "faults.transport.disconnect_at")
        if "fail_at" in transport_spec:
            transport_fail_at = _number(transport_spec["fail_at"], "faults.transport.fail_at")
        transport_junk_at = [
            _number(t, f"faults.transport.junk_at[{i}]")
            for i, t in enumerate(_list(transport_spec.get("junk_at", []), "faults.transport.junk_at"))
        ]

    return Scenario(
        name=_string(top.get("name", "scenario"), "name"),
        options=options,
        vad=vad,
        stt=stt,
        can_pause=can_pause,
        agent=agent,
        agents=agents,
        tools=tools,
        user=user,
        llm=llm,
        tts=tts,
        tts_default_cps=cps,
        actions=actions,
        end=end,
        expect=expect,
        raw=top,
        stt_faults=stt_faults,
        vad_fail_at=vad_fail_at,
        disconnect_at=disconnect_at,
        transport_fail_at=transport_fail_at,
        transport_junk_at=tuple(transport_junk_at),
        realtime=_bool(top.get("realtime", False), "realtime"),
    )


# ---------------------------------------------------------------------------
# playing a scenario
# ---------------------------------------------------------------------------


class PlayObserver:
    """Hooks for a harness that watches a scenario being played.

    Every method is optional to override; the defaults do nothing. Times are
    trio times (``origin`` is the scenario's t = 0).
    """

    #: virtual seconds after the scenario's last scripted moment before a run
    #: that has not closed is given up on (None: wait forever)
    time_limit: float | None = None

    def on_session(self, session: AgentSession, transport: ScriptedTransport) -> None:
        """Called in the task that runs ``session.main``, just before it starts."""

    def on_start(self, session: AgentSession, transport: ScriptedTransport, origin: float) -> None:
        """The agent is listening; ``origin`` is the scenario's t = 0."""

    def on_call(self, call: str, args: Mapping[str, Any], result: Any) -> None:
        """The scenario made an API call (an action or a hook/tool step)."""

    def on_call_failed(self, call: str, args: Mapping[str, Any], error: BaseException) -> None:
        pass

    def on_tool_started(self, name: str, arguments: Mapping[str, Any]) -> None:
        """A scenario tool began to run."""

    def on_wait(self, call: str, waiting: bool) -> None:
        """An awaited API call (``aclose``, the end's ``drain``) began or returned."""

    def on_main_returned(self, error: BaseException | None) -> None:
        pass

    async def settle(self) -> None:
        """Called once ``session.main`` has returned, before the run is torn down."""

    def on_gave_up(self) -> None:
        """The run passed ``time_limit`` without closing; it is being cancelled."""


class _Director:
    """Builds the agents and tools of a scenario and runs its steps.

    ``agents`` replaces scenario agents by name with the application's own
    (a factory per name), so a harness can drive real agent code.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        agents: Mapping[str, Callable[[], Agent]] | None = None,
        observer: PlayObserver | None = None,
    ) -> None:
        self.scenario = scenario
        self.session: AgentSession | None = None
        self.observer = observer
        self.agents: dict[str, Agent] = {}
        self.tools = {name: self._tool(name, spec) for name, spec in scenario.tools.items()}
        for name, spec in scenario.agents.items():
            if agents is not None and name in agents:
                self.agents[name] = agents[name]()
            else:
                self.agents[name] = self._agent(name, spec)

    def _called(self, call: str, args: Mapping[str, Any], result: Any) -> Any:
        if self.observer is not None:
            self.observer.on_call(call, args, result)
        return result

    async def run_steps(self, steps: list[dict[str, Any]]) -> None:
        session = self.session
        assert session is not None
        for step in steps:
            (kind, value), = step.items()
            if kind == "sleep":
                await trio.sleep(value)
            elif kind == "say":
                self._called("say", value, session.say(**value))
            elif kind == "generate_reply":
                self._called("generate_reply", value, session.generate_reply(**value))
            elif kind == "update_agent":
                self._called("update_agent", {"agent": value}, session.update_agent(self.agents[value]))
            elif kind == "shutdown":
                self._called("shutdown", value, session.shutdown(drain=value.get("drain", True)))
            elif kind == "interrupt":
                self._called("interrupt", value, session.interrupt(force=value.get("force", False)))

    def _tool(self, name: str, spec: dict[str, Any]) -> FunctionTool:
        director = self

        async def run(**arguments: Any) -> Any:
            if director.observer is not None:
                director.observer.on_tool_started(name, arguments)
            await director.run_steps(spec.get("steps", []))
            if "raise" in spec:
                raise exception_from(spec["raise"])
            result = spec.get("result")
            if isinstance(result, dict):
                return director.agents[result["handoff"]]
            if isinstance(result, str):
                try:
                    return result.format(**arguments)
                except (KeyError, IndexError, ValueError):
                    return result
            return None

        return FunctionTool.raw(
            name=name,
            description=spec.get("description", ""),
            parameters={
                "properties": spec.get("parameters", {}),
                "required": spec.get("required", []),
            },
            function=run,
        )

    def _agent(self, name: str, spec: dict[str, Any]) -> Agent:
        director = self

        class ScenarioAgent(Agent):
            async def on_enter(self) -> None:
                await director.run_steps(spec.get("on_enter", []))

            async def on_exit(self) -> None:
                await director.run_steps(spec.get("on_exit", []))

            async def on_user_turn_completed(self, turn_ctx: Any, new_message: Any) -> None:
                await director.run_steps(spec.get("on_user_turn_completed", []))

        return ScenarioAgent(
            id=name,
            instructions=spec.get("instructions", ""),
            tools=[self.tools[tool] for tool in spec.get("tools", [])],
        )

    def build_session(self) -> AgentSession:
        scenario = self.scenario
        options = dict(scenario.options)
        max_errors = options.pop("max_unrecoverable_errors", None)
        if max_errors is not None:
            conn_options = options.get("conn_options", SessionConnectOptions())
            options["conn_options"] = attrs.evolve(conn_options, max_unrecoverable_errors=int(max_errors))
        vad = None
        if scenario.vad is not None:
            vad = ScriptedVAD(scenario.user, **scenario.vad, fail_at=scenario.vad_fail_at)
        if scenario.realtime:
            from .scripted_realtime import ScriptedRealtimeModel

            self.session = AgentSession(
                llm=ScriptedRealtimeModel(scenario.user, scenario.llm),
                tts=ScriptedTTS(scenario.tts, default_chars_per_second=scenario.tts_default_cps),
                **options,
            )
            return self.session
        self.session = AgentSession(
            vad=vad,
            stt=ScriptedSTT(scenario.user, faults=scenario.stt_faults) if scenario.stt else None,
            llm=ScriptedLLM(scenario.llm),
            tts=ScriptedTTS(scenario.tts, default_chars_per_second=scenario.tts_default_cps),
            **options,
        )
        return self.session

    async def act(self, action: dict[str, Any]) -> None:
        session = self.session
        assert session is not None
        call, args = action["call"], dict(action["args"])
        if call == "say":
            result: Any = session.say(**args)
        elif call == "generate_reply":
            result = session.generate_reply(**args)
        elif call == "interrupt":
            result = session.interrupt(**args)
        elif call == "update_agent":
            # A misuse passes what the file says (not an agent's name) as it is.
            agent = args.get("agent") if "raises" in action else self.agents[args["agent"]]
            result = session.update_agent(agent)
        elif call == "commit_user_turn":
            result = session.commit_user_turn(**args)
        elif call == "clear_user_turn":
            result = session.clear_user_turn()
        elif call == "update_options":
            result = session.update_options(**args)
        elif call == "shutdown":
            result = session.shutdown(**args)
        else:
            assert call == "aclose"
            self._called(call, args, None)  # reported when made: it returns only after the close
            if self.observer is not None:
                self.observer.on_wait("aclose", True)
            try:
                await session.aclose()
            finally:
                if self.observer is not None:
                    self.observer.on_wait("aclose", False)
            return
        self._called(call, args, result)


def event_line(event: Event, origin: float) -> dict[str, Any]:
    return {
        "t": round(event.created_at - origin, 3),
        "seq": event.seq,
        "event": event.type,
        **event.payload(),
    }


# The metrics kinds docs/scenario-format.md names for the output; voxtrio's other kinds
# (``preemptive``) are on the events API, and in a timeline only when asked for.
TIMELINE_METRICS = frozenset({"eou", "llm", "tts", "stt"})


# Virtual seconds after a scenario's last scripted moment before a session that
# has not closed is given up on (a hang must not make a replay run forever).
PLAY_TIME_LIMIT = 300.0


def last_scripted_moment(scenario: Scenario) -> float:
    """The latest time the script mentions (speech, actions, faults, the end)."""
    moments = [0.0, *(speech.end + speech.stt_delay for speech in scenario.user)]
    moments += [action["at"] for action in scenario.actions]
    moments += [fault.at for fault in scenario.stt_faults]
    moments += [t for t in (scenario.vad_fail_at, scenario.disconnect_at, scenario.transport_fail_at) if t is not None]
    moments += list(scenario.transport_junk_at)
    if "at" in scenario.end:
        moments.append(scenario.end["at"])
    else:
        finals = [s.end + s.stt_delay for s in scenario.user if s.transcript and s.final]
        moments.append(max(finals, default=0.0) + scenario.end["drain_after_last_user"])
    return max(moments)


async def play(
    scenario: Scenario,
    *,
    on_line: Callable[[dict[str, Any]], None] | None = None,
    observer: PlayObserver | None = None,
    agents: Mapping[str, Callable[[], Agent]] | None = None,
    all_metrics: bool = False,
) -> list[dict[str, Any]]:
    """Play ``scenario`` on the current (virtual) clock and return its timeline.

    The timeline lists the session's events as they were emitted, ``seq``
    increasing down the lines. Of the ``metrics_collected`` events it lists
    the kinds the format names (:data:`TIMELINE_METRICS`) unless
    ``all_metrics`` (voxtrio's own kinds too, such as ``preemptive``).
    ``agents`` replaces scenario agents by name (factories of the application's
    own agents); ``observer`` watches the run (see :class:`PlayObserver`).
    """
    director = _Director(scenario, agents=agents, observer=observer)
    session = director.build_session()
    transport = ScriptedTransport(
        can_pause=scenario.can_pause,
        disconnect_at=scenario.disconnect_at,
        fail_at=scenario.transport_fail_at,
        junk_at=scenario.transport_junk_at,
    )
    lines: list[dict[str, Any]] = []
    origin = trio.current_time()

    def record(line: dict[str, Any]) -> None:
        lines.append(line)
        if on_line is not None:
            on_line(line)

    def on_event(event: Event) -> None:
        if all_metrics or not isinstance(event, MetricsCollected) or event.kind in TIMELINE_METRICS:
            record(event_line(event, origin))

    session.on("*", on_event)

    async def act(item: dict[str, Any]) -> None:
        try:
            await director.act(item)
        except (RuntimeError, TypeError, ValueError) as error:
            if observer is not None:
                observer.on_call_failed(item["call"], item["args"], error)
            record(
                {
                    "t": round(trio.current_time() - origin, 3),
                    "event": "action_failed",
                    "call": item["call"],
                    "error": f"{type(error).__name__}: {error}",
                }
            )

    async def actions(nursery: trio.Nursery) -> None:
        # In time order, and in file order at the same time. Only aclose waits
        # (for the whole close), so it runs on its own.
        for item in sorted(scenario.actions, key=lambda a: a["at"]):
            # Actions at the same instant run back to back, without a checkpoint.
            if origin + item["at"] > trio.current_time():
                await trio.sleep_until(origin + item["at"])
            if item["call"] == "aclose":
                nursery.start_soon(act, item)
            else:
                await act(item)

    async def finish() -> None:
        if "at" in scenario.end:
            await trio.sleep_until(origin + scenario.end["at"])
        else:
            finals = [s.end + s.stt_delay for s in scenario.user if s.transcript and s.final]
            last = max(finals, default=0.0)
            await trio.sleep_until(origin + last + scenario.end["drain_after_last_user"])
            if observer is not None:
                observer.on_wait("drain", True)
            try:
                await session.drain()
            except RuntimeError:
                pass  # not running any more: the session already closed (a hang-up, an error)
            finally:
                if observer is not None:
                    observer.on_wait("drain", False)
        if observer is not None:
            observer.on_wait("aclose", True)
        try:
            await session.aclose()
        finally:
            if observer is not None:
                observer.on_wait("aclose", False)

    main_done = trio.Event()

    async def run_main(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        error: BaseException | None = None
        if observer is not None:
            observer.on_session(session, transport)
        try:
            await session.main(director.agents[scenario.agent], transport, task_status=task_status)
        except Exception as exc:
            if observer is None:
                raise
            error = exc
        finally:
            main_done.set()
        if observer is not None:
            observer.on_main_returned(error)

    events = session.events()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_main)
        origin = trio.current_time()
        if observer is not None:
            observer.on_start(session, transport, origin)
        nursery.start_soon(actions, nursery)
        nursery.start_soon(finish)
        # A session that never closes is given up on (virtual time is free, but
        # a replay must end): the timeline then says so.
        patience = PLAY_TIME_LIMIT if observer is None else observer.time_limit
        limit = math.inf if patience is None else origin + last_scripted_moment(scenario) + patience
        with trio.move_on_at(limit) as waiting:
            async with events:
                async for _ in events:
                    pass  # the subscription ends with the session's close event
            if observer is not None:
                # session.main must return on its own once it has closed, and
                # whatever the application awaited must return after it.
                await main_done.wait()
                await observer.settle()
        if waiting.cancelled_caught:
            record(
                {
                    "t": round(trio.current_time() - origin, 3),
                    "event": "gave_up",
                    "reason": f"the session had not closed {patience:g} s after the script's last moment",
                }
            )
            if observer is not None:
                observer.on_gave_up()
        nursery.cancel_scope.cancel()
    record({"event": "history", "items": session.history.to_dicts()})
    return lines


def run_scenario(
    scenario: Scenario,
    *,
    on_line: Callable[[dict[str, Any]], None] | None = None,
    seed: int = 0,
    all_metrics: bool = False,
) -> list[dict[str, Any]]:
    """Play ``scenario`` in a fresh trio run on a MockClock, deterministically.

    ``seed`` picks the order in which trio runs tasks that wake at the same
    instant; a correct runtime does the same things at each instant for every
    seed (independent actors finishing at one instant may report in either
    order). ``all_metrics``: see :func:`play`.
    """
    with seeded_trio_scheduler(seed):
        clock = trio.testing.MockClock(autojump_threshold=0)
        return trio.run(
            lambda: play(scenario, on_line=on_line, all_metrics=all_metrics), clock=clock
        )


@contextlib.contextmanager
def seeded_trio_scheduler(seed: int) -> Iterator[None]:
    """Make trio run simultaneous tasks in an order fixed by ``seed``.

    trio shuffles tasks that become runnable at the same instant with a
    private RNG, in an order that also depends on memory addresses (timers
    due at the same instant fire in ``id()`` order). Its hypothesis mode sorts
    each batch by task creation first; using that mode with a seeded RNG makes
    a replay byte-identical wherever it runs (command line or test suite).
    Private API: ignored if trio changes it.
    """
    try:
        from trio._core import _run
    except ImportError:  # pragma: no cover - a future trio
        yield
        return
    saved_mode = getattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING", False)
    saved_state = _run._r.getstate()
    _run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    _run._r.seed(seed)
    try:
        yield
    finally:
        _run._ALLOW_DETERMINISTIC_SCHEDULING = saved_mode  # type: ignore[misc]
        _run._r.setstate(saved_state)


def compare_expected(lines: list[dict[str, Any]], expected: list[Any]) -> str | None:
    """The first difference between a timeline and an ``expect`` list, or None.

    Entries are compared by position; each expected entry checks only the keys
    it names (recursively for objects; lists compare element by element).
    """

    def matches(actual: Any, wanted: Any, path: str) -> str | None:
        if isinstance(wanted, dict):
            if not isinstance(actual, dict):
                return f"{path}: expected an object, got {json.dumps(actual)}"
            for key, value in wanted.items():
                if key not in actual:
                    return f"{path}.{key}: missing (expected {json.dumps(value)})"
                problem = matches(actual[key], value, f"{path}.{key}")
                if problem:
                    return problem
            return None
        if isinstance(wanted, list):
            if not isinstance(actual, list) or len(actual) != len(wanted):
                return f"{path}: expected {json.dumps(wanted)}, got {json.dumps(actual)}"
            for index, (a, w) in enumerate(zip(actual, wanted)):
                problem = matches(a, w, f"{path}[{index}]")
                if problem:
                    return problem
            return None
        if isinstance(wanted, float) or isinstance(actual, float):
            if not isinstance(actual, (int, float)) or abs(actual - wanted) > 1e-9:
                return f"{path}: expected {json.dumps(wanted)}, got {json.dumps(actual)}"
            return None
        if actual != wanted:
            return f"{path}: expected {json.dumps(wanted)}, got {json.dumps(actual)}"
        return None

    for index, wanted in enumerate(expected):
        if index >= len(lines):
            return f"line {index + 1}: expected {json.dumps(wanted)}, but the output ended"
        problem = matches(lines[index], wanted, f"line {index + 1}")
        if problem:
            return problem
    if len(lines) > len(expected):
        return f"line {len(expected) + 1}: unexpected extra output {json.dumps(lines[len(expected)])}"
    return None
