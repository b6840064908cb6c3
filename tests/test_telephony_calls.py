"""Whole phone calls against each provider's fake on loopback, in real time.

The fake plays the provider's side: the signed webhook, the markup, the
start message, the caller's voice as 20 ms frames, the agent's audio played
back at the wire rate, marks returned as they play, clears honoured, keys
pressed. The pipeline is scripted (an energy VAD on the real audio, the
caller's lines, a scripted LLM, word tones with exact timings): what is
tested is the call, not the models. Each test places one call per provider,
all at once, on one server.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import trio

import voxtrio
from telephony_helpers import (
    ANSWER,
    INTERRUPTION,
    PLIVO_TOKEN,
    PROVIDERS,
    QUESTION,
    SECOND_ANSWER,
    TWILIO_TOKEN,
    Credentials,
    fixture_audio,
    running_server,
    weather_session,
)
from voxtrio.providers.energy_vad import EnergyVAD
from voxtrio.testing import LLMResponse, ScriptedLLM, ToolCall
from voxtrio.testing.phone import (
    FakeCaller,
    FakeProviderAPI,
    HangUp,
    LinesSTT,
    Pause,
    Press,
    Say,
    WaitForAgent,
)
from voxtrio.testing.model_free import ToneTTS
from voxtrio.transports.telephony import current_call, end_call, send_dtmf

DEADLINE = 60.0


def voiced_seconds(samples: np.ndarray, rate: int = 8000) -> float:
    loud = np.flatnonzero(np.abs(samples) > 500)
    return (loud[-1] - loud[0]) / rate if len(loud) else 0.0


def spoken(text: str) -> float:
    return sum(w.end - w.start for w in ToneTTS().render(text)[1])


def messages(session: voxtrio.AgentSession) -> list[tuple[str, str, bool]]:
    return [(m.role, m.content, m.interrupted) for m in session.history.items if m.type == "message"]


class Calls:
    """What one server did with each call, by call id."""

    def __init__(self) -> None:
        self.sessions: dict[str, tuple[Any, voxtrio.AgentSession]] = {}
        self.agents: dict[str, voxtrio.Agent] = {}

    def entrypoint(self, make_session: Callable[[], voxtrio.AgentSession], make_agent: Callable[[], voxtrio.Agent]) -> Any:
        async def entrypoint(call):
            session, agent = make_session(), make_agent()
            self.sessions[call.call_id] = (call, session)
            self.agents[call.call_id] = agent
            await call.run(session, agent)

        return entrypoint


async def call_in(credentials: Credentials, entrypoint: Any, script: list[Any], providers: tuple[str, ...] = PROVIDERS,
                  server_providers: list[Any] | None = None, extra: dict[str, FakeCaller] | None = None) -> dict[str, FakeCaller]:
    callers = {p: FakeCaller(credentials.wire(p), script) for p in providers} | (extra or {})
    with trio.fail_after(DEADLINE):
        async with running_server(entrypoint, server_providers or credentials.providers()) as server:
            async with trio.open_nursery() as nursery:
                for caller in callers.values():
                    nursery.start_soon(caller.dial_in, server.public_url)
            while server.calls:  # each session closes once its caller hung up
                await trio.sleep(0.05)
    return callers


async def test_each_provider_answers_and_a_barge_in_cuts_the_reply_where_the_caller_stopped_hearing_it():
    credentials, calls = Credentials(), Calls()
    question, interruption = fixture_audio("question"), fixture_audio("interruption")
    script = [Pause(0.3), Say(question), WaitForAgent(speech=0.8), Say(interruption), WaitForAgent(speech=0.3, silence=0.6)]
    deaf = FakeCaller(credentials.wire("vonage", honours_clear=False), script)
    shuffled = FakeCaller(credentials.wire("telnyx", shuffle=True), script)  # Telnyx does not promise order
    callers = await call_in(credentials, calls.entrypoint(weather_session, lambda: voxtrio.Agent(instructions="weather")),
                            script, providers=("twilio", "plivo", "vonage"),
                            extra={"vonage ignoring clears": deaf, "telnyx": shuffled})
    # Vonage's guide does not document a clear: if it ignored ours, the caller would
    # hear at most what the Speaker keeps queued ahead of the play head.
    [ignored] = deaf.ignored_clears
    soon_after = deaf.heard[ignored : ignored + int(1.5 * deaf.wire.rate)]  # before the agent answers again
    leftover = (np.flatnonzero(soon_after)[-1] + 1) / deaf.wire.rate if soon_after.any() else 0.0
    assert leftover <= 0.3 + 0.06
    del callers["vonage ignoring clears"]
    for provider, caller in callers.items():
        call, session = calls.sessions[caller.wire.call_id]
        where = f"({provider})"
        assert caller.answer_status == 200 and caller.ended_by == "caller", where
        assert (call.from_number, call.to_number, call.call_id) == (caller.wire.from_number, caller.wire.to_number, caller.wire.call_id), where

        # The agent heard the question: the VAD found it in the decoded stream, as long as
        # it is (plus the VAD's closing silence).
        voiced = voiced_seconds(question)
        assert voiced <= session.stt.segments[0] <= voiced + session.vad.min_silence_duration + 0.3, where
        first, cut, second, reply = messages(session)
        assert first == ("user", QUESTION, False) and second == ("user", INTERRUPTION, False), where
        assert reply == ("assistant", SECOND_ANSWER, False), where

        # One clear, and from the frame it landed on the caller hears silence
        # (until the agent answers again, once the caller has finished speaking).
        assert call.transport.stats.clears_sent == 1 and len(caller.clears) == 1, where
        heard, rate = caller.heard, caller.wire.rate
        clear_at = caller.clears[0]
        answer_start = int(np.flatnonzero(heard)[0])
        second_start = clear_at + int(np.flatnonzero(heard[clear_at:])[0])
        assert (second_start - clear_at) / rate > 0.8 * voiced_seconds(interruption), where

        # What the history says was heard is what the caller heard: never a word more,
        # and at most the word playing when the clear came less.
        heard_of_answer = (clear_at - answer_start) / rate
        assert cut[0] == "assistant" and cut[2] is True and heard_of_answer >= 0.6, where
        said = [w.text for w in ToneTTS().render(ANSWER)[1] if w.end <= heard_of_answer + 1e-9]
        recorded = cut[1].split()
        assert recorded == said[: len(recorded)] and len(said) - len(recorded) <= 1, (where, recorded, said)

        # The second reply was heard in full; the agent's audio went in chunks.
        assert caller.heard_seconds() - caller.heard_seconds(clear_at) >= 0.9 * spoken(SECOND_ANSWER), where
        stats = call.transport.stats
        assert stats.bad_messages == 0 and stats.inbound_dropped == 0, where
        if provider == "telnyx":  # every swapped pair was put back in order
            assert call.transport.serializer.frames_lost == call.transport.serializer.frames_late == 0
        if provider != "vonage":  # Vonage takes 20 ms binary frames, one a message
            assert stats.media_messages_sent < caller.heard_seconds() / 0.06, where


async def test_keys_the_caller_presses_are_events_and_text_for_the_agent():
    credentials, calls = Credentials(), Calls()

    def session():
        llm = ScriptedLLM([LLMResponse(input="<dtmf>42</dtmf>", content="You pressed four two.")])
        return voxtrio.AgentSession(llm=llm, tts=ToneTTS())

    callers = await call_in(credentials, calls.entrypoint(session, lambda: voxtrio.Agent(instructions="keys")),
                            [Pause(0.3), Press("42#"), WaitForAgent(speech=0.5, silence=0.4)])
    for provider, caller in callers.items():
        _, session = calls.sessions[caller.wire.call_id]
        assert [e.digit for e in session.recorded_events if e.type == "dtmf_received"] == ["4", "2", "#"], provider
        assert messages(session) == [("user", "<dtmf>42</dtmf>", False), ("assistant", "You pressed four two.", False)], provider


class PinDesk(voxtrio.Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You take PINs.")
        self.pin: str | None = None
        self.keys: list[str] = []

    async def on_enter(self) -> None:
        self.pin = await current_call().collect_digits(max_digits=4, timeout=3.0)
        self.session.say("Thank you.")

    async def on_dtmf(self, event: voxtrio.DTMFReceived) -> None:
        self.keys.append(event.digit)


async def test_digits_are_collected_with_a_timeout_and_the_others_go_to_on_dtmf():
    credentials, calls = Credentials(), Calls()
    callers = await call_in(credentials, calls.entrypoint(lambda: voxtrio.AgentSession(tts=ToneTTS()), PinDesk),
                            [Pause(0.3), Press("12345"), WaitForAgent(speech=0.3, silence=0.4)], providers=("twilio",))
    agent = calls.agents[callers["twilio"].wire.call_id]
    assert agent.pin == "1234" and agent.keys == ["5"]


def one_turn_session(llm: ScriptedLLM) -> voxtrio.AgentSession:
    return voxtrio.AgentSession(vad=EnergyVAD(), stt=LinesSTT([QUESTION]), llm=llm, tts=ToneTTS(), min_endpointing_delay=0.3)


async def test_the_agent_presses_keys_the_other_end_hears():
    credentials, calls = Credentials(), Calls()

    def session():
        return one_turn_session(ScriptedLLM([
            LLMResponse(input=QUESTION, tool_calls=(ToolCall(name="send_dtmf", arguments='{"digits": "3#"}', call_id="c1"),)),
            LLMResponse(input="Pressed 3#.", content="Done."),
        ]))

    callers = await call_in(
        credentials, calls.entrypoint(session, lambda: voxtrio.Agent(instructions="menus", tools=[send_dtmf])),
        [Pause(0.3), Say(fixture_audio("question")), WaitForAgent(speech=0.3, silence=0.6)],
    )
    for provider, caller in callers.items():
        assert caller.dtmf.keys == ["3", "#"], provider
        _, session = calls.sessions[caller.wire.call_id]
        assert [o.output for o in session.history.items if o.type == "function_call_output"] == ["Pressed 3#."], provider


@pytest.fixture(scope="module")
def vonage_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def with_rest(credentials: Credentials, api: FakeProviderAPI, vonage_key: Any) -> list[Any]:
    from cryptography.hazmat.primitives import serialization

    pem = vonage_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return credentials.providers(
        twilio={"account_sid": "AC" + "1" * 32, "api_base": api.base_url},
        telnyx={"api_key": "KEY-telnyx", "connection_id": "conn-1", "api_base": api.base_url},
        plivo={"auth_id": "MAXXXXXXXXXXXXXXXXXX", "api_base": api.base_url},
        vonage={"application_id": "app-1", "private_key": pem, "api_base": api.base_url},
    )


def provider_api(vonage_key: Any, callee: Callable[[str, str], FakeCaller | None]) -> FakeProviderAPI:
    return FakeProviderAPI(
        callee,
        twilio_auth=("AC" + "1" * 32, TWILIO_TOKEN),
        telnyx_api_key="KEY-telnyx",
        plivo_auth=("MAXXXXXXXXXXXXXXXXXX", PLIVO_TOKEN),
        vonage_public_key=vonage_key.public_key(),
    )


async def test_end_call_says_goodbye_then_hangs_up_through_each_providers_api(vonage_key):
    credentials, calls = Credentials(), Calls()
    bye = "Thanks for calling, goodbye."

    def session():
        return one_turn_session(ScriptedLLM([
            LLMResponse(input=QUESTION, tool_calls=(ToolCall(name="end_call", arguments="{}", call_id="c1"),)),
            LLMResponse(input="The call ends once this reply has played: say a short goodbye, nothing more.", content=bye),
        ]))

    api = provider_api(vonage_key, lambda provider, call_id: None)
    async with trio.open_nursery() as nursery:
        await nursery.start(api.serve)
        callers = await call_in(
            credentials, calls.entrypoint(session, lambda: voxtrio.Agent(instructions="bye", tools=[end_call])),
            [Pause(0.3), Say(fixture_audio("question")), Pause(30)], server_providers=with_rest(credentials, api, vonage_key),
        )
        nursery.cancel_scope.cancel()
    assert sorted(api.hangups) == sorted(c.wire.call_id for c in callers.values())
    for provider, caller in callers.items():
        call, session = calls.sessions[caller.wire.call_id]
        assert messages(session)[-1] == ("assistant", bye, False), provider
        assert caller.heard_seconds() >= 0.9 * spoken(bye), provider
        assert call.hangup_requested and caller.ended_by == "agent", provider
        assert session.last_close is not None and session.last_close.reason == "user_initiated", provider


async def test_dialling_out_bridges_the_answered_call_into_a_session(vonage_key):
    credentials, calls = Credentials(), Calls()
    greeting = "Hello, this is the weather line."

    class Greeter(voxtrio.Agent):
        def __init__(self) -> None:
            super().__init__(instructions="You greet.")

        async def on_enter(self) -> None:
            self.session.say(greeting)

    callees: dict[str, FakeCaller] = {}

    def callee(provider: str, call_id: str) -> FakeCaller:
        callees[provider] = FakeCaller(credentials.wire(provider, call_id=call_id), [WaitForAgent(speech=0.5, silence=0.4), HangUp()])
        return callees[provider]

    api = provider_api(vonage_key, callee)
    dialled = {}
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(api.serve)
            entrypoint = calls.entrypoint(lambda: voxtrio.AgentSession(tts=ToneTTS()), Greeter)
            async with running_server(entrypoint, with_rest(credentials, api, vonage_key)) as server:
                for provider in PROVIDERS:
                    dialled[provider] = await server.dial(provider, to="+15557654321", from_="+15550000000",
                                                          parameters={"campaign": "spring"})
                for provider in PROVIDERS:
                    await dialled[provider].connected.wait()
                while server.calls:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    for provider in PROVIDERS:
        call, _ = calls.sessions[dialled[provider].call_id]
        assert dialled[provider].call is call and call.call_id == dialled[provider].call_id, provider
        assert (call.direction, call.to_number, call.from_number) == ("outbound", "+15557654321", "+15550000000"), provider
        assert call.parameters["campaign"] == "spring", provider
        assert callees[provider].heard_seconds() >= 0.9 * spoken(greeting), provider
        assert callees[provider].ended_by == "caller", provider


async def test_voxtrio_serve_answers_phone_calls_on_its_telephony_port():
    import os
    import signal
    import subprocess
    import sys

    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "voxtrio", "serve", "--scripted", "--port", "0", "--telephony", "twilio",
         "--telephony-port", "0"],
        stdout=subprocess.PIPE,
        env={**os.environ, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "VOXTRIO_SECRET": "a secret of sixteen bytes or more"},
    )
    caller = FakeCaller(Credentials().wire("twilio"), [WaitForAgent(speech=0.5), HangUp()])
    try:
        output = b""
        with trio.fail_after(30):
            while b"/twilio/answer" not in output or not output.endswith(b"\n"):
                output += await process.stdout.receive_some(4096)
        answer_url = next(line.split(" at ")[1].strip() for line in output.decode().splitlines() if "/twilio/answer" in line)
        with trio.fail_after(DEADLINE):
            await caller.dial_in(answer_url.removesuffix("/twilio/answer"))
    finally:
        process.send_signal(signal.SIGINT)
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.stdout.aclose()
    assert caller.answer_status == 200 and caller.heard_seconds() >= 0.5  # the example agent's greeting
    assert process.returncode == 0


def test_voxtrio_serve_names_the_missing_secret():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PLIVO_AUTH_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "voxtrio", "serve", "--scripted", "--telephony", "plivo"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and "PLIVO_AUTH_TOKEN" in done.stderr
