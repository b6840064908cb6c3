"""The browser server: ``voxtrio serve`` (see :mod:`voxtrio.server.app`)."""

from .app import ASGIWebSocket, VoiceServer
from ..tokens import InvalidToken, TokenSigner

__all__ = ["ASGIWebSocket", "InvalidToken", "TokenSigner", "VoiceServer"]
