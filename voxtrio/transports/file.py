"""FileTransport: the user's side of a call from a sound file, the agent's side to files.

The input is any file :func:`voxtrio.audio_files.read_audio_file` reads (WAV in
any sample format, FLAC, OGG/Opus...; any rate, mono or stereo; AudioIn
converts). It is played into the session in chunks at the
pace of the trio clock, as a microphone would deliver it: real time under
trio's own clock, as fast as the models allow under
:class:`voxtrio.clock.FastForwardClock` (which skips only idle waits, so turns
and latencies stay what they would be live).

After the file, the transport keeps sending silence (a live line does not
go quiet) until the agent has finished answering: nothing has happened for
``settle`` seconds and the agent is listening. Then the call is over: the
input ends and the session is asked to shut down (``close_at_end``).

When the session ends, :meth:`aclose` writes what was asked for (the audio
as WAV, FLAC or OGG/Opus, by the file's extension):

* ``output_path``: the agent's audio on the call's timeline (silence where it
  did not speak, so it lines up with the input);
* ``conversation_path``: the call as heard, in stereo: the user's audio on the
  left, the agent's on the right;
* ``transcript_path``: the :class:`~voxtrio.transcript.ConversationLog` as
  JSON: what each side said and when, tool calls, timings per turn.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import trio

from ..audio import AudioFrame
from ..audio_files import PathLike, read_audio_file, writable_format, write_audio_file
from ..transcript import ConversationLog
from ..validation import check_number
from .base import AudioOutput, Transport

if TYPE_CHECKING:
    from ..session import AgentSession


# A chunk is what a microphone hands over at once: a millisecond to a second.
MIN_CHUNK_DURATION = 0.001
MAX_CHUNK_DURATION = 1.0


def _check_writable(path: PathLike, option: str) -> None:
    """Fail now, not after the whole call, when an output cannot be written."""
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{option}: the directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise PermissionError(f"{option}: the directory {directory} is not writable")


class TimelineAudioOutput(AudioOutput):
    """An output device that keeps everything it plays on a timeline.

    Audio plays back to back from the moment it is written (as the Speaker's
    PlayoutTimeline assumes); ``clear()`` drops what had not been played yet.
    Audio of another rate than the first frame's is resampled to it.
    """

    can_pause = False
    buffer_duration = 0.2

    def __init__(self) -> None:
        self.sample_rate: int | None = None
        self._pieces: list[tuple[float, np.ndarray]] = []
        self._end = -np.inf

    async def write(self, frame: AudioFrame) -> None:
        samples = frame.data
        if frame.num_channels > 1:
            samples = samples.reshape(-1, frame.num_channels).astype(np.int32).mean(axis=1).astype(np.int16)
        if self.sample_rate is None:
            self.sample_rate = frame.sample_rate
        elif frame.sample_rate != self.sample_rate:
            import soxr

            samples = soxr.resample(samples, frame.sample_rate, self.sample_rate).astype(np.int16)
        now = trio.current_time()
        start = max(now, self._end)
        self._pieces.append((start, samples))
        self._end = start + len(samples) / self.sample_rate

    def clear(self) -> None:
        now = trio.current_time()
        if self.sample_rate is None or self._end <= now:
            return
        kept = []
        for start, samples in self._pieces:
            if start >= now:
                continue
            played = int(round((now - start) * self.sample_rate))
            kept.append((start, samples[:played]))
        self._pieces = kept
        self._end = now

    @property
    def duration_played(self) -> float:
        rate = self.sample_rate or 1
        return sum(len(samples) for _, samples in self._pieces) / rate

    def render(self, origin: float, *, minimum: float = 0.0) -> np.ndarray:
        """Everything played, as one int16 track starting at ``origin`` (trio time)."""
        rate = self.sample_rate or 16_000
        length = int(minimum * rate)
        for start, samples in self._pieces:
            length = max(length, int(round((start - origin) * rate)) + len(samples))
        track = np.zeros(length, np.int16)
        for start, samples in self._pieces:
            offset = max(0, int(round((start - origin) * rate)))
            track[offset : offset + len(samples)] = samples[: length - offset]
        return track


class RecordingTransport(Transport):
    """The output half of a file-based call: agent audio on a timeline, the input as
    sent, and a ConversationLog; :meth:`aclose` writes the files asked for."""

    def __init__(
        self,
        *,
        output_path: PathLike | None = None,
        conversation_path: PathLike | None = None,
        transcript_path: PathLike | None = None,
        description: dict[str, Any] | None = None,
    ) -> None:
        for option, path in (
            ("output_path", output_path),
            ("conversation_path", conversation_path),
            ("transcript_path", transcript_path),
        ):
            if path is not None:
                _check_writable(path, option)
                if option != "transcript_path":
                    writable_format(path)
        self.output_path = output_path
        self.conversation_path = conversation_path
        self.transcript_path = transcript_path
        self.description = dict(description or {})
        self.audio_output = self.output = TimelineAudioOutput()
        self.heard = TimelineAudioOutput()
        """What the transport sent as the user's audio, on the same timeline."""
        self.log = ConversationLog()
        self._session: AgentSession | None = None

    def attach(self, session: AgentSession) -> None:
        self._session = session
        self.log.attach(session)

    async def _send(self, frames: trio.MemorySendChannel[AudioFrame], frame: AudioFrame) -> None:
        """Send a chunk of the user's audio (and keep it for the conversation file)."""
        await self.heard.write(frame)
        await frames.send(frame)

    def agent_done(self, settle: float) -> bool:
        """Nothing has happened for ``settle`` seconds and the agent is listening."""
        session = self._session
        if session is None:
            return True
        last = self.log.last_event_at
        quiet = last is None or trio.current_time() - last >= settle
        current = session.current_speech
        return quiet and session.agent_state == "listening" and (current is None or current.done())

    async def aclose(self) -> None:
        origin = self.log.origin if self.log.origin is not None else 0.0
        agent = self.output.render(origin)
        rate = self.output.sample_rate or self.heard.sample_rate or 16_000
        if self.output_path is not None:
            write_audio_file(self.output_path, agent, rate)
        if self.conversation_path is not None:
            user = self.heard.render(origin)
            if self.heard.sample_rate not in (None, rate):
                import soxr

                user = soxr.resample(user, self.heard.sample_rate, rate).astype(np.int16)
            length = max(len(user), len(agent))
            stereo = np.zeros((length, 2), np.int16)  # the user on the left, the agent on the right
            stereo[: len(user), 0] = user
            stereo[: len(agent), 1] = agent
            write_audio_file(self.conversation_path, stereo.reshape(-1), rate, 2)
        if self.transcript_path is not None:
            document: dict[str, Any] = {
                **self.description,
                "agent_audio": None if self.output_path is None else os.fspath(self.output_path),
                "conversation_audio": None if self.conversation_path is None else os.fspath(self.conversation_path),
                **self.log.to_dict(),
            }
            temporary = f"{os.fspath(self.transcript_path)}.partial"
            with open(temporary, "w", encoding="utf-8") as file:
                json.dump(document, file, indent=2)
                file.write("\n")
            os.replace(temporary, self.transcript_path)


class FileTransport(RecordingTransport):
    def __init__(
        self,
        input_path: PathLike,
        *,
        output_path: PathLike | None = None,
        conversation_path: PathLike | None = None,
        transcript_path: PathLike | None = None,
        chunk_duration: float = 0.02,
        settle: float = 2.0,
        max_answer_wait: float = 60.0,
        close_at_end: bool = True,
    ) -> None:
        super().__init__(
            output_path=output_path,
            conversation_path=conversation_path,
            transcript_path=transcript_path,
            description={"input": os.fspath(input_path)},
        )
        # A bad file or value fails here, before any session starts.
        self.input = read_audio_file(input_path)
        self.chunk_duration = check_number(
            chunk_duration, "chunk_duration", minimum=MIN_CHUNK_DURATION, maximum=MAX_CHUNK_DURATION
        )
        self.settle = check_number(settle, "settle", finite=True)
        self.max_answer_wait = check_number(max_answer_wait, "max_answer_wait", finite=True)
        self.close_at_end = close_at_end

    async def read_audio(self, frames: trio.MemorySendChannel[AudioFrame]) -> None:
        audio = self.input
        per_chunk = max(1, int(round(self.chunk_duration * audio.sample_rate))) * audio.num_channels
        started = trio.current_time()
        self.log.origin = started
        index = 0
        for offset in range(0, len(audio.data), per_chunk):
            index += 1
            # A chunk exists once it has been recorded: it arrives at its end.
            await trio.sleep_until(started + index * self.chunk_duration)
            piece = np.ascontiguousarray(audio.data[offset : offset + per_chunk])
            await self._send(frames, AudioFrame(piece, audio.sample_rate, audio.num_channels))
        silence = np.zeros(per_chunk, np.int16)
        give_up = trio.current_time() + self.max_answer_wait
        while not self.agent_done(self.settle) and trio.current_time() < give_up:
            index += 1
            await trio.sleep_until(started + index * self.chunk_duration)
            await self._send(frames, AudioFrame(silence, audio.sample_rate, audio.num_channels))
        if self.close_at_end and self._session is not None:
            self._session.shutdown(drain=True)
