"""The telephony providers' REST APIs for real: skipped unless their credentials are set.

    TWILIO_ACCOUNT_SID=... TWILIO_AUTH_TOKEN=... .venv/bin/pytest tests/test_telephony_live.py

What is checked without placing a call: the credentials are accepted (hanging
up a call that does not exist is refused as not found, not as unauthorized).
A real call needs a number pointed at a public address (see the README).
"""

import os
from pathlib import Path

import pytest
import trio

httpx2 = pytest.importorskip("httpx2")

from voxtrio.transports.telephony import Plivo, ProviderAPIError, Telnyx, Twilio, Vonage  # noqa: E402


def needs(*names: str):
    missing = [n for n in names if not os.environ.get(n)]
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} not set")


async def hang_up_nothing(provider, call_id: str) -> None:
    async with httpx2.AsyncClient(timeout=20.0) as client:
        with trio.fail_after(30), pytest.raises(ProviderAPIError) as refused:
            await provider.hang_up(client, call_id)
    assert refused.value.status not in (401, 403), refused.value


@needs("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
async def test_twilio_accepts_the_credentials():
    provider = Twilio(auth_token=os.environ["TWILIO_AUTH_TOKEN"], account_sid=os.environ["TWILIO_ACCOUNT_SID"])
    await hang_up_nothing(provider, "CA" + "0" * 32)


@needs("TELNYX_API_KEY", "TELNYX_PUBLIC_KEY")
async def test_telnyx_accepts_the_credentials():
    provider = Telnyx(public_key=os.environ["TELNYX_PUBLIC_KEY"], api_key=os.environ["TELNYX_API_KEY"])
    await hang_up_nothing(provider, "v3:no-such-call")


@needs("PLIVO_AUTH_ID", "PLIVO_AUTH_TOKEN")
async def test_plivo_accepts_the_credentials():
    provider = Plivo(auth_token=os.environ["PLIVO_AUTH_TOKEN"], auth_id=os.environ["PLIVO_AUTH_ID"])
    async with httpx2.AsyncClient(timeout=20.0) as client:
        with trio.fail_after(30):
            await provider.hang_up(client, "00000000-0000-0000-0000-000000000000")  # 404 is "already ended"


@needs("VONAGE_APPLICATION_ID", "VONAGE_PRIVATE_KEY", "VONAGE_SIGNATURE_SECRET")
async def test_vonage_accepts_the_credentials():
    provider = Vonage(
        signature_secret=os.environ["VONAGE_SIGNATURE_SECRET"],
        application_id=os.environ["VONAGE_APPLICATION_ID"],
        private_key=Path(os.environ["VONAGE_PRIVATE_KEY"]).read_bytes(),
    )
    await hang_up_nothing(provider, "00000000-0000-0000-0000-000000000000")
