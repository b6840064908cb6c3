"""Signed, short-lived, single-use tokens for opening a session.

A WebSocket URL carries a token: ``v1.<expiry>.<nonce>.<mac>``, where the MAC
is HMAC-SHA256 over ``v1.<expiry>.<nonce>`` with the server's secret. The
server checks the MAC first (so nobody without the secret can make it store
anything), then the expiry (wall-clock seconds, so a separate backend holding
the same secret can mint tokens), then that the nonce has not been used.
A token opens one session, within ``ttl`` seconds of being issued: a URL
that leaks (a log, a screen share) is of no use a minute later.

The page's own token comes from ``POST /token``, which needs the access key
the server prints at start (``?key=`` once, then an HttpOnly same-site
cookie), so loading the page from another site cannot get one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Callable

from ..errors import VoxtrioError

VERSION = "v1"


class InvalidToken(VoxtrioError):
    """A token that does not open a session; ``reason`` is missing, malformed,
    bad_signature, expired or reused."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenSigner:
    """Issues and checks tokens for one secret."""

    def __init__(self, secret: bytes, *, ttl: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 bytes")
        self._secret = secret
        self.ttl = ttl
        self._clock = clock
        self._used: dict[str, float] = {}  # nonce -> expiry, for tokens already used

    @classmethod
    def generate(cls, **options: float) -> TokenSigner:
        """A signer with a fresh random secret (tokens die with the process)."""
        return cls(secrets.token_bytes(32), **options)  # type: ignore[arg-type]

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode("ascii"), hashlib.sha256).digest())

    def derive(self, purpose: str) -> str:
        """A stable secret string for ``purpose`` (the page access key), from the secret."""
        return self._mac(f"voxtrio {purpose}")

    def issue(self, *, ttl: float | None = None) -> str:
        expiry = int(self._clock() + (self.ttl if ttl is None else ttl))
        body = f"{VERSION}.{expiry}.{_b64(secrets.token_bytes(12))}"
        return f"{body}.{self._mac(body)}"

    def check(self, token: str | None) -> None:
        """Raise InvalidToken unless ``token`` is valid (it is then used up)."""
        if not token:
            raise InvalidToken("missing", "no token: open the page to get one")
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != VERSION or not parts[1].isdigit() or len(token) > 200:
            raise InvalidToken("malformed", "the token is not a voxtrio token")
        body, mac = ".".join(parts[:3]), parts[3]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise InvalidToken("bad_signature", "the token was not signed by this server")
        now = self._clock()
        expiry = int(parts[1])
        if expiry < now:
            raise InvalidToken("expired", "the token has expired: reload the page")
        self._used = {nonce: until for nonce, until in self._used.items() if until >= now}
        nonce = parts[2]
        if nonce in self._used:
            raise InvalidToken("reused", "the token was already used: reload the page")
        self._used[nonce] = expiry
