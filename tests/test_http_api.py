"""The HTTP plumbing the providers share: Retry-After, status classification."""

import email.utils
import time

import pytest

httpx2 = pytest.importorskip("httpx2")

from voxtrio.providers.http_api import retry_after, status_error  # noqa: E402


def test_retry_after_reads_milliseconds_seconds_and_http_dates():
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5  # the precise one first
    assert retry_after({"retry-after": "2.5"}) == 2.5
    in_30_s = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert retry_after({"retry-after": in_30_s}) == pytest.approx(30, abs=1.5)
    assert retry_after({"retry-after": email.utils.formatdate(time.time() - 60, usegmt=True)}) == 0.0
    assert retry_after({"retry-after": "soon"}) is None and retry_after({}) is None


@pytest.mark.parametrize(
    "status, headers, retryable",
    [
        (408, {}, True),
        (409, {}, True),
        (429, {}, True),
        (529, {}, True),
        (400, {}, False),
        (404, {}, False),
        (400, {"x-should-retry": "true"}, True),  # the server's word wins
        (503, {"x-should-retry": "false"}, False),
        (429, {"retry-after": "120"}, False),  # longer than a turn can wait
    ],
)
def test_statuses_are_classified_like_the_vendor_sdks_do(status, headers, retryable):
    response = httpx2.Response(status, headers=headers)
    error = status_error(response, b'{"error": {"message": "m", "type": "t"}}', vendor="V", key_env="V_KEY")
    assert (error.status_code, error.retryable) == (status, retryable)
    assert str(error) == f"V answered {status}: t: m"
