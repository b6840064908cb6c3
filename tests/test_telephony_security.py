"""Who may answer and stream calls: provider signatures (with their published
test vectors), replays, stale requests, and the single-use stream tokens."""

import base64
import json
import time

import httpx2
import pytest
import trio
import trio_websocket

from telephony_helpers import PROVIDERS, TWILIO_TOKEN, VONAGE_SECRET, Credentials, public_b64, running_server
from voxtrio.testing.phone import FakeCaller, Pause
from voxtrio.tokens import InvalidToken, TokenSigner
from voxtrio.transports.telephony import WebhookRejected, plivo, twilio, vonage
from voxtrio.transports.telephony.base import ReplayGuard
from voxtrio.transports.telephony.http import HTTPRequest
from voxtrio.transports.telephony.telnyx import Telnyx, signed_payload

# -- the providers' own test vectors ------------------------------------------------------

# twilio-python's tests/unit/test_request_validator.py
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {"CallSid": "CA1234567890ABCDE", "Digits": "1234", "From": "+14158675309",
                 "To": "+18005551212", "Caller": "+14158675309"}


def test_twilio_signature_vectors():
    assert twilio.compute_signature("12345", TWILIO_URL, TWILIO_PARAMS.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    repeated = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")]
    assert twilio.compute_signature("12345", TWILIO_URL, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    # Twilio signs the URL with or without its port; a validator tries both.
    assert twilio.validate_signature("12345", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", TWILIO_URL.replace(".com", ".com:1234"), TWILIO_PARAMS.items())
    assert twilio.validate_signature("12345", "kvajT1Ptam85bY51eRf/AJRuM3w=", TWILIO_URL, TWILIO_PARAMS.items())
    assert twilio.validate_signature("12345", "0ZXoZLH/DfblKGATFgpif+LLRf4=", TWILIO_URL.replace("https", "http"), TWILIO_PARAMS.items())
    assert not twilio.validate_signature("12346", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", TWILIO_URL, TWILIO_PARAMS.items())
    assert not twilio.validate_signature("12345", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", TWILIO_URL, {**TWILIO_PARAMS, "Digits": "1235"}.items())


# plivo-go's utils_test.go (TestValidateSignatureV3Pass1..4)
PLIVO_VECTOR_TOKEN = "Y2Q2ZDgxZmY5YWRiOTI5YmQ1Njg0MTAxZWIyOTc4"
PLIVO_NONCE = "31627761595286130198"
PLIVO_PARAMS = {
    "Direction": "outbound", "From": "19792014278", "ALegUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
    "CallStatus": "in-progress", "BillRate": "0.002", "ParentAuthID": "MANWVLYTK4ZWU1YTY4QA",
    "To": "sip:PlivoSignature382029104058171078704104@phone-qa.voice.plivodev.com",
    "ALegRequestUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36", "CallUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
    "RequestUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
    "SIP-H-To": "<sip:PlivoSignature382029104058171078704104@52.9.11.55;transport=udp>;tag=1",
    "SessionStart": "2020-04-08 11:34:33.238707", "Event": "StartApp",
}
PLIVO_BASE = "https://plivobin.non-prod.plivops.com/api/v1/validate_signature03.xml"


@pytest.mark.parametrize("url, method, signature", [
    (PLIVO_BASE + "/?a=b&c=d", "POST", "k7Pusd4OxCIjR5IfA9iedDNu/h/gbdYqdzG/MiYtd1c="),
    (PLIVO_BASE + "/?a=b&c=d", "GET", "UBq8jAtd32wR8EK9VgxbBn4n5rpI/l1H9iN4WfSEHFQ="),
    (PLIVO_BASE, "POST", "iAjE5QqI37mbkYe4w3jTMudqEzbDufdqi7sYwTu64e0="),
    (PLIVO_BASE, "GET", "i/MQsaQSAd6fiKhOh2qeeeLHZ9faldADSb3/7+Akfbc="),
])
def test_plivo_v3_signature_vectors(url, method, signature):
    params = PLIVO_PARAMS.items()
    assert plivo.validate_signature(PLIVO_VECTOR_TOKEN, method, url, PLIVO_NONCE, signature, params)
    assert plivo.validate_signature(PLIVO_VECTOR_TOKEN, method, url, PLIVO_NONCE, f"rotated-key-sig=,{signature}", params)
    assert not plivo.validate_signature(PLIVO_VECTOR_TOKEN, method, url, PLIVO_NONCE + "1", signature, params)
    assert not plivo.validate_signature(PLIVO_VECTOR_TOKEN + "x", method, url, PLIVO_NONCE, signature, params)


# vonage-python-sdk's jwt/tests/test_verify_jwt.py
VONAGE_VECTOR = ("eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJPbmxpbmUgSldUIEJ1aWxkZXIiLCJpYXQiOjE2OTc2MzQ2ODAsImV4cCI6MzMy"
                 "NTQ1NDA4MjgsImF1ZCI6IiIsInN1YiI6IiJ9.88vJc3I2HhuqEDixHXVhc9R30tA6U_HQHZTC29y6CGM")


def test_vonage_signed_jwt_vector_and_refusals():
    claims = vonage.verify_hs256(VONAGE_VECTOR, "qwertyuiopasdfghjklzxcvbnm123456")
    assert claims["iat"] == 1697634680
    with pytest.raises(WebhookRejected) as wrong:
        vonage.verify_hs256(VONAGE_VECTOR, "asdf")
    assert wrong.value.reason == "bad_signature"
    header, body, _ = VONAGE_VECTOR.split(".")
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    with pytest.raises(WebhookRejected, match="HS256"):
        vonage.verify_hs256(f"{unsigned}.{body}.", "qwertyuiopasdfghjklzxcvbnm123456")


def test_telnyx_ed25519_signature_and_tolerance():
    # Telnyx publishes no fixed vector: a key pair made here signs "<timestamp>|<body>".
    credentials = Credentials()
    now = [1_700_000_000.0]
    provider = Telnyx(public_key=public_b64(credentials.telnyx_private), clock=lambda: now[0])
    body = b'{"data": {"event_type": "call.initiated"}}'

    def request(timestamp: str, signature: bytes, payload: bytes = body) -> HTTPRequest:
        headers = {"telnyx-signature-ed25519": base64.b64encode(signature).decode(), "telnyx-timestamp": timestamp}
        return HTTPRequest("POST", "/telnyx/events", headers, payload)

    stamp = str(int(now[0]))
    good = credentials.telnyx_private.sign(signed_payload(stamp, body))
    replay = ReplayGuard()
    provider.verify_webhook(request(stamp, good), "https://x/telnyx/events", replay)
    for bad, reason in [
        (request(stamp, good, body + b" "), "bad_signature"),
        (request(str(int(now[0]) + 1), good), "bad_signature"),
        (request(stamp, good), "replayed"),
    ]:
        with pytest.raises(WebhookRejected) as refused:
            provider.verify_webhook(bad, "https://x/telnyx/events", replay)
        assert refused.value.reason == reason
    now[0] += 301
    old = str(int(now[0]) - 301)
    with pytest.raises(WebhookRejected) as stale:
        provider.verify_webhook(request(old, credentials.telnyx_private.sign(signed_payload(old, body))), "u", ReplayGuard())
    assert stale.value.reason == "stale"


# -- stream tokens ----------------------------------------------------------------------------


def test_stream_tokens_open_one_stream_before_they_expire():
    now = [1000.0]
    tokens = TokenSigner(b"0123456789abcdef", ttl=30, clock=lambda: now[0])
    token = tokens.issue({"c": "CA1", "f": "+1555"})
    assert tokens.check(token)["f"] == "+1555"
    for bad, reason in [
        (token, "reused"),
        (token[:-3] + "AAA", "bad_signature"),
        ("v1.garbage", "malformed"),
        (TokenSigner(b"another secret..", clock=lambda: now[0]).issue({}), "bad_signature"),
    ]:
        with pytest.raises(InvalidToken) as refused:
            tokens.check(bad)
        assert refused.value.reason == reason
    late = tokens.issue({})
    now[0] += 32
    with pytest.raises(InvalidToken) as expired:
        tokens.check(late)
    assert expired.value.reason == "expired"


# -- over the wire: the server refuses and counts ----------------------------------------------


async def nobody(call):
    await call.transport.close()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_answer_webhook_is_refused_unless_signed_and_fresh(provider):
    credentials = Credentials()
    with trio.fail_after(20):
        async with running_server(nobody, credentials.providers()) as server, httpx2.AsyncClient() as client:
            wire = credentials.wire(provider)
            method, url, headers, body = wire.answer_request(server.public_url)
            answered = await client.request(method, url, headers=headers, content=body)
            assert answered.status_code == 200
            assert wire.media_url(answered.content).startswith(f"ws://127.0.0.1:{server.port}/{provider}/media/v1.")
            replayed = await client.request(method, url, headers=headers, content=body)
            assert replayed.status_code == 403
            unsigned = {k: v for k, v in headers.items() if k.lower() in ("content-type",)}
            missing = await client.request(method, url, headers=unsigned, content=body)
            assert missing.status_code == 403
            if provider == "vonage":  # its JWT covers the body, not a GET's query: a wrong secret
                forged = Credentials().wire(provider)
                forged.signature_secret = VONAGE_SECRET + "x"
                method, url, headers, body = forged.answer_request(server.public_url)
            else:
                method, url, headers, body = credentials.wire(provider).answer_request(server.public_url)
                body = body.replace(b"From=", b"From=%2B1999")
            tampered = await client.request(method, url, headers=headers, content=body)
            assert tampered.status_code == 403
            assert server.stats.webhooks_accepted == 1
            assert server.stats.webhooks_refused == {"replayed": 1, "missing": 1, "bad_signature": 1}


async def test_stale_signed_webhooks_are_refused():
    credentials = Credentials()
    with trio.fail_after(20):
        async with running_server(nobody, credentials.providers()) as server, httpx2.AsyncClient() as client:
            old = str(int(time.time()) - 600)
            body = b"CallSid=v3%3Aabc&From=%2B1555&To=%2B1666"
            signature = credentials.telnyx_private.sign(signed_payload(old, body))
            headers = {"telnyx-signature-ed25519": base64.b64encode(signature).decode(), "telnyx-timestamp": old,
                       "content-type": "application/x-www-form-urlencoded"}
            telnyx_old = await client.post(f"{server.public_url}/telnyx/answer", headers=headers, content=body)
            token = vonage.sign_hs256({"iat": int(time.time()) - 600, "jti": "j1"}, VONAGE_SECRET)
            vonage_old = await client.get(f"{server.public_url}/vonage/answer?uuid=u1&from=1&to=2",
                                          headers={"Authorization": f"Bearer {token}"})
            assert (telnyx_old.status_code, vonage_old.status_code) == (403, 403)
            assert server.stats.webhooks_refused == {"stale": 2}


async def test_a_vonage_body_must_match_its_payload_hash():
    with trio.fail_after(20):
        async with running_server(nobody, Credentials().providers()) as server, httpx2.AsyncClient() as client:
            body = json.dumps({"uuid": "u1", "status": "answered"}).encode()
            wire = Credentials().wire("vonage")
            ok = await client.post(f"{server.public_url}/vonage/events", content=body,
                                   headers={"Authorization": f"Bearer {wire.token(body)}", "content-type": "application/json"})
            other = await client.post(f"{server.public_url}/vonage/events", content=body + b" ",
                                      headers={"Authorization": f"Bearer {wire.token(body)}", "content-type": "application/json"})
            assert (ok.status_code, other.status_code) == (204, 403)


async def open_stream(url: str, headers=()):
    async with trio_websocket.open_websocket_url(url, extra_headers=list(headers)) as ws:
        await ws.send_message(json.dumps({"event": "connected"}))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_stream_token_opens_one_stream_and_only_for_its_provider(provider):
    credentials = Credentials()
    calls = []

    async def entrypoint(call):
        calls.append(call)
        await call.transport.close()

    with trio.fail_after(20):
        async with running_server(entrypoint, credentials.providers()) as server, httpx2.AsyncClient() as client:
            wire = credentials.wire(provider)
            method, url, headers, body = wire.answer_request(server.public_url)
            media_url = wire.media_url((await client.request(method, url, headers=headers, content=body)).content)
            await FakeCaller(wire, [Pause(5)]).connect(media_url)
            assert len(calls) == 1 and calls[0].call_id == wire.call_id
            assert calls[0].from_number == wire.from_number and calls[0].to_number == wire.to_number
            with pytest.raises(trio_websocket.ConnectionRejected) as reused:
                await open_stream(media_url, wire.ws_headers(media_url))
            assert reused.value.status_code == 403
            other = next(p for p in PROVIDERS if p != provider)
            forged = server.tokens.issue({"p": provider})[:-4] + "abcd"
            for url, status in [
                (media_url.replace(f"/{provider}/", f"/{other}/").rsplit("/", 1)[0] + "/" + server.tokens.issue({"p": provider}), 401),
                (media_url.rsplit("/", 1)[0] + "/" + forged, 403),
                (media_url.rsplit("/", 1)[0] + "/not-a-token", 401),
            ]:
                with pytest.raises(trio_websocket.ConnectionRejected) as refused:
                    await open_stream(url)
                assert refused.value.status_code == status
            assert server.stats.streams_accepted == 1
            assert server.stats.streams_refused == {"reused": 1, "malformed": 2, "bad_signature": 1}


async def test_an_expired_stream_token_is_refused():
    now = [time.time()]
    credentials = Credentials()
    with trio.fail_after(20):
        async with running_server(nobody, credentials.providers(), token_ttl=5) as server:
            server.tokens = TokenSigner(b"0123456789abcdef", ttl=5, clock=lambda: now[0])
            token = server.tokens.issue({"p": "twilio", "c": "CA1"})
            now[0] += 6
            with pytest.raises(trio_websocket.ConnectionRejected) as refused:
                await open_stream(server.media_url("twilio", token))
            assert refused.value.status_code == 403
            assert server.stats.streams_refused == {"expired": 1}


async def test_a_twilio_media_handshake_with_a_wrong_signature_is_refused():
    credentials = Credentials()
    with trio.fail_after(20):
        async with running_server(nobody, credentials.providers()) as server:
            url = server.media_url("twilio", server.tokens.issue({"p": "twilio", "c": "CA1"}))
            bad = twilio.compute_signature(TWILIO_TOKEN + "x", url)
            with pytest.raises(trio_websocket.ConnectionRejected) as refused:
                await open_stream(url, [("X-Twilio-Signature", bad)])
            assert refused.value.status_code == 403
            assert server.stats.streams_refused == {"bad_signature": 1}


async def test_streams_past_max_calls_are_refused_as_busy():
    credentials, gate = Credentials(), trio.Event()

    async def entrypoint(call):
        await gate.wait()
        await call.transport.close()

    with trio.fail_after(20):
        async with running_server(entrypoint, credentials.providers(), max_calls=1) as server, httpx2.AsyncClient() as client:
            async with trio.open_nursery() as nursery:
                first = credentials.wire("twilio")
                method, url, headers, body = first.answer_request(server.public_url)
                first_url = first.media_url((await client.request(method, url, headers=headers, content=body)).content)
                nursery.start_soon(FakeCaller(first, [Pause(10)]).connect, first_url)
                while not server.calls:
                    await trio.sleep(0.01)
                second = credentials.wire("twilio")
                method, url, headers, body = second.answer_request(server.public_url)
                second_url = second.media_url((await client.request(method, url, headers=headers, content=body)).content)
                with pytest.raises(trio_websocket.ConnectionRejected) as busy:
                    await open_stream(second_url)
                assert busy.value.status_code == 503
                gate.set()
            assert server.stats.streams_refused == {"busy": 1}
