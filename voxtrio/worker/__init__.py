"""voxtrio as a LiveKit agent worker (``pip install 'voxtrio[livekit]'``).

``voxtrio start agent.py`` registers with the LiveKit server named by
``LIVEKIT_URL`` (``LIVEKIT_API_KEY`` / ``LIVEKIT_API_SECRET`` sign for it)
and runs the file's ``entrypoint(ctx)`` for each call LiveKit dispatches to
it, in a pool of processes (see :mod:`voxtrio.worker.pool`); ``voxtrio dev
agent.py`` runs one process and restarts it when the file changes.
"""

from .credentials import (
    Credentials,
    InvalidToken,
    MissingCredentials,
    TokenExpired,
    access_token,
    agent_token,
    verify_token,
)
from .job import JobContext
from .worker import (
    Admission,
    Worker,
    WorkerAuthError,
    WorkerConnectionError,
    WorkerError,
    WorkerOptions,
    WorkerProtocolError,
)

__all__ = [
    "Admission",
    "Credentials",
    "InvalidToken",
    "JobContext",
    "MissingCredentials",
    "TokenExpired",
    "Worker",
    "WorkerAuthError",
    "WorkerConnectionError",
    "WorkerError",
    "WorkerOptions",
    "WorkerProtocolError",
    "access_token",
    "agent_token",
    "verify_token",
]
