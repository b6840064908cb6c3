"""LiveKitTransport: a session in a LiveKit room (web, mobile or SIP callers).

::

    async with LiveKitTransport(url, token) as transport:   # joined, caller linked
        await session.main(agent, transport)

Entering the transport joins the room, publishes the agent's microphone track
and waits for the participant it serves (the ``participant_identity`` given,
or the first standard, SIP or connector participant that is not another
agent's avatar). The session then hears that participant's microphone through
the SDK's ``AudioStream`` at the pipeline rate in 20 ms frames (the SDK
resamples, Python does not) and speaks through an ``AudioSource`` whose queue
is small (``output_queue_ms``, 200 ms), so ``clear()`` on a barge-in silences
the agent at once.

When the linked participant leaves for one of the reference's reasons
(``CLIENT_INITIATED``, ``ROOM_DELETED``, ``USER_REJECTED``) the input ends
with :class:`TransportDisconnected` and the session closes with reason
``participant_disconnected``; when it leaves otherwise (a dropped network),
the next participant to join is linked instead. When the room itself goes
away, the body of the ``async with`` is cancelled (the session closes with
``job_shutdown``) and ``disconnect_reason`` says why. Everything else the
room says arrives as events: ``transport.on("participant_joined", callback)``
(see the event classes below), and ``send_data`` / ``send_text`` /
``stream_text`` talk back.

The SDK is asyncio code: it runs in an :class:`AsyncioBridge` thread (one per
transport, or the one a worker shares between its calls), and every SDK object
is created on that loop. What the room does is carried into trio by bounded
ports whose overflow is counted (``stats``); nothing of the transport runs
after its ``async with`` has exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import attrs
import numpy as np
import trio

from ..audio import AudioFrame
from ..errors import VoxtrioError
from .asyncio_bridge import AsyncioBridge
from .base import AudioOutput, Transport, TransportDisconnected
from .livekit_client_events import LiveKitClientEvents, TextReceived

if TYPE_CHECKING:
    from ..session import AgentSession

try:
    from livekit import rtc
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "the LiveKit transport needs the livekit SDK: pip install 'voxtrio[livekit]'"
    ) from error

ATTRIBUTE_AGENT_STATE = "lk.agent.state"
ATTRIBUTE_AGENT_NAME = "lk.agent.name"
ATTRIBUTE_PUBLISH_ON_BEHALF = "lk.publish_on_behalf"
TOPIC_CHAT = "lk.chat"
TOPIC_TRANSCRIPTION = "lk.transcription"

CLOSE_ON_DISCONNECT_REASONS = frozenset({"CLIENT_INITIATED", "ROOM_DELETED", "USER_REJECTED"})
"""The linked participant leaving for one of these ends the session (as in RoomIO)."""

ACCEPTED_KINDS = frozenset(
    {"PARTICIPANT_KIND_STANDARD", "PARTICIPANT_KIND_SIP", "PARTICIPANT_KIND_CONNECTOR"}
)
"""The participants a session may be linked to by default."""

AGENT_TRACK_NAME = "roomio_audio"


class LiveKitError(VoxtrioError):
    """Something about the LiveKit room went wrong."""


class LiveKitConnectError(LiveKitError, ConnectionError):
    """The room could not be joined (unreachable, not LiveKit, bad token, timeout)."""


class ParticipantTimeout(LiveKitError, TimeoutError):
    """Nobody the session could serve joined within ``participant_timeout``."""


# -- events: what the room says, as the trio side sees it --------------------------------


@attrs.frozen
class ParticipantJoined:
    name: ClassVar[str] = "participant_joined"
    identity: str
    kind: str
    attributes: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class ParticipantLinked:
    """The session now hears (and serves) this participant."""

    name: ClassVar[str] = "participant_linked"
    identity: str
    kind: str
    attributes: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class ParticipantLeft:
    name: ClassVar[str] = "participant_left"
    identity: str
    reason: str
    linked: bool


@attrs.frozen
class AgentTrackSubscribed:
    """A participant subscribed to the agent's audio: from now on it is heard."""

    name: ClassVar[str] = "agent_track_subscribed"


@attrs.frozen
class Reconnecting:
    name: ClassVar[str] = "reconnecting"


@attrs.frozen
class Reconnected:
    name: ClassVar[str] = "reconnected"


@attrs.frozen
class RoomDisconnected:
    name: ClassVar[str] = "room_disconnected"
    reason: str


@attrs.frozen
class DataReceived:
    name: ClassVar[str] = "data_received"
    data: bytes
    topic: str
    identity: str | None


@attrs.define
class LiveKitStats:
    audio_frames_dropped: int = 0
    """Microphone frames trio did not take in time (the port was full)."""
    events_dropped: int = 0
    started_unsubscribed: bool = False
    """Nobody had subscribed to the agent's track ``subscribe_timeout`` after linking."""


@attrs.frozen(kw_only=True)
class RoomOptions:
    """How the transport joins and listens (all read on the bridge loop)."""

    participant_identity: str | None = None
    input_sample_rate: int = 16_000
    output_sample_rate: int = 24_000
    output_queue_ms: int = 200
    input_capacity: int = 50
    """Frames the SDK's AudioStream may hold before it drops the oldest (1 s)."""
    connect_timeout: float = 10.0


def _reason_name(code: int | None) -> str:
    return rtc.DisconnectReason.Name(code or 0)


def _kind_name(code: int) -> str:
    return rtc.ParticipantKind.Name(code)


def sole_error(group: BaseExceptionGroup) -> BaseException:
    """The one error a nursery wrapped (joining fails with one), else the group."""
    leaves = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    return leaves[0] if len(leaves) == 1 else group


class _RoomSide:
    """Everything that touches the SDK. Created on, and only used from, the bridge
    loop; it tells trio what happens through two ports."""

    def __init__(self, room: Any, options: RoomOptions, audio: Any, events: Any) -> None:
        self.room = room
        self.options = options
        self._audio = audio  # TrioPort of (pcm bytes, rate, channels)
        self._events = events  # TrioPort of the event classes above
        self._loop = asyncio.get_running_loop()
        self.source = rtc.AudioSource(
            options.output_sample_rate, 1, queue_size_ms=options.output_queue_ms, loop=self._loop
        )
        self.track = rtc.LocalAudioTrack.create_audio_track(AGENT_TRACK_NAME, self.source)
        self.track_sid = ""
        self.linked: str | None = None
        self._stream: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        for name in (
            "participant_connected",
            "participant_disconnected",
            "track_subscribed",
            "track_unsubscribed",
            "local_track_subscribed",
            "reconnecting",
            "reconnected",
            "disconnected",
            "data_received",
        ):
            room.on(name, getattr(self, f"_on_{name}"))
        self._text_topics: set[str] = set()

    def _spawn(self, coroutine: Any) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def join(self, url: str, token: str, text_topics: tuple[str, ...]) -> tuple[str, str]:
        for topic in text_topics:
            self.room.register_text_stream_handler(topic, self._on_text_stream)
            self._text_topics.add(topic)
        options = rtc.RoomOptions(auto_subscribe=True, connect_timeout=self.options.connect_timeout)
        await self.room.connect(url, token, options)
        publication = await self.room.local_participant.publish_track(
            self.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        self.track_sid = publication.sid
        for participant in list(self.room.remote_participants.values()):
            self._on_participant_connected(participant)
        return self.room.local_participant.identity, self.track_sid

    # -- linking and listening ----------------------------------------------------------

    def _link(self, participant: Any) -> None:
        if self.linked is not None:
            return
        wanted = self.options.participant_identity
        if wanted is not None and participant.identity != wanted:
            return
        on_behalf = participant.attributes.get(ATTRIBUTE_PUBLISH_ON_BEHALF)
        if wanted is None and on_behalf == self.room.local_participant.identity:
            return  # the agent's own avatar
        kind = _kind_name(participant.kind)
        if kind not in ACCEPTED_KINDS:
            return
        self.linked = participant.identity
        self._events.send_nowait(ParticipantLinked(participant.identity, kind, dict(participant.attributes)))
        for publication in participant.track_publications.values():
            if publication.source == rtc.TrackSource.SOURCE_MICROPHONE and publication.track is not None:
                self._listen(publication.track)

    def _listen(self, track: Any) -> None:
        self._stop_listening()
        stream = rtc.AudioStream.from_track(
            track=track,
            sample_rate=self.options.input_sample_rate,
            num_channels=1,
            frame_size_ms=20,
            capacity=self.options.input_capacity,
            loop=self._loop,
        )
        self._stream = stream
        self._reader = self._loop.create_task(self._forward(stream))

    async def _forward(self, stream: Any) -> None:
        send = self._audio.send_nowait
        async for event in stream:
            frame = event.frame
            send((bytes(frame.data), frame.sample_rate, frame.num_channels))

    def _stop_listening(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._stream is not None:
            self._spawn(self._stream.aclose())
            self._stream = None

    # -- room events (SDK callbacks, on the loop) ------------------------------------------

    def _on_participant_connected(self, participant: Any) -> None:
        self._events.send_nowait(
            ParticipantJoined(participant.identity, _kind_name(participant.kind), dict(participant.attributes))
        )
        self._link(participant)

    def _on_participant_disconnected(self, participant: Any) -> None:
        linked = participant.identity == self.linked
        if linked:
            self.linked = None
            self._stop_listening()
        reason = _reason_name(participant.disconnect_reason)
        self._events.send_nowait(ParticipantLeft(participant.identity, reason, linked))

    def _on_track_subscribed(self, track: Any, publication: Any, participant: Any) -> None:
        if participant.identity == self.linked and publication.source == rtc.TrackSource.SOURCE_MICROPHONE:
            self._listen(track)

    def _on_track_unsubscribed(self, track: Any, publication: Any, participant: Any) -> None:
        if participant.identity == self.linked and publication.source == rtc.TrackSource.SOURCE_MICROPHONE:
            self._stop_listening()

    def _on_local_track_subscribed(self, track: Any) -> None:
        self._events.send_nowait(AgentTrackSubscribed())

    def _on_reconnecting(self) -> None:
        self._events.send_nowait(Reconnecting())

    def _on_reconnected(self) -> None:
        self._events.send_nowait(Reconnected())

    def _on_disconnected(self, reason: int) -> None:
        self._events.send_nowait(RoomDisconnected(_reason_name(reason)))

    def _on_data_received(self, packet: Any) -> None:
        identity = packet.participant.identity if packet.participant is not None else None
        self._events.send_nowait(DataReceived(bytes(packet.data), packet.topic or "", identity))

    def _on_text_stream(self, reader: Any, identity: str) -> None:
        async def read() -> None:
            text = await reader.read_all()
            info = reader.info
            self._events.send_nowait(TextReceived(info.topic, text, identity, dict(info.attributes or {})))

        self._spawn(read())

    # -- what trio asks for ---------------------------------------------------------------

    async def capture(self, pcm: bytes) -> None:
        """Queue the agent's audio (mono int16 at the source rate) in 20 ms frames."""
        rate = self.options.output_sample_rate
        step = rate // 50
        view = memoryview(pcm)
        samples = len(pcm) // 2
        for start in range(0, samples, step):
            count = min(step, samples - start)
            await self.source.capture_frame(
                rtc.AudioFrame(view[start * 2 : (start + count) * 2], rate, 1, count)
            )

    def clear(self) -> None:
        self.source.clear_queue()

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        await self.room.local_participant.set_attributes(attributes)

    async def send_data(self, payload: bytes, topic: str, reliable: bool, destinations: list[str]) -> None:
        await self.room.local_participant.publish_data(
            payload, reliable=reliable, topic=topic, destination_identities=destinations
        )

    async def send_text(self, text: str, topic: str, attributes: dict[str, str]) -> None:
        await self.room.local_participant.send_text(text, topic=topic, attributes=attributes)

    async def open_text_stream(self, topic: str, attributes: dict[str, str], sender: str | None) -> Any:
        return await self.room.local_participant.stream_text(
            topic=topic, attributes=attributes, sender_identity=sender
        )

    async def close(self) -> None:
        self._stop_listening()
        for topic in self._text_topics:
            self.room.unregister_text_stream_handler(topic)
        with contextlib.suppress(Exception):
            await self.room.disconnect()  # also when the server left first: it frees the room
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        await self.source.aclose()


class LiveKitAudioOutput(AudioOutput):
    """The agent's track. Frames of another rate than the source's are resampled;
    ``clear()`` drops what the SDK has queued (at most ``output_queue_ms``)."""

    can_pause = False
    # Below the source's queue, so writes never wait for room in it.
    buffer_duration = 0.15

    def __init__(self, transport: LiveKitTransport, sample_rate: int) -> None:
        self._transport = transport
        self.sample_rate = sample_rate
        self._resampler: Any = None
        self._resampling_from: int | None = None

    async def write(self, frame: AudioFrame) -> None:
        samples = frame.data
        if frame.num_channels > 1:
            samples = samples.reshape(-1, frame.num_channels).astype(np.int32).mean(axis=1).astype(np.int16)
        if frame.sample_rate != self.sample_rate:
            if frame.sample_rate != self._resampling_from:
                import soxr

                self._resampler = soxr.ResampleStream(frame.sample_rate, self.sample_rate, 1, dtype="int16")
                self._resampling_from = frame.sample_rate
            samples = self._resampler.resample_chunk(samples)
        if len(samples):
            await self._transport._run_on_room("capture", samples.tobytes())

    def clear(self) -> None:
        self._transport._submit_on_room("clear")


class LiveKitTransport(Transport):
    """A LiveKit room as the session's connection to the user (see the module docstring).

    ``room``: a stand-in for ``livekit.rtc.Room`` created on the bridge loop
    (``voxtrio.testing.livekit_room.LoopbackRoom`` for tests with no
    server); by default a real room joined with ``url`` and ``token``.
    ``bridge``: a running :class:`AsyncioBridge` to share (a worker's); by
    default the transport runs its own and joins its thread on exit.
    """

    inline_input = True  # AudioIn's work runs in the reading task (transports/base.py)

    def __init__(
        self,
        url: str = "",
        token: str = "",
        *,
        participant_identity: str | None = None,
        input_sample_rate: int = 16_000,
        output_sample_rate: int = 24_000,
        output_queue_ms: int = 200,
        close_on_disconnect: bool = True,
        participant_timeout: float | None = None,
        subscribe_timeout: float = 3.0,
        connect_timeout: float = 10.0,
        close_timeout: float = 5.0,
        text_topics: tuple[str, ...] = (TOPIC_CHAT,),
        client_events: bool = True,
        bridge: AsyncioBridge | None = None,
        room: Any = None,
    ) -> None:
        if room is None and not url:
            raise LiveKitError("LiveKitTransport needs the server url (or a loopback room)")
        self.url = url
        self.token = token
        self.options = RoomOptions(
            participant_identity=participant_identity,
            input_sample_rate=input_sample_rate,
            output_sample_rate=output_sample_rate,
            output_queue_ms=output_queue_ms,
            connect_timeout=connect_timeout,
        )
        self.close_on_disconnect = close_on_disconnect
        self.participant_timeout = participant_timeout
        self.subscribe_timeout = subscribe_timeout
        self.close_timeout = close_timeout
        self.text_topics = tuple(text_topics)
        self.client_events = client_events
        self._client: LiveKitClientEvents | None = None
        self.bridge = bridge
        self._room_stand_in = room
        self.audio_output = LiveKitAudioOutput(self, output_sample_rate)
        self.stats = LiveKitStats()
        self.session: AgentSession | None = None
        self.identity: str | None = None
        """The agent's own identity in the room."""
        self.track_sid: str | None = None
        self.linked_identity: str | None = None
        self.disconnect_reason: str | None = None
        """Why the room went away (None while it is there, or when we left)."""
        self.reconnecting = False
        self._side: _RoomSide | None = None
        self._audio: Any = None
        self._events: Any = None
        self._callbacks: dict[str, list[Callable[[Any], None]]] = {}
        self._linked = trio.Event()
        self._subscribed = trio.Event()
        self._left: ParticipantLeft | None = None
        self._input_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._closing = False

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> LiveKitTransport:
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.bridge is None:
                    self.bridge = await stack.enter_async_context(AsyncioBridge(name="voxtrio-livekit"))
                self._nursery = await stack.enter_async_context(trio.open_nursery())
                stack.push_async_callback(self.aclose)
                await self._join()
                self._stack = stack.pop_all()
        except BaseExceptionGroup as group:
            raise sole_error(group) from None
        if self._stack is None:  # the room went away while joining (the nursery absorbed it)
            raise LiveKitConnectError(f"the room disconnected while joining ({self.disconnect_reason})")
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None
        return await stack.__aexit__(*exc_info)

    async def _join(self) -> None:
        bridge = self.bridge
        assert bridge is not None and self._nursery is not None
        self._audio = bridge.port(self.options.input_capacity)
        self._events = bridge.port(256)
        stand_in = self._room_stand_in

        def make_side() -> _RoomSide:
            room = stand_in._rtc_room(bridge) if stand_in is not None else rtc.Room(loop=asyncio.get_running_loop())
            return _RoomSide(room, self.options, self._audio, self._events)

        self._side = await bridge.call(make_side)
        self._nursery.start_soon(self._dispatch)
        try:
            # The SDK bounds each attempt itself; this bounds its retries too.
            with trio.fail_after(3 * self.options.connect_timeout):
                self.identity, self.track_sid = await bridge.run(
                    self._side.join, self.url, self.token, self.text_topics
                )
        except trio.TooSlowError:
            raise LiveKitConnectError(f"joining {self.url} took too long") from None
        except rtc.ConnectError as error:
            raise LiveKitConnectError(f"cannot join the room at {self.url}: {error}") from error
        try:
            with trio.fail_after(math.inf if self.participant_timeout is None else self.participant_timeout):
                await self._linked.wait()
        except trio.TooSlowError:
            raise ParticipantTimeout(
                f"no participant to serve joined within {self.participant_timeout} s"
            ) from None
        with trio.move_on_after(self.subscribe_timeout):
            await self._subscribed.wait()
        self.stats.started_unsubscribed = not self._subscribed.is_set()

    async def aclose(self) -> None:
        """Leave the room (bounded by ``close_timeout``). Idempotent; the session
        calls it when it ends."""
        if self._closing:
            return
        self._closing = True
        with trio.CancelScope(shield=True):
            if self._client is not None:
                self._client.close()
                with trio.move_on_after(self.close_timeout / 2):  # the last transcript goes out
                    await self._client.done.wait()
            with trio.move_on_after(self.close_timeout):
                if self._side is not None and self.bridge is not None and self.bridge.running:
                    with contextlib.suppress(Exception):
                        await self.bridge.run(self._side.close)
            if self._events is not None:
                self._events.close()  # ends the dispatcher
                self.stats.events_dropped = self._events.dropped
            if self._audio is not None:
                self._audio.close()
                self.stats.audio_frames_dropped = self._audio.dropped

    # -- the session's side ----------------------------------------------------------------

    def attach(self, session: AgentSession) -> None:
        """Keep the session; with ``client_events``, publish what LiveKit's
        front-ends read (:mod:`voxtrio.transports.livekit_client_events`)."""
        if self._nursery is None:
            raise LiveKitError("enter the transport (async with LiveKitTransport(...)) before session.main")
        self.session = session
        if self.client_events:
            self._client = LiveKitClientEvents(self, session)
            self._nursery.start_soon(self._client.run)

    def publish_text(self, speech_id: str, text: str, *, final: bool) -> None:
        if self._client is not None:
            self._client.publish_text(speech_id, text, final)

    async def read_audio(self, frames: trio.MemorySendChannel[AudioFrame]) -> None:
        with trio.CancelScope() as scope:
            self._input_scope = scope
            if self._left is None:
                async for pcm, rate, channels in self._audio.receive:
                    await frames.send(AudioFrame(np.frombuffer(pcm, np.int16), rate, channels))
        self._input_scope = None
        if self._left is not None:
            raise TransportDisconnected(f"{self._left.identity} left the room ({self._left.reason})")

    # -- events --------------------------------------------------------------------------------

    def on(self, name: str, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        """Call ``callback(event)`` (in trio, synchronously) for each event called ``name``."""
        self._callbacks.setdefault(name, []).append(callback)
        return callback

    def off(self, name: str, callback: Callable[[Any], None]) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._callbacks[name].remove(callback)

    async def _dispatch(self) -> None:
        async for event in self._events.receive:
            if isinstance(event, ParticipantLinked):
                self.linked_identity = event.identity
                self._linked.set()
            elif isinstance(event, ParticipantLeft) and event.linked:
                self.linked_identity = None
                self._linked = trio.Event()
                if self.close_on_disconnect and event.reason in CLOSE_ON_DISCONNECT_REASONS:
                    self._left = event
                    if self._input_scope is not None:
                        self._input_scope.cancel()
            elif isinstance(event, AgentTrackSubscribed):
                self._subscribed.set()
            elif isinstance(event, (Reconnecting, Reconnected)):
                self.reconnecting = isinstance(event, Reconnecting)
            elif isinstance(event, TextReceived) and event.topic == TOPIC_CHAT and self._client is not None:
                self._client.on_text(event)
            elif isinstance(event, RoomDisconnected) and not self._closing:
                self.disconnect_reason = event.reason
                assert self._nursery is not None
                self._nursery.cancel_scope.cancel()
            for callback in list(self._callbacks.get(event.name, ())):
                callback(event)

    # -- talking to the room --------------------------------------------------------------

    async def _run_on_room(self, method: str, *args: Any) -> Any:
        if self._side is None or self.bridge is None:
            raise LiveKitError("the transport has not joined a room")
        return await self.bridge.run(getattr(self._side, method), *args)

    def _submit_on_room(self, method: str, *args: Any) -> None:
        if self._side is not None and self.bridge is not None:
            self.bridge.submit(getattr(self._side, method), *args)

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        """Set the agent participant's attributes (``lk.agent.state`` and friends)."""
        await self._run_on_room("set_attributes", dict(attributes))

    async def send_data(
        self, payload: bytes | str, *, topic: str = "", reliable: bool = True, destinations: tuple[str, ...] = ()
    ) -> None:
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        await self._run_on_room("send_data", data, topic, reliable, list(destinations))

    async def send_text(self, text: str, *, topic: str, attributes: dict[str, str] | None = None) -> None:
        await self._run_on_room("send_text", text, topic, dict(attributes or {}))

    async def stream_text(
        self, *, topic: str, attributes: dict[str, str] | None = None, sender_identity: str | None = None
    ) -> TextStream:
        """Open a text stream (write chunks, then close with the final attributes)."""
        writer = await self._run_on_room("open_text_stream", topic, dict(attributes or {}), sender_identity)
        return TextStream(self, writer)


class TextStream:
    """An outgoing text stream, driven from trio (the SDK writer stays on the loop)."""

    def __init__(self, transport: LiveKitTransport, writer: Any) -> None:
        self._transport = transport
        self._writer = writer

    async def write(self, text: str) -> None:
        bridge = self._transport.bridge
        assert bridge is not None
        await bridge.run(self._writer.write, text)

    async def aclose(self, *, attributes: dict[str, str] | None = None) -> None:
        bridge = self._transport.bridge
        assert bridge is not None

        async def close() -> None:
            await self._writer.aclose(attributes=attributes)

        await bridge.run(close)
