"""What both WebSocket TTSs (ElevenLabs, Cartesia) must do the same way, each
against its own local server: keys, what an interrupted reply records, metrics,
and the faults (clock: see tts_loopback). Their protocols have their own files."""

import json

import attrs
import pytest

import voxtrio
from voxtrio.options import APIConnectOptions, SessionConnectOptions
from voxtrio.providers import cartesia, elevenlabs

from loopback.cartesia import FakeCartesia
from loopback.elevenlabs import FakeElevenLabs
from loopback.server import Fault, SpeechModel
from tts_loopback import LONG_TEXT, heard_before, speak, synthesize


@attrs.frozen
class Vendor:
    fake: type
    make: object  # (base_url, **options) -> TTS
    key_variable: str
    # what the vendor saw of a barge-in at ``at``: it stopped generating then
    stopped_at: object  # (server, at) -> bool
    # frames that break its protocol, before any audio
    malformed: tuple[tuple[str, str, str], ...]  # (id, payload, error)


CARTESIA_SERVER_ERROR = json.dumps({"type": "error", "done": True, "title": "Internal error", "message": "try again",
                                    "error_code": "internal", "status_code": 500})

VENDORS = {
    "elevenlabs": Vendor(
        fake=FakeElevenLabs,
        make=lambda url, **options: elevenlabs.TTS(**{"voice_id": "v1", "api_key": "test-key", "base_url": url, **options}),
        key_variable="ELEVEN_API_KEY",
        # the connection closed at once (the stream-input protocol has no cancel)
        stopped_at=lambda server, at: server.connections[0].client_gone_at == at,
        malformed=(
            ("bad-audio", '{"audio": 5}', "not base64"),
            ("wrong-shape", '{"audio": "", "alignment": {"chars": ["a"]}}', "documented shape"),
        ),
    ),
    "cartesia": Vendor(
        fake=FakeCartesia,
        make=lambda url, **options: cartesia.TTS(**{"voice": "v1", "api_key": "test-key", "base_url": url, **options}),
        key_variable="CARTESIA_API_KEY",
        # the context's cancel arrived at once, while it was still generating
        stopped_at=lambda server, at: server.cancelled_at == [at],
        malformed=(
            ("wrong-shape", '{"type": "chunk"}', "documented shape"),
            ("error-500", CARTESIA_SERVER_ERROR, "[internal]: Internal error: try again"),
        ),
    ),
}
vendors = pytest.mark.parametrize("vendor", VENDORS.values(), ids=VENDORS.keys())

QUICK = {"conn_options": SessionConnectOptions(tts_conn_options=APIConnectOptions(timeout=2.0))}


@vendors
def test_a_missing_key_names_the_variable(monkeypatch, vendor):
    monkeypatch.delenv(vendor.key_variable, raising=False)
    with pytest.raises(voxtrio.MissingAPIKeyError, match=vendor.key_variable):
        vendor.make("wss://example.com", api_key=None)
    with pytest.raises(ValueError, match="PCM"):
        vendor.make("wss://example.com", sample_rate=12_345)


@vendors
async def test_an_interrupted_reply_records_the_words_that_were_heard(autojump_clock, vendor):
    # Rendered barely faster than real time: the reply is still being synthesized when it is cut.
    server = vendor.fake(model=SpeechModel(speed=1.25))
    async with server.running():
        session, seen, output = await speak(vendor.make(server.url), LONG_TEXT, interrupt_at=2.0)
    [finished] = [e for _, kind, e in seen if kind == "playback_finished"]
    assert finished.interrupted and 1.8 < finished.position < 2.0
    [connection] = server.connections
    expected = heard_before(connection.words, finished.position)
    assert expected and expected != LONG_TEXT  # a real prefix: the test can fail
    message = session.history.items[-1]
    assert (message.role, message.content, message.interrupted) == ("assistant", expected, True)
    # barge-in: the vendor was told on the spot, and nothing played after
    assert vendor.stopped_at(server, 2.0) and not connection.finished
    assert output.clears == [2.0] and max(t for t, _ in output.writes) < 2.0


@vendors
async def test_metrics_report_ttfb_characters_and_audio(autojump_clock, vendor):
    server = vendor.fake(model=SpeechModel(ttfb=0.15))
    async with server.running():
        session, seen, _ = await speak(vendor.make(server.url), "Short and sweet.")
    [metrics] = [e.metrics for _, kind, e in seen if kind == "metrics_collected" and e.kind == "tts"]
    assert metrics["ttfb"] == pytest.approx(0.15)
    assert metrics["characters"] == len("Short and sweet.")
    assert metrics["audio_duration"] == pytest.approx(server.connections[0].audio_seconds, abs=1e-3)
    assert (session.history.items[-1].content, session.history.items[-1].interrupted) == ("Short and sweet.", False)


COMMON_FAULTS = [
    ("429", Fault(kind="reject", status=429), "HTTP 429"),
    ("503", Fault(kind="reject", status=503), "HTTP 503"),
    ("stalled-handshake", Fault(kind="stall_handshake"), "no progress for 2 s"),
    ("closed-1011", Fault(kind="close", code=1011, after=0.0), "1011"),
    ("dropped", Fault(kind="drop", after=0.0), "1006"),
    ("bad-json", Fault(kind="malformed", payload="{{{", after=0.0), "not JSON"),
    ("stalled", Fault(kind="stall", after=0.0), "no progress for 2 s"),
]
FAULTS = [
    pytest.param(vendor, fault, error, id=f"{name}-{fault_id}")
    for name, vendor in VENDORS.items()
    for fault_id, fault, error in COMMON_FAULTS
    + [(fault_id, Fault(kind="malformed", payload=payload, after=0.0), error) for fault_id, payload, error in vendor.malformed]
]


@pytest.mark.parametrize("vendor, fault, error", FAULTS)
async def test_a_failure_before_any_audio_is_retried_on_a_new_connection(autojump_clock, vendor, fault, error):
    # after=0.0: the fault strikes before the first chunk of audio
    server = vendor.fake(faults=[fault])
    async with server.running():
        session, seen, _ = await speak(vendor.make(server.url), "Hello there, my friend.", options=QUICK)
    errors = [e for _, kind, e in seen if kind == "error"]
    assert [(e.source, e.recoverable) for e in errors] == [("tts", True)] and error in errors[0].message
    assert len(server.connections) == 2 and server.connections[1].finished
    message = session.history.items[-1]
    assert (message.content, message.interrupted) == ("Hello there, my friend.", False)


@vendors
async def test_too_many_requests_is_retried_after_retry_after(autojump_clock, vendor):
    server = vendor.fake(faults=[Fault(kind="reject", status=429, headers=(("Retry-After", "3"),))])
    async with server.running():
        session, _, _ = await speak(vendor.make(server.url), "Hello there.")
    assert [round(c.opened_at, 3) for c in server.connections] == [0.0, 3.0]  # not the 0.1 s first retry
    assert session.history.items[-1].content == "Hello there."


@vendors
@pytest.mark.parametrize("fault, error", [(Fault(kind="drop", after=1.0), "1006"), (Fault(kind="stall", after=1.0), "no progress")],
                         ids=["dropped", "stalled"])
async def test_a_failure_mid_reply_cuts_it_where_the_audio_stopped(autojump_clock, vendor, fault, error):
    server = vendor.fake(faults=[fault], model=SpeechModel(speed=1.25))
    async with server.running():
        session, seen, _ = await speak(vendor.make(server.url), LONG_TEXT, options=QUICK)
    errors = [e for _, kind, e in seen if kind == "error"]
    # audio was already playing: no retry (it cannot be taken back), the reply is cut
    assert [(e.source, e.recoverable) for e in errors] == [("tts", False)] and error in errors[0].message
    assert len(server.connections) == 1
    message = session.history.items[-1]
    assert message.interrupted and message.content and LONG_TEXT.startswith(message.content)


@vendors
async def test_a_refused_key_is_final_and_names_the_variable(autojump_clock, vendor):
    server = vendor.fake(api_key="the-right-key")
    async with server.running():
        with pytest.raises(voxtrio.APIStatusError, match=vendor.key_variable) as failed:
            await synthesize(vendor.make(server.url), ["Hello."])
    assert (failed.value.status_code, failed.value.retryable) == (401, False)
