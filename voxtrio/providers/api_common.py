"""What the network providers share, whatever carries their requests (HTTP or
a WebSocket): the API key, and the wait a server asks for before a retry."""

from __future__ import annotations

import email.utils
import math
import os
import time
from typing import Mapping

from ..errors import MissingAPIKeyError


def api_key(given: str | None, env_var: str, provider: str) -> str:
    """The key passed as an argument, else the environment's, else a clear error."""
    key = given if given is not None else os.environ.get(env_var)
    if not key:
        raise MissingAPIKeyError(
            f"{provider} needs an API key: set the environment variable {env_var} or pass api_key="
        )
    return key


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait before retrying, from ``retry-after-ms`` or ``Retry-After``
    (seconds or an HTTP date), or None when the response does not say."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            date = email.utils.parsedate_tz(value)
            if date is None:
                continue
            seconds = email.utils.mktime_tz(date) - time.time()
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None
