"""What every telephony provider implements: a media serializer and a provider.

A provider's media stream is a WebSocket the provider opens to us, with its
own message shapes. A :class:`MediaSerializer` is one stream's translation of
them: :meth:`~MediaSerializer.decode` turns each message into the events
below (caller audio as int16 PCM at the wire rate, keypresses, played marks,
the end of the stream), and the ``encode_*`` methods make the messages that
play the agent's audio, mark a point in it and clear what is queued. The
transport needs nothing else from a provider's wire format.

A :class:`Provider` is the rest of a provider: checking the signature of its
webhooks, answering an incoming call with its markup (pointing the call at
the media URL), and its REST API (dialling out, hanging up).
"""

from __future__ import annotations

import abc
import json
import time
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping

import attrs
import numpy as np

from ...errors import VoxtrioError

if TYPE_CHECKING:
    import httpx2

    from .http import HTTPRequest, HTTPResponse


class TelephonyError(VoxtrioError):
    """Something about a phone call went wrong."""


class MediaProtocolError(TelephonyError, ValueError):
    """A media stream message that is not what the provider's protocol says."""


class WebhookRejected(TelephonyError):
    """A webhook that is not (provably) from the provider; ``reason`` is
    missing, bad_signature, stale, replayed or malformed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ProviderSetupError(TelephonyError, ValueError):
    """The provider was not given what an operation needs (REST credentials...)."""


class ProviderAPIError(TelephonyError):
    """The provider's REST API refused a request (``status``: its HTTP status)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# -- what a media stream says ------------------------------------------------------------


@attrs.frozen
class StreamStarted:
    """The stream's metadata (Twilio ``start``, Vonage ``websocket:connected``...)."""

    call_id: str | None
    stream_id: str | None
    sample_rate: int
    parameters: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(eq=False)
class InboundAudio:
    """The caller's audio: int16 PCM at the stream's rate."""

    samples: np.ndarray


@attrs.frozen
class DtmfPressed:
    digit: str
    duration: float | None = None
    """Seconds the key was held, when the provider says."""


@attrs.frozen
class MarkPlayed:
    """Everything sent before mark ``name`` has played (or was cleared)."""

    name: str


@attrs.frozen
class AudioCleared:
    """The provider confirms that a clear emptied its playback queue."""


@attrs.frozen
class StreamStopped:
    """The provider ends the stream (the call ended or the stream was stopped)."""


@attrs.frozen
class StreamFailed:
    """The provider reports an error on the stream (it may go on)."""

    message: str


StreamEvent = StreamStarted | InboundAudio | DtmfPressed | MarkPlayed | AudioCleared | StreamStopped | StreamFailed

PlaybackMarks = Literal["confirmed", "best_effort", "none"]


def load_json(message: str | bytes, provider: str) -> dict[str, Any]:
    try:
        data = json.loads(message)
    except (ValueError, UnicodeDecodeError) as error:
        raise MediaProtocolError(f"{provider} sent a message that is not JSON: {error}") from error
    if not isinstance(data, dict):
        raise MediaProtocolError(f"{provider} sent JSON that is not an object: {type(data).__name__}")
    return data


def field(data: Mapping[str, Any], *path: str, provider: str) -> Any:
    """``data[path[0]][path[1]]...``, or a MediaProtocolError naming what is missing."""
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise MediaProtocolError(f"{provider} sent a {data.get('event')!r} message without {'.'.join(path)}")
        value = value[key]
    return value


class MediaSerializer(abc.ABC):
    """One media stream's wire format (a fresh instance per stream)."""

    provider: ClassVar[str]
    playback_marks: ClassVar[PlaybackMarks] = "confirmed"
    """``confirmed``: the provider returns each mark once the audio before it
    has played (or was cleared), and the transport times what was heard on
    them; ``best_effort``: marks may not come back (the transport relies on
    its own pacing, and a mark that comes back corrects it); ``none``."""
    max_message_duration: ClassVar[float] = 1.0
    """The most audio one outgoing media message carries (seconds)."""
    sample_rate: int = 8000
    """The wire rate of the caller's and the agent's audio (set from the start message)."""

    @abc.abstractmethod
    def decode(self, message: str | bytes) -> list[StreamEvent]:
        """The events one message carries (raises MediaProtocolError)."""

    @abc.abstractmethod
    def encode_audio(self, samples: np.ndarray) -> list[str | bytes]:
        """The messages that play ``samples`` (int16 at ``sample_rate``)."""

    def frame_samples(self) -> int:
        """Outgoing audio must come in whole frames of this many samples (1: any length)."""
        return 1

    def encode_mark(self, name: str) -> str | None:
        """The message asking to be told when the audio sent so far has played."""
        return None

    @abc.abstractmethod
    def encode_clear(self) -> str:
        """The message that drops the audio the provider has queued."""


# -- the provider: webhooks, markup, REST --------------------------------------------------


@attrs.frozen
class CallInfo:
    """A call as a webhook or the REST API describes it."""

    call_id: str
    from_number: str = ""
    to_number: str = ""
    direction: Literal["inbound", "outbound"] = "inbound"
    parameters: Mapping[str, str] = attrs.field(factory=dict)


class ReplayGuard:
    """Signatures (or nonces) already accepted, remembered for ``window`` seconds.

    A provider that signs with a timestamp refuses older requests itself; the
    guard refuses the same signed request seen twice within that window.
    """

    def __init__(self, window: float = 600.0, *, max_entries: int = 100_000, clock: Any = time.time) -> None:
        self.window = window
        self.max_entries = max_entries
        self._clock = clock
        self._seen: dict[str, float] = {}

    def check(self, key: str) -> None:
        now = self._clock()
        if len(self._seen) >= self.max_entries or (self._seen and next(iter(self._seen.values())) < now):
            self._seen = {k: until for k, until in self._seen.items() if until >= now}
        if key in self._seen:
            raise WebhookRejected("replayed", "this signed request was already accepted")
        if len(self._seen) >= self.max_entries:
            raise WebhookRejected("replayed", "too many signed requests to remember: refusing more")
        self._seen[key] = now + self.window


class Provider(abc.ABC):
    """One telephony provider: its webhooks, its markup, its REST API, its media."""

    name: ClassVar[str]
    answer_method: ClassVar[str] = "POST"
    """The method of the incoming-call webhook the provider sends by default."""

    @abc.abstractmethod
    def serializer(self) -> MediaSerializer:
        """A fresh serializer for one media stream."""

    @abc.abstractmethod
    def verify_webhook(self, request: HTTPRequest, url: str, replay: ReplayGuard) -> None:
        """Raise WebhookRejected unless ``request`` (sent to the public ``url``)
        carries a valid, fresh, unreplayed signature."""

    def verify_stream(self, request: HTTPRequest, url: str) -> None:
        """Check what the provider signs on the media handshake, if anything
        (the stream token is checked anyway)."""

    @abc.abstractmethod
    def incoming_call(self, request: HTTPRequest) -> CallInfo:
        """The call an incoming-call webhook describes."""

    @abc.abstractmethod
    def answer(self, media_url: str, call: CallInfo) -> HTTPResponse:
        """The markup that connects the call's audio to ``media_url``."""

    @property
    def can_dial(self) -> bool:
        """Whether REST credentials were given (dialling out, hanging up)."""
        return False

    async def dial(
        self, client: httpx2.AsyncClient, *, to: str, from_: str, media_url: str, answer_url: str
    ) -> str:
        """Ask the provider to call ``to``; returns the provider's call id.

        ``media_url`` is where the answered call's audio must go (for a
        provider that takes the markup inline), ``answer_url`` the webhook
        that answers it (for one that fetches it).
        """
        raise ProviderSetupError(f"{self.name}: no REST credentials to dial with")

    async def hang_up(self, client: httpx2.AsyncClient, call_id: str) -> None:
        """End the call through the REST API."""
        raise ProviderSetupError(f"{self.name}: no REST credentials to hang up with")


def check_response(response: httpx2.Response, what: str) -> Any:
    """The JSON of a successful REST response, or ProviderAPIError."""
    if response.status_code >= 400:
        raise ProviderAPIError(
            f"{what} failed: HTTP {response.status_code} {response.text[:200]}", status=response.status_code
        )
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError as error:
        raise ProviderAPIError(f"{what}: the answer is not JSON") from error
