"""SpeechHandle and the speech queue: order, interruption, protection, pacing."""

import pytest
import trio

import voxtrio
from voxtrio.speech import SpeechHandle, SpeechQueue
from voxtrio.testing import ScriptedLLM, ScriptedTransport, ScriptedTTS, TTSResponse


def make_session(**options):
    tts = ScriptedTTS([], default_chars_per_second=10.0)
    return voxtrio.AgentSession(llm=ScriptedLLM([]), tts=tts, **options)


def test_queue_orders_by_priority_then_fifo():
    queue = SpeechQueue()
    handles = [
        SpeechHandle(speech_id=f"s{i}", allow_interruptions=True, source="say", priority=p)
        for i, p in enumerate([5, 10, 5, 0, 10])
    ]
    for handle in handles:
        queue.push(handle)
    assert [queue.pop().id for _ in handles] == ["s1", "s4", "s0", "s2", "s3"]


def test_protected_handle_refuses_interrupt_unless_forced():
    handle = SpeechHandle(speech_id="s", allow_interruptions=False, source="say")
    with pytest.raises(RuntimeError, match="does not allow interruptions"):
        handle.interrupt()
    assert handle.interrupt(force=True).interrupted
    with pytest.raises(RuntimeError):
        handle.allow_interruptions = False


async def start(nursery, session, agent=None, transport=None):
    transport = transport or ScriptedTransport(input_audio=False)
    await nursery.start(session.main, agent or voxtrio.Agent(), transport)
    return transport


async def test_says_play_one_after_another_in_order(autojump_clock):
    session = make_session()
    played = []
    session.on("playback_started", lambda e: played.append(("start", e.speech_id, trio.current_time())))
    session.on("playback_finished", lambda e: played.append(("end", e.speech_id, trio.current_time())))
    async with trio.open_nursery() as nursery:
        await start(nursery, session)
        t0 = trio.current_time()
        first = session.say("one two")  # 0.7 s of audio at 10 chars/s
        second = session.say("three")  # 0.5 s
        await second
        assert first.done() and second.done()
        await session.aclose()
    assert [(kind, sid, round(t - t0, 3)) for kind, sid, t in played] == [
        ("start", first.id, 0.2),
        ("end", first.id, 0.9),
        ("start", second.id, 0.9),
        ("end", second.id, 1.4),
    ]
    assert [(m.role, m.content) for m in session.history.items if m.type == "message"] == [
        ("assistant", "one two"),
        ("assistant", "three"),
    ]


async def test_min_consecutive_speech_delay_separates_speeches(autojump_clock):
    session = make_session(min_consecutive_speech_delay=1.0)
    starts = []
    session.on("playback_started", lambda e: starts.append(trio.current_time()))
    async with trio.open_nursery() as nursery:
        await start(nursery, session)
        t0 = trio.current_time()
        session.say("one two")  # plays 0.2 .. 0.9
        await session.say("three")
        await session.aclose()
    # The second one is authorized 1.0 s after the first ended, then its TTS
    # (already done) starts at once.
    assert [round(t - t0, 3) for t in starts] == [0.2, 1.9]


async def test_interrupt_refuses_protected_current_speech_and_force_cuts_it(autojump_clock):
    session = make_session()
    async with trio.open_nursery() as nursery:
        await start(nursery, session)
        protected = session.say("a rather long protected sentence", allow_interruptions=False)
        await trio.sleep(1.0)
        assert session.current_speech is protected
        with pytest.raises(RuntimeError, match="does not allow interruptions"):
            session.interrupt()
        await session.interrupt(force=True)
        assert protected.done() and protected.interrupted
        await session.aclose()
    [message] = [m for m in session.history.items if m.type == "message"]
    assert message.interrupted and message.content == "a rather"


async def test_interrupt_stops_at_the_first_protected_queued_speech(autojump_clock):
    session = make_session()
    async with trio.open_nursery() as nursery:
        await start(nursery, session)
        current = session.say("first speech here")
        dropped = session.say("dropped")
        protected = session.say("protected", allow_interruptions=False)
        behind = session.say("behind the protected one")
        await trio.sleep(1.0)
        await session.interrupt()
        assert current.interrupted and dropped.interrupted
        assert not protected.interrupted and not behind.interrupted
        await behind
        assert not protected.interrupted and not behind.interrupted
        await session.aclose()
    contents = [m.content for m in session.history.items if m.type == "message"]
    assert contents == ["first", "protected", "behind the protected one"]


async def test_a_queued_speech_interrupted_before_playing_is_done_and_leaves_no_trace(autojump_clock):
    session = make_session()
    async with trio.open_nursery() as nursery:
        await start(nursery, session)
        first = session.say("first speech")
        queued = session.say("never heard")
        queued.interrupt()
        await first
        await queued
        assert queued.done() and queued.interrupted
        await session.aclose()
    assert [m.content for m in session.history.items if m.type == "message"] == ["first speech"]


async def test_wait_for_playout_covers_the_whole_turn(autojump_clock):
    session = make_session()
    async with trio.open_nursery() as nursery:
        await start(nursery, session)
        handle = session.say("hello there")
        await handle.wait_for_playout()
        assert handle.done() and handle.exception() is None and not handle.interrupted
        assert session.agent_state == "listening"
        await session.aclose()


async def test_say_without_add_to_chat_ctx_keeps_history_clean(autojump_clock):
    session = make_session()
    async with trio.open_nursery() as nursery:
        await start(nursery, session)
        await session.say("not recorded", add_to_chat_ctx=False)
        await session.aclose()
    assert [item.type for item in session.history.items] == ["agent_handoff"]


async def test_say_goes_from_listening_straight_to_speaking(autojump_clock):
    session = make_session()
    states = []
    session.on("agent_state_changed", lambda e: states.append(e.new_state))
    async with trio.open_nursery() as nursery:
        await start(nursery, session)
        await session.say("hello")
        await session.aclose()
    assert states == ["listening", "speaking", "listening"]


async def test_prerendered_audio_plays_without_tts(autojump_clock):
    session = voxtrio.AgentSession(llm=ScriptedLLM([]))
    finished = []
    session.on("playback_finished", finished.append)

    async def audio():
        for _ in range(50):
            yield voxtrio.AudioFrame.silence(0.02, sample_rate=24_000)

    async with trio.open_nursery() as nursery:
        await start(nursery, session)
        with pytest.raises(RuntimeError, match="needs a TTS"):
            session.say("no tts")
        await session.say("with audio", audio=audio())
        await session.aclose()
    assert [round(f.position, 3) for f in finished] == [1.0]
    assert [m.content for m in session.history.items if m.type == "message"] == ["with audio"]


async def test_text_only_session_speaks_at_the_first_text(autojump_clock):
    session = voxtrio.AgentSession(
        llm=ScriptedLLM([]), tts=ScriptedTTS([TTSResponse(input="hi", audio_duration=1.0)])
    )
    states = []
    session.on("agent_state_changed", lambda e: states.append(e.new_state))
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent())  # no transport: text only
        await session.say("hi")
        await session.aclose()
    assert states == ["listening", "speaking", "listening"]
    assert [m.content for m in session.history.items if m.type == "message"] == ["hi"]


async def test_an_interruption_stops_what_the_speech_bound_and_names_each(autojump_clock):
    # What an interruption stops is what the speech bound to its status, each
    # named: here, mid-reply, the LLM still streaming, the routing of its text
    # and the playout.
    from voxtrio.speech import status_of
    from voxtrio.testing import LLMResponse

    words = "a long answer that keeps on going for quite a while"
    session = voxtrio.AgentSession(
        llm=ScriptedLLM([LLMResponse(input="go", content=words, ttft=0.1, duration=30.0)]),
        tts=ScriptedTTS([], default_chars_per_second=10.0),
    )
    async with trio.open_nursery() as nursery:
        await start(nursery, session)
        handle = session.generate_reply(user_input="go")
        await trio.sleep(1.0)
        status = status_of(handle)
        assert sorted(status.stops.values()) == ["llm", "playout", "routing"]
        scopes = list(status.stops)
        handle.interrupt()
        assert all(scope.cancel_called for scope in scopes)
        await handle
        assert handle.interrupted and status.stops == {}
        await session.aclose()
