"""The endpoint the OpenAI providers talk to: base URL, key and headers."""

from __future__ import annotations

from typing import Mapping

from ..api_common import api_key
from ..http_api import HTTPClient

VENDOR = "OpenAI"
KEY_ENV = "OPENAI_API_KEY"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def openai_client(
    *,
    api_key_arg: str | None,
    base_url: str | None,
    extra_headers: Mapping[str, str] | None,
    provider: str,
) -> HTTPClient:
    """A client for the API at ``base_url`` (OpenAI's by default), authenticated
    with a bearer key. A server that checks no key still needs one given
    (any string, e.g. ``api_key="none"``): a missing key is more often a
    mistake than a choice."""
    key = api_key(api_key_arg, KEY_ENV, provider)
    headers = {"Authorization": f"Bearer {key}", **(extra_headers or {})}
    return HTTPClient(base_url=base_url or DEFAULT_BASE_URL, headers=headers, vendor=VENDOR, key_env=KEY_ENV)
