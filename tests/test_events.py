"""The event bus: one sequence counter, callbacks in order, subscribers, a bounded log."""

import logging

import pytest
import trio

from voxtrio.events import (
    EVENT_TYPES,
    AgentStateChanged,
    CloseEvent,
    EventBus,
    UserStateChanged,
    UserTranscriptionTimeout,
)


def agent_state(old, new):
    return AgentStateChanged(old_state=old, new_state=new)


async def test_numbers_start_at_one_and_strictly_increase_across_events_and_items(autojump_clock):
    bus = EventBus()
    assert bus.last_seq == 0  # nothing numbered yet
    assert bus.next_seq() == 1  # e.g. a history item reserving its place
    assert bus.last_seq == 1
    await trio.sleep(2.5)
    event = bus.emit(agent_state("initializing", "listening"))
    assert (event.seq, event.created_at) == (2, trio.current_time())
    assert bus.last_seq == 2
    numbers = [bus.next_seq(), bus.emit(agent_state("listening", "thinking")).seq, bus.next_seq()]
    assert numbers == [3, 4, 5] and bus.last_seq == 5
    assert [e.seq for e in bus.recorded] == [2, 4]


async def test_emit_numbers_a_copy_and_keeps_the_event_it_was_given(autojump_clock):
    bus = EventBus()
    given = agent_state("initializing", "listening")
    emitted = bus.emit(given)
    assert given.seq == -1 and emitted.seq == 1
    assert emitted.payload() == {"old": "initializing", "new": "listening"}


async def test_callbacks_run_in_registration_order_named_before_wildcard(autojump_clock):
    bus = EventBus()
    calls = []
    bus.on("*", lambda e: calls.append(("any", e.type)))
    bus.on("agent_state_changed", lambda e: calls.append(("first", e.seq)))
    off = bus.on("agent_state_changed", lambda e: calls.append(("second", e.seq)))
    bus.on("user_state_changed", lambda e: calls.append(("user", e.seq)))
    bus.emit(agent_state("initializing", "listening"))
    off()
    bus.emit(agent_state("listening", "thinking"))
    bus.emit(UserStateChanged(old_state="listening", new_state="speaking"))
    assert calls == [
        ("first", 1), ("second", 1), ("any", "agent_state_changed"),
        ("first", 2), ("any", "agent_state_changed"),
        ("user", 3), ("any", "user_state_changed"),
    ]
    bus.off("agent_state_changed", print)  # not registered: nothing happens
    EventBus().off("close", print)  # nor for a name nobody listens to


async def test_a_failing_callback_is_logged_and_the_others_still_run(autojump_clock, caplog):
    bus = EventBus()
    seen = []

    def broken(event):
        raise RuntimeError("bad callback")

    bus.on("agent_state_changed", broken)
    bus.on("agent_state_changed", seen.append)
    with caplog.at_level(logging.ERROR, logger="voxtrio"):
        bus.emit(agent_state("initializing", "listening"))
    assert [e.seq for e in seen] == [1]
    [record] = caplog.records
    assert record.getMessage() == "event callback for 'agent_state_changed' failed"
    assert record.exc_info[0] is RuntimeError


def test_an_unknown_event_name_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown event 'agent_state_change'; known events: ") as error:
        EventBus().on("agent_state_change", print)
    assert "agent_state_changed" in str(error.value)
    assert {"close", "conversation_item_added", "agent_state_changed"} <= set(EVENT_TYPES)


async def test_subscribers_get_every_event_in_order_until_closed(autojump_clock):
    bus = EventBus()
    first, second = bus.subscribe(), bus.subscribe()
    second.close()  # a subscriber that went away is dropped, not an error
    bus.emit(agent_state("initializing", "listening"))
    bus.emit(CloseEvent(reason="user_initiated"))
    bus.close_subscribers()
    assert [(e.seq, e.type) async for e in first] == [(1, "agent_state_changed"), (2, "close")]
    bus.emit(agent_state("listening", "thinking"))  # after the close: no one left to tell


def test_payloads_round_times_to_the_millisecond_and_keep_what_is_unknown():
    timeout = UserTranscriptionTimeout(speech_duration=1.23456, vad_speech_started_at=None)
    assert timeout.payload() == {"speech_duration": 1.235, "vad_speech_started_at": None}


async def test_the_recorded_log_keeps_the_latest_events(autojump_clock):
    bus = EventBus(max_recorded=3)
    for _ in range(5):
        bus.emit(agent_state("listening", "thinking"))
    assert [e.seq for e in bus.recorded] == [3, 4, 5]
