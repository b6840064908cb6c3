"""ConsoleTransport: a chat in the terminal, the agent answering in text and voice.

The user types; each line is a user turn (it interrupts the agent if it is
speaking). The agent's answers are printed, and spoken through the speakers
when ``sounddevice`` finds an output device (PortAudio is a system library:
on Debian ``apt-get install libportaudio2``); without one the console is text
only and says so. An empty line is ignored; end of input (Ctrl-D, or the end
of piped text) ends the call once the agent has finished answering.

The keyboard is read in ``read_audio``, the task the session runs for a
transport's input: the console's input is text, so it sends no audio, and
the session gets no VAD or STT (the console's session has none).
"""

from __future__ import annotations

import collections
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import trio

from ..audio import AudioFrame
from .base import AudioOutput, Transport
from .client_events import submit_text_input

if TYPE_CHECKING:
    from ..session import AgentSession


def find_output_device() -> tuple[Any, str] | None:
    """(sounddevice module, device name) of the default output, or None with no usable device."""
    try:
        import sounddevice
    except (ImportError, OSError):  # not installed, or PortAudio missing
        return None
    try:
        device = sounddevice.query_devices(kind="output")
    except Exception:  # PortAudio found no output device
        return None
    return sounddevice, str(device["name"])


class SpeakerOutput(AudioOutput):
    """Plays the agent's audio on a sounddevice output stream.

    PortAudio pulls audio from its own thread through a callback; writes land
    in a queue that the callback drains (silence when it runs dry), so
    ``clear()`` and ``pause()`` take effect within one device buffer.
    """

    can_pause = True
    buffer_duration = 0.2

    def __init__(self, sounddevice: Any) -> None:
        self._sounddevice = sounddevice
        self._stream: Any = None
        self.sample_rate: int | None = None
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._lock = threading.Lock()
        self._paused = False

    def _callback(self, outdata: Any, frames: int, time: Any, status: Any) -> None:
        out = np.zeros(frames, np.int16)
        filled = 0
        with self._lock:
            while not self._paused and filled < frames and self._queue:
                head = self._queue[0]
                take = min(frames - filled, len(head))
                out[filled : filled + take] = head[:take]
                filled += take
                if take == len(head):
                    self._queue.popleft()
                else:
                    self._queue[0] = head[take:]
        outdata[:] = out.tobytes()

    async def write(self, frame: AudioFrame) -> None:
        samples = frame.data
        if frame.num_channels > 1:
            samples = samples.reshape(-1, frame.num_channels).astype(np.int32).mean(axis=1).astype(np.int16)
        if self._stream is None:
            self.sample_rate = frame.sample_rate
            self._stream = self._sounddevice.RawOutputStream(
                samplerate=frame.sample_rate, channels=1, dtype="int16", callback=self._callback
            )
            self._stream.start()
        elif frame.sample_rate != self.sample_rate:
            import soxr

            samples = soxr.resample(samples, frame.sample_rate, self.sample_rate).astype(np.int16)
        with self._lock:
            self._queue.append(samples)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None


class ConsoleTransport(Transport):
    def __init__(self, *, audio: bool = True, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
        self._stdin_fd = (stdin or sys.stdin).fileno()
        self._out = stdout or sys.stdout
        self._session: AgentSession | None = None
        device = find_output_device() if audio else None
        self.audio_output = SpeakerOutput(device[0]) if device is not None else None
        self.device_name = device[1] if device is not None else None

    def attach(self, session: AgentSession) -> None:
        self._session = session
        session.on("conversation_item_added", self._on_item)
        session.on("agent_state_changed", self._on_state)

    def _print(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def _on_item(self, event: Any) -> None:
        item = event.item
        if item.type == "message" and item.role == "assistant":
            cut = " [interrupted]" if item.interrupted else ""
            self._print(f"agent> {item.content}{cut}")
        elif item.type == "agent_handoff" and item.old_agent is not None:
            self._print(f"(handed over to {item.new_agent})")

    def _on_state(self, event: Any) -> None:
        if event.new_state == "thinking":
            self._print("(thinking...)")

    async def read_audio(self, frames: trio.MemorySendChannel[AudioFrame]) -> None:
        if self.device_name is not None:
            self._print(f"(speaking on {self.device_name}; type a line and press Enter, Ctrl-D ends)")
        else:
            self._print("(no audio output device: text only; type a line and press Enter, Ctrl-D ends)")
        async with trio.lowlevel.FdStream(os.dup(self._stdin_fd)) as keyboard:
            pending = b""
            while True:
                data = await keyboard.receive_some(4096)
                if not data:
                    if self._session is not None:
                        self._session.shutdown(drain=True)
                    return
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._user_said(line.decode("utf-8", errors="replace").strip())

    def _user_said(self, text: str) -> None:
        if text and self._session is not None:
            submit_text_input(self._session, text)

    async def aclose(self) -> None:
        if isinstance(self.audio_output, SpeakerOutput):
            self.audio_output.close()
