"""Signed, short-lived, single-use tokens: the key a connection shows to be let in.

Both network front doors use them: ``voxtrio serve``'s page gets one from
``POST /token`` to open its WebSocket session, and answering a phone call puts
one in the media URL the provider will connect to
(``wss://host/twilio/media/<token>``). A token is ``v1.<payload>.<mac>``: the
payload is base64url JSON (the issuer's claims, such as a call's description,
with an expiry and a random nonce), the MAC is HMAC-SHA256 over
``v1.<payload>`` with the server's secret. Checking one verifies the MAC
first (nobody without the secret can make the server store anything), then
the expiry (wall-clock seconds, so another process holding the same secret can
mint or check it), then that its nonce was never used: a token opens one
session or stream, within ``ttl`` seconds of being issued, so a URL that leaks
(a log, a screen share) is of no use a minute later.

The claims travel in the token, so the process that issues it and the one
that takes the connection need to share only the secret. A nonce is
remembered by the process that saw it, until the token expires: with several
processes behind one address, a replay can be refused only by the process
that took the first use (the expiry still bounds it to ``ttl``). The payload
is signed, not encrypted: a caller's number in it is readable by whoever sees
the URL (the provider, and its logs).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any, Callable

from .errors import VoxtrioError

VERSION = "v1"
MAX_TOKEN_LENGTH = 4096


class InvalidToken(VoxtrioError):
    """A token that opens nothing; ``reason`` is missing, malformed,
    bad_signature, expired or reused."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and checks tokens for one secret (at least 16 bytes)."""

    def __init__(self, secret: bytes, *, ttl: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 bytes")
        self._secret = secret
        self.ttl = ttl
        self._clock = clock
        self._used: dict[str, float] = {}  # nonce -> expiry, for tokens already used

    @classmethod
    def generate(cls, **options: Any) -> TokenSigner:
        """A signer with a fresh random secret (its tokens die with the process)."""
        return cls(secrets.token_bytes(32), **options)

    def _mac(self, body: str) -> str:
        return _b64encode(hmac.new(self._secret, body.encode("ascii"), hashlib.sha256).digest())

    def derive(self, purpose: str) -> str:
        """A stable secret string for ``purpose`` (the page access key), from the secret."""
        return self._mac(f"voxtrio {purpose}")

    def issue(self, claims: dict[str, Any] | None = None, *, ttl: float | None = None) -> str:
        """A token carrying ``claims``, valid ``ttl`` seconds (default: ``self.ttl``)."""
        life = self.ttl if ttl is None else ttl
        payload = dict(claims or {}, exp=int(self._clock() + life) + 1, nonce=_b64encode(secrets.token_bytes(12)))
        body = f"{VERSION}.{_b64encode(json.dumps(payload, separators=(',', ':')).encode())}"
        token = f"{body}.{self._mac(body)}"
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError(f"the token would be {len(token)} characters: pass fewer claims")
        return token

    def check(self, token: str | None) -> dict[str, Any]:
        """The claims of ``token``, which is used up; InvalidToken if it opens nothing."""
        if not token:
            raise InvalidToken("missing", "no token")
        parts = token.split(".")
        if len(token) > MAX_TOKEN_LENGTH or len(parts) != 3 or parts[0] != VERSION:
            raise InvalidToken("malformed", "the token is not a voxtrio token")
        body = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(parts[2], self._mac(body)):
            raise InvalidToken("bad_signature", "the token was not signed with this server's secret")
        try:
            claims = json.loads(_b64decode(parts[1]))
            expiry, nonce = float(claims["exp"]), str(claims["nonce"])
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidToken("malformed", f"the token's payload is unreadable: {error}") from error
        now = self._clock()
        if expiry < now:
            raise InvalidToken("expired", f"the token expired {now - expiry:.0f} s ago")
        self._used = {n: until for n, until in self._used.items() if until >= now}
        if nonce in self._used:
            raise InvalidToken("reused", "the token was already used")
        self._used[nonce] = expiry
        return claims
