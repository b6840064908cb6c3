"""What LiveKit's own front-ends read from an agent, made from the session's events.

LiveKit's agents playground and client SDKs (``useVoiceAssistant`` and
friends) expect three things of the agent participant, and get them here:

* its state as the participant attribute ``lk.agent.state`` (``initializing``,
  ``listening``, ``thinking``, ``speaking``); only the latest is sent;
* transcriptions on the ``lk.transcription`` text stream, one stream per
  segment with the attributes ``lk.segment_id``, ``lk.transcription_final``
  (``"false"`` while it is open, ``"true"`` when it closes) and, for the agent,
  ``lk.transcribed_track_id`` (its audio track). The user's are sent as
  LiveKit's RoomIO sends them: a new stream per interim with the whole text so
  far, under the user's identity;
* typed input on ``lk.chat``: a text stream from the linked participant
  interrupts the agent and becomes a user turn.

The agent's words are released with its audio. When the session calls
``Transport.publish_text`` (the transcript as it plays out), they stream in
step with playout; until it does, each reply is published as the assistant
message the session records once it has played (the words actually heard).
This is a thin adapter over ``session.on`` so it can be switched to a shared
client-events interface later; it lives with the transport, which starts it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs
import trio

from ..errors import SessionClosedError

if TYPE_CHECKING:
    from ..session import AgentSession

logger = logging.getLogger("voxtrio.livekit")

ATTRIBUTE_SEGMENT_ID = "lk.segment_id"
ATTRIBUTE_TRACK_ID = "lk.transcribed_track_id"
ATTRIBUTE_FINAL = "lk.transcription_final"


@attrs.frozen
class TextReceived:
    """A whole text stream from a participant (``lk.chat`` is the user typing)."""

    name: ClassVar[str] = "text_received"
    topic: str
    text: str
    identity: str
    attributes: dict[str, str] = attrs.field(factory=dict)


class Room(Protocol):
    """What this adapter needs of the transport (the LiveKitTransport)."""

    track_sid: str | None
    linked_identity: str | None

    async def set_attributes(self, attributes: dict[str, str]) -> None: ...

    async def stream_text(
        self, *, topic: str, attributes: dict[str, str] | None = None, sender_identity: str | None = None
    ) -> Any: ...


class LiveKitClientEvents:
    def __init__(self, transport: Room, session: AgentSession) -> None:
        self._transport = transport
        self._session = session
        # Control traffic (a few messages per turn): unbounded is safe here.
        self._send, self._receive = trio.open_memory_channel[tuple[str, Any]](math.inf)
        self.done = trio.Event()
        """Set when everything posted before ``close`` has been published."""
        self._streams: dict[str, Any] = {}  # speech id -> open agent transcript stream
        self._written: dict[str, str] = {}  # speech id -> the text its open stream has had
        self._playout_text = False  # the session calls publish_text
        self._user_segment = 0
        session.on("agent_state_changed", lambda event: self._post("state", event.new_state))
        session.on("user_input_transcribed", lambda event: self._post("user", event))
        session.on("conversation_item_added", self._on_item)

    def _post(self, kind: str, value: Any) -> None:
        with contextlib.suppress(trio.ClosedResourceError):
            self._send.send_nowait((kind, value))

    def _on_item(self, event: Any) -> None:
        item = event.item
        if getattr(item, "type", None) == "message" and item.role == "assistant" and not self._playout_text:
            self._post("reply", item)

    def publish_text(self, speech_id: str, text: str, final: bool) -> None:
        self._playout_text = True
        self._post("playout", (speech_id, text, final))

    def on_text(self, event: TextReceived) -> None:
        """Typed input from the linked participant (``lk.chat``)."""
        if event.identity != self._transport.linked_identity:
            return
        session = self._session
        try:
            with contextlib.suppress(RuntimeError):  # the current speech does not allow it
                session.interrupt()
            session.generate_reply(user_input=event.text)
        except SessionClosedError:
            pass

    def close(self) -> None:
        self._send.close()

    async def run(self) -> None:
        """Publish what was posted, in order; each failure is logged, none is fatal."""
        try:
            async for kind, value in self._receive:
                try:
                    await self._publish(kind, value)
                except Exception as error:  # the room is going away, or refused
                    logger.warning("could not publish %s to the room: %s", kind, error)
            for stream in self._streams.values():
                with contextlib.suppress(Exception):
                    await stream.aclose(attributes={ATTRIBUTE_FINAL: "true"})
        finally:
            self.done.set()

    async def _publish(self, kind: str, value: Any) -> None:
        transport = self._transport
        agent_attributes = {ATTRIBUTE_TRACK_ID: transport.track_sid or ""}
        if kind == "state":
            await transport.set_attributes({"lk.agent.state": value})
        elif kind == "reply":
            stream = await transport.stream_text(
                topic="lk.transcription",
                attributes={**agent_attributes, ATTRIBUTE_SEGMENT_ID: value.id, ATTRIBUTE_FINAL: "false"},
            )
            await stream.write(value.content)
            await stream.aclose(attributes={**agent_attributes, ATTRIBUTE_FINAL: "true"})
        elif kind == "playout":
            speech_id, text, final = value
            stream = self._streams.get(speech_id)
            if stream is None:
                stream = self._streams[speech_id] = await transport.stream_text(
                    topic="lk.transcription",
                    attributes={**agent_attributes, ATTRIBUTE_SEGMENT_ID: speech_id, ATTRIBUTE_FINAL: "false"},
                )
            # publish_text gives the whole text heard so far: the stream takes what is new.
            written = self._written.get(speech_id, "")
            if text.startswith(written) and len(text) > len(written):
                await stream.write(text[len(written) :])
                self._written[speech_id] = text
            if final:
                del self._streams[speech_id]
                self._written.pop(speech_id, None)
                await stream.aclose(attributes={**agent_attributes, ATTRIBUTE_FINAL: "true"})
        elif kind == "user":
            segment = f"SG_user_{self._user_segment}"
            final = "true" if value.is_final else "false"
            if value.is_final:
                self._user_segment += 1
            attributes = {ATTRIBUTE_SEGMENT_ID: segment, ATTRIBUTE_FINAL: final}
            stream = await transport.stream_text(
                topic="lk.transcription", attributes=attributes, sender_identity=transport.linked_identity
            )
            await stream.write(value.transcript)
            await stream.aclose(attributes=attributes)
