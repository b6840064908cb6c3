"""Recorder: writes the session to its directory as the call goes.

It reads a bounded link that its writers never block on: when it falls
behind, frames are dropped and counted (by the writers), never silently lost.
Audio reaches the disk every ``flush_interval`` (see
:class:`voxtrio.recording.stereo.StereoRecording`); events and log records
are appended as they happen. The session calls :meth:`on_event` for each
event (where the agent's audio was heard comes from there: see
:meth:`_follow_playback`) and, after the close, :meth:`aclose`, which writes
the transcript and runs the upload hook.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import IO, Any

import trio

from ..events import Event
from ..messages import RecordAudio
from ..recording import RecordingOptions
from ..recording.stereo import StereoRecording, open_audio_file
from ..telemetry.logging import JsonFormatter
from ..transcript import ConversationLog

logger = logging.getLogger("voxtrio.recorder")

# Frames waiting for the recorder; writers drop (and count) beyond this.
FRAME_BUFFER = 500


class _SessionLogHandler(logging.Handler):
    """The records of one session (by their session_id), as JSON lines."""

    def __init__(self, session_id: str, file: IO[str]) -> None:
        super().__init__()
        self._session_id = session_id
        self._file = file
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "session_id", None) == self._session_id:
            self._file.write(self.format(record) + "\n")
            self._file.flush()


class Recorder:
    def __init__(self, *, options: RecordingOptions | None, session_id: str) -> None:
        self.options = options
        self.session_id = session_id
        self.directory: Path | None = None if options is None else options.session_directory(session_id)
        self.inbox, self._inbox = trio.open_memory_channel[RecordAudio](FRAME_BUFFER)
        # Open while the session runs (each only when its option is on).
        self.audio: StereoRecording | None = None
        self._events: IO[str] | None = None
        self._log_handler: _SessionLogHandler | None = None
        self.log = ConversationLog()
        self._usage: dict[str, Any] | None = None

    @property
    def enabled(self) -> bool:
        return self.options is not None

    @property
    def audio_path(self) -> Path | None:
        if self.directory is None or self.options is None or not self.options.audio:
            return None
        return self.directory / f"audio.{self.options.format}"

    def _open(self) -> None:
        options, directory = self.options, self.directory
        assert options is not None and directory is not None
        directory.mkdir(parents=True, exist_ok=True)
        now = trio.current_time()
        self.log.origin = now
        if options.audio:
            path = self.audio_path
            assert path is not None
            self.audio = StereoRecording(open_audio_file(path, options.sample_rate, options.format), origin=now)
        if options.traces:
            self._events = open(directory / "events.jsonl", "w", encoding="utf-8")
        if options.logs:
            self._log_handler = _SessionLogHandler(
                self.session_id, open(directory / "log.jsonl", "w", encoding="utf-8")
            )
            logging.getLogger("voxtrio").addHandler(self._log_handler)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self.options is None:
            task_status.started()
            async for _ in self._inbox:  # nobody sends when recording is off
                pass
            return
        self._open()
        task_status.started()
        interval = self.options.flush_interval
        try:
            while True:
                with trio.move_on_at(trio.current_time() + interval):
                    async for message in self._inbox:
                        if self.audio is not None:
                            self.audio.add(message.track, message.frame, message.at)
                    return
                if self.audio is not None:
                    self.audio.flush(trio.current_time())
        finally:
            # Synchronous: it runs to the end even when the session is cancelled.
            self._close_audio()

    def _close_audio(self) -> None:
        if self.audio is not None:
            self.audio.flush(trio.current_time(), final=True)
            self.audio.close()
            if self.audio.late_samples:
                logger.warning("recording %s: %d late user samples dropped", self.session_id, self.audio.late_samples)

    def on_event(self, event: Event) -> None:
        if self.options is None:
            return
        if self.audio is not None:
            self._follow_playback(self.audio, event)
        if self.options.transcript:
            self.log.on_event(event)
        if self._events is not None:
            line = {"t": round(event.created_at - (self.log.origin or 0.0), 3), "seq": event.seq,
                    "event": event.type, **event.payload()}
            self._events.write(json.dumps(line, default=str) + "\n")
            self._events.flush()
        if event.type == "close":
            self._usage = event.usage  # type: ignore[attr-defined]

    @staticmethod
    def _follow_playback(audio: StereoRecording, event: Event) -> None:
        """Keep on the agent's track only what was heard.

        The agent's audio plays only while it is not listening: the output is
        paused from the moment a false interruption sends it to listening
        (docs/behaviour.md, "False interruption"; between two speeches it has
        nothing to play anyway) until it goes back to speaking or thinking,
        its next playback starts (audible only once resumed) or the pause is
        over (``agent_false_interruption``, resumed); an interruption cuts
        what was queued or held, a dropped paused speech included.
        """
        at = event.created_at
        if event.type == "playback_finished" and event.interrupted:  # type: ignore[attr-defined]
            audio.cut(at)
        elif event.type == "agent_state_changed":
            if event.new_state == "listening":  # type: ignore[attr-defined]
                audio.pause(at)
            elif event.old_state == "listening":  # type: ignore[attr-defined]
                audio.resume(at)
        elif event.type == "playback_started" or (event.type == "agent_false_interruption" and event.resumed):  # type: ignore[attr-defined]
            audio.resume(at)

    async def aclose(self) -> None:
        """After the close: finish the files, then hand the directory to the upload hook."""
        if self.options is None or self.directory is None:
            return
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._log_handler is not None:
            logging.getLogger("voxtrio").removeHandler(self._log_handler)
            self._log_handler._file.close()
            self._log_handler = None
        if self.options.transcript:
            document = {
                "session_id": self.session_id,
                "audio": None if self.audio_path is None else self.audio_path.name,
                "duration": None if self.audio is None else round(self.audio.duration, 3),
                **self.log.to_dict(),
                "usage": self._usage,
            }
            temporary = self.directory / "transcript.json.partial"
            temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            temporary.replace(self.directory / "transcript.json")
        if self.options.upload is not None:
            await self.options.upload(self.directory)
