"""voxtrio serve's WebSocket, with a real client (trio-websocket) on loopback.

The server is the real one (hypercorn's trio worker, VoiceServer, the
WebSocket transport) on the model-free pipeline (energy VAD, speech-length
STT, echo LLM, tone TTS), in real time: the protocol, the token and origin
checks, every kind of bad input, a hang-up mid-sentence, and 20 sessions at once.
"""

from __future__ import annotations

import json
import re

import pytest
import trio

from voxtrio.server import TokenSigner

from serving import GREETING, SECRET, SILENCE, connected, http_request, running_server, tone_frames

pytest.importorskip("hypercorn")
trio_websocket = pytest.importorskip("trio_websocket")
pytestmark = pytest.mark.thorough  # a real server and client on loopback: seconds a test


async def wait_until(condition, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


async def test_a_call_over_the_protocol():
    async with running_server() as (server, port):
        async with connected(port, server.signer.issue()) as client:
            ready = await client.wait_for(lambda e: e["type"] == "ready")
            assert ready["version"] == 1
            assert ready["input"] == {"encoding": "pcm_s16le", "sample_rate": 16000, "frame_ms": 20}
            assert ready["output"]["sample_rate"] == 24000
            assert client.types()[0] == "ready"
            # The greeting's words come as they are heard, ending with the whole text.
            greeting = await client.wait_for(lambda e: e["type"] == "agent_transcript" and e["final"])
            words = [e["text"] for e in client.of("agent_transcript") if e["speech_id"] == greeting["speech_id"]]
            assert words[-1] == GREETING and len(words) == len(GREETING.split()) + 1
            assert all(later.startswith(earlier) for earlier, later in zip(words, words[1:]))
            assert client.audio_bytes > 0 and client.largest_audio <= 0.04 * 24000 * 2
            # Speech is heard (the energy VAD on the audio we send) and answered.
            await client.stream(tone_frames(1.0) + [SILENCE] * 40)
            heard = await client.wait_for(lambda e: e["type"] == "user_transcript" and e["final"])
            assert re.fullmatch(r"\[1\.\d s of speech\]", heard["text"])  # (the VAD keeps a little before the onset)
            reply = await client.wait_for(
                lambda e: e["type"] == "agent_transcript" and e["final"] and e["text"].startswith("You said")
            )
            assert reply["text"] == f"You said: {heard['text']}"
            metrics = await client.wait_for(lambda e: e["type"] == "metrics")
            assert metrics["turn"] == 1 and metrics["user"] == heard["text"] and metrics["first_audio"] > 0
            # A typed message is a user turn.
            await client.send_json(type="text_input", text="the weather in Oslo")
            await client.wait_for(lambda e: e["type"] == "agent_transcript" and e["text"] == "You said: the weather in Oslo" and e["final"])
            await client.send_json(type="end_call")
            close = await client.wait_for(lambda e: e["type"] == "close")
            assert close["reason"] == "user_initiated"
            await wait_until(lambda: client.closed is not None)
            assert client.closed.code == 1000 and client.closed.reason == "user_initiated"
        assert not server.live
        session = server.finished[-1].session
        assert [(m.role, m.content) for m in session.history.items if m.type == "message"][-1] == (
            "assistant",
            "You said: the weather in Oslo",
        )


async def test_speaking_over_the_agent_clears_the_client_and_records_what_it_played():
    async with running_server() as (server, port):
        async with connected(port, server.signer.issue()) as client:
            await client.wait_for(lambda e: e["type"] == "agent_state" and e["state"] == "speaking")
            # This client says it has played nothing yet (a slow jitter buffer).
            await client.send_json(type="playback", epoch=0, played=0.0, state="idle")
            await client.stream(tone_frames(1.2) + [SILENCE] * 30)
            clear = await client.wait_for(lambda e: e["type"] == "clear")
            assert clear["epoch"] == 1
            assert client.of("pause")  # paused at the first sound, cleared once words came
            await client.wait_for(lambda e: e["type"] == "agent_transcript" and e["final"])  # the reply's
            greeting = [e for e in client.of("agent_transcript") if e["speech_id"] == "speech_1"]
            assert not [e for e in greeting if e["text"]]  # nothing was heard, so no words were shown
            await client.send_json(type="end_call")
            await client.wait_for(lambda e: e["type"] == "close")
        greeting = server.finished[-1].session.history.items
        assert not [m for m in greeting if m.type == "message" and m.role == "assistant" and m.content == GREETING]


@pytest.mark.parametrize(
    "token, reason",
    [
        (None, "token_missing"),
        ("not-a-token", "token_malformed"),
        (TokenSigner(b"another secret, 32 bytes long!!!").issue(), "token_bad_signature"),
        (TokenSigner(SECRET, clock=lambda: 1000.0).issue(), "token_expired"),
    ],
)
async def test_a_connection_without_a_valid_token_is_refused_before_any_session(token, reason):
    async with running_server() as (server, port):
        url = f"ws://127.0.0.1:{port}/ws" + ("" if token is None else f"?token={token}")
        with pytest.raises(trio_websocket.ConnectionRejected) as refused:
            async with trio_websocket.open_websocket_url(url):
                pass
        assert refused.value.status_code == 401
        assert server.refused == {reason: 1}
        assert not server.live and not server.finished


async def test_a_token_opens_one_session_only():
    async with running_server() as (server, port):
        token = server.signer.issue()
        async with connected(port, token) as client:
            await client.wait_for(lambda e: e["type"] == "ready")
            with pytest.raises(trio_websocket.ConnectionRejected) as refused:
                async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/ws?token={token}"):
                    pass
            assert refused.value.status_code == 401
            assert server.refused == {"token_reused": 1} and len(server.live) == 1


async def test_origin_is_checked():
    async with running_server(allowed_origins={"http://good.example"}) as (server, port):
        with pytest.raises(trio_websocket.ConnectionRejected) as refused:
            async with trio_websocket.open_websocket_url(
                f"ws://127.0.0.1:{port}/ws?token={server.signer.issue()}", extra_headers=[(b"origin", b"http://evil.example")]
            ):
                pass
        assert refused.value.status_code == 403 and server.refused == {"origin": 1}
        async with connected(port, server.signer.issue(), extra_headers=[(b"origin", b"http://good.example")]) as client:
            await client.wait_for(lambda e: e["type"] == "ready")


async def test_the_session_limit_answers_busy():
    async with running_server(max_sessions=1) as (server, port):
        async with connected(port, server.signer.issue()) as client:
            await client.wait_for(lambda e: e["type"] == "ready")
            with pytest.raises(trio_websocket.ConnectionRejected) as refused:
                async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/ws?token={server.signer.issue()}"):
                    pass
            assert refused.value.status_code == 503


async def test_bad_input_gets_typed_errors_and_the_session_goes_on():
    async with running_server() as (server, port):
        async with connected(port, server.signer.issue()) as client:
            await client.wait_for(lambda e: e["type"] == "ready")
            bad = [
                (b"\x01\x02\x03", "bad_audio"),
                (b"", "bad_audio"),
                (bytes(3202), "too_large"),
                ("x" * 9000, "too_large"),
                ("{not json", "bad_json"),
                ("[1, 2]", "bad_message"),
                (json.dumps({"kind": "text_input"}), "bad_message"),
                (json.dumps({"type": "dance"}), "unknown_type"),
                (json.dumps({"type": "text_input", "text": ""}), "bad_message"),
                (json.dumps({"type": "text_input", "text": 5}), "bad_message"),
                (json.dumps({"type": "text_input", "text": "a" * 2001}), "too_large"),
                (json.dumps({"type": "playback", "epoch": -1, "played": 0, "state": "idle"}), "bad_message"),
                (json.dumps({"type": "playback", "epoch": 0, "played": "1", "state": "idle"}), "bad_message"),
                (json.dumps({"type": "playback", "epoch": 0, "played": 1, "state": "dancing"}), "bad_message"),
            ]
            for message, _ in bad:
                await client.ws.send_message(message)
                await trio.sleep(0.25)  # under the error-event rate limit
            await wait_until(lambda: len(client.of("error")) == len(bad))
            errors = client.of("error")
            assert [(e["source"], e["code"]) for e in errors] == [("client", code) for _, code in bad]
            assert all(e["recoverable"] and e["message"] for e in errors)
            # A flood of audio beyond real time: the excess is dropped, and said so.
            for _ in range(120):
                await client.ws.send_message(SILENCE)
            await client.wait_for(lambda e: e.get("code") == "rate_limited")
            transport = server.live[next(iter(server.live))]
            assert transport.bad_input >= len(bad) + 1
            # The session is fine: it still answers.
            await trio.sleep(1.0)
            await client.send_json(type="text_input", text="still there?")
            await client.wait_for(lambda e: e["type"] == "agent_transcript" and e["final"] and e["text"] == "You said: still there?")
            # A command the session refuses is an error too, not a crash.
            await client.send_json(type="end_call")
            await client.wait_for(lambda e: e["type"] == "close")
        assert server.finished[-1].session.last_close.reason == "user_initiated"


async def test_a_client_that_hangs_up_mid_sentence_ends_its_session_cleanly(tmp_path):
    async with running_server(record_dir=tmp_path) as (server, port):
        async with connected(port, server.signer.issue()) as client:
            await client.wait_for(lambda e: e["type"] == "agent_transcript" and len(e["text"].split()) >= 2)
            session_id = next(iter(server.live))
            await client.ws.aclose()  # mid-sentence
        await wait_until(lambda: not server.live)
        transport = server.finished[-1]
        session = transport.session
        assert session.last_close.reason == "participant_disconnected"
        spoken = [m for m in session.history.items if m.type == "message" and m.role == "assistant"]
        assert len(spoken) == 1 and spoken[0].interrupted and GREETING.startswith(spoken[0].content)
        record = json.loads((tmp_path / f"{session_id}.json").read_text())
        assert record["close"]["reason"] == "participant_disconnected"
        assert record["history"][-1]["content"] == spoken[0].content


async def test_twenty_concurrent_sessions_on_one_server():
    async with running_server(max_sessions=20) as (server, port):
        results: dict[int, str] = {}

        async def call(number: int) -> None:
            async with connected(port, server.signer.issue()) as client:
                await client.wait_for(lambda e: e["type"] == "ready", timeout=20)
                await client.send_json(type="text_input", text=f"I am caller {number}")
                reply = await client.wait_for(
                    lambda e: e["type"] == "agent_transcript" and e["final"] and "caller" in e["text"], timeout=30
                )
                results[number] = reply["text"]
                assert client.audio_bytes > 0
                await client.send_json(type="end_call")
                await client.wait_for(lambda e: e["type"] == "close", timeout=20)

        async with trio.open_nursery() as nursery:
            for number in range(20):
                nursery.start_soon(call, number)
            await wait_until(lambda: len(server.live) == 20 or len(results) == 20, timeout=30)
            assert len(server.live) == 20 or len(results) == 20
        assert results == {n: f"You said: I am caller {n}" for n in range(20)}
        await wait_until(lambda: not server.live)
        assert len(server.finished) == 20
        assert {t.session.last_close.reason for t in server.finished} == {"user_initiated"}


async def test_the_page_needs_its_access_link():
    async with running_server() as (server, port):
        status, _, body = await http_request(port, "GET", "/")
        assert status == 401 and b"access link" in body
        status, _, _ = await http_request(port, "GET", "/?key=wrong")
        assert status == 401
        status, headers, _ = await http_request(port, "GET", f"/?key={server.access_key}")
        assert status == 303 and headers["location"] == "/"
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        jar = {"cookie": cookie.split(";")[0]}
        status, headers, body = await http_request(port, "GET", "/", jar)
        assert status == 200 and b"voxtrio" in body and "default-src 'self'" in headers["content-security-policy"]
        for name in ("app.js", "audio-worklet.js", "style.css"):
            status, headers, _ = await http_request(port, "GET", f"/static/{name}")
            assert status == 200 and headers["x-content-type-options"] == "nosniff"
        for path in ("/static/../server/app.py", "/static/index.html", "/static/nope.js", "/nope"):
            assert (await http_request(port, "GET", path))[0] == 404
        assert (await http_request(port, "POST", "/token"))[0] == 401
        origin = {"origin": "http://evil.example", **jar}
        assert (await http_request(port, "POST", "/token", origin))[0] == 403
        status, _, body = await http_request(port, "POST", "/token", {"origin": f"http://127.0.0.1:{port}", **jar})
        assert status == 200
        token = json.loads(body)
        assert token["ws_path"] == "/ws" and token["expires_in"] == 60
        server.signer.check(token["token"])  # a real token (and now used up)


async def test_voxtrio_serve_prints_a_link_that_opens_the_page():
    import os
    import signal
    import subprocess
    import sys
    from urllib.parse import urlparse

    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "voxtrio", "serve", "--scripted", "--port", "0"],
        stdout=subprocess.PIPE,
        env={**os.environ, "VOXTRIO_SECRET": SECRET.decode()},
    )
    try:
        output = b""
        with trio.fail_after(30):
            while b"?key=" not in output or not output.endswith(b"\n"):
                output += await process.stdout.receive_some(4096)
        link = next(line.strip() for line in output.decode().splitlines() if "?key=" in line)
        url = urlparse(link)
        # The key comes from VOXTRIO_SECRET: the same as a server with that secret would print.
        assert url.query == f"key={TokenSigner(SECRET).derive('page access')}"
        status, headers, _ = await http_request(url.port, "GET", f"/?{url.query}")
        assert status == 303 and "voxtrio_key=" in headers["set-cookie"]
    finally:
        process.send_signal(signal.SIGINT)
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.stdout.aclose()
    assert process.returncode == 0
