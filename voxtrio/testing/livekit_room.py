"""LoopbackRoom: a LiveKit room with no server, for tests of the LiveKit transport.

No LiveKit server can run in the test suite, so this stands in for the part of
``livekit.rtc.Room`` the transport uses: participants joining and leaving,
subscriptions, attributes, data and text streams, reconnects and the room
going away are played by the test through the methods below. The media path
is not faked: the user's microphone is a real ``rtc.AudioSource`` and
``LocalAudioTrack``, which the transport reads through the SDK's own
``AudioStream`` (native resampling and framing), and the agent's published
track is read back the same way into :attr:`heard`. What this proves is the
transport's SDK usage and its bridge; what it cannot prove is the signalling
and WebRTC with a real server (the live tests do that, with ``LIVEKIT_URL``).

    room = LoopbackRoom()
    async with LiveKitTransport(room=room) as transport:   # waits for a participant
        ...
    # elsewhere in the test: await room.join("user"); await room.say(samples)

Everything runs on the transport's bridge loop; the methods here are called
from trio.
"""

from __future__ import annotations

import asyncio
import itertools
import types
from typing import Any, Callable

import attrs
import numpy as np
import trio
from livekit import rtc

from ..transports.asyncio_bridge import AsyncioBridge, TrioPort
from ..transports.livekit import TOPIC_CHAT


@attrs.define
class LoopbackTextStream:
    """A text stream the agent opened."""

    topic: str
    attributes: dict[str, str]
    sender_identity: str | None
    chunks: list[str] = attrs.field(factory=list)
    closed: bool = False
    final_attributes: dict[str, str] | None = None

    @property
    def text(self) -> str:
        return "".join(self.chunks)


class _Writer:
    def __init__(self, record: LoopbackTextStream) -> None:
        self._record = record

    async def write(self, text: str) -> None:
        if self._record.closed:
            raise RuntimeError("write on a closed text stream")
        self._record.chunks.append(text)

    async def aclose(self, *, reason: str = "", attributes: dict[str, str] | None = None) -> None:
        self._record.closed = True
        self._record.final_attributes = dict(attributes or {})


class _Reader:
    def __init__(self, topic: str, text: str, attributes: dict[str, str]) -> None:
        self.info = types.SimpleNamespace(topic=topic, attributes=attributes)
        self._text = text

    async def read_all(self) -> str:
        return self._text


class _Publication:
    def __init__(self, sid: str, track: Any) -> None:
        self.sid = sid
        self.track = track
        self.source = rtc.TrackSource.SOURCE_MICROPHONE


class _Participant:
    def __init__(self, identity: str, kind: str, attributes: dict[str, str]) -> None:
        self.identity = identity
        self.kind = rtc.ParticipantKind.Value(kind)
        self.attributes = attributes
        self.track_publications: dict[str, _Publication] = {}
        self.disconnect_reason = 0
        self.microphone: Any = None  # the rtc.AudioSource the test speaks into


class _LocalParticipant:
    def __init__(self, room: _FakeRoom, identity: str) -> None:
        self._room = room
        self.identity = identity

    async def publish_track(self, track: Any, options: Any = None) -> _Publication:
        publication = _Publication(f"TR_{self.identity}", track)
        self._room.agent_track = track
        self._room.owner._listen_to_agent(track)
        self._room.owner._token.run_sync_soon(self._room.owner.agent_joined.set)
        if self._room.remote_participants:
            self._room.emit("local_track_subscribed", track)
        return publication

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self._room.owner.attributes.update(attributes)
        if "lk.agent.state" in attributes:
            self._room.owner.attribute_history.append(attributes["lk.agent.state"])

    async def publish_data(self, payload: bytes, **options: Any) -> None:
        self._room.owner.data_sent.append((bytes(payload), options.get("topic", "")))

    async def send_text(self, text: str, *, topic: str = "", attributes: dict[str, str] | None = None, **_: Any) -> None:
        record = LoopbackTextStream(topic, dict(attributes or {}), self.identity, [text], True, {})
        self._room.owner.text_streams.append(record)

    async def stream_text(
        self, *, topic: str = "", attributes: dict[str, str] | None = None, sender_identity: str | None = None, **_: Any
    ) -> _Writer:
        record = LoopbackTextStream(topic, dict(attributes or {}), sender_identity or self.identity)
        self._room.owner.text_streams.append(record)
        return _Writer(record)


class _FakeRoom:
    """The rtc.Room surface LiveKitTransport uses; lives on the bridge loop."""

    def __init__(self, owner: LoopbackRoom) -> None:
        self.owner = owner
        self.name = owner.name
        self.local_participant = _LocalParticipant(self, owner.agent_identity)
        self.remote_participants: dict[str, _Participant] = {}
        self.agent_track: Any = None
        self._handlers: dict[str, list[Callable[..., None]]] = {}
        self._text_handlers: dict[str, Callable[..., None]] = {}
        self._connected = False

    def on(self, name: str, callback: Callable[..., None]) -> None:
        self._handlers.setdefault(name, []).append(callback)

    def emit(self, name: str, *args: Any) -> None:
        for callback in self._handlers.get(name, ()):
            callback(*args)

    def register_text_stream_handler(self, topic: str, handler: Callable[..., None]) -> None:
        self._text_handlers[topic] = handler

    def unregister_text_stream_handler(self, topic: str) -> None:
        self._text_handlers.pop(topic, None)

    async def connect(self, url: str, token: str, options: Any = None) -> None:
        self._connected = True

    def isconnected(self) -> bool:
        return self._connected

    async def disconnect(self) -> None:
        self._connected = False
        await self.owner._stop()


class LoopbackRoom:
    """A serverless room for one agent; see the module docstring."""

    def __init__(self, *, name: str = "loopback", agent_identity: str = "agent", listen_rate: int = 16_000) -> None:
        self.name = name
        self.agent_identity = agent_identity
        self.listen_rate = listen_rate
        self.attributes: dict[str, str] = {}
        """The agent participant's attributes, as it set them."""
        self.attribute_history: list[str] = []
        """Every ``lk.agent.state`` the agent set, in order."""
        self.text_streams: list[LoopbackTextStream] = []
        self.data_sent: list[tuple[bytes, str]] = []
        self._token = trio.lowlevel.current_trio_token()
        self._heard: TrioPort[np.ndarray] = TrioPort(self._token, 500)
        self.heard = self._heard.receive
        """The agent's track as a participant hears it: int16 arrays of 20 ms at ``listen_rate``."""
        self.agent_joined = trio.Event()
        """Set when the agent has published its track (participants can join then)."""
        self.agent_left = trio.Event()
        """Set when the agent has left the room (its transport closed)."""
        self._bridge: AsyncioBridge | None = None
        self._room: _FakeRoom | None = None
        self._sids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._agent_stream: Any = None

    # called on the bridge loop by the transport
    def _rtc_room(self, bridge: AsyncioBridge) -> _FakeRoom:
        if self._room is not None:
            raise RuntimeError("a LoopbackRoom serves one transport")
        self._bridge = bridge
        self._room = _FakeRoom(self)
        return self._room

    def _listen_to_agent(self, track: Any) -> None:
        stream = rtc.AudioStream.from_track(
            track=track, sample_rate=self.listen_rate, num_channels=1, frame_size_ms=20,
            loop=asyncio.get_running_loop(),
        )

        async def forward() -> None:
            async for event in stream:
                self._heard.send_nowait(np.frombuffer(bytes(event.frame.data), np.int16))

        self._agent_stream = stream
        self._tasks.add(asyncio.get_running_loop().create_task(forward()))

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._agent_stream is not None:
            await self._agent_stream.aclose()
        assert self._room is not None
        for participant in self._room.remote_participants.values():
            await participant.microphone.aclose()
        self._heard.close()
        self._token.run_sync_soon(self.agent_left.set)

    async def _on_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._bridge is None or self._room is None:
            raise RuntimeError("no transport has joined this room yet")
        return await self._bridge.run(fn, *args)

    # -- what the test plays ------------------------------------------------------------

    async def join(
        self,
        identity: str = "user",
        *,
        kind: str = "PARTICIPANT_KIND_STANDARD",
        attributes: dict[str, str] | None = None,
        sample_rate: int = 48_000,
    ) -> None:
        """A participant joins with a microphone and subscribes to the agent."""

        async def join() -> None:
            room = self._room
            assert room is not None
            participant = _Participant(identity, kind, dict(attributes or {}))
            loop = asyncio.get_running_loop()
            participant.microphone = rtc.AudioSource(sample_rate, 1, queue_size_ms=200, loop=loop)
            track = rtc.LocalAudioTrack.create_audio_track(f"{identity}-microphone", participant.microphone)
            publication = _Publication(f"TR_{identity}_{next(self._sids)}", track)
            participant.track_publications[publication.sid] = publication
            room.remote_participants[identity] = participant
            room.emit("participant_connected", participant)
            room.emit("track_subscribed", track, publication, participant)
            if room.agent_track is not None:
                room.emit("local_track_subscribed", room.agent_track)

        await self._on_loop(join)

    async def say(self, samples: np.ndarray, *, identity: str = "user") -> None:
        """Play int16 mono ``samples`` into the participant's microphone, in real time
        (the source's 200 ms queue paces it)."""

        async def say() -> None:
            assert self._room is not None
            source = self._room.remote_participants[identity].microphone
            rate = source.sample_rate
            step = rate // 50
            data = np.ascontiguousarray(samples, np.int16)
            for start in range(0, len(data), step):
                chunk = data[start : start + step]
                await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), rate, 1, len(chunk)))

        await self._on_loop(say)

    async def leave(self, identity: str = "user", *, reason: str = "CLIENT_INITIATED") -> None:
        async def leave() -> None:
            assert self._room is not None
            participant = self._room.remote_participants.pop(identity)
            participant.disconnect_reason = rtc.DisconnectReason.Value(reason)
            self._room.emit("participant_disconnected", participant)

        await self._on_loop(leave)

    async def chat(self, text: str, *, identity: str = "user", topic: str = TOPIC_CHAT) -> None:
        """The participant sends a text stream (``lk.chat``: typed input)."""

        async def chat() -> None:
            assert self._room is not None
            handler = self._room._text_handlers.get(topic)
            if handler is not None:
                handler(_Reader(topic, text, {}), identity)

        await self._on_loop(chat)

    async def send_data(self, data: bytes, *, topic: str = "", identity: str = "user") -> None:
        async def send() -> None:
            assert self._room is not None
            sender = self._room.remote_participants.get(identity)
            packet = types.SimpleNamespace(data=data, topic=topic, participant=sender)
            self._room.emit("data_received", packet)

        await self._on_loop(send)

    async def reconnect(self) -> None:
        """The signalling connection drops and comes back."""

        async def reconnect() -> None:
            assert self._room is not None
            self._room.emit("reconnecting")
            self._room.emit("reconnected")

        await self._on_loop(reconnect)

    async def drop(self, *, reason: str = "ROOM_DELETED") -> None:
        """The server takes the room away from the agent."""

        async def drop() -> None:
            assert self._room is not None
            self._room._connected = False
            self._room.emit("disconnected", rtc.DisconnectReason.Value(reason))

        await self._on_loop(drop)
