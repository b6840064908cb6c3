"""Layer (b): the worker against a fake LiveKit dispatcher on loopback that speaks
the real protobufs, each call a scripted session in a LoopbackRoom. Real
clock and sockets; every test is bounded by a deadline, nothing is timed."""

from __future__ import annotations

import datetime

import attrs
import pytest
import trio

pytest.importorskip("livekit.protocol")

import voxtrio  # noqa: E402
from livekit.protocol import agent  # noqa: E402
from voxtrio.testing import LLMResponse, ScriptedLLM  # noqa: E402
from voxtrio.testing.livekit_room import LoopbackRoom  # noqa: E402
from voxtrio.worker import (  # noqa: E402
    Credentials,
    InvalidToken,
    JobContext,
    MissingCredentials,
    TokenExpired,
    Worker,
    WorkerAuthError,
    WorkerConnectionError,
    WorkerOptions,
    access_token,
    verify_token,
)

from fake_dispatcher import FakeDispatcher  # noqa: E402
from livekit_helpers import ToneTTS, dominant_frequency, wait_for_loud  # noqa: E402

DEADLINE = 30
CREDENTIALS = Credentials("ws://unused", "APIvoxtrio", "a-test-secret-that-is-long-enough-for-hs256")
FAST = dict(status_interval=0.2, ping_interval=0.2, retry_delays=(0.05, 0.1))


class Greeter(voxtrio.Agent):
    def __init__(self) -> None:
        super().__init__(instructions="greet")

    async def on_enter(self) -> None:
        self.session.say("Hello")


@attrs.define
class Calls:
    """What the entrypoint made for each job, for the test to drive."""

    rooms: dict[str, LoopbackRoom] = attrs.field(factory=dict)
    sessions: dict[str, voxtrio.AgentSession] = attrs.field(factory=dict)
    started: trio.Event = attrs.field(factory=trio.Event)

    async def entrypoint(self, ctx: JobContext) -> None:
        room = self.rooms[ctx.job.id] = LoopbackRoom(name=ctx.room_name, agent_identity=f"agent-{ctx.job.id}")
        session = self.sessions[ctx.job.id] = voxtrio.AgentSession(
            llm=ScriptedLLM([LLMResponse(input="x", content="y")]), tts=ToneTTS()
        )
        self.started.set()
        self.started = trio.Event()
        await ctx.run(session, Greeter(), room=room)


async def start(nursery: trio.Nursery, calls: Calls, **options) -> tuple[FakeDispatcher, Worker]:
    dispatcher = await nursery.start(FakeDispatcher(CREDENTIALS).serve)
    worker = Worker(
        calls.entrypoint, attrs.evolve(CREDENTIALS, url=dispatcher.url), WorkerOptions(**{**FAST, **options})
    )
    await nursery.start(worker.run)
    return dispatcher, worker


async def placed_call(dispatcher: FakeDispatcher, calls: Calls, room_name: str) -> tuple[str, LoopbackRoom]:
    """Dispatch a job, wait for its call to run, and put a caller in its room."""
    placed = await dispatcher.dispatch(room_name)
    assert placed is not None
    job_id, _ = placed
    await dispatcher.wait_for_status(job_id, agent.JS_RUNNING)
    if job_id not in calls.rooms:
        await calls.started.wait()
    room = calls.rooms[job_id]
    await room.agent_joined.wait()
    await room.join("caller")
    return job_id, room


async def stop(nursery: trio.Nursery, worker: Worker) -> None:
    worker.stop()
    await worker.stopped.wait()
    nursery.cancel_scope.cancel()  # the dispatcher


async def test_a_worker_registers_answers_by_load_runs_the_call_and_is_terminated():
    calls = Calls()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            dispatcher, worker = await start(nursery, calls, agent_name="voxtrio-test", max_jobs=4)
            [link] = await dispatcher.wait_for_workers(1)
            assert (link.agent_name, link.job_type, link.version[:8]) == ("voxtrio-test", agent.JT_ROOM, "voxtrio-")

            job = dispatcher.new_job("room-1")
            answer = await dispatcher.ask(link, job)
            assert answer.available and answer.participant_identity == f"agent-{job.id}"
            assert answer.participant_attributes["lk.agent.name"] == "voxtrio-test"
            assert link.load == 0.25  # the reservation counts before the call starts

            await dispatcher.assign(link, job)
            await dispatcher.wait_for_status(job.id, agent.JS_RUNNING)
            if job.id not in calls.rooms:
                await calls.started.wait()
            room = calls.rooms[job.id]
            await room.agent_joined.wait()
            await room.join("caller")
            greeting = await wait_for_loud(room.heard)
            assert abs(dominant_frequency(__import__("numpy").concatenate(greeting), 16_000) - 660) < 15
            assert worker.start_latencies and link.job_count == 1

            await dispatcher.terminate(job.id)
            await dispatcher.wait_for_status(job.id, agent.JS_SUCCESS)
            while link.load != 0:
                await link.status_changed.wait()
            assert link.pings >= 1
            await stop(nursery, worker)
    session = calls.sessions[job.id]
    assert session.last_close is not None and session.last_close.reason == "job_shutdown"
    assert room.agent_left.is_set()
    assert dispatcher.job_status[job.id] == [agent.JS_RUNNING, agent.JS_SUCCESS]


async def test_two_requests_for_the_last_slot_get_one_yes_and_an_unassigned_slot_comes_back():
    calls = Calls()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            dispatcher, worker = await start(nursery, calls, max_jobs=1, assignment_timeout=0.3)
            [link] = await dispatcher.wait_for_workers(1)
            jobs = [dispatcher.new_job("a"), dispatcher.new_job("b")]
            answers = {}

            async def ask(job: agent.Job) -> None:
                answers[job.id] = (await dispatcher.ask(link, job)).available

            async with trio.open_nursery() as both:
                for job in jobs:
                    both.start_soon(ask, job)
            assert sorted(answers.values()) == [False, True]
            assert link.status == agent.WS_FULL
            # Nobody assigns the accepted one: its slot is given back.
            while link.load != 0:
                await link.status_changed.wait()
            assert (await dispatcher.ask(link, dispatcher.new_job("c"))).available
            await stop(nursery, worker)


async def test_a_dropped_dispatch_connection_comes_back_and_the_call_goes_on():
    calls = Calls()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            dispatcher, worker = await start(nursery, calls)
            [first] = await dispatcher.wait_for_workers(1)
            job_id, room = await placed_call(dispatcher, calls, "room-2")
            await wait_for_loud(room.heard)

            await dispatcher.drop(first.worker_id)
            while len(dispatcher.registrations) < 2:
                await dispatcher.worker_joined.wait()
            second = dispatcher.workers[dispatcher.registrations[1]]
            while not second.migrated:
                await dispatcher.changed.wait()
            assert second.migrated == [job_id]
            assert worker.registrations == 2
            assert calls.sessions[job_id].running  # the call did not notice
            await room.chat("still there?")  # and still hears the room

            await dispatcher.terminate(job_id)  # through the new connection
            await dispatcher.wait_for_status(job_id, agent.JS_SUCCESS)
            await stop(nursery, worker)


async def test_a_draining_worker_takes_nothing_new_and_stops_when_its_calls_end():
    calls = Calls()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            dispatcher, worker = await start(nursery, calls)
            [link] = await dispatcher.wait_for_workers(1)
            job_id, room = await placed_call(dispatcher, calls, "room-3")

            drained = trio.Event()

            async def drain() -> None:
                await worker.drain(timeout=20)
                drained.set()

            nursery.start_soon(drain)
            while not link.draining:
                await link.status_changed.wait()
            assert link.status == agent.WS_FULL
            assert not (await dispatcher.ask(link, dispatcher.new_job("late"))).available
            assert not drained.is_set()
            await room.leave("caller")  # the call ends by itself
            await drained.wait()
            await worker.stopped.wait()
            nursery.cancel_scope.cancel()
    assert calls.sessions[job_id].last_close.reason == "participant_disconnected"  # type: ignore[union-attr]
    assert dispatcher.job_status[job_id][-1] == agent.JS_SUCCESS


async def test_a_wrong_secret_is_refused_with_a_typed_error():
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            dispatcher = await nursery.start(FakeDispatcher(CREDENTIALS).serve)
            wrong = Credentials(dispatcher.url, CREDENTIALS.api_key, "not-the-secret-but-long-enough-anyway")
            with pytest.raises(WorkerAuthError, match="LIVEKIT_API_SECRET"):
                await Worker(Calls().entrypoint, wrong, WorkerOptions(**FAST)).run()
            assert dispatcher.rejected == 1
            nursery.cancel_scope.cancel()


async def test_a_server_that_never_answers_ends_in_a_typed_error_after_the_retries():
    with trio.fail_after(DEADLINE):
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        await listener.aclose()  # nothing listens there now
        nowhere = Credentials(f"ws://127.0.0.1:{port}", "k", "s" * 32)
        options = WorkerOptions(max_retry=2, retry_delays=(0.01,))
        with pytest.raises(WorkerConnectionError, match="after 2 attempts"):
            await Worker(Calls().entrypoint, nowhere, options).run()


def test_credentials_come_from_the_environment_and_say_what_is_missing():
    with pytest.raises(MissingCredentials, match="LIVEKIT_API_KEY, LIVEKIT_API_SECRET are not set"):
        Credentials.from_env({"LIVEKIT_URL": "wss://x.livekit.cloud"})
    with pytest.raises(MissingCredentials, match="must start with"):
        Credentials.from_env({"LIVEKIT_URL": "x.livekit.cloud", "LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s"})
    assert Credentials.from_env(
        {"LIVEKIT_URL": "wss://x.livekit.cloud", "LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s"}
    ) == Credentials("wss://x.livekit.cloud", "k", "s")


def test_tokens_are_minted_offline_and_checked_for_signature_and_expiry():
    token = access_token(CREDENTIALS, identity="alice", room="lobby", name="Alice")
    claims = verify_token(CREDENTIALS, token)
    assert (claims.identity, claims.name, claims.video.room, claims.video.room_join) == ("alice", "Alice", "lobby", True)
    expired = access_token(CREDENTIALS, identity="bob", room="lobby", ttl=datetime.timedelta(seconds=-5))
    with pytest.raises(TokenExpired):
        verify_token(CREDENTIALS, expired)
    other = Credentials(CREDENTIALS.url, CREDENTIALS.api_key, "another-secret-that-is-long-enough-too")
    with pytest.raises(InvalidToken):
        verify_token(other, token)
