"""ClientEvents: what a client sees of a session and what it may ask of it.

A client (the browser page, a phone app, a LiveKit room's data channel) shows
the conversation as it happens and steers it. This module is that contract,
independent of the wire: a producer of typed events (plain dicts with a
``type``, ready to be sent as JSON) and a consumer of client commands. A
transport gives it a ``send`` callable for the events, calls
:meth:`ClientEvents.handle` with each command it decodes, and forwards the
Speaker's ``publish_text`` to :meth:`ClientEvents.agent_transcript`. The
schema (version :data:`PROTOCOL_VERSION`) is documented in
``docs/client-events.md``.

Events (server to client), each with ``t``, seconds since the session started:

* ``ready``: the first event, once the session runs (commands are taken from
  then on): ``version`` and what the transport adds (audio formats...);
* ``agent_state`` / ``user_state``: ``state`` and ``previous``;
* ``user_transcript``: ``text``, ``final`` (interim results are not final);
* ``agent_transcript``: ``speech_id``, ``text`` (the words heard so far of the
  current utterance, in step with the audio), ``final``;
* ``tool_calls``: ``calls``, each ``name``, ``arguments``, ``call_id``,
  ``output``, ``is_error``;
* ``handoff``: ``from``, ``to`` (agent names);
* ``metrics``: one per user turn: ``turn``, ``user`` and the seconds of
  ``first_audio`` (end of speech to first agent audio), ``end_of_utterance``,
  ``stt``, ``llm``, ``llm_ttft``, ``tts``;
* ``error``: ``source``, ``code``, ``message``, ``recoverable``;
* ``close``: ``reason``, ``error``.

Commands (client to server): ``text_input`` (``text``: a typed user turn; it
interrupts the agent when it may be interrupted), ``interrupt``, ``mute``,
``unmute``, ``end_call``. A command that cannot be acted on raises
:class:`ClientCommandError`, whose ``code`` goes back in an ``error`` event;
the session goes on.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Callable

import trio

from ..errors import SessionClosedError, VoxtrioError
from ..transcript import ConversationLog

if TYPE_CHECKING:
    from ..events import Event
    from ..session import AgentSession

PROTOCOL_VERSION = 1

# The longest typed message taken as a user turn.
MAX_TEXT_INPUT = 2000

COMMANDS = ("text_input", "interrupt", "mute", "unmute", "end_call")

# What a client's bad input is called in an ``error`` event (``source`` "client").
ERROR_CODES = (
    "bad_json",  # a text frame that is not JSON
    "bad_message",  # JSON, but not an object with a string "type", or a field of the wrong kind
    "unknown_type",  # a "type" this protocol does not have
    "bad_audio",  # a binary frame that is not whole PCM16 samples
    "too_large",  # a frame over the size limit
    "rate_limited",  # frames or commands faster than the limits; the excess was dropped
    "not_allowed",  # a valid command the session refused (nothing to interrupt, closing...)
)


class ClientCommandError(VoxtrioError):
    """A client message that cannot be acted on. ``code`` is one of
    :data:`ERROR_CODES`; the message says what was wrong."""

    def __init__(self, code: str, message: str) -> None:
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code = code


def submit_text_input(session: AgentSession, text: str) -> None:
    """A typed message as a user turn: it interrupts the agent (when the current
    speech allows it), then asks for a reply to it."""
    current = session.current_speech
    if current is not None and not current.done() and current.allow_interruptions:
        session.interrupt()
    session.generate_reply(user_input=text)


def _arguments(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except json.JSONDecodeError:
        return text


class ClientEvents:
    """One client's view of one session.

    ``send`` takes each event (a dict) in order; it must not block (a
    transport queues it). Events are control traffic: tens a second at most.
    """

    def __init__(self, send: Callable[[dict[str, Any]], None], *, ready: dict[str, Any] | None = None) -> None:
        self._send = send
        self._ready: dict[str, Any] | None = dict(ready or {})  # None once sent
        self._session: AgentSession | None = None
        self._origin: float | None = None
        self.log = ConversationLog()
        """Who said what when and the timing of each turn (the ``metrics`` events come from it)."""
        self._turns = 0
        self.log.listen(self._on_log_entry)

    # -- producing events ------------------------------------------------------------

    def attach(self, session: AgentSession) -> None:
        """Follow ``session`` (call before it starts: ``Transport.attach``)."""
        self._session = session
        self._origin = trio.current_time()
        self.log.origin = self._origin
        session.on("*", self._on_event)

    def emit(self, type: str, **fields: Any) -> None:
        """Send one event of ``type`` (with the time it happened)."""
        now = trio.current_time()
        if self._origin is None:
            self._origin = now
        self._send({"type": type, "t": round(now - self._origin, 3), **fields})

    def agent_transcript(self, speech_id: str, text: str, *, final: bool) -> None:
        self.emit("agent_transcript", speech_id=speech_id, text=text, final=final)

    def client_error(self, error: ClientCommandError) -> None:
        self.emit("error", source="client", code=error.code, message=str(error), recoverable=True)

    def _on_event(self, event: Event) -> None:
        if self._ready is not None:
            # The session's first event: it is running, and takes commands.
            self.emit("ready", version=PROTOCOL_VERSION, **self._ready)
            self._ready = None
        self.log.on_event(event)
        kind = event.type
        data: Any = event
        if kind == "agent_state_changed" or kind == "user_state_changed":
            name = "agent_state" if kind == "agent_state_changed" else "user_state"
            self.emit(name, state=data.new_state, previous=data.old_state)
        elif kind == "user_input_transcribed":
            self.emit("user_transcript", text=data.transcript, final=data.is_final)
        elif kind == "function_tools_executed":
            calls = [
                {
                    "name": call.name,
                    "arguments": _arguments(call.arguments),
                    "call_id": call.call_id,
                    "output": output.output,
                    "is_error": output.is_error,
                }
                for call, output in zip(data.function_calls, data.function_call_outputs)
            ]
            self.emit("tool_calls", calls=calls)
        elif kind == "conversation_item_added" and data.item.type == "agent_handoff":
            self.emit("handoff", **{"from": data.item.old_agent, "to": data.item.new_agent})
        elif kind == "error":
            self.emit("error", source=data.source, code=f"{data.source}_error", message=data.message,
                      recoverable=data.recoverable)
        elif kind == "close":
            self.emit("close", reason=data.reason, error=data.error)

    def _on_log_entry(self, kind: str, entry: dict[str, Any]) -> None:
        if kind == "timing":
            self._turns += 1
            self.emit("metrics", turn=self._turns, **entry)

    # -- consuming commands ----------------------------------------------------------------

    def handle(self, message: Any) -> None:
        """Act on one decoded client command; raise ClientCommandError if it cannot be."""
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ClientCommandError("bad_message", 'a client message is a JSON object with a string "type"')
        kind = message["type"]
        if kind not in COMMANDS:
            raise ClientCommandError(
                "unknown_type", f"unknown message type {kind[:40]!r}; known: {', '.join(COMMANDS)}"
            )
        session = self._session
        if session is None:
            raise ClientCommandError("not_allowed", "the session has not started")
        try:
            if kind == "text_input":
                submit_text_input(session, self._text(message))
            elif kind == "interrupt":
                session.interrupt()
            elif kind in ("mute", "unmute"):
                session.set_audio_input_enabled(kind == "unmute")
            elif kind == "end_call":
                session.shutdown(drain=False)
        except (RuntimeError, SessionClosedError) as error:
            # SessionClosedError is a RuntimeError too; both say the session refused.
            raise ClientCommandError("not_allowed", f"{kind}: {error}") from error

    @staticmethod
    def _text(message: dict[str, Any]) -> str:
        text = message.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ClientCommandError("bad_message", 'text_input needs a non-empty string "text"')
        if len(text) > MAX_TEXT_INPUT:
            raise ClientCommandError("too_large", f"text_input is limited to {MAX_TEXT_INPUT} characters")
        return text.strip()


def finite_number(value: Any) -> bool:
    """A JSON number that is a real, finite quantity (not a bool, NaN or infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
