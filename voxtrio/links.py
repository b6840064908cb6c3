"""The links between the session's actors: opened first, then handed out.

``AgentSession.main`` opens every link of a session at once
(:meth:`Links.open`), then makes each actor with the ends it reads and
writes, so that no actor needs another one to exist first and no actor is
"connected" after it is made. Each end is typed with the messages it
carries (:mod:`voxtrio.messages`), and each link's size lives here, with the
reason for it.

Control inboxes are unbounded: their traffic is rare, and a public API call
posting to one must never block. The audio and event links are bounded; what
happens when their reader falls behind is said where they are written
(:mod:`voxtrio.actors.audio_in`).

The Planner, the Speaker and the Recorder still open their own inboxes; they
are made before anything that writes to them, so nothing is connected late.
"""

from __future__ import annotations

import math
from typing import TypeAlias, Union

import attrs
import trio

from .audio import AudioFrame
from .messages import (
    AudioInMessage,
    PlannerMessage,
    RealtimeLinkMessage,
    RecognizerMessage,
    SessionMessage,
    TurnEvent,
    TurnMessage,
    VADEvent,
)

# VAD and recognizer events waiting for the Turn actor (it handles each at once).
TURN_EVENTS = 256
# Frames waiting for the VAD; AudioIn drops (and counts) beyond this.
VAD_FRAMES = 50
# VAD events the VAD actor has yet to pass on to the Turn and a segmented recognizer.
VAD_EVENTS = 50
# Frames of audio the recognizer may fall behind by before any is dropped (10 s).
RECOGNIZER_BACKLOG = 500
# VAD events waiting for a segmented recognizer, and STT results waiting to be
# passed on to the Turn.
RECOGNIZER_EVENTS = 64
# Frames read from the transport and not yet converted (AudioIn's own link).
TRANSPORT_INPUT = 50

SupervisorLink: TypeAlias = trio.MemorySendChannel[SessionMessage]
PlannerLink: TypeAlias = trio.MemorySendChannel[PlannerMessage]
TurnLink: TypeAlias = trio.MemorySendChannel[TurnMessage]
TurnEventLink: TypeAlias = trio.MemorySendChannel[TurnEvent]
RecognizerLink: TypeAlias = trio.MemorySendChannel[RecognizerMessage]
AudioInLink: TypeAlias = trio.MemorySendChannel[AudioInMessage]
FrameLink: TypeAlias = trio.MemorySendChannel[AudioFrame]
VADEventLink: TypeAlias = trio.MemorySendChannel[VADEvent]


class StreamedAudio:
    """The audio link of a recognizer with a streaming STT.

    AudioIn sends each frame into the channel of the stream that is running,
    with no task in between (a pump task would cost a task switch per frame).
    It behaves as the send side of a bounded channel: ``WouldBlock`` when the
    stream has fallen ``RECOGNIZER_BACKLOG`` frames behind (AudioIn counts
    and reports the drop), and ``close()`` ends the stream's input. Between
    two streams (a restart after an error) no stream listens: the frame goes
    to no one, as it did through the pump.
    """

    def __init__(self) -> None:
        # the running stream's input (the Recognizer sets it); None between streams
        self.target: trio.MemorySendChannel[AudioFrame] | None = None
        # AudioIn closed the link: the input is over
        self.closed = False

    def send_nowait(self, frame: AudioFrame) -> None:
        if self.closed:
            raise trio.ClosedResourceError("the recognizer's input is closed")
        if self.target is None:
            return
        try:
            self.target.send_nowait(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the stream is being replaced

    def close(self) -> None:
        self.closed = True
        if self.target is not None:
            self.target.close()


RecognizerAudio: TypeAlias = Union[FrameLink, StreamedAudio]
RealtimeControl: TypeAlias = trio.MemorySendChannel[RealtimeLinkMessage]


@attrs.define
class RealtimeEnds:
    """The RealtimeLink's links: the Planner's requests and the user's audio."""

    control: RealtimeControl
    inbox: trio.MemoryReceiveChannel[RealtimeLinkMessage]
    # AudioIn writes the user's audio here, as it would to a recognizer
    # (RECOGNIZER_BACKLOG: the model may fall 10 s behind before AudioIn drops)
    audio: FrameLink
    audio_out: trio.MemoryReceiveChannel[AudioFrame]


@attrs.define
class RecognizerEnds:
    """The Recognizer's links: its control inbox, its audio and (segmented) its VAD events."""

    control: RecognizerLink
    inbox: trio.MemoryReceiveChannel[RecognizerMessage]
    # AudioIn writes the user's audio here: straight into the running stream
    # (StreamedAudio) for a streaming STT, else a channel the Recognizer reads
    audio: RecognizerAudio
    audio_out: trio.MemoryReceiveChannel[AudioFrame] | None
    # a segmented recognizer is driven by VAD segments
    vad: VADEventLink
    vad_out: trio.MemoryReceiveChannel[VADEvent]


@attrs.define
class Links:
    """Every link of one session, both ends; None where the session has no such actor.

    Invariant: a send end is here exactly when its reader will run.
    """

    supervisor: SupervisorLink
    supervisor_inbox: trio.MemoryReceiveChannel[SessionMessage]
    turn: TurnLink
    turn_inbox: trio.MemoryReceiveChannel[TurnMessage]
    # the VAD's and the recognizer's events for the Turn
    turn_events: TurnEventLink
    turn_events_out: trio.MemoryReceiveChannel[TurnEvent]
    # AudioIn's control inbox (muting, push-to-talk), with audio input only
    audio_in: AudioInLink | None = None
    audio_in_inbox: trio.MemoryReceiveChannel[AudioInMessage] | None = None
    recognizer: RecognizerEnds | None = None
    # the frames of a VAD that runs as its own actor
    vad_frames: FrameLink | None = None
    vad_frames_out: trio.MemoryReceiveChannel[AudioFrame] | None = None
    # the RealtimeLink's (always there; set by open)
    realtime: RealtimeEnds | None = None

    @classmethod
    def open(cls, *, audio_input: bool, recognizer: str | None, vad_actor: bool) -> Links:
        """``recognizer``: "streaming", "segmented" or None (no recognizer)."""
        supervisor, supervisor_inbox = trio.open_memory_channel[SessionMessage](math.inf)
        turn, turn_inbox = trio.open_memory_channel[TurnMessage](math.inf)
        turn_events, turn_events_out = trio.open_memory_channel[TurnEvent](TURN_EVENTS)
        links = cls(supervisor, supervisor_inbox, turn, turn_inbox, turn_events, turn_events_out)
        # Every session has a RealtimeLink: any agent may use a realtime model.
        control, inbox = trio.open_memory_channel[RealtimeLinkMessage](math.inf)
        audio, audio_out = trio.open_memory_channel[AudioFrame](RECOGNIZER_BACKLOG)
        links.realtime = RealtimeEnds(control, inbox, audio, audio_out)
        if not audio_input:
            return links
        links.audio_in, links.audio_in_inbox = trio.open_memory_channel[AudioInMessage](math.inf)
        if recognizer is not None:
            control, inbox = trio.open_memory_channel[RecognizerMessage](math.inf)
            audio: RecognizerAudio
            audio_out = None
            if recognizer == "streaming":
                audio = StreamedAudio()
            else:
                audio, audio_out = trio.open_memory_channel[AudioFrame](RECOGNIZER_BACKLOG)
            vad, vad_out = trio.open_memory_channel[VADEvent](RECOGNIZER_EVENTS)
            links.recognizer = RecognizerEnds(control, inbox, audio, audio_out, vad, vad_out)
        if vad_actor:
            links.vad_frames, links.vad_frames_out = trio.open_memory_channel[AudioFrame](VAD_FRAMES)
        return links
