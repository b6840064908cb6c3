"""Phone calls: Twilio, Telnyx, Plivo and Vonage media streams into sessions.

    from voxtrio.transports.telephony import PhoneCall, Twilio, serve

    async def entrypoint(call: PhoneCall) -> None:
        await call.run(voxtrio.AgentSession(...), Receptionist())

    trio.run(partial(serve, entrypoint, [Twilio(auth_token=...)], public_url="https://..."))

The server (:mod:`.server`) answers each provider's incoming-call webhook with
its markup and takes the media stream on the same port; each call is a
:class:`PhoneCall` running one session on a :class:`TelephonyTransport`.
One module per provider (:mod:`.twilio`, :mod:`.telnyx`, :mod:`.plivo`,
:mod:`.vonage`) holds its media serializer, its webhook signatures and its
REST calls. Needs ``pip install 'voxtrio[telephony]'``.
"""

from .base import (
    CallInfo,
    MediaProtocolError,
    MediaSerializer,
    Provider,
    ProviderAPIError,
    ProviderSetupError,
    TelephonyError,
    WebhookRejected,
)
from .call import PhoneCall, current_call
from .dtmf import DTMFDetector, dtmf_tones
from .ivr import IVRDetector, LoopDetector
from .plivo import Plivo
from .server import DialedCall, ServerStats, TelephonyServer, serve
from .telnyx import Telnyx
from .tools import end_call, send_dtmf
from .transport import TelephonyAudioOutput, TelephonyStats, TelephonyTransport
from .twilio import Twilio
from .vonage import Vonage

__all__ = [
    "CallInfo",
    "DTMFDetector",
    "DialedCall",
    "IVRDetector",
    "LoopDetector",
    "MediaProtocolError",
    "MediaSerializer",
    "PhoneCall",
    "Plivo",
    "Provider",
    "ProviderAPIError",
    "ProviderSetupError",
    "ServerStats",
    "TelephonyAudioOutput",
    "TelephonyError",
    "TelephonyServer",
    "TelephonyStats",
    "TelephonyTransport",
    "Telnyx",
    "Twilio",
    "Vonage",
    "WebhookRejected",
    "current_call",
    "dtmf_tones",
    "end_call",
    "send_dtmf",
    "serve",
]
