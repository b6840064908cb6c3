"""The errors voxtrio raises and the ones providers and tools raise to it.

Provider errors say whether retrying can help (``retryable``); the session
turns each failed attempt into an ``error`` event and counts the ones that
could not be recovered (see ``SessionConnectOptions.max_unrecoverable_errors``).
"""

from __future__ import annotations


class VoxtrioError(Exception):
    """Base class of every error voxtrio defines."""


class AudioFormatError(VoxtrioError, ValueError):
    """Audio that cannot be read as PCM: wrong dtype, odd byte count, absurd rate."""


class APIError(VoxtrioError):
    """A provider failed. ``retryable`` says whether another attempt can succeed;
    ``retry_after`` is how long the provider asked us to wait first (seconds)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        body: object = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.body = body
        self.retry_after = retry_after


class APIConnectionError(APIError):
    """The provider could not be reached, or the connection dropped."""


class APITimeoutError(APIConnectionError):
    """The provider made no progress within ``APIConnectOptions.timeout``."""


class APIStatusError(APIError):
    """The provider answered with an error status (HTTP or protocol level)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int = -1,
        retryable: bool | None = None,
        body: object = None,
        retry_after: float | None = None,
    ) -> None:
        if retryable is None:
            retryable = status_code == 429 or status_code >= 500
        super().__init__(message, retryable=retryable, body=body, retry_after=retry_after)
        self.status_code = status_code


class ProviderOutputError(APIError, TypeError):
    """A provider (or a transport) sent something its protocol does not allow:
    an int from an LLM stream, a str from a TTS, an STT event that is not an
    ``STTEvent``, input audio that is not an ``AudioFrame``. ``output`` is what
    it sent. Never retried: the provider is broken."""

    def __init__(self, message: str, *, output: object = None) -> None:
        super().__init__(message, retryable=False)
        self.output = output


def describe_error(error: BaseException) -> str:
    """How an error reads in an ``error`` or ``close`` event: a provider's
    ``APIError`` by its message (it is written for that), anything else by its
    type and message, so a plain ``ValueError`` is recognisable as one."""
    if isinstance(error, APIError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def root_cause(error: BaseException) -> BaseException:
    """The first error inside (nested) exception groups that is not a
    cancellation: what a crash of a nursery tree was really about."""
    import trio

    while isinstance(error, BaseExceptionGroup):
        causes = [e for e in error.exceptions if not isinstance(e, trio.Cancelled)]
        error = (causes or error.exceptions)[0]
    return error


class MissingAPIKeyError(VoxtrioError, ValueError):
    """A provider was built without an API key: neither the argument nor its
    environment variable (named in the message) was set."""


class ToolError(VoxtrioError):
    """Raised by a tool to show its message to the LLM as an error output."""


class StopResponse(VoxtrioError):
    """Raised by a tool or ``on_user_turn_completed`` to skip the agent's reply."""


class SessionClosedError(VoxtrioError, RuntimeError):
    """The session is not running (not started yet, or closed)."""
