"""PhoneCall: what an entrypoint gets for one call, and what its agent can do on it.

The server runs ``entrypoint(call)`` once per accepted media stream::

    async def entrypoint(call: PhoneCall) -> None:
        session = voxtrio.AgentSession(stt=..., llm=..., tts=..., vad=...)
        await call.run(session, Receptionist(call.from_number))

Who called whom and the custom parameters (what ``dial(parameters=...)`` was
given, and what the start message carries: Twilio's ``customParameters``,
Vonage's headers) are on the call:
``call.from_number``, ``call.to_number``, ``call.call_id``,
``call.parameters``. Inside the session (tools, hooks) the call is
``current_call()``, so ``session.userdata`` stays the application's own.

Keys the caller presses are ``dtmf_received`` session events, always. Then
they go, in this order of preference, to a running :meth:`collect_digits`, to
the current agent's ``async def on_dtmf(self, event)`` if it has one, or, as
text the LLM can use, to a reply: the keys pressed until a pause of
``dtmf_timeout`` seconds (or ``#``) become the user input ``<dtmf>123</dtmf>``.
An agent presses keys itself with :meth:`send_dtmf` (the ``send_dtmf`` tool).
:meth:`hang_up` (the ``end_call`` tool) lets what is being said finish, closes
the session and then ends the call through the provider.
"""

from __future__ import annotations

import contextvars
import logging
import math
from typing import TYPE_CHECKING, Any, Literal, Mapping

import trio

from ...errors import SessionClosedError
from ...events import DTMFReceived, ErrorEvent
from .base import DtmfPressed
from .dtmf import check_digits, dtmf_tones
from .ivr import IVRDetector

if TYPE_CHECKING:
    from ...agent import Agent
    from ...session import AgentSession
    from .transport import TelephonyTransport

logger = logging.getLogger("voxtrio.telephony")

_current_call: contextvars.ContextVar[PhoneCall | None] = contextvars.ContextVar("voxtrio_phone_call", default=None)


def current_call() -> PhoneCall:
    """The phone call of the session this code runs in (a tool, a hook, the entrypoint)."""
    call = _current_call.get()
    if call is None:
        raise RuntimeError("no phone call here: current_call() works inside a call's entrypoint and session")
    return call


class PhoneCall:
    def __init__(
        self,
        *,
        provider: str,
        call_id: str,
        transport: TelephonyTransport,
        stream_id: str | None = None,
        from_number: str = "",
        to_number: str = "",
        direction: Literal["inbound", "outbound"] = "inbound",
        parameters: Mapping[str, str] | None = None,
        dtmf_timeout: float = 2.0,
    ) -> None:
        self.provider = provider
        """The provider's name: twilio, telnyx, plivo or vonage."""
        self.call_id = call_id
        """The provider's id of the call (Twilio CallSid, Telnyx call_control_id, Plivo CallUUID, Vonage uuid)."""
        self.stream_id = stream_id
        self.from_number = from_number
        self.to_number = to_number
        self.direction = direction
        self.parameters: dict[str, str] = dict(parameters or {})
        self.transport = transport
        self.dtmf_timeout = dtmf_timeout
        self.session: AgentSession | None = None
        self.hangup_requested = False
        self.keys_missed = 0
        """Keys pressed while no session was running (they reach nobody)."""
        self._keys_send, self._keys = trio.open_memory_channel[DTMFReceived](math.inf)
        self._collectors: list[trio.MemorySendChannel[str]] = []
        transport.on_dtmf = self._on_key

    def __repr__(self) -> str:
        return f"<PhoneCall {self.provider} {self.call_id} {self.direction} from {self.from_number!r}>"

    @property
    def ended(self) -> bool:
        """The media stream has ended (the caller hung up, or the call was ended)."""
        return self.transport.ended.is_set()

    async def run(self, session: AgentSession, agent: Agent, *, ivr_detection: bool = False) -> None:
        """Run ``session`` on this call until it closes (the caller hanging up closes it).

        ``ivr_detection``: watch for a repeating phone menu and a silent line
        (:mod:`voxtrio.transports.telephony.ivr`), for agents that call IVRs.
        """
        if self.session is not None:
            raise RuntimeError("a phone call runs one session")
        self.session = session
        token = _current_call.set(self)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._deliver_keys)
                if ivr_detection:
                    nursery.start_soon(IVRDetector(session).run)
                await session.main(agent, self.transport)
                nursery.cancel_scope.cancel()
        finally:
            _current_call.reset(token)

    def hang_up(self) -> None:
        """End the call once what is being said has played (the session drains and closes)."""
        self.hangup_requested = True
        if self.session is not None and self.session.running:
            self.session.shutdown(drain=True)

    # -- keys -----------------------------------------------------------------------------

    async def send_dtmf(self, digits: str, *, tone: float = 0.1, gap: float = 0.1) -> None:
        """Press ``digits`` (0-9 * # A-D; ``w`` waits 0.5 s, ``W`` 1 s) in the call's audio,
        after what the agent is saying; returns once they have played."""
        check_digits(digits)
        output = self.transport.audio_output
        tones = dtmf_tones(digits, self.transport.serializer.sample_rate, tone=tone, gap=gap)
        await output.wait_played(output.queue_samples(tones))

    async def collect_digits(self, *, max_digits: int | None = None, finish_on: str = "#", timeout: float = 5.0) -> str:
        """The keys the caller presses next: until ``max_digits`` of them, a key
        in ``finish_on`` (not included), or ``timeout`` seconds without a key
        (the first one included). Empty when nothing was pressed."""
        send, receive = trio.open_memory_channel[str](math.inf)
        self._collectors.append(send)
        digits = ""
        try:
            while max_digits is None or len(digits) < max_digits:
                with trio.move_on_after(timeout):
                    digit = await receive.receive()
                    if digit in finish_on:
                        break
                    digits += digit
                    continue
                break
        finally:
            self._collectors.remove(send)
        return digits

    def _on_key(self, pressed: DtmfPressed) -> None:
        session = self.session
        if session is None or not session.running:
            self.keys_missed += 1
            return
        event = session.emit(DTMFReceived(digit=pressed.digit, duration=pressed.duration))
        if self._collectors:
            self._collectors[-1].send_nowait(pressed.digit)
        else:
            self._keys_send.send_nowait(event)  # type: ignore[arg-type]

    async def _deliver_keys(self) -> None:
        """Keys nobody collects: to the agent's ``on_dtmf``, or as text to a reply."""
        pressed = ""
        while True:
            with trio.move_on_after(self.dtmf_timeout if pressed else math.inf):
                event = await self._keys.receive()
                hook = self._hook()
                if hook is not None:
                    pressed = ""
                    await self._run_hook(hook, event)
                    continue
                if event.digit != "#":
                    pressed += event.digit
                    continue
            if pressed:
                self._reply(f"<dtmf>{pressed}</dtmf>")
            pressed = ""

    def _hook(self) -> Any:
        assert self.session is not None
        try:
            agent = self.session.current_agent
        except RuntimeError:
            return None
        return getattr(agent, "on_dtmf", None)

    async def _run_hook(self, hook: Any, event: DTMFReceived) -> None:
        try:
            await hook(event)
        except Exception as error:
            logger.exception("on_dtmf raised")
            assert self.session is not None
            self.session.emit(ErrorEvent(source="agent", message=f"on_dtmf raised {error!r}", recoverable=True, error=error))

    def _reply(self, text: str) -> None:
        session = self.session
        assert session is not None
        try:
            current = session.current_speech
            if current is not None and current.allow_interruptions:
                session.interrupt()
            session.generate_reply(user_input=text)
        except (RuntimeError, SessionClosedError):
            pass  # closing, or no LLM: the dtmf_received events remain
