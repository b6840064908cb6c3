"""Worker: one trio process that takes calls from LiveKit's agent dispatch.

The worker speaks LiveKit's agent protocol (the ``livekit.protocol.agent``
protobufs, one binary WebSocket message each) on ``<LIVEKIT_URL>/agent``,
authenticated with a token carrying the ``agent`` grant:

1. it registers (``RegisterWorkerRequest``: job type, agent name, version,
   permissions) and gets a worker id back;
2. for each room (or publisher) to serve, the server asks whether it is
   available (``AvailabilityRequest``); the worker answers from its load;
3. the server assigns the job (``JobAssignment``, with the room's URL and a
   token for the agent participant); the worker runs the entrypoint and
   reports ``UpdateJobStatus`` (running, then success or failure);
4. ``JobTermination`` ends a job; the worker reports its load and status
   (``UpdateWorkerStatus``) on every change and every 2.5 s, and pings.

Admission is a reservation taken when the worker says "available", in the
same step as the check, so two requests cannot both take the last slot (the
load LiveKit's worker samples every half second lets that happen); a
reservation the server does not follow with an assignment within 7.5 s is
given back. Load is the share of ``max_jobs`` taken, running and reserved.

Jobs run in the worker's nursery, not the connection's: when the dispatch
connection drops, the worker reconnects with backoff, registers again and
tells the server which jobs it still runs, and the calls keep going. All the
process's calls share one :class:`AsyncioBridge` (one SDK thread per process:
one loop to wake, fewer threads for the GIL to hand between); each call's
asyncio work is still cancelled and awaited when its session ends.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import attrs
import trio
import trio_websocket
from google.protobuf.message import DecodeError
from livekit.protocol import agent, models

from .._sync import Flag
from ..errors import VoxtrioError
from ..transports.asyncio_bridge import AsyncioBridge
from ..transports.livekit import sole_error
from .credentials import Credentials, agent_token
from .job import JobContext

logger = logging.getLogger("voxtrio.worker")

ASSIGNMENT_TIMEOUT = 7.5
ATTRIBUTE_AGENT_NAME = "lk.agent.name"
JOB_TYPES = {"room": agent.JT_ROOM, "publisher": agent.JT_PUBLISHER, "participant": agent.JT_PARTICIPANT}

Entrypoint = Callable[[JobContext], Awaitable[None]]



class WorkerError(VoxtrioError):
    """The worker cannot work with the LiveKit server."""


class WorkerConnectionError(WorkerError, ConnectionError):
    """The dispatch connection could not be (re-)established within ``max_retry`` attempts."""


class WorkerAuthError(WorkerConnectionError):
    """The server refused the worker's token (wrong API key or secret)."""


class WorkerProtocolError(WorkerError):
    """The server said something the agent protocol does not allow."""


# What ends one dispatch connection and makes the worker connect again.
_CONNECTION_ERRORS = (
    trio_websocket.HandshakeError,
    trio_websocket.ConnectionClosed,
    OSError,
    trio.TooSlowError,
    WorkerProtocolError,
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"voxtrio-{version('voxtrio')}"
    except PackageNotFoundError:  # pragma: no cover
        return "voxtrio"


@attrs.frozen(kw_only=True)
class WorkerOptions:
    agent_name: str = ""
    """Empty: dispatched to every new room automatically; named: only by explicit dispatch."""
    job_type: str = attrs.field(default="room", validator=attrs.validators.in_(JOB_TYPES))
    max_jobs: int = 25
    """Calls one process takes at once (its load is the share of these in use)."""
    load_threshold: float = 1.0
    """Load at and above which the worker says it is full."""
    status_interval: float = 2.5
    ping_interval: float = 10.0
    retry_delays: tuple[float, ...] = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0)
    """Waits before each reconnection attempt (the last repeats), as LiveKit's worker."""
    max_retry: int = 16
    drain_timeout: float = 1800.0
    """How long a drain waits for live calls before it ends them."""
    assignment_timeout: float = ASSIGNMENT_TIMEOUT
    """How long a slot stays reserved for an assignment that does not come."""


class Admission:
    """Job slots, taken atomically: ``try_reserve`` checks and takes in one step
    (no await in between), so the last slot goes to one request only."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.reserved: set[str] = set()
        self.running: set[str] = set()
        self.draining = False
        self.idle = Flag(True)

    @property
    def load(self) -> float:
        return (len(self.reserved) + len(self.running)) / self.capacity if self.capacity else 1.0

    def try_reserve(self, job_id: str, threshold: float = 1.0) -> bool:
        taken = len(self.reserved) + len(self.running)
        if self.draining or job_id in self.reserved or job_id in self.running:
            return False
        if taken >= self.capacity or (taken + 1) / self.capacity > threshold + 1e-9:
            return False
        self.reserved.add(job_id)
        self.idle.set(False)
        return True

    def start(self, job_id: str) -> bool:
        if job_id not in self.reserved:
            return False
        self.reserved.discard(job_id)
        self.running.add(job_id)
        return True

    def release(self, job_id: str) -> None:
        self.reserved.discard(job_id)
        self.running.discard(job_id)
        self.idle.set(not self.reserved and not self.running)


def _parse(data: bytes | str) -> agent.ServerMessage:
    if isinstance(data, str):
        raise WorkerProtocolError("the server sent a text message; the agent protocol is binary")
    try:
        return agent.ServerMessage.FromString(data)
    except DecodeError as error:
        raise WorkerProtocolError(f"the server sent a message that is not a ServerMessage: {error}") from None


def agent_url(url: str) -> str:
    """``<LIVEKIT_URL>/agent`` with a WebSocket scheme (``https`` → ``wss``)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/agent", parts.query, ""))


class Worker:
    """Registers with LiveKit and runs ``entrypoint(ctx)`` for each job assigned."""

    def __init__(self, entrypoint: Entrypoint, credentials: Credentials, options: WorkerOptions | None = None) -> None:
        self.entrypoint = entrypoint
        self.credentials = credentials
        self.options = options or WorkerOptions()
        self.admission = Admission(self.options.max_jobs)
        self.worker_id: str | None = None
        self.registrations = 0
        """How many times the worker has registered (1 + reconnections)."""
        self.start_latencies: list[float] = []
        """Per job: seconds from the assignment to the agent listening."""
        self.finished: list[tuple[str, int]] = []
        """(job id, JobStatus) of every job that ended, in order."""
        self.ping_rtt: float | None = None
        self._send, self._outbox = trio.open_memory_channel[agent.WorkerMessage](256)
        self._pending: dict[str, agent.Job] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._seq = 0
        self._nursery: trio.Nursery | None = None
        self._bridge: AsyncioBridge | None = None
        self._flushed = Flag(True)  # everything queued has been sent
        self._stop = trio.Event()
        self.stopped = trio.Event()
        """Set when ``run`` has returned: nothing of the worker runs any more."""

    # -- lifetime -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve jobs until drained (or cancelled). ``started`` once registered."""
        try:
            async with AsyncioBridge(name="voxtrio-livekit") as bridge:
                self._bridge = bridge
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await nursery.start(self._connect_forever)
                    task_status.started()
                    await self._stop.wait()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise sole_error(group) from None
        finally:
            self.stopped.set()

    async def drain(self, timeout: float | None = None) -> None:
        """Take no new jobs, let the live ones finish (bounded), then stop."""
        self.admission.draining = True
        self._report_status()
        with trio.move_on_after(self.options.drain_timeout if timeout is None else timeout):
            await self.admission.idle.wait_value(True)
        for scope in list(self._scopes.values()):
            scope.cancel()
        with trio.move_on_after(5.0):  # the cancelled calls close (each bounded itself)
            await self.admission.idle.wait_value(True)
        with trio.move_on_after(5.0):  # the last job statuses reach the server
            await self._flushed.wait_value(True)
        self._stop.set()

    def stop(self) -> None:
        """Stop now: the live calls are cancelled (they close with ``job_shutdown``)."""
        self._stop.set()

    # -- the dispatch connection --------------------------------------------------------------

    async def _connect_forever(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        url = agent_url(self.credentials.url)
        attempt = 0
        while True:
            try:
                headers = [(b"authorization", f"Bearer {agent_token(self.credentials)}".encode())]
                async with trio_websocket.open_websocket_url(url, extra_headers=headers, connect_timeout=10) as ws:
                    await self._register(ws)
                    attempt = 0
                    task_status.started()
                    task_status = trio.TASK_STATUS_IGNORED
                    await self._serve(ws)
            except trio_websocket.ConnectionRejected as error:  # before HandshakeError, its base
                if error.status_code in (401, 403):
                    raise WorkerAuthError(
                        f"{url} refused the worker's token ({error.status_code}): check LIVEKIT_API_KEY and LIVEKIT_API_SECRET"
                    ) from None
                reason: object = f"rejected with HTTP {error.status_code}"
            except _CONNECTION_ERRORS as error:
                reason = error
            except BaseExceptionGroup as group:  # from the connection's tasks
                if group.subgroup(lambda e: not isinstance(e, (BaseExceptionGroup, *_CONNECTION_ERRORS))):
                    raise
                reason = group.exceptions[0]
            if attempt >= self.options.max_retry:
                raise WorkerConnectionError(f"could not connect to {url} after {attempt} attempts ({reason})")
            delays = self.options.retry_delays
            delay = delays[min(attempt, len(delays) - 1)]
            attempt += 1
            logger.warning("dispatch connection lost (%s); reconnecting in %.1f s", reason, delay)
            await trio.sleep(delay)

    async def _register(self, ws: trio_websocket.WebSocketConnection) -> None:
        request = agent.WorkerMessage(
            register=agent.RegisterWorkerRequest(
                type=JOB_TYPES[self.options.job_type],
                agent_name=self.options.agent_name,
                version=_version(),
                allowed_permissions=models.ParticipantPermission(
                    can_publish=True, can_subscribe=True, can_publish_data=True, can_update_metadata=True, agent=True
                ),
            )
        )
        await ws.send_message(request.SerializeToString())
        with trio.fail_after(10):
            first = _parse(await ws.get_message())
        if not first.HasField("register"):
            raise WorkerProtocolError(f"expected the register response first, got {first.WhichOneof('message')}")
        self.worker_id = first.register.worker_id
        self.registrations += 1
        logger.info("registered as worker %s (agent %r)", self.worker_id, self.options.agent_name)
        live = sorted(self.admission.running)
        if live:  # after a reconnection: these calls are still ours
            await ws.send_message(agent.WorkerMessage(migrate_job=agent.MigrateJobRequest(job_ids=live)).SerializeToString())
        self._report_status()

    async def _serve(self, ws: trio_websocket.WebSocketConnection) -> None:
        async with trio.open_nursery() as connection:
            connection.start_soon(self._send_loop, ws)
            connection.start_soon(self._status_loop)
            connection.start_soon(self._ping_loop)
            try:
                while True:
                    self._on_message(_parse(await ws.get_message()))
            finally:
                connection.cancel_scope.cancel()

    async def _send_loop(self, ws: trio_websocket.WebSocketConnection) -> None:
        async for message in self._outbox:
            await ws.send_message(message.SerializeToString())
            self._flushed.set(self._outbox.statistics().current_buffer_used == 0)

    async def _status_loop(self) -> None:
        while True:
            await trio.sleep(self.options.status_interval)
            self._report_status()

    async def _ping_loop(self) -> None:
        while True:
            self._queue(agent.WorkerMessage(ping=agent.WorkerPing(timestamp=int(time.time() * 1000))))
            await trio.sleep(self.options.ping_interval)

    def _queue(self, message: agent.WorkerMessage) -> None:
        try:
            self._send.send_nowait(message)
            self._flushed.set(False)
        except trio.WouldBlock:
            logger.warning("worker outbox full; dropped a %s message", message.WhichOneof("message"))

    def _report_status(self) -> None:
        admission = self.admission
        full = admission.draining or admission.load >= self.options.load_threshold
        self._seq += 1
        self._queue(
            agent.WorkerMessage(
                update_worker=agent.UpdateWorkerStatus(
                    status=agent.WS_FULL if full else agent.WS_AVAILABLE,
                    load=admission.load,
                    job_count=len(admission.running),
                    draining=admission.draining,
                    seq=self._seq,
                )
            )
        )

    # -- what the server says (synchronous: each message is handled in one step) -------------

    def _on_message(self, message: agent.ServerMessage) -> None:
        which = message.WhichOneof("message")
        if which == "availability":
            self._on_availability(message.availability)
        elif which == "assignment":
            self._on_assignment(message.assignment)
        elif which == "termination":
            scope = self._scopes.get(message.termination.job_id)
            if scope is not None:
                scope.cancel()
        elif which == "pong":
            self.ping_rtt = max(0.0, time.time() - message.pong.last_timestamp / 1000)

    def _on_availability(self, request: agent.AvailabilityRequest) -> None:
        job = request.job
        available = self.admission.try_reserve(job.id, self.options.load_threshold)
        answer = agent.AvailabilityResponse(job_id=job.id, available=available)
        if available:
            answer.participant_identity = f"agent-{job.id}"
            answer.participant_attributes[ATTRIBUTE_AGENT_NAME] = self.options.agent_name
            self._pending[job.id] = job
            assert self._nursery is not None
            self._nursery.start_soon(self._expire_reservation, job.id)
        self._queue(agent.WorkerMessage(availability=answer))
        self._report_status()

    async def _expire_reservation(self, job_id: str) -> None:
        await trio.sleep(self.options.assignment_timeout)
        if self._pending.pop(job_id, None) is not None:
            logger.warning("no assignment for job %s in time; slot released", job_id)
            self.admission.release(job_id)
            self._report_status()

    def _on_assignment(self, assignment: agent.JobAssignment) -> None:
        job_id = assignment.job.id
        if self._pending.pop(job_id, None) is None or not self.admission.start(job_id):
            logger.warning("assignment for job %s, which this worker did not accept", job_id)
            return
        assert self._nursery is not None
        self._nursery.start_soon(self._run_job, assignment, trio.current_time())

    async def _run_job(self, assignment: agent.JobAssignment, assigned_at: float) -> None:
        job = assignment.job
        assert self._bridge is not None
        context = JobContext(
            job=job,
            url=assignment.url or self.credentials.url,
            token=assignment.token,
            worker_id=self.worker_id or "",
            bridge=self._bridge,
        )
        status, error = agent.JS_SUCCESS, ""
        self._update_job(job.id, agent.JS_RUNNING)
        try:
            with trio.CancelScope() as scope:
                self._scopes[job.id] = scope
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._note_listening, context, assigned_at)
                    await self.entrypoint(context)
                    nursery.cancel_scope.cancel()
        except Exception as failure:
            logger.exception("job %s failed", job.id)
            status, error = agent.JS_FAILED, f"{type(failure).__name__}: {failure}"
        finally:
            self._scopes.pop(job.id, None)
            self.admission.release(job.id)
            self.finished.append((job.id, status))
            self._update_job(job.id, status, error)
            self._report_status()

    async def _note_listening(self, context: JobContext, assigned_at: float) -> None:
        await context.listening.wait()
        self.start_latencies.append(trio.current_time() - assigned_at)

    def _update_job(self, job_id: str, status: int, error: str = "") -> None:
        self._queue(agent.WorkerMessage(update_job=agent.UpdateJobStatus(job_id=job_id, status=status, error=error)))
