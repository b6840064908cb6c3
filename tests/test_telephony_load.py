"""Fifty Twilio calls at once, in one process: every caller is heard and answered."""

import trio

import voxtrio
from telephony_helpers import ANSWER, QUESTION, Credentials, fixture_audio, running_server, weather_session
from voxtrio.testing.phone import FakeCaller, HangUp, Say, WaitForAgent

CALLS = 50


async def test_fifty_concurrent_twilio_calls_are_each_heard_and_answered():
    credentials, sessions = Credentials(), []

    async def entrypoint(call):
        session = weather_session()
        sessions.append(session)
        await call.run(session, voxtrio.Agent(instructions="weather"))

    question = fixture_audio("hello")
    callers = [
        FakeCaller(credentials.wire("twilio"), [Say(question), WaitForAgent(speech=0.5), HangUp()])
        for i in range(CALLS)
    ]
    with trio.fail_after(90):
        async with running_server(entrypoint, credentials.providers(), max_calls=CALLS) as server:
            async with trio.open_nursery() as nursery:
                for caller in callers:
                    nursery.start_soon(caller.dial_in, server.public_url)
            while server.calls:
                await trio.sleep(0.05)
    assert server.stats.calls_total == CALLS and server.stats.calls_failed == 0
    assert all(c.answer_status == 200 and c.ended_by == "caller" for c in callers)
    assert all(c.heard_seconds() >= 0.5 for c in callers)
    for session in sessions:
        said = [(m.role, m.content) for m in session.history.items if m.type == "message"]
        assert said[0] == ("user", QUESTION) and said[1][0] == "assistant" and ANSWER.startswith(said[1][1])
        assert not [e for e in session.recorded_events if e.type == "error"]
