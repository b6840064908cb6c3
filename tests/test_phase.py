"""The session's one lifecycle, SessionState.phase: written by the supervisor,
moving forward only, and what ``running``/``closing`` are read from."""

import trio

import voxtrio
from voxtrio.state import Phase
from voxtrio.testing import ScriptedTransport, ScriptedTTS


def tts():
    return ScriptedTTS([], default_chars_per_second=10.0)


class PhaseLog:
    """The phases a session went through, sampled at every checkpoint."""

    def __init__(self, session):
        self.session = session
        self.seen = []

    def look(self):
        phase = self.session._state.phase
        if not self.seen or self.seen[-1] is not phase:
            self.seen.append(phase)


async def test_a_drained_then_closed_session_goes_through_every_phase_in_order(autojump_clock):
    session = voxtrio.AgentSession(tts=tts())
    log = PhaseLog(session)
    log.look()

    class Leaving(voxtrio.Agent):
        async def on_enter(self):
            log.look()

        async def on_exit(self):
            log.look()
            assert session.running and not session._state.closing

    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, Leaving(), ScriptedTransport(input_audio=False))
        log.look()
        session.say("hello")
        await session.drain()
        log.look()
        session.shutdown()
        # At once, before the supervisor has read the request: nothing new is taken.
        log.look()
        assert session._state.closing and session.running
    log.look()
    assert log.seen == [Phase.STARTING, Phase.RUNNING, Phase.DRAINING, Phase.CLOSING, Phase.CLOSED]
    assert not session.running


async def test_the_phase_never_moves_back(autojump_clock):
    session = voxtrio.AgentSession(tts=tts())
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(), ScriptedTransport(input_audio=False))
        session.shutdown(drain=False)
        assert session._state.phase is Phase.CLOSING
        supervisor = session._supervisor
        supervisor.mark_running()  # a late start report does not reopen a closing session
        supervisor.request_close(reason="user_initiated", drain=True)
        assert session._state.phase is Phase.CLOSING
    assert session._state.phase is Phase.CLOSED
    assert [e.reason for e in session.recorded_events if e.type == "close"] == ["user_initiated"]


async def test_a_hand_off_asked_through_the_api_is_counted_at_once(autojump_clock):
    session = voxtrio.AgentSession(tts=tts())
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(), ScriptedTransport(input_audio=False))
        done = session.update_agent(voxtrio.Agent())
        assert session._state.handoffs_pending == 1 and not session._state.idle.value
        await done
        assert session._state.handoffs_pending == 0
        await session.aclose()
