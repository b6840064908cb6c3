"""Where the LiveKit server is, the API key that signs for it, and the tokens it takes.

``Credentials.from_env()`` reads ``LIVEKIT_URL``, ``LIVEKIT_API_KEY`` and
``LIVEKIT_API_SECRET`` (the names LiveKit's own tools use) and says which are
missing. Tokens are JWTs signed offline with the key (``livekit-api``):
:func:`agent_token` is what a worker shows when it registers (the ``agent``
grant), :func:`access_token` lets a participant join one room, and
:func:`verify_token` checks a token's signature and expiry.
"""

from __future__ import annotations

import datetime
import os
from typing import Mapping

import attrs

from ..errors import VoxtrioError

try:
    import jwt
    from livekit import api
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError("the LiveKit worker needs livekit-api: pip install 'voxtrio[livekit]'") from error


class MissingCredentials(VoxtrioError, ValueError):
    """LIVEKIT_URL, LIVEKIT_API_KEY or LIVEKIT_API_SECRET is not set."""


class InvalidToken(VoxtrioError, ValueError):
    """A token that is not signed by this key, or malformed."""


class TokenExpired(InvalidToken):
    """A token past its expiry."""


@attrs.frozen
class Credentials:
    url: str
    api_key: str
    api_secret: str = attrs.field(repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        environ = os.environ if environ is None else environ
        names = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
        missing = [name for name in names if not environ.get(name)]
        if missing:
            raise MissingCredentials(
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: the worker needs "
                "the server's URL (wss://<project>.livekit.cloud, or ws://localhost:7880 for "
                "livekit-server --dev) and an API key and secret"
            )
        url = environ["LIVEKIT_URL"]
        if not url.startswith(("ws://", "wss://", "http://", "https://")):
            raise MissingCredentials(f"LIVEKIT_URL must start with ws://, wss://, http:// or https://, got {url!r}")
        return cls(url, environ["LIVEKIT_API_KEY"], environ["LIVEKIT_API_SECRET"])


def agent_token(credentials: Credentials, *, ttl: datetime.timedelta = datetime.timedelta(minutes=10)) -> str:
    """The token a worker registers with (the ``agent`` grant, as LiveKit's worker sends)."""
    return (
        api.AccessToken(credentials.api_key, credentials.api_secret)
        .with_grants(api.VideoGrants(agent=True))
        .with_ttl(ttl)
        .to_jwt()
    )


def access_token(
    credentials: Credentials,
    *,
    identity: str,
    room: str,
    name: str | None = None,
    ttl: datetime.timedelta = datetime.timedelta(hours=1),
    agent: bool = False,
) -> str:
    """A token for ``identity`` to join ``room`` (publish, subscribe, data)."""
    token = (
        api.AccessToken(credentials.api_key, credentials.api_secret)
        .with_identity(identity)
        .with_ttl(ttl)
        .with_grants(
            api.VideoGrants(room_join=True, room=room, can_update_own_metadata=True, agent=agent or None)
        )
    )
    if name is not None:
        token = token.with_name(name)
    return token.to_jwt()


def verify_token(credentials: Credentials, token: str, *, leeway: datetime.timedelta = datetime.timedelta(0)) -> api.Claims:
    """The claims of ``token`` if this key signed it and it has not expired."""
    verifier = api.TokenVerifier(credentials.api_key, credentials.api_secret, leeway=leeway)
    try:
        return verifier.verify(token)
    except jwt.ExpiredSignatureError as error:
        raise TokenExpired("the token has expired") from error
    except (jwt.InvalidTokenError, ValueError) as error:
        raise InvalidToken(f"the token is not valid for this key: {error}") from error
