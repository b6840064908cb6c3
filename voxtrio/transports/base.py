"""Transports: where the user's audio comes from and the agent's audio goes.

A transport reads input into a channel the session owns and exposes an
:class:`AudioOutput` device. The Speaker paces writes to the device in real
time with a small lead (``AudioOutput.buffer_duration``), so a ``clear()`` on
interruption leaves at most that much audio in flight.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

from ..errors import VoxtrioError

if TYPE_CHECKING:
    import trio

    from ..audio import AudioFrame
    from ..session import AgentSession


class TransportDisconnected(VoxtrioError):
    """The remote end went away; the session closes with reason
    ``participant_disconnected``."""


class AudioOutput(abc.ABC):
    """A playout device.

    ``write`` hands a frame over and should return quickly; the Speaker decides
    when to write (at most ``buffer_duration`` ahead of the play head). A device
    that cannot be paused reports ``can_pause = False`` and false-interruption
    resume is then off.
    """

    sample_rate: int | None = None
    can_pause: bool = False
    buffer_duration: float = 0.2

    @abc.abstractmethod
    async def write(self, frame: AudioFrame) -> None: ...

    def clear(self) -> None:
        """Discard everything written but not played yet."""

    def pause(self) -> None:
        """Stop playing; keep what is queued."""

    def resume(self) -> None:
        pass

    def segment_done(self) -> None:
        """The current utterance has no more audio (a device may flush)."""

    def queued(self) -> float | None:
        """Seconds of the audio written so far that the listener has not heard yet.

        A device that plays somewhere the Speaker cannot see (a browser behind
        a network and a jitter buffer) reports its true play head here, so an
        interruption records what was really heard and the agent's transcript
        keeps step with the sound. None (the default): the device plays as it
        is written, and the Speaker's own timeline is the truth.
        """
        return None


class Transport(abc.ABC):
    """The session's connection to the user."""

    audio_output: AudioOutput | None = None
    # True: ``read_audio``'s ``frames`` converts and fans out each frame in the
    # sending task itself (voxtrio/actors/audio_in.py, InlineInput), one task
    # wake-up less per frame than a channel to AudioIn's loop. For transports
    # whose reading task waits on the network. The scripted test transport
    # keeps the channel: its recorded timelines order same-instant events by
    # that hop (docs/behaviour.md, "Events and ordering").
    inline_input: bool = False

    def attach(self, session: AgentSession) -> None:
        """Called by ``session.main`` before anything starts: a transport that shows
        or records the conversation, or feeds it typed text, keeps the session here
        (``session.on`` for its events)."""

    async def read_audio(self, frames: trio.MemorySendChannel[AudioFrame]) -> None:
        """Send the user's audio into ``frames`` until the input ends.

        Return normally at the end of the input; raise TransportDisconnected
        when the user left. The default is a transport with no audio input.
        """

    def publish_text(self, speech_id: str, text: str, *, final: bool) -> None:
        """Show the agent's words as they are heard (optional).

        The Speaker calls it while a reply plays: ``text`` is what has been
        heard so far of the current utterance (a speech has one per LLM step),
        growing word by word in step with the audio (TTS word timings when the
        provider gives them, the pacing estimate otherwise); ``final`` closes
        the utterance with the words heard in the end, cut where an
        interruption cut the audio (the text the history records).
        """

    async def aclose(self) -> None:
        pass
