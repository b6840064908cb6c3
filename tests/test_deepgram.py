"""Deepgram live transcription against a local server that speaks its protocol.

The clock: trio's MockClock with autojump (the ``autojump_clock`` fixture),
real sockets on loopback. A loopback send is in the peer's receive buffer
before the send returns, so the run loop is never idle while a message is
in flight and virtual time only jumps over real waits (audio pacing,
timeouts, backoffs).
"""

import numpy as np
import pytest
import trio

import voxtrio
from voxtrio.audio import AudioFrame
from voxtrio.messages import STTEvent
from voxtrio.options import APIConnectOptions, SessionConnectOptions
from voxtrio.providers import deepgram
from voxtrio.providers.base import STTReconnected, STTUsage
from voxtrio.providers.vendor_websocket import run_beside
from voxtrio.testing import ArrayTransport, LLMResponse, ScriptedLLM

from loopback.deepgram import FakeDeepgram
from loopback.server import Fault
from stream_driver import drive

HELLO = 1000  # the sample value of the utterance the server hears as "Hello there friend."
TRANSCRIPTS = {HELLO: "Hello there friend.", 2000: "How are you?"}


def audio(*parts):
    """(sample value, seconds) runs: 0 is silence, any other value an utterance."""
    return np.concatenate([np.full(int(round(seconds * 16_000)), value, np.int16) for value, seconds in parts])


async def transcribe(stt, samples, *, conn_options=APIConnectOptions(), gaps=(), flush_at=()):
    """Stream ``samples`` in 20 ms frames at real-time pace; ``gaps`` are
    (offset in ``samples``, seconds) pauses with no frames at all (the input
    turned off: the audio clock runs on, so later frames are stamped later),
    ``flush_at`` offsets after which an empty frame asks for a flush.
    Returns the items the stream sent, with the trio time they came at."""
    frames_send, frames_receive = trio.open_memory_channel(10_000)

    async def produce():
        async with frames_send:
            start = trio.current_time()
            paused = 0.0  # seconds of gaps so far
            pending_gaps = sorted(gaps)
            pending_flushes = sorted(flush_at)
            for offset in range(0, len(samples), 320):
                at = offset / 16_000
                while pending_gaps and pending_gaps[0][0] <= at + 1e-9:
                    paused += pending_gaps.pop(0)[1]
                await trio.sleep_until(start + paused + at + 0.02)
                frame = AudioFrame(samples[offset : offset + 320], 16_000, timestamp=paused + at)
                await frames_send.send(frame)
                while pending_flushes and pending_flushes[0] <= at + 0.02 + 1e-9:
                    pending_flushes.pop(0)
                    await frames_send.send(AudioFrame(np.zeros(0, np.int16), 16_000))

    return await drive(lambda events: stt.stream(frames_receive, events, conn_options=conn_options), produce)


def stt_events(items, *kinds):
    return [item for _, item in items if isinstance(item, STTEvent) and (not kinds or item.kind in kinds)]


def finals(items):
    return [(e.text, round(e.start_time, 3), round(e.end_time, 3)) for e in stt_events(items, "final") if e.text]


def reconnections(items):
    return [item.error for _, item in items if isinstance(item, STTReconnected)]


def make_stt(server, **options):
    return deepgram.STT(api_key="test-key", base_url=f"{server.url}/v1/listen", **options)


# -- construction --------------------------------------------------------------------


def test_a_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    with pytest.raises(voxtrio.MissingAPIKeyError, match="DEEPGRAM_API_KEY"):
        deepgram.STT()
    monkeypatch.setenv("DEEPGRAM_API_KEY", "from-env")
    assert deepgram.STT()._headers == {"Authorization": "Token from-env"}


def test_options_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="interim_results"):
        deepgram.STT(api_key="k", interim_results=False)
    with pytest.raises(ValueError, match="base_url"):
        deepgram.STT(api_key="k", base_url="ftp://example.com")
    assert deepgram.STT(api_key="k").capabilities.speech_boundaries


# -- the protocol ----------------------------------------------------------------------


async def test_results_become_interims_finals_and_speech_boundaries(autojump_clock):
    server = FakeDeepgram(TRANSCRIPTS)
    async with server.running():
        items = await transcribe(make_stt(server), audio((0, 0.5), (HELLO, 1.5), (0, 2.0)))
    [connection] = server.connections
    assert connection.path == "/v1/listen"
    assert {name: connection.param(name) for name in (
        "model", "encoding", "sample_rate", "channels", "interim_results", "vad_events",
        "utterance_end_ms", "endpointing", "language",
    )} == {
        "model": "nova-3", "encoding": "linear16", "sample_rate": "16000", "channels": "1",
        "interim_results": "true", "vad_events": "true", "utterance_end_ms": "1000",
        "endpointing": "25", "language": "en-US",
    }
    assert connection.headers["authorization"] == "Token test-key"
    assert connection.audio_seconds == pytest.approx(4.0)
    assert connection.types() == ["CloseStream"]  # the input ended: finish and close
    assert connection.close_code == 1000

    kinds = [e.kind for e in stt_events(items)]
    assert kinds[0] == "start_of_speech" and kinds[-1] == "end_of_speech"
    assert set(kinds[1:-2]) == {"interim"} and kinds[-2] == "final"
    start, *_ = stt_events(items)
    assert start.start_time == 0.5  # SpeechStarted's timestamp
    interims = [e.text for e in stt_events(items, "interim")]
    assert interims[0] == "Hello" and interims[-1] == "Hello there"
    assert finals(items) == [("Hello there friend.", 0.5, 2.0)]
    [end] = stt_events(items, "end_of_speech")
    assert end.end_time == 2.0  # speech_final: the last word's end
    usage = [item for _, item in items if isinstance(item, STTUsage)]
    assert sum(u.audio_duration for u in usage) == pytest.approx(4.0)
    assert usage[0].latency is not None and usage[0].latency >= 0


async def test_utterance_end_ends_speech_when_endpointing_is_off(autojump_clock):
    server = FakeDeepgram(TRANSCRIPTS)
    async with server.running():
        items = await transcribe(make_stt(server, endpointing_ms=0), audio((0, 0.5), (HELLO, 1.0), (0, 2.0)))
    assert server.connections[0].param("endpointing") == "false"
    timed = [(t, e.kind, e.end_time) for t, e in items if isinstance(e, STTEvent) and e.kind == "end_of_speech"]
    # no speech_final: the CloseStream finalizes, UtteranceEnd came 1 s after the last word
    assert timed == [(2.5, "end_of_speech", 1.5)]


async def test_keepalive_holds_the_connection_while_no_audio_flows(autojump_clock):
    server = FakeDeepgram(TRANSCRIPTS)
    async with server.running():
        # 12 s with no frames at all (the input turned off) between two utterances;
        # Deepgram closes a connection that hears nothing for 10 s.
        items = await transcribe(
            make_stt(server),
            audio((0, 0.5), (HELLO, 1.0), (0, 0.5), (0, 0.5), (2000, 1.0), (0, 1.0)),
            gaps=[(2.0, 12.0)],
        )
    [connection] = server.connections
    assert connection.types().count("KeepAlive") == 2  # every 5 s of the 12
    # on the session's audio clock: the second utterance came after the 12 s
    assert finals(items) == [("Hello there friend.", 0.5, 1.5), ("How are you?", 14.5, 15.5)]
    assert not reconnections(items)


async def test_times_map_onto_the_audio_clock_across_a_gap(autojump_clock):
    # The first utterance ends exactly where the input pauses: its end belongs
    # before the gap, the second utterance's start after it. Deepgram's own
    # clock knows no gap (it counts the audio it got).
    server = FakeDeepgram(TRANSCRIPTS, silence_final_every=0.5)
    async with server.running():
        items = await transcribe(
            make_stt(server), audio((0, 0.5), (HELLO, 1.0), (2000, 1.0), (0, 1.0)), gaps=[(1.5, 3.0)]
        )
    assert finals(items) == [("Hello there friend.", 0.5, 1.5), ("How are you?", 4.5, 5.5)]


async def test_a_flush_sends_finalize_and_its_result_is_final(autojump_clock):
    server = FakeDeepgram(TRANSCRIPTS)
    async with server.running():
        items = await transcribe(make_stt(server), audio((0, 0.5), (HELLO, 1.0), (0, 1.0)), flush_at=[1.5])
    assert server.connections[0].types() == ["Finalize", "CloseStream"]
    # the flush came while the utterance was still voiced: it is final at once
    [(at, final)] = [(t, e) for t, e in items if isinstance(e, STTEvent) and e.kind == "final"]
    assert (at, final.text, final.end_time) == (1.5, "Hello there friend.", 1.5)


async def test_an_unknown_message_type_is_ignored(autojump_clock):
    server = FakeDeepgram(TRANSCRIPTS, faults=[Fault(kind="malformed", payload='{"type": "Novelty"}', after=0.3)])
    async with server.running():
        items = await transcribe(make_stt(server), audio((0, 0.5), (HELLO, 1.0), (0, 0.5)))
    assert len(server.connections) == 1 and not reconnections(items)
    assert finals(items) == [("Hello there friend.", 0.5, 1.5)]


# -- faults: reconnecting without losing audio -------------------------------------------

SPEECH = audio((0, 1.5), (HELLO, 1.5), (0, 1.0))  # the utterance: 1.5 to 3.0 s


@pytest.mark.parametrize(
    "fault, error",
    [
        (Fault(kind="drop", after=2.2), "code 1006"),
        (Fault(kind="close", code=1011, reason="NET-0000", after=2.2), "1011 INTERNAL_ERROR (NET-0000)"),
        (Fault(kind="malformed", payload="{not json", after=2.2), "not JSON"),
        (Fault(kind="malformed", payload=b"\x00\x01", after=2.2), "binary frame"),
        (Fault(kind="malformed", payload='{"type": "Results", "channel": 5}', after=2.2), "documented shape"),
        (Fault(kind="stall", after=2.2), "sent nothing for 2 s"),
    ],
    ids=["dropped", "closed-1011", "bad-json", "binary", "wrong-shape", "stalled"],
)
async def test_a_failed_connection_is_replaced_and_the_unfinalized_audio_replayed(autojump_clock, fault, error):
    server = FakeDeepgram(TRANSCRIPTS, faults=[fault])
    async with server.running():
        items = await transcribe(make_stt(server), SPEECH, conn_options=APIConnectOptions(timeout=2.0))
    first, second = server.connections
    [reconnected] = reconnections(items)
    assert error in str(reconnected) and reconnected.retryable
    assert f"request {server.request_ids[0]}" in str(reconnected)  # for Deepgram's support
    # The empty final at 1.0 s acknowledged the first second: the rest went again.
    assert second.audio_seconds == pytest.approx(4.0 - 1.0)
    # The whole utterance, on the session's clock although the new connection
    # counts from 1.0 s.
    assert finals(items) == [("Hello there friend.", 1.5, 3.0)]


class _FullSocket:
    """A connection whose peer stopped reading: the first frame goes out, the
    next write never returns, and one message (any message) arrives while it
    waits, the last Deepgram sends."""

    def __init__(self) -> None:
        self.writing = trio.Event()
        self.frames = 0

    async def send_message(self, data) -> None:
        self.frames += 1
        if self.frames > 1:
            self.writing.set()
            await trio.sleep_forever()

    async def get_message(self) -> str:
        if self.writing.is_set():
            await trio.sleep_forever()
        await self.writing.wait()
        return '{"type": "Novelty"}'


async def test_a_write_that_never_returns_is_a_stall(autojump_clock):
    # The message that came during the write answered the first frame, not the
    # second: an answer is still due for it.
    stt = deepgram.STT(api_key="test-key")
    events, _ = trio.open_memory_channel(100)
    live = deepgram._LiveStream(stt, events, None, APIConnectOptions(timeout=2.0))
    for k in range(2):
        live._push(bytes(640), 0.02 * k, 0.02)
    connection = deepgram._Connection(_FullSocket(), next_seq=0)
    with trio.move_on_after(60):
        with pytest.raises(voxtrio.APITimeoutError, match="sent nothing for 2 s"):
            await run_beside(
                lambda: live._receive(connection), lambda: live._send(connection)
            )
    assert trio.current_time() == pytest.approx(2.0)


async def test_a_close_for_bad_data_is_not_retried(autojump_clock):
    server = FakeDeepgram(TRANSCRIPTS, faults=[Fault(kind="close", code=1008, reason="DATA-0000", after=1.0)])
    async with server.running():
        with pytest.raises(voxtrio.APIStatusError, match="1008 POLICY_VIOLATION \\(DATA-0000\\)") as failed:
            await transcribe(make_stt(server), SPEECH)
    assert (failed.value.status_code, failed.value.retryable) == (1008, False)
    assert len(server.connections) == 1


async def test_a_refused_key_is_final_and_names_the_variable(autojump_clock):
    server = FakeDeepgram(TRANSCRIPTS, api_key="the-right-key")
    async with server.running():
        with pytest.raises(voxtrio.APIStatusError) as failed:
            await transcribe(make_stt(server), SPEECH)
    assert (failed.value.status_code, failed.value.retryable) == (401, False)
    assert "Invalid credentials." in str(failed.value) and "DEEPGRAM_API_KEY" in str(failed.value)
    assert len(server.connections) == 1


async def test_too_many_requests_waits_for_retry_after(autojump_clock):
    faults = [Fault(kind="reject", status=429, headers=(("Retry-After", "3"),)), Fault(kind="reject", status=503)]
    server = FakeDeepgram(TRANSCRIPTS, faults=faults)
    async with server.running():
        items = await transcribe(make_stt(server), SPEECH)
    opened = [round(c.opened_at, 2) for c in server.connections]
    assert opened == [0.02, 3.02, 5.02]  # Retry-After 3 s, then the retry interval (2 s)
    assert [e.status_code for e in reconnections(items)] == [429, 503]
    # the audio of the five seconds without a connection was kept and sent
    assert server.connections[2].audio_seconds == pytest.approx(4.0)
    assert finals(items) == [("Hello there friend.", 1.5, 3.0)]


async def test_a_streak_of_failures_exhausts_the_retry_budget(autojump_clock):
    server = FakeDeepgram(TRANSCRIPTS, faults=[Fault(kind="reject", status=503)] * 3)
    async with server.running():
        with pytest.raises(voxtrio.APIStatusError, match="HTTP 503") as failed:
            await transcribe(make_stt(server), SPEECH, conn_options=APIConnectOptions(max_retry=2))
    assert not failed.value.retryable  # no retry left within the stream
    assert len(server.connections) == 3


async def test_a_handshake_that_never_completes_times_out(autojump_clock):
    server = FakeDeepgram(TRANSCRIPTS, faults=[Fault(kind="stall_handshake")])
    async with server.running():
        items = await transcribe(make_stt(server), SPEECH, conn_options=APIConnectOptions(timeout=1.0))
    [timeout] = reconnections(items)
    assert isinstance(timeout, voxtrio.APITimeoutError) and "handshake" in str(timeout)
    assert finals(items) == [("Hello there friend.", 1.5, 3.0)]


# -- whole calls ---------------------------------------------------------------------------


def session_with(stt, **options):
    return voxtrio.AgentSession(
        stt=stt,
        llm=ScriptedLLM([LLMResponse(input="Hello there friend.", content="Hi! How can I help?")]),
        **options,
    )


async def call(session, transport, *, until, body=None):
    seen = []
    session.on("*", lambda e: seen.append((round(trio.current_time(), 3), e.type, e)))
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(), transport)
        if body is not None:
            await body()
        await trio.sleep_until(until)
        await session.aclose()
    return seen


async def test_a_whole_call_turn_detected_by_deepgram(autojump_clock):
    server = FakeDeepgram(TRANSCRIPTS)
    async with server.running():
        session = session_with(make_stt(server), turn_detection="stt", min_endpointing_delay=0.4)
        seen = await call(session, ArrayTransport(audio((0, 0.5), (HELLO, 1.5), (0, 3.0))), until=4.0)
    # Deepgram's boundaries drive the user's state (no VAD in this session)
    assert [(t, e.new_state) for t, kind, e in seen if kind == "user_state_changed"] == [
        (0.52, "speaking"), (2.04, "listening"),
    ]
    transcribed = [(e.transcript, e.is_final) for _, kind, e in seen if kind == "user_input_transcribed"]
    assert ("Hello", False) in transcribed and transcribed[-1] == ("Hello there friend.", True)
    [(committed_at, user)] = [
        (t, e.item) for t, kind, e in seen if kind == "conversation_item_added" and getattr(e.item, "role", "") == "user"
    ]
    assert user.content == "Hello there friend."
    assert committed_at == pytest.approx(2.0 + 0.4)  # the end of speech Deepgram timed, + the delay
    assert session.history.items[-1].content == "Hi! How can I help?"
    # usage: the audio sent until the final came, and how late the final was
    [(at, usage)] = [(t, e.metrics) for t, kind, e in seen if kind == "metrics_collected" and e.kind == "stt"]
    assert (at, usage["duration"]) == (2.04, 0.0) and usage["audio_duration"] == pytest.approx(2.04)
    # the session's close cancelled the stream: it told Deepgram with CloseStream
    assert server.connections[0].types() == ["CloseStream"]


async def test_commit_user_turn_finalizes_what_deepgram_heard(autojump_clock):
    server = FakeDeepgram(TRANSCRIPTS)
    committed = []

    async def push_to_talk():
        await trio.sleep(1.6)  # the user holds the button from 0.5 to 1.6 s
        session.set_audio_input_enabled(False)
        committed.append(await session.commit_user_turn())

    async with server.running():
        session = session_with(make_stt(server), turn_detection="manual")
        await call(session, ArrayTransport(audio((0, 0.5), (HELLO, 3.0))), until=8.0, body=push_to_talk)
    assert committed == ["Hello there friend."]
    [connection] = server.connections
    assert connection.types()[0] == "Finalize"
    assert connection.types().count("KeepAlive") >= 1  # the input stayed off until the close
    assert [item.content for item in session.history.items if item.type == "message"] == [
        "Hello there friend.", "Hi! How can I help?",
    ]


async def test_a_dropped_connection_in_a_call_loses_no_words(autojump_clock):
    server = FakeDeepgram(TRANSCRIPTS, faults=[Fault(kind="drop", after=2.2)])
    async with server.running():
        session = session_with(make_stt(server), turn_detection="stt", min_endpointing_delay=0.4)
        seen = await call(session, ArrayTransport(audio((0, 1.5), (HELLO, 1.5), (0, 3.0))), until=5.0)
    errors = [e for _, kind, e in seen if kind == "error"]
    assert [(e.source, e.recoverable) for e in errors] == [("stt", True)]
    [user] = [e.item for _, kind, e in seen if kind == "conversation_item_added" and getattr(e.item, "role", "") == "user"]
    assert user.content == "Hello there friend."
    assert len(server.connections) == 2


async def test_a_refused_key_closes_the_session_with_an_error_naming_it(autojump_clock):
    server = FakeDeepgram(TRANSCRIPTS, api_key="the-right-key")
    async with server.running():
        session = session_with(
            make_stt(server),
            conn_options=SessionConnectOptions(max_unrecoverable_errors=1),
        )
        seen = await call(session, ArrayTransport(audio((0, 2.0))), until=10.0)
    [close] = [e for _, kind, e in seen if kind == "close"]
    assert close.reason == "error" and "DEEPGRAM_API_KEY" in close.error
    assert [(e.source, e.recoverable) for _, kind, e in seen if kind == "error"][0] == ("stt", False)


async def test_clearing_the_user_turn_ends_the_stream_on_the_wire_and_opens_a_new_one(autojump_clock):
    server = FakeDeepgram(TRANSCRIPTS)

    async def clear_mid_speech():
        await trio.sleep(1.0)
        session.clear_user_turn()

    async with server.running():
        session = session_with(make_stt(server), turn_detection="manual")
        await call(session, ArrayTransport(audio((0, 0.5), (HELLO, 1.0), (0, 1.0))), until=2.0, body=clear_mid_speech)
    first, second = server.connections[:2]
    # the cancelled stream said CloseStream and was gone at once; the next one
    # opened with the next frame
    assert first.types() == ["CloseStream"] and first.client_gone_at == 1.0
    assert second.opened_at == pytest.approx(1.02, abs=0.021)
