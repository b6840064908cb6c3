"""Helpers for the tests of voxtrio serve: a server on loopback, a protocol client."""

from __future__ import annotations

import contextlib
import json
from functools import partial
from typing import Any, AsyncIterator, Callable

import numpy as np
import trio

import voxtrio
from voxtrio.server import TokenSigner, VoiceServer
from voxtrio.server.command import scripted_pipeline

SECRET = b"a test secret of thirty-two bytes"
GREETING = "Hello there, how can I help?"


class Greeter(voxtrio.Agent):
    def __init__(self) -> None:
        super().__init__(instructions="Greet, then repeat.")

    async def on_enter(self) -> None:
        self.session.say(GREETING)


@contextlib.asynccontextmanager
async def running_server(
    new_session: Callable[[], tuple[Any, Any]] | None = None, **options: Any
) -> AsyncIterator[tuple[VoiceServer, int]]:
    """A VoiceServer under hypercorn's trio worker on a free loopback port."""
    import hypercorn.config
    import hypercorn.trio

    if new_session is None:
        pipeline = scripted_pipeline()
        new_session = lambda: (voxtrio.AgentSession(min_endpointing_delay=0.5, **pipeline), Greeter())  # noqa: E731
    options.setdefault("signer", TokenSigner(SECRET))
    server = VoiceServer(new_session, **options)
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.websocket_max_message_size = 64 * 1024
    config.accesslog = None
    config.loglevel = "WARNING"
    config.graceful_timeout = 1.0
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(hypercorn.trio.serve, server, config))
        port = int(binds[0].rsplit(":", 1)[1])
        if not server.allowed_origins:
            server.allowed_origins = frozenset({f"http://127.0.0.1:{port}"})
        yield server, port
        nursery.cancel_scope.cancel()


async def http_request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on loopback: (status, headers, body)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{port}", "connection: close", "content-length: 0"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, body


def tone_frames(seconds: float, *, amplitude: int = 6000, frequency: float = 300.0) -> list[bytes]:
    """20 ms PCM16 frames of a tone (speech, for the energy VAD)."""
    t = np.arange(320) / 16_000
    frame = (amplitude * np.sin(2 * np.pi * frequency * t)).astype("<i2").tobytes()
    return [frame] * int(round(seconds / 0.02))


SILENCE = bytes(640)


class ProtocolClient:
    """A trio-websocket client that keeps every event and counts the audio."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.audio_bytes = 0
        self.audio_messages = 0
        self.largest_audio = 0
        self.changed = trio.Event()
        self.closed: Any = None

    async def read(self) -> None:
        from trio_websocket import ConnectionClosed

        try:
            while True:
                message = await self.ws.get_message()
                if isinstance(message, bytes):
                    self.audio_bytes += len(message)
                    self.audio_messages += 1
                    self.largest_audio = max(self.largest_audio, len(message))
                else:
                    self.events.append(json.loads(message))
                self.changed.set()
                self.changed = trio.Event()
        except ConnectionClosed as closed:
            self.closed = closed.reason
            self.changed.set()

    async def send_json(self, **message: Any) -> None:
        await self.ws.send_message(json.dumps(message))

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 10.0) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                if self.closed is not None:
                    raise AssertionError(f"closed ({self.closed}) before the event came; got {self.types()}")
                await self.changed.wait()

    def of(self, type: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == type]

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]

    async def stream(self, frames: list[bytes]) -> None:
        """Send frames at real-time pace (20 ms each)."""
        start = trio.current_time()
        for index, frame in enumerate(frames):
            await trio.sleep_until(start + index * 0.02)
            await self.ws.send_message(frame)


@contextlib.asynccontextmanager
async def connected(port: int, token: str, **options: Any) -> AsyncIterator[ProtocolClient]:
    from trio_websocket import open_websocket_url

    async with open_websocket_url(f"ws://127.0.0.1:{port}/ws?token={token}", **options) as ws:
        client = ProtocolClient(ws)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.read)
            yield client
            nursery.cancel_scope.cancel()
