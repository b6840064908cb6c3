"""Stream tokens: the key a media stream shows to be let in.

Answering a call puts a token in the media URL the provider will connect to
(``wss://host/twilio/media/<token>``): ``v1.<payload>.<mac>``, where the
payload is the call's description (provider, call id, numbers, direction,
custom parameters) with an expiry and a random nonce, base64url JSON, and the
MAC is HMAC-SHA256 over ``v1.<payload>`` with the server's secret. Checking
one verifies the MAC first (nobody without the secret can make the server
store anything), then the expiry (wall-clock seconds, so another process
holding the same secret can check it), then that its nonce was never used:
a token opens one stream, within ``ttl`` seconds of the webhook that issued it.

The call's description travels in the token, so the process that answers the
webhook and the one that takes the stream need to share only the secret. A
nonce is remembered by the process that saw it, until the token expires: with
several processes behind one address, a replay can be refused only by the
process that took the first use (the expiry still bounds it to ``ttl``).
The payload is signed, not encrypted: the caller's number is readable by
whoever sees the media URL (the provider, and its logs).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any, Callable

from ...errors import VoxtrioError

VERSION = "v1"
MAX_TOKEN_LENGTH = 4096


class InvalidStreamToken(VoxtrioError):
    """A token that opens no stream; ``reason`` is malformed, bad_signature,
    expired or reused."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokens:
    """Issues and checks stream tokens for one secret (at least 16 bytes)."""

    def __init__(self, secret: bytes, *, ttl: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the stream token secret must be at least 16 bytes")
        self._secret = secret
        self.ttl = ttl
        self._clock = clock
        self._used: dict[str, float] = {}  # nonce -> expiry, for tokens already used

    @classmethod
    def generate(cls, **options: Any) -> StreamTokens:
        """Tokens under a fresh random secret (they die with the process)."""
        return cls(secrets.token_bytes(32), **options)

    def _mac(self, body: str) -> str:
        return _b64encode(hmac.new(self._secret, body.encode("ascii"), hashlib.sha256).digest())

    def issue(self, claims: dict[str, Any], *, ttl: float | None = None) -> str:
        """A token for ``claims``, valid ``ttl`` seconds (default: ``self.ttl``)."""
        life = self.ttl if ttl is None else ttl
        payload = dict(claims, exp=int(self._clock() + life) + 1, nonce=_b64encode(secrets.token_bytes(12)))
        body = f"{VERSION}.{_b64encode(json.dumps(payload, separators=(',', ':')).encode())}"
        token = f"{body}.{self._mac(body)}"
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError(f"the stream token would be {len(token)} characters: pass fewer parameters")
        return token

    def check(self, token: str) -> dict[str, Any]:
        """The claims of ``token``, which is used up; InvalidStreamToken if it opens nothing."""
        parts = token.split(".")
        if len(token) > MAX_TOKEN_LENGTH or len(parts) != 3 or parts[0] != VERSION:
            raise InvalidStreamToken("malformed", "the stream token is not a voxtrio stream token")
        body = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(parts[2], self._mac(body)):
            raise InvalidStreamToken("bad_signature", "the stream token was not signed with this server's secret")
        try:
            claims = json.loads(_b64decode(parts[1]))
            expiry, nonce = float(claims["exp"]), str(claims["nonce"])
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidStreamToken("malformed", f"the stream token's payload is unreadable: {error}") from error
        now = self._clock()
        if expiry < now:
            raise InvalidStreamToken("expired", f"the stream token expired {now - expiry:.0f} s ago")
        self._used = {n: until for n, until in self._used.items() if until >= now}
        if nonce in self._used:
            raise InvalidStreamToken("reused", "the stream token was already used")
        self._used[nonce] = expiry
        return claims
