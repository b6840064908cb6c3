"""``voxtrio serve --telephony PROVIDER``: the same agent on the phone.

(The command's options are declared in :mod:`voxtrio.cli`, so that
``voxtrio --help`` needs nothing of the telephony extra.)

The browser page stays on ``--port``; the phone calls' webhooks and media
streams get a port of their own (``--telephony-port``, 8080 by default), in
the same trio process, each call a session of the same agent and pipeline.
The providers' secrets come from the environment (a missing one stops the
command with the name of the variable):

=========  ==========================  ==========================================
provider   verifies its webhooks with  the REST API (hanging up, dialling out)
=========  ==========================  ==========================================
twilio     ``TWILIO_AUTH_TOKEN``       ``TWILIO_ACCOUNT_SID``
telnyx     ``TELNYX_PUBLIC_KEY``       ``TELNYX_API_KEY``, ``TELNYX_CONNECTION_ID``
plivo      ``PLIVO_AUTH_TOKEN``        ``PLIVO_AUTH_ID``
vonage     ``VONAGE_SIGNATURE_SECRET`` ``VONAGE_APPLICATION_ID``, ``VONAGE_PRIVATE_KEY`` (a PEM file)
=========  ==========================  ==========================================

``--public-url`` (or ``VOXTRIO_PUBLIC_URL``) is the https address the
provider reaches (a tunnel to the telephony port); the webhook to configure
is ``<public url>/<provider>/answer``. ``VOXTRIO_SECRET`` signs the stream
tokens (made up at start otherwise).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable

import trio

from .base import Provider, ProviderSetupError
from .server import TelephonyServer

def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ProviderSetupError(f"--telephony needs {name} in the environment")
    return value


def providers_from_environment(names: list[str]) -> list[Provider]:
    from .plivo import Plivo
    from .telnyx import Telnyx
    from .twilio import Twilio
    from .vonage import Vonage

    env = os.environ.get
    built: list[Provider] = []
    for name in dict.fromkeys(names):
        if name == "twilio":
            built.append(Twilio(auth_token=_required("TWILIO_AUTH_TOKEN"), account_sid=env("TWILIO_ACCOUNT_SID")))
        elif name == "telnyx":
            built.append(Telnyx(public_key=_required("TELNYX_PUBLIC_KEY"), api_key=env("TELNYX_API_KEY"),
                                connection_id=env("TELNYX_CONNECTION_ID")))
        elif name == "plivo":
            built.append(Plivo(auth_token=_required("PLIVO_AUTH_TOKEN"), auth_id=env("PLIVO_AUTH_ID")))
        else:
            key = env("VONAGE_PRIVATE_KEY")
            built.append(Vonage(signature_secret=_required("VONAGE_SIGNATURE_SECRET"),
                                application_id=env("VONAGE_APPLICATION_ID"),
                                private_key=Path(key).read_bytes() if key else None))
    return built


async def serve_calls(
    new_session: Callable[[], tuple[Any, Any]],
    providers: list[Provider],
    args: argparse.Namespace,
    *,
    task_status: trio.TaskStatus[TelephonyServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer phone calls until cancelled, each a session of ``new_session()``."""

    async def entrypoint(call: Any) -> None:
        session, agent = new_session()
        await call.run(session, agent)

    secret = os.environ.get("VOXTRIO_SECRET")
    public_url = args.public_url or os.environ.get("VOXTRIO_PUBLIC_URL")
    server = TelephonyServer(entrypoint, providers, public_url=public_url, secret=secret.encode() if secret else None)
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: server.serve(host=args.host, port=args.telephony_port,
                                                            task_status=task_status))
        local = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{server.port}"
        print(f"phone calls on {local}", flush=True)
        for provider in providers:
            method = provider.answer_method
            print(f"  {provider.name}: point the number's voice webhook ({method}) at {server.url(f'/{provider.name}/answer')}",
                  flush=True)
        if not public_url:
            print("  (no --public-url: only this machine can reach these; a provider needs an https tunnel)", flush=True)
        task_status.started(server)
