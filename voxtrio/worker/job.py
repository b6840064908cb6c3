"""JobContext: what an entrypoint gets for one call.

An agent file declares ``async def entrypoint(ctx: JobContext)``; the worker
calls it once per job LiveKit assigns, and the call is over when it returns::

    async def entrypoint(ctx: JobContext) -> None:
        session = voxtrio.AgentSession(stt=..., llm=..., tts=..., vad=...)
        await ctx.run(session, Assistant())

``ctx.run`` joins the room with the job's token (the worker's shared asyncio
bridge underneath), runs ``session.main`` until the session closes, and marks
the job listening once the agent is. ``ctx.connect()`` gives the transport
itself, for an entrypoint that wants the room before the session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from ..transports.asyncio_bridge import AsyncioBridge
from ..transports.livekit import LiveKitTransport

if TYPE_CHECKING:
    from livekit.protocol import agent

    from ..agent import Agent
    from ..session import AgentSession


class JobContext:
    def __init__(self, *, job: agent.Job, url: str, token: str, worker_id: str, bridge: AsyncioBridge) -> None:
        self.job = job
        """The job as LiveKit sent it (``livekit.protocol.agent.Job``: room, participant, metadata)."""
        self.url = url
        self.token = token
        """The agent participant's token for this room (from the assignment)."""
        self.worker_id = worker_id
        self.bridge = bridge
        self.listening = trio.Event()
        """Set once the agent listens (``ctx.run``), or by the entrypoint itself."""

    @property
    def room_name(self) -> str:
        return self.job.room.name

    @property
    def metadata(self) -> str:
        return self.job.metadata

    def connect(self, **options: Any) -> LiveKitTransport:
        """The room of this job as a transport (``async with``); options as LiveKitTransport's.
        A job for one publisher links that participant by default."""
        if self.job.participant.identity:
            options.setdefault("participant_identity", self.job.participant.identity)
        return LiveKitTransport(self.url, self.token, bridge=self.bridge, **options)

    async def run(self, session: AgentSession, agent: Agent, **options: Any) -> None:
        """Join the room, run the session until it closes, leave."""
        async with self.connect(**options) as transport:
            async with trio.open_nursery() as nursery:
                await nursery.start(session.main, agent, transport)
                self.listening.set()
