"""Hearing a phone menu: the loop detector, and the IVR watcher on a session (virtual time)."""

import pytest
import trio

import voxtrio
from voxtrio.events import UserInputTranscribed
from voxtrio.testing import LLMResponse, ScriptedLLM, running
from voxtrio.transports.telephony import IVRDetector, LoopDetector
from voxtrio.transports.telephony.ivr import SILENCE_INSTRUCTIONS

MENU = [
    "Welcome to Acme Bank. For account balances, press one.",
    "For cards and payments, press two.",
    "To speak to an agent, press zero.",
]


def test_a_menu_playing_again_is_a_loop_once_three_prompts_in_a_row_repeat():
    detector = LoopDetector()
    found = [detector.add(prompt) for prompt in MENU * 3]
    assert found == [False, False, False, False, False, True, False, False, False]


def test_a_conversation_that_moves_on_is_no_loop():
    detector = LoopDetector()
    lines = ["Hello, how can I help?", "I would like my balance.", "Which account, savings or checking?",
             "Savings, please.", "Your savings balance is four hundred dollars.", "Thanks, and my card?",
             "Your card is active until May.", "Great, goodbye."]
    assert not any(detector.add(line) for line in lines)


def test_similarity_is_tf_idf_cosine_over_the_window():
    detector = LoopDetector(window=3)
    for text in ["press one for sales", "press two for support", "press one for sales"]:
        detector.add(text)
    assert detector.similarity_to_earlier() == pytest.approx(1.0)
    detector.add("something else entirely")  # the window keeps the last three
    assert detector.similarity_to_earlier() < 0.5
    with pytest.raises(ValueError):
        LoopDetector(threshold=1.5)


async def test_the_watcher_reports_a_looping_menu(autojump_clock):
    session = voxtrio.AgentSession(llm=ScriptedLLM([]))
    async with running(session, voxtrio.Agent(instructions="navigate")):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(IVRDetector(session, respond=False).run)
            await trio.sleep(0.01)
            for prompt in MENU * 2:
                session.emit(UserInputTranscribed(transcript=prompt, is_final=True))
                session.emit(UserInputTranscribed(transcript="press", is_final=False))  # interims do not count
                await trio.sleep(1)
            nursery.cancel_scope.cancel()
    loops = [e for e in session.recorded_events if e.type == "ivr_loop_detected"]
    assert [(e.transcript, e.repetitions) for e in loops] == [(MENU[2], 3)]


async def test_the_watcher_reports_a_silent_line_once_per_quiet_spell_and_asks_for_a_reply(autojump_clock):
    llm = ScriptedLLM([LLMResponse(input=SILENCE_INSTRUCTIONS, content="Hello? Is anyone there?")])
    session = voxtrio.AgentSession(llm=llm)
    async with running(session, voxtrio.Agent(instructions="navigate")):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(IVRDetector(session, max_silence=5.0).run)
            await trio.sleep(12.0)
            nursery.cancel_scope.cancel()
    events = [e for e in session.recorded_events if e.type in ("line_silence_detected", "speech_created")]
    assert [e.type for e in events][:2] == ["line_silence_detected", "speech_created"]
    silences = [e for e in events if e.type == "line_silence_detected"]
    # The reply is thinking, then listening again: a new quiet spell, reported 5 s after it began.
    assert len(silences) == 2 and silences[1].created_at - silences[0].created_at >= 5.0
    assert all(e.duration == 5.0 for e in silences)
