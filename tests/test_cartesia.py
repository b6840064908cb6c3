"""Cartesia WebSocket synthesis, one context per segment, against a local server
that speaks its protocol (clock: see tts_loopback)."""

import json

import pytest

import voxtrio
from voxtrio.providers import cartesia

from loopback.cartesia import FakeCartesia
from loopback.server import Fault
from tts_loopback import same_words, seconds_of, started_marker_at, synthesize, words_of


def make_tts(server, **options):
    return cartesia.TTS(voice="voice-1", api_key="test-key", base_url=server.url, **options)


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


async def test_a_request_error_is_final(autojump_clock):
    bad = json.dumps({"type": "error", "done": True, "title": "Invalid voice", "message": "no such voice",
                      "error_code": "voice_not_found", "status_code": 400})
    server = FakeCartesia(faults=[Fault(kind="malformed", payload=bad, after=0.0)])
    async with server.running():
        with pytest.raises(voxtrio.APIStatusError, match="voice_not_found") as failed:
            await synthesize(make_tts(server), ["Hello."])
    assert (failed.value.status_code, failed.value.retryable) == (400, False)


def test_timestamped_words_are_given_back_as_written():
    context = cartesia._Context(cartesia.TTS(voice="voice-1", api_key="test-key"), None, "c")
    context.sent_words.extend("Hello, world! & more.".split())
    assert [context.as_written(w) for w in ["Hello", "world", "more", "unknown"]] == [
        "Hello,", "world!", "more.", "unknown",  # "&" had no timestamp: passed over
    ]

