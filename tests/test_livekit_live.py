"""Layer (d): against a real LiveKit server (``livekit-server --dev``, or LiveKit Cloud).
Skipped unless LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET are set; never run
in this repository's CI (no server can be installed there), so unproven here."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest
import trio

pytestmark = pytest.mark.skipif(
    not all(os.environ.get(name) for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")),
    reason="live LiveKit tests need LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET",
)

pytest.importorskip("livekit.rtc")

from voxtrio.audio import AudioFrame  # noqa: E402
from voxtrio.transports.livekit import LiveKitTransport  # noqa: E402
from voxtrio.worker import Credentials, Worker, WorkerOptions, access_token  # noqa: E402

from livekit_helpers import dominant_frequency, loud, tone  # noqa: E402


async def test_two_participants_hear_each_other_through_a_real_server():
    credentials = Credentials.from_env()
    room = f"voxtrio-live-{uuid.uuid4().hex[:8]}"
    tokens = [access_token(credentials, identity=name, room=room) for name in ("agent", "caller")]
    heard: list[np.ndarray] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            ready = trio.Event()

            async def caller() -> None:
                async with LiveKitTransport(credentials.url, tokens[1], client_events=False) as transport:
                    send, receive = trio.open_memory_channel[AudioFrame](500)
                    nursery.start_soon(transport.read_audio, send)
                    ready.set()
                    async for frame in receive:
                        if loud(frame.data):
                            heard.append(frame.data)
                            if len(heard) >= 15:
                                return

            nursery.start_soon(caller)
            async with LiveKitTransport(credentials.url, tokens[0], client_events=False) as agent:
                await ready.wait()
                assert agent.audio_output is not None
                for _ in range(10):
                    await agent.audio_output.write(AudioFrame(tone(0.1, 800, 24_000), 24_000))
                    await trio.sleep(0.1)
                while len(heard) < 15:
                    await agent.audio_output.write(AudioFrame(tone(0.1, 800, 24_000), 24_000))
                    await trio.sleep(0.1)
    assert abs(dominant_frequency(np.concatenate(heard), 16_000) - 800) < 20


async def test_a_worker_registers_with_the_real_server():
    async def entrypoint(ctx) -> None:  # type: ignore[no-untyped-def]
        ctx.listening.set()

    worker = Worker(entrypoint, Credentials.from_env(), WorkerOptions(agent_name="voxtrio-live-test"))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            assert worker.worker_id
            worker.stop()
