"""Hypothesis strategies that generate whole conversations as scenario data.

Every strategy here draws plain JSON-ready dicts that :func:`load_scenario`
accepts (``docs/scenario-format.md`` plus the documented extensions: provider
faults and ``options.conn_options``), so a failing example is a scenario file
that ``voxtrio scenario run`` replays. Times are drawn on a 0.05 s or 0.1 s
grid and every choice shrinks towards "absent" or the plainest value, so a
shrunk conversation reads like a hand-written one.

The pieces compose: :func:`conversations` draws options, agents and tools,
a user speech schedule (:func:`user_speech`), an LLM script answering what
the conversation can ask it, TTS durations and faults, application actions
at random times (:func:`actions`) and an end. A property test for your own
agent::

    from hypothesis import given
    from voxtrio.testing.strategies import conversations
    from voxtrio.testing.invariants import check_conversation

    @given(conversations(agent_tools={"get_weather": st.fixed_dictionaries({"city": st.sampled_from(["Paris"])})}))
    def test_my_agent_keeps_the_invariants(conversation):
        check_conversation(conversation, agents={"main": MyAgent})
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

from hypothesis import strategies as st

from ..tools import INTERNAL_ERROR

# The user says these (each a distinct final transcript).
USER_PHRASES = (
    "Hello there.",
    "What's the weather in Paris?",
    "Tell me a story.",
    "Can you check my order?",
    "Stop!",
    "I need to talk to billing.",
    "Thanks, that's all.",
    "What time do you open tomorrow?",
    "Book a table for two please.",
    "Hang up now.",
)
# A long monologue: more words than a turn usually has.
MONOLOGUE = (
    "So what happened was that I ordered the blue one last week and it never came, "
    "and then I called twice and nobody could tell me where it is."
)
# Typed input (generate_reply(user_input=...)): never what the user says aloud.
TYPED_INPUTS = ("typed: hi", "typed: where is my parcel", "typed: cancel that")
INSTRUCTIONS = ("greet the user", "say goodbye to the user", "tell the user a fun fact")
REPLIES = (
    "Sure.",
    "Let me check that for you.",
    "Here is a long story about a fox who walked all the way to the sea and back again.",
    "The weather in Paris is mild today.",
    "Your order is on its way.",
    "Goodbye, have a nice day.",
    "One moment please.",
)
SAY_TEXTS = ("Welcome!", "Please hold on.", "This call may be recorded for quality purposes.")
CITIES = ("Paris", "Tokyo")
TOOL_CHOICE_NONE_OUTPUT = "tool calls are not allowed in this step (tool_choice is 'none')"


def seconds(low: float, high: float, step: float = 0.1) -> st.SearchStrategy[float]:
    """A time on a ``step`` grid, shrinking towards ``low``."""
    lo, hi = round(low / step), round(high / step)
    return st.integers(lo, hi).map(lambda k: round(k * step, 3))


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def _compact(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Drop absent (None) entries: an absent option takes the library default."""
    return {k: v for k, v in mapping.items() if v is not None}


# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------


_DEFAULT = object()


def _maybe(*values: Any) -> st.SearchStrategy[Any]:
    """The library default (left out of the scenario) or one of ``values``."""
    return st.sampled_from((_DEFAULT, *values))


@st.composite
def option_sets(draw: Any, *, faults: bool = True) -> dict[str, Any]:
    """``AgentSession`` options; each is absent (the default) unless drawn."""
    options = {
        "allow_interruptions": draw(_maybe(False, True)),
        "min_interruption_duration": draw(_maybe(0.2, 1.0, 0.0)),
        "min_interruption_words": draw(_maybe(1, 3)),
        "min_endpointing_delay": draw(_maybe(0.2, 1.0, 0.0)),
        "false_interruption_timeout": draw(_maybe(0.5, None)),
        "resume_false_interruption": draw(_maybe(False)),
        "min_consecutive_speech_delay": draw(_maybe(0.5, 1.5)),
        "max_tool_steps": draw(_maybe(1, 0, 2)),
        "user_away_timeout": draw(_maybe(3.0, None)),
        "discard_audio_if_uninterruptible": draw(_maybe(False)),
        "preemptive_generation": draw(_maybe(True)),
        "close_timeout": draw(_maybe(1.0, 3.0, 0.5)),
        "turn_detection": draw(_maybe("vad", "stt", "manual")),
        "aec_warmup_duration": draw(_maybe(1.0)),
        "transcription_timeout": draw(_maybe(1.0)),
        "user_turn_max_words": draw(_maybe(4)),
        "user_turn_max_duration": draw(_maybe(3.0)),
    }
    if faults:
        options["max_unrecoverable_errors"] = draw(_maybe(0, 1))
    return {k: v for k, v in options.items() if v is not _DEFAULT}


@st.composite
def conn_options(draw: Any) -> dict[str, Any]:
    """Short retry budgets, so provider faults play out in a few virtual seconds."""

    def per_request() -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {
                "max_retry": st.sampled_from([1, 0, 3]),
                "retry_interval": st.sampled_from([0.5, 0.1, 1.0]),
                "timeout": st.sampled_from([2.0, 1.0, 4.0]),
            }
        )

    return {
        "llm_conn_options": draw(per_request()),
        "tts_conn_options": draw(per_request()),
        "stt_conn_options": draw(per_request()),
    }


# ---------------------------------------------------------------------------
# the user
# ---------------------------------------------------------------------------


@st.composite
def user_speech(draw: Any, *, max_turns: int = 5, phrases: Sequence[str] = USER_PHRASES) -> list[dict[str, Any]]:
    """A schedule of user speech: ordinary turns, coughs (VAD-only sound),
    long monologues and rapid back-and-forth, never overlapping each other."""
    kinds = draw(
        st.lists(st.sampled_from(["turn", "cough", "quick", "turn", "monologue"]), max_size=max_turns)
    )
    speeches = []
    t = draw(seconds(0.2, 3.0))
    unused = list(phrases)
    for kind in kinds:
        if kind == "cough":
            length = draw(seconds(0.1, 1.2, 0.05))  # long enough, noise interrupts
            transcript = ""
        elif kind == "monologue":
            length = draw(seconds(5.0, 10.0, 0.5))
            transcript = MONOLOGUE
        else:
            length = draw(seconds(0.5, 3.0) if kind == "turn" else seconds(0.3, 1.0))
            transcript = draw(st.sampled_from(unused)) if unused else draw(st.sampled_from(phrases))
            if transcript in unused:
                unused.remove(transcript)
        speech: dict[str, Any] = {"start": t, "end": round(t + length, 3), "transcript": transcript}
        if transcript:
            stt_delay = draw(st.sampled_from([0.2, 0.05, 0.5, 1.0]))
            if stt_delay != 0.2:
                speech["stt_delay"] = stt_delay
            if draw(st.integers(0, 5)) == 1:
                speech["final"] = False
        speeches.append(speech)
        gap = draw(seconds(0.1, 0.8) if kind == "quick" else seconds(0.3, 5.0))
        t = round(speech["end"] + gap, 3)
    return speeches


# ---------------------------------------------------------------------------
# tools and agents
# ---------------------------------------------------------------------------


@st.composite
def tool_specs(draw: Any, *, handoff_to: str | None) -> dict[str, dict[str, Any]]:
    """A few tools: valid, slow, raising, refusing, silent, hand-off, hang-up, chatty."""
    tools: dict[str, dict[str, Any]] = {}
    slow = draw(st.sampled_from([0.0, 0.5, 2.0, 6.0, 15.0]))
    tools["lookup"] = {
        "description": "Look up the weather in a city.",
        "parameters": {"city": {"type": "string"}},
        "required": ["city"],
        "result": "It is sunny in {city}.",
    }
    if slow:
        tools["lookup"]["steps"] = [{"sleep": slow}]
    names = draw(
        st.lists(
            st.sampled_from(["broken", "refuse", "note", "transfer", "hangup", "chatty"]),
            unique=True,
            max_size=3,
        )
    )
    for name in names:
        if name == "broken":
            tools[name] = {"description": "Always crashes.", "raise": "RuntimeError: the database is down"}
        elif name == "refuse":
            tools[name] = {"description": "Refuses.", "raise": "ToolError: not allowed"}
        elif name == "note":
            tools[name] = {"description": "Takes a note; needs no reply.", "result": None}
        elif name == "transfer" and handoff_to is not None:
            tools[name] = {"description": "Transfer the call.", "result": {"handoff": handoff_to}}
        elif name == "hangup":
            drain = draw(st.booleans())
            tools[name] = {
                "description": "End the call.",
                "steps": [{"shutdown": {"drain": drain}}],
                "result": None,
            }
        elif name == "chatty":
            tools[name] = {
                "description": "Talks while it works.",
                "steps": [{"say": {"text": "Still working on it."}}, {"sleep": draw(seconds(0.0, 3.0, 0.5))}],
                "result": "All done.",
            }
    return tools


def _steps(kinds: Sequence[str]) -> st.SearchStrategy[list[dict[str, Any]]]:
    choices: list[st.SearchStrategy[dict[str, Any]]] = []
    if "say" in kinds:
        choices.append(st.builds(lambda text: {"say": {"text": text}}, st.sampled_from(SAY_TEXTS)))
    if "generate_reply" in kinds:
        choices.append(
            st.builds(lambda i: {"generate_reply": {"instructions": i}}, st.sampled_from(INSTRUCTIONS))
        )
    if "sleep" in kinds:
        choices.append(st.builds(lambda s: {"sleep": s}, seconds(0.1, 2.0)))
    return st.lists(st.one_of(choices), max_size=2)


@st.composite
def agent_specs(draw: Any, *, tools: Sequence[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"instructions": "You are a helpful assistant."}
    chosen = draw(st.lists(st.sampled_from(list(tools)), unique=True)) if tools else []
    if chosen:
        spec["tools"] = sorted(chosen)
    for hook, kinds in (
        ("on_enter", ("say", "generate_reply")),
        ("on_user_turn_completed", ("say", "sleep")),
        ("on_exit", ("say",)),
    ):
        steps = draw(_steps(kinds))
        if steps:
            spec[hook] = steps
    return spec


# ---------------------------------------------------------------------------
# the LLM and the TTS
# ---------------------------------------------------------------------------


# What a provider with a bug raises (a "crash" fault): anything but an APIError.
ARBITRARY_EXCEPTIONS = (
    "ValueError: unexpected value in the response",
    "KeyError: choices",
    "TypeError: 'NoneType' object is not subscriptable",
    "RuntimeError: the engine stopped",
    "ZeroDivisionError: division by zero",
    "AssertionError: internal check failed",
)


def provider_fault(
    kind_after: st.SearchStrategy[float], *, hostile: bool = False
) -> st.SearchStrategy[dict[str, Any]]:
    """A scripted provider fault (an LLM or TTS entry's ``error``): a dropped
    connection, an error status or a stall, after ``kind_after`` of output;
    ``hostile`` adds a crash (an arbitrary exception) and junk (output of the
    wrong type)."""
    kinds = ["crash", "junk", "connection", "status", "timeout"] if hostile else ["connection", "status", "timeout"]
    return st.builds(
        lambda kind, retryable, after, exception: _compact(
            {
                "kind": kind,
                "retryable": None if retryable or kind in ("crash", "junk") else False,
                "after": after or None,
                "raise": exception if kind == "crash" else None,
            }
        ),
        st.sampled_from(kinds),
        st.booleans(),
        kind_after,
        st.sampled_from(ARBITRARY_EXCEPTIONS),
    )


@st.composite
def tool_calls(draw: Any, *, tools: Sequence[str], ids: Any) -> list[dict[str, Any]]:
    """Tool calls as an LLM would make them: valid, unknown, malformed arguments."""
    names = list(tools) + ["nope"]
    calls = []
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(names))
        if name == "lookup":
            arguments: Any = draw(
                st.sampled_from(
                    [{"city": city} for city in CITIES] + [{"city": 5}, {}, '{"city": "Par']
                )
            )
        else:
            arguments = {}
        calls.append({"name": name, "arguments": arguments, "call_id": f"call_{next(ids)}"})
    return calls


@st.composite
def llm_responses(
    draw: Any, inputs: Sequence[str], *, tools: Sequence[str], faults: bool, ids: Any, hostile: bool = False
) -> list[dict[str, Any]]:
    """What the LLM answers to each input it may see (some inputs get nothing:
    an empty reply)."""
    script = []
    for text in inputs:
        if draw(st.integers(0, 4)) == 0:
            continue
        if faults and draw(st.integers(0, 2 if hostile else 5)) == 0:
            failing = {"input": text, "content": draw(st.sampled_from(REPLIES))}
            failing["error"] = draw(provider_fault(st.integers(0, 30), hostile=hostile))
            script.append(failing)
        entry: dict[str, Any] = {"input": text}
        content = draw(st.sampled_from(("",) + REPLIES))
        if content:
            entry["content"] = content
        calls = draw(tool_calls(tools=tools, ids=ids)) if tools else []
        if calls:
            entry["tool_calls"] = calls
        ttft = draw(st.sampled_from([0.1, 0.05, 0.5, 1.0]))
        duration = round(ttft + draw(st.sampled_from([0.2, 0.5, 1.5])), 3)
        if ttft != 0.1 or duration != 0.3:
            entry["ttft"], entry["duration"] = ttft, duration
        script.append(entry)
    return script


@st.composite
def tts_entries(draw: Any, texts: Sequence[str], *, faults: bool, hostile: bool = False) -> list[dict[str, Any]]:
    """Explicit TTS answers for some texts (the rest use the default pace):
    long audio, a slow first byte, or a failure after some audio."""
    entries = []
    for text in texts:
        choice = draw(st.sampled_from(["default", "default", "long", "slow", "fail"] + ["fail"] * hostile))
        if choice == "long":
            entries.append({"input": text, "audio_duration": draw(seconds(4.0, 12.0, 1.0))})
        elif choice == "slow":
            entries.append({"input": text, "audio_duration": 2.0, "ttfb": draw(seconds(0.5, 2.0, 0.5))})
        elif choice == "fail" and faults:
            entries.append(
                {
                    "input": text,
                    "audio_duration": 3.0,
                    "error": draw(provider_fault(seconds(0.0, 3.0, 0.5), hostile=hostile)),
                }
            )
    return entries


# ---------------------------------------------------------------------------
# the application
# ---------------------------------------------------------------------------


@st.composite
def actions(
    draw: Any, *, until: float, agents: Sequence[str], max_size: int = 4
) -> list[dict[str, Any]]:
    """Public API calls at random times."""
    calls = ["say", "generate_reply", "interrupt", "typed_reply", "commit_user_turn",
             "clear_user_turn", "update_options", "shutdown", "aclose"]
    if len(agents) > 1:
        calls.append("update_agent")
    made = []
    for call in draw(st.lists(st.sampled_from(calls), max_size=max_size)):
        at = draw(seconds(0.0, max(until, 0.5)))
        args: dict[str, Any] = {}
        if call == "say":
            args = {"text": draw(st.sampled_from(SAY_TEXTS))}
            if draw(st.booleans()):
                args["allow_interruptions"] = False
            if draw(st.integers(0, 3)) == 0:
                args["add_to_chat_ctx"] = False
        elif call == "generate_reply":
            args = {"instructions": draw(st.sampled_from(INSTRUCTIONS))}
            if draw(st.integers(0, 3)) == 0:
                args["allow_interruptions"] = False
        elif call == "typed_reply":
            call, args = "generate_reply", {"user_input": draw(st.sampled_from(TYPED_INPUTS))}
        elif call == "interrupt":
            if draw(st.booleans()):
                args = {"force": True}
        elif call == "commit_user_turn":
            if draw(st.booleans()):
                args = {"skip_reply": True}
        elif call == "update_options":
            name, value = draw(
                st.sampled_from(
                    [
                        ("allow_interruptions", False),
                        ("allow_interruptions", True),
                        ("min_endpointing_delay", 0.2),
                        ("min_interruption_duration", 1.0),
                        ("min_consecutive_speech_delay", 1.0),
                        ("max_tool_steps", 1),
                        ("close_timeout", 1.0),
                    ]
                )
            )
            args = {name: value}
        elif call == "shutdown":
            args = {"drain": draw(st.booleans())}
        elif call == "update_agent":
            args = {"agent": draw(st.sampled_from([a for a in agents if a != "main"] + ["main"]))}
        item: dict[str, Any] = {"at": at, "call": call}
        if args:
            item["args"] = args
        made.append(item)
    return sorted(made, key=lambda item: item["at"])


# Public API calls with arguments of the wrong type or value, and the error
# each must raise at the call (whatever the state of the session).
MISUSES: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("say", {"text": 123}, "TypeError"),
    ("say", {"text": None}, "TypeError"),
    ("say", {"text": "Welcome!", "allow_interruptions": "no"}, "TypeError"),
    ("say", {"text": "Welcome!", "add_to_chat_ctx": 1}, "TypeError"),
    ("generate_reply", {"user_input": 5}, "TypeError"),
    ("generate_reply", {"instructions": ["greet the user"]}, "TypeError"),
    ("generate_reply", {"tools": "abc"}, "TypeError"),
    ("generate_reply", {"tool_choice": 3}, "TypeError"),
    ("generate_reply", {"allow_interruptions": "yes"}, "TypeError"),
    ("commit_user_turn", {"transcript_timeout": -1}, "ValueError"),
    ("commit_user_turn", {"skip_reply": "yes"}, "TypeError"),
    ("update_options", {"close_timeout": "soon"}, "TypeError"),
    ("update_options", {"user_turn_max_words": "x"}, "TypeError"),
    ("update_options", {"min_endpointing_delay": -1}, "ValueError"),
    ("update_options", {"min_endpointing_delay": 0.5, "max_endpointing_delay": 0.1}, "ValueError"),
    ("update_options", {"max_tool_steps": 1.5}, "TypeError"),
    ("interrupt", {"force": "yes"}, "TypeError"),
    ("shutdown", {"drain": "no"}, "TypeError"),
    ("update_agent", {"agent": "main"}, "TypeError"),
    ("update_agent", {"agent": None}, "TypeError"),
)


@st.composite
def misuses(draw: Any, *, until: float, max_size: int = 3) -> list[dict[str, Any]]:
    """Wrong calls of the public API at random times (actions marked ``raises``)."""
    made = []
    for call, args, raises in draw(st.lists(st.sampled_from(MISUSES), max_size=max_size)):
        made.append({"at": draw(seconds(0.0, max(until, 0.5))), "call": call, "args": dict(args), "raises": raises})
    return made


# ---------------------------------------------------------------------------
# a whole conversation
# ---------------------------------------------------------------------------


def _llm_inputs_in(*sources: Any) -> list[str]:
    """What the LLM can be asked about by hooks, tools and actions: the
    instructions and typed user input they pass to generate_reply."""
    found: list[str] = []

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            if "instructions" in value and isinstance(value["instructions"], str) and value["instructions"] in INSTRUCTIONS:
                found.append(value["instructions"])
            if "user_input" in value and isinstance(value["user_input"], str):
                found.append(value["user_input"])
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    for source in sources:
        visit(source)
    return list(dict.fromkeys(found))


@st.composite
def conversations(
    draw: Any,
    *,
    max_turns: int = 5,
    faults: bool = True,
    with_actions: bool = True,
    handoffs: bool = True,
    agent_tools: Mapping[str, st.SearchStrategy[Any]] | None = None,
    phrases: Sequence[str] = USER_PHRASES,
    hostile: bool = False,
    realtime: bool = False,
) -> dict[str, Any]:
    """A whole conversation as scenario data.

    ``realtime`` plays it on a scripted realtime model (``"realtime": true``:
    :class:`~voxtrio.testing.scripted_realtime.ScriptedRealtimeModel` hears the
    user and answers from the LLM script) instead of the VAD, STT and LLM; its
    provider faults are the TTS's only, and the turn detection is the model's.

    ``agent_tools`` describes the tools of *your* agent (name to a strategy for
    its arguments): the LLM script then calls them instead of the scenario's
    own tools, and you run the conversation with your agent in place of
    ``main`` (``check_conversation(data, agents={"main": MyAgent})``).

    ``hostile`` makes every conversation a faulty one and adds what a careless
    application and broken providers do: API calls with wrong arguments at
    random times (:data:`MISUSES`), providers that raise arbitrary exceptions
    or send junk at random points, a transport that sends something else than
    audio or whose connection breaks.
    """
    ids = itertools.count(1)
    faulty = faults and not realtime and (hostile or draw(st.integers(0, 2)) == 0)
    data: dict[str, Any] = {"name": "generated"}

    options = draw(option_sets(faults=faulty))
    if realtime:
        data["realtime"] = True
        options.pop("turn_detection", None)
    if faulty:
        options["conn_options"] = draw(conn_options())
    if options:
        data["options"] = options

    vad = draw(st.sampled_from(["default", "default", "slow", "none"]))
    if vad == "slow":
        data["vad"] = {"min_speech_duration": 0.1, "min_silence_duration": draw(st.sampled_from([0.3, 0.8]))}
    elif vad == "none":
        data["vad"] = None
    if draw(st.integers(0, 9)) == 0:
        data["stt"] = False
    if realtime:
        data.pop("vad", None)
        data.pop("stt", None)
    if draw(st.booleans()):
        data["audio_output"] = {"can_pause": True}

    two_agents = handoffs and draw(st.booleans())
    agent_names = ["main", "support"] if two_agents else ["main"]
    if agent_tools is None:
        tools = draw(tool_specs(handoff_to="support" if two_agents else None))
        tool_names = list(tools)
    else:
        tools = {}
        tool_names = list(agent_tools)
    agents = {name: draw(agent_specs(tools=list(tools))) for name in agent_names}
    data["agents"] = agents
    used = {tool for spec in agents.values() for tool in spec.get("tools", [])}
    tools = {name: spec for name, spec in tools.items() if name in used}
    tool_names = [name for name in tool_names if name in used] if agent_tools is None else tool_names
    if tools:
        data["tools"] = tools

    user = draw(user_speech(max_turns=max_turns, phrases=phrases))
    if user:
        data["user"] = user
    last_user = max((s["end"] for s in user), default=0.0)

    made = draw(actions(until=last_user + 3.0, agents=agent_names)) if with_actions else []
    if hostile:
        made = sorted(made + draw(misuses(until=last_user + 3.0)), key=lambda item: item["at"])
    if made:
        data["actions"] = made

    inputs = [s["transcript"] for s in user if s["transcript"]]
    inputs += _llm_inputs_in(agents, tools, made)
    inputs += ["It is sunny in Paris.", "It is sunny in Tokyo.", "not allowed", INTERNAL_ERROR, "All done."]
    if draw(st.integers(0, 3)) == 0:
        inputs.append(TOOL_CHOICE_NONE_OUTPUT)
    inputs = list(dict.fromkeys(inputs))
    if agent_tools is None:
        llm = draw(llm_responses(inputs, tools=tool_names, faults=faulty, ids=ids, hostile=hostile))
    else:
        llm = draw(_llm_for_user_tools(inputs, agent_tools, faulty, ids, hostile))
    if llm:
        data["llm"] = llm
    texts = sorted({entry["content"] for entry in llm if entry.get("content")})
    texts += [t for t in SAY_TEXTS if t not in texts]
    tts = draw(tts_entries(texts, faults=faulty, hostile=hostile))
    if tts:
        data["tts"] = tts
    data["tts_default_chars_per_second"] = draw(st.sampled_from([15, 8, 30]))

    if faulty:
        fault_spec: dict[str, Any] = {}
        stt_faults = draw(
            st.lists(
                st.builds(
                    lambda at, kind, retryable, exception: _compact(
                        {
                            "at": at,
                            "kind": kind,
                            "retryable": None if retryable or kind in ("crash", "junk") else False,
                            "raise": exception if kind == "crash" else None,
                        }
                    ),
                    seconds(0.0, last_user + 2.0),
                    st.sampled_from(["connection", "status"] + (["crash", "junk"] if hostile else [])),
                    st.booleans(),
                    st.sampled_from(ARBITRARY_EXCEPTIONS),
                ),
                max_size=2,
            )
        )
        if stt_faults:
            fault_spec["stt"] = sorted(stt_faults, key=lambda f: f["at"])
        # Faults that end the call: hypothesis draws the ends of a range often,
        # so a hostile conversation (with more to get through) asks for the
        # middle value instead, about one in six.
        ends_the_call = 3 if hostile else 0
        if draw(st.integers(0, 5)) == ends_the_call:
            fault_spec["vad"] = {"at": draw(seconds(0.0, last_user + 2.0))}
        transport: dict[str, Any] = {}
        if draw(st.integers(0, 5)) == ends_the_call:
            transport["disconnect_at"] = draw(seconds(0.0, last_user + 2.0))
        if hostile and draw(st.integers(0, 5)) == ends_the_call:
            transport["fail_at"] = draw(seconds(0.0, last_user + 2.0))
        if hostile and draw(st.booleans()):
            transport["junk_at"] = sorted(draw(st.lists(seconds(0.0, last_user + 2.0, 0.05), min_size=1, max_size=3)))
        if transport:
            fault_spec["transport"] = transport
        if fault_spec:
            data["faults"] = fault_spec

    if draw(st.booleans()):
        data["end"] = {"drain_after_last_user": draw(st.sampled_from([2.0, 0.5, 5.0]))}
    else:
        data["end"] = {"at": round(max(last_user, *(a["at"] for a in made), 0.0) + draw(seconds(0.5, 8.0, 0.5)), 3)}
    return data


@st.composite
def _llm_for_user_tools(
    draw: Any,
    inputs: Sequence[str],
    agent_tools: Mapping[str, st.SearchStrategy[Any]],
    faults: bool,
    ids: Any,
    hostile: bool = False,
) -> list[dict[str, Any]]:
    script = []
    for text in inputs:
        if draw(st.integers(0, 4)) == 0:
            continue
        entry: dict[str, Any] = {"input": text}
        content = draw(st.sampled_from(("",) + REPLIES))
        if content:
            entry["content"] = content
        calls = []
        for _ in range(draw(st.integers(0, 2))):
            name = draw(st.sampled_from(list(agent_tools)))
            calls.append({"name": name, "arguments": draw(agent_tools[name]), "call_id": f"call_{next(ids)}"})
        if calls:
            entry["tool_calls"] = calls
        if faults and draw(st.integers(0, 5)) == 0:
            entry["error"] = draw(provider_fault(st.integers(0, 30), hostile=hostile))
        script.append(entry)
    return script
