"""Regressions found by the conversation harness that a scenario file cannot express.

(The others are scenario files in tests/scenarios/, replayed with their expect lists.)
"""

import pytest
import trio

import voxtrio
from voxtrio.testing import ScriptedTransport, ScriptedTTS


async def test_cancelling_the_session_from_outside_closes_it_as_a_job_shutdown(autojump_clock):
    # The harness cancels a session that never closes; the close reason was
    # 'error' with "BaseExceptionGroup: Exceptions from Trio nursery (7
    # sub-exceptions)", because the nested nurseries of session.main wrap the
    # Cancelled exceptions in a group.
    session = voxtrio.AgentSession(tts=ScriptedTTS([], default_chars_per_second=10.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(), ScriptedTransport())
        session.say("a sentence that is still playing")
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    closes = [e for e in session.recorded_events if e.type == "close"]
    assert [(c.reason, c.error) for c in closes] == [("job_shutdown", None)]


def leaves(error):
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


async def test_a_crash_inside_the_session_still_closes_it_with_an_error(autojump_clock):
    # The other side of the same check: a real error among cancellations is an error.
    class Crashing(voxtrio.Agent):
        async def on_enter(self):
            raise KeyboardInterrupt  # not an Exception: user code cannot swallow it

    session = voxtrio.AgentSession(tts=ScriptedTTS([], default_chars_per_second=10.0))
    with pytest.raises(BaseException) as escaped:
        async with trio.open_nursery() as nursery:
            await nursery.start(session.main, Crashing(), ScriptedTransport())
            await trio.sleep(1.0)
    # What escapes is the KeyboardInterrupt itself (wrapped by the nurseries it
    # went through), nothing else: no Cancelled, no error of the close.
    assert [type(error) for error in leaves(escaped.value)] == [KeyboardInterrupt]
    closes = [e for e in session.recorded_events if e.type == "close"]
    assert [c.reason for c in closes] == ["error"] and closes[0].error


async def test_a_commit_user_turn_cut_off_by_the_close_still_answers(autojump_clock):
    # Scenario commit_user_turn_answered_at_close, as an application sees it:
    # the future must resolve (to an empty transcript) instead of hanging.
    from voxtrio.testing import ScriptedSTT

    session = voxtrio.AgentSession(stt=ScriptedSTT([]), tts=ScriptedTTS([], default_chars_per_second=10.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(), ScriptedTransport())
        await trio.sleep(0.1)  # the recognizer has started
        pending = session.commit_user_turn()
        await trio.sleep(0.2)
        await session.aclose()
    with trio.fail_after(1):
        assert await pending == ""


async def test_a_drain_cut_off_by_the_close_still_returns(autojump_clock):
    # Scenario drain_returns_when_the_session_closes, as an application sees it:
    # the drain waits for an on_exit that never ends, and the close cuts it off.
    class Stuck(voxtrio.Agent):
        async def on_exit(self):
            await trio.sleep_forever()

    session = voxtrio.AgentSession(tts=ScriptedTTS([], default_chars_per_second=10.0), close_timeout=1.0)
    drained = []
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, Stuck(), ScriptedTransport(input_audio=False))

        async def drain():
            await session.drain()
            drained.append(trio.current_time())

        nursery.start_soon(drain)
        await trio.sleep(0.5)
        await session.aclose()
        with trio.fail_after(1):
            while not drained:
                await trio.sleep(0.01)
    assert session.last_close.cancelled == ("stuck.on_exit",)
