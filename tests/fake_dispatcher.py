"""A LiveKit agent dispatcher on loopback, speaking the real protobufs.

It plays the server's side of the worker protocol (``/agent``): checks the
worker's token (signed with the API key and secret, with the ``agent``
grant), answers registration, sends availability requests to the least
loaded worker (by the load each one reported), assigns with a room token,
terminates jobs, answers pings, records every status update, and can drop a
worker's connection. It is a test double for the dispatch side only; media
go through the LoopbackRoom.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import attrs
import trio
from livekit import api
from livekit.protocol import agent, models
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from voxtrio.worker.credentials import Credentials, access_token


@attrs.define(eq=False)
class WorkerLink:
    worker_id: str
    ws: WebSocketConnection
    agent_name: str
    job_type: int
    version: str
    load: float = 0.0
    status: int = agent.WS_AVAILABLE
    job_count: int = 0
    draining: bool = False
    seq: int = 0
    closed: bool = False
    pings: int = 0
    migrated: list[str] = attrs.field(factory=list)
    status_changed: trio.Event = attrs.field(factory=trio.Event)
    outbox: Any = None  # trio send channel of ServerMessage


class FakeDispatcher:
    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.workers: dict[str, WorkerLink] = {}
        self.registrations: list[str] = []
        self.rejected = 0
        self.job_status: dict[str, list[int]] = {}
        self.assigned: dict[str, str] = {}  # job id -> worker id
        self.availability: dict[str, agent.AvailabilityResponse] = {}
        self._answers: dict[str, trio.Event] = {}
        self._seq_at_answer: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._job_ids = itertools.count(1)
        self.worker_joined = trio.Event()
        self.changed = trio.Event()
        """Set (and replaced) after every message from any worker."""
        self.port = 0
        self.url = ""

    async def serve(self, *, task_status: trio.TaskStatus[FakeDispatcher] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, self._handle, "127.0.0.1", 0, None)
            self.port = server.port
            self.url = f"ws://127.0.0.1:{self.port}"
            task_status.started(self)

    async def _handle(self, request: WebSocketRequest) -> None:
        if request.path.split("?")[0] != "/agent" or not self._authorized(request.headers):
            self.rejected += 1
            await request.reject(401, body=b"unauthorized")
            return
        ws = await request.accept()
        try:
            first = agent.WorkerMessage.FromString(await ws.get_message())
            if not first.HasField("register"):
                await ws.aclose(1002, "register first")
                return
            worker_id = f"AW_{next(self._ids)}"
            register = first.register
            link = WorkerLink(worker_id, ws, register.agent_name, register.type, register.version)
            await ws.send_message(
                agent.ServerMessage(
                    register=agent.RegisterWorkerResponse(
                        worker_id=worker_id, server_info=models.ServerInfo(version="fake", protocol=1)
                    )
                ).SerializeToString()
            )
            send, receive = trio.open_memory_channel[agent.ServerMessage](math.inf)
            link.outbox = send
            self.workers[worker_id] = link
            self.registrations.append(worker_id)
            self.worker_joined.set()
            self.worker_joined = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_loop, ws, receive)
                try:
                    while True:
                        self._on_message(link, agent.WorkerMessage.FromString(await ws.get_message()))
                finally:
                    nursery.cancel_scope.cancel()
        except ConnectionClosed:
            pass
        except BaseExceptionGroup as group:
            if group.subgroup(lambda e: not isinstance(e, (BaseExceptionGroup, ConnectionClosed))):
                raise
        finally:
            for link in list(self.workers.values()):
                if link.ws is ws:
                    link.closed = True
                    self.workers.pop(link.worker_id, None)

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        values = [value.decode() for name, value in headers if name.lower() == b"authorization"]
        if not values or not values[0].startswith("Bearer "):
            return False
        try:
            claims = api.TokenVerifier(self.credentials.api_key, self.credentials.api_secret).verify(values[0][7:])
        except Exception:
            return False
        return bool(claims.video and claims.video.agent)

    def _on_message(self, link: WorkerLink, message: agent.WorkerMessage) -> None:
        which = message.WhichOneof("message")
        if which == "availability":
            answer = message.availability
            self.availability[answer.job_id] = answer
            self._seq_at_answer[answer.job_id] = link.seq
            self._answers.pop(answer.job_id, trio.Event()).set()
        elif which == "update_worker":
            update = message.update_worker
            link.load, link.status, link.job_count = update.load, update.status, update.job_count
            link.draining, link.seq = update.draining, update.seq
            link.status_changed.set()
            link.status_changed = trio.Event()
        elif which == "update_job":
            self.job_status.setdefault(message.update_job.job_id, []).append(message.update_job.status)
        elif which == "ping":
            link.pings += 1
            pong = agent.WorkerPong(last_timestamp=message.ping.timestamp, timestamp=message.ping.timestamp)
            link.outbox.send_nowait(agent.ServerMessage(pong=pong))
        elif which == "migrate_job":
            link.migrated.extend(message.migrate_job.job_ids)
            for job_id in message.migrate_job.job_ids:
                self.assigned[job_id] = link.worker_id
        self.changed.set()
        self.changed = trio.Event()

    async def _send_loop(self, ws: WebSocketConnection, messages: Any) -> None:
        async for message in messages:
            await ws.send_message(message.SerializeToString())

    async def _send(self, link: WorkerLink, message: agent.ServerMessage) -> None:
        link.outbox.send_nowait(message)

    # -- what a test does ---------------------------------------------------------------------

    async def wait_for_workers(self, count: int) -> list[WorkerLink]:
        while len([w for w in self.workers.values() if not w.closed]) < count:
            await self.worker_joined.wait()
        return list(self.workers.values())

    def new_job(self, room: str, *, agent_name: str = "", metadata: str = "") -> agent.Job:
        number = next(self._job_ids)
        return agent.Job(
            id=f"AJ_{number}",
            dispatch_id=f"AD_{number}",
            type=agent.JT_ROOM,
            room=models.Room(sid=f"RM_{number}", name=room),
            agent_name=agent_name,
            metadata=metadata,
        )

    async def ask(self, link: WorkerLink, job: agent.Job) -> agent.AvailabilityResponse:
        answered = self._answers[job.id] = trio.Event()
        await self._send(link, agent.ServerMessage(availability=agent.AvailabilityRequest(job=job)))
        await answered.wait()
        while link.seq <= self._seq_at_answer[job.id] and not link.closed:  # the load report after the answer
            await link.status_changed.wait()
        return self.availability[job.id]

    async def assign(self, link: WorkerLink, job: agent.Job) -> None:
        token = access_token(self.credentials, identity=f"agent-{job.id}", room=job.room.name, agent=True)
        self.assigned[job.id] = link.worker_id
        await self._send(link, agent.ServerMessage(assignment=agent.JobAssignment(job=job, url="", token=token)))

    async def dispatch(self, room: str, **job_fields: Any) -> tuple[str, str] | None:
        """Offer a job to the workers from the least loaded up, as LiveKit does;
        (job id, worker id) of the one that took it, None if none did."""
        job = self.new_job(room, **job_fields)
        for link in sorted(self.workers.values(), key=lambda w: (w.load, w.worker_id)):
            if link.closed or link.status != agent.WS_AVAILABLE:
                continue
            answer = await self.ask(link, job)
            if answer.available:
                await self.assign(link, job)
                return job.id, link.worker_id
        return None

    async def terminate(self, job_id: str) -> None:
        link = self.workers[self.assigned[job_id]]
        await self._send(link, agent.ServerMessage(termination=agent.JobTermination(job_id=job_id)))

    async def wait_for_status(self, job_id: str, status: int) -> None:
        while status not in self.job_status.get(job_id, []):
            await self.changed.wait()

    async def drop(self, worker_id: str) -> None:
        """Cut a worker's connection (as a server restart or a network failure would)."""
        link = self.workers[worker_id]
        await link.ws.aclose(1012, "service restart")
