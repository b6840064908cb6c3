"""Cartesia WebSocket synthesis, one context per segment, against a local server
that speaks its protocol (clock: see tts_loopback)."""

import json

import pytest
import trio

import voxtrio
from voxtrio.options import APIConnectOptions, SessionConnectOptions
from voxtrio.providers import cartesia

from loopback.cartesia import FakeCartesia
from loopback.server import Fault, SpeechModel
from tts_loopback import LONG_TEXT, heard_before, same_words, seconds_of, speak, started_marker_at, synthesize, words_of


def make_tts(server, **options):
    return cartesia.TTS(voice="voice-1", api_key="test-key", base_url=server.url, **options)


def test_a_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("CARTESIA_API_KEY", raising=False)
    with pytest.raises(voxtrio.MissingAPIKeyError, match="CARTESIA_API_KEY"):
        cartesia.TTS(voice="v")
    with pytest.raises(ValueError, match="raw PCM"):
        cartesia.TTS(voice="v", api_key="k", sample_rate=12_345)


async def test_one_context_continued_by_sentence_with_word_timestamps(autojump_clock):
    server = FakeCartesia()
    async with server.running():
        tts = make_tts(server, sample_rate=16_000, generation_config={"speed": 1.1})
        items = await synthesize(tts, ["Hello there, ", "my friend. How ", "are you today?"], chunk_delay=0.1)
    [connection] = server.connections
    assert connection.path == "/tts/websocket" and connection.param("cartesia_version") == "2025-04-16"
    assert (connection.headers["x-api-key"], connection.headers["cartesia-version"]) == ("test-key", "2025-04-16")
    requests = connection.texts
    [context_id] = {r["context_id"] for r in requests}
    assert [(r["transcript"], r["continue"]) for r in requests] == [
        ("Hello there, my friend. ", True), ("How are you today? ", True), ("", False),
    ]
    assert requests[0] == {
        "model_id": "sonic-3", "voice": {"mode": "id", "id": "voice-1"},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16_000},
        "add_timestamps": True, "language": "en", "max_buffer_delay_ms": 0, "generation_config": {"speed": 1.1},
        "transcript": "Hello there, my friend. ", "context_id": context_id, "continue": True,
    }
    assert connection.finished and not server.cancelled
    assert seconds_of(items) == pytest.approx(connection.audio_seconds, abs=1e-3)
    # the context's timestamps, placed on the segment's clock
    assert same_words(words_of(items), connection.words)
    assert started_marker_at(items) == [0.1]


async def test_nothing_to_say_opens_no_context(autojump_clock):
    server = FakeCartesia()
    async with server.running():
        items = await synthesize(make_tts(server), [])
    assert items == [] and server.connections[0].texts == []


async def test_an_interruption_cancels_the_context_on_the_wire(autojump_clock):
    server = FakeCartesia(model=SpeechModel(speed=1.25))
    async with server.running():
        session, seen, output = await speak(make_tts(server), LONG_TEXT, interrupt_at=2.0)
    [connection] = server.connections
    [context_id] = {r["context_id"] for r in connection.texts if "transcript" in r}
    # the cancel for this context reached Cartesia, at once, while it was still generating
    assert server.cancelled == [context_id] and server.cancelled_at == [2.0] and not connection.finished
    assert connection.texts[-1] == {"context_id": context_id, "cancel": True}
    [finished] = [e for _, kind, e in seen if kind == "playback_finished"]
    expected = heard_before(connection.words, finished.position)
    assert expected and expected != LONG_TEXT
    message = session.history.items[-1]
    assert (message.content, message.interrupted) == (expected, True)
    assert output.clears == [2.0] and max(t for t, _ in output.writes) < 2.0


async def test_a_whole_reply_records_its_metrics(autojump_clock):
    server = FakeCartesia(model=SpeechModel(ttfb=0.12))
    async with server.running():
        session, seen, _ = await speak(make_tts(server), "Short and sweet.")
    [metrics] = [e.metrics for _, kind, e in seen if kind == "metrics_collected" and e.kind == "tts"]
    assert metrics["ttfb"] == pytest.approx(0.12) and metrics["characters"] == len("Short and sweet.")
    assert metrics["audio_duration"] == pytest.approx(server.connections[0].audio_seconds, abs=1e-3)
    assert (session.history.items[-1].content, session.history.items[-1].interrupted) == ("Short and sweet.", False)
    assert not server.cancelled


# -- faults ---------------------------------------------------------------------------------

SERVER_ERROR = json.dumps({"type": "error", "done": True, "title": "Internal error", "message": "try again",
                           "error_code": "internal", "status_code": 500})


@pytest.mark.parametrize(
    "fault, error",
    [
        (Fault(kind="reject", status=429), "HTTP 429"),
        (Fault(kind="reject", status=503), "HTTP 503"),
        (Fault(kind="stall_handshake"), "no progress for 2 s"),
        (Fault(kind="close", code=1011, after=0.0), "1011"),
        (Fault(kind="drop", after=0.0), "1006"),
        (Fault(kind="malformed", payload="]]", after=0.0), "not JSON"),
        (Fault(kind="malformed", payload='{"type": "chunk"}', after=0.0), "documented shape"),
        (Fault(kind="malformed", payload=SERVER_ERROR, after=0.0), "[internal]: Internal error: try again"),
        (Fault(kind="stall", after=0.0), "no progress for 2 s"),
    ],
    ids=["429", "503", "stalled-handshake", "closed-1011", "dropped", "bad-json", "wrong-shape", "error-500", "stalled"],
)
async def test_a_failure_before_any_audio_is_retried_on_a_new_connection(autojump_clock, fault, error):
    server = FakeCartesia(faults=[fault])
    options = {"conn_options": SessionConnectOptions(tts_conn_options=APIConnectOptions(timeout=2.0))}
    async with server.running():
        session, seen, _ = await speak(make_tts(server), "Hello there, my friend.", options=options)
    errors = [e for _, kind, e in seen if kind == "error"]
    assert [(e.source, e.recoverable) for e in errors] == [("tts", True)] and error in errors[0].message
    assert len(server.connections) == 2 and server.connections[-1].finished
    assert (session.history.items[-1].content, session.history.items[-1].interrupted) == ("Hello there, my friend.", False)


async def test_a_request_error_is_final(autojump_clock):
    bad = json.dumps({"type": "error", "done": True, "title": "Invalid voice", "message": "no such voice",
                      "error_code": "voice_not_found", "status_code": 400})
    server = FakeCartesia(faults=[Fault(kind="malformed", payload=bad, after=0.0)])
    async with server.running():
        with pytest.raises(voxtrio.APIStatusError, match="voice_not_found") as failed:
            await synthesize(make_tts(server), ["Hello."])
    assert (failed.value.status_code, failed.value.retryable) == (400, False)


async def test_a_refused_key_is_final_and_names_the_variable(autojump_clock):
    server = FakeCartesia(api_key="the-right-key")
    async with server.running():
        with pytest.raises(voxtrio.APIStatusError, match="CARTESIA_API_KEY") as failed:
            await synthesize(make_tts(server), ["Hello."])
    assert (failed.value.status_code, failed.value.retryable) == (401, False)


async def test_a_stall_mid_reply_cuts_it_and_cancels_the_context(autojump_clock):
    server = FakeCartesia(faults=[Fault(kind="stall", after=1.0)], model=SpeechModel(speed=1.25))
    options = {"conn_options": SessionConnectOptions(tts_conn_options=APIConnectOptions(timeout=2.0))}
    async with server.running():
        session, seen, _ = await speak(make_tts(server), LONG_TEXT, options=options)
    errors = [e for _, kind, e in seen if kind == "error"]
    assert [(e.source, e.recoverable) for e in errors] == [("tts", False)] and "no progress" in errors[0].message
    assert len(server.cancelled) == 1  # the server was alive: told to stop
    message = session.history.items[-1]
    assert message.interrupted and message.content and LONG_TEXT.startswith(message.content)


async def test_a_connection_lost_mid_reply_cuts_it(autojump_clock):
    server = FakeCartesia(faults=[Fault(kind="drop", after=1.0)], model=SpeechModel(speed=1.25))
    async with server.running():
        session, seen, _ = await speak(make_tts(server), LONG_TEXT)
    errors = [e for _, kind, e in seen if kind == "error"]
    assert [(e.source, e.recoverable) for e in errors] == [("tts", False)] and "1006" in errors[0].message
    message = session.history.items[-1]
    assert message.interrupted and message.content and LONG_TEXT.startswith(message.content)


def test_timestamped_words_are_given_back_as_written():
    context = cartesia._Context(make_tts_offline(), None, "c")
    context.sent_words.extend("Hello, world! & more.".split())
    assert [context.as_written(w) for w in ["Hello", "world", "more", "unknown"]] == [
        "Hello,", "world!", "more.", "unknown",  # "&" had no timestamp: passed over
    ]


def make_tts_offline():
    return cartesia.TTS(voice="voice-1", api_key="test-key")
