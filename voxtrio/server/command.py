"""``voxtrio serve``: talk to an agent in a browser.

It loads the agent module and the pipeline once (the offline models by
default, the model-free one of :mod:`voxtrio.testing.model_free` with
``--scripted``), then serves the page and the WebSocket on one port with
hypercorn's trio worker; every browser connection is a session of its own,
all in this one trio process. The secret that signs session tokens comes from
``VOXTRIO_SECRET``, or is made up at start; either way the server prints the
access link that lets a browser in. ``--telephony twilio`` (and the other
providers) also answers phone calls, on a port of its own
(:mod:`voxtrio.transports.telephony.command`).
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

import trio

from ..demo import build_pipeline, find_example_agent, load_module
from .app import VoiceServer
from ..tokens import TokenSigner


def load_agent(spec: str | None) -> tuple[type, Any]:
    """``FILE.py[:Class]``: the agent class (by default the first Agent the file
    exports in ``__all__``, else the first it defines) and its module."""
    from ..agent import Agent

    path_text, _, name = (spec or "").partition(":")
    module = load_module(find_example_agent(path_text or None))
    if name:
        agent = getattr(module, name, None)
        if not (isinstance(agent, type) and issubclass(agent, Agent)):
            raise LookupError(f"{module.__file__} has no Agent class {name!r}")
        return agent, module
    # The first Agent the file exports (its __all__), else the first it defines.
    exported = [getattr(module, name, None) for name in getattr(module, "__all__", ())]
    defined = [value for value in vars(module).values() if getattr(value, "__module__", None) == module.__name__]
    for value in exported + defined:
        if isinstance(value, type) and issubclass(value, Agent):
            return value, module
    raise LookupError(f"{module.__file__} defines no voxtrio.Agent subclass")


def scripted_pipeline() -> dict[str, Any]:
    from ..providers.energy_vad import EnergyVAD
    from ..testing.model_free import EchoLLM, SpeechDurationSTT, ToneTTS

    print("the model-free pipeline: energy VAD, speech-length 'STT', echo LLM, tone TTS")
    return {"vad": EnergyVAD(), "stt": SpeechDurationSTT(), "llm": EchoLLM(), "tts": ToneTTS()}


def default_origins(host: str, port: int) -> set[str]:
    names = {host, "127.0.0.1", "localhost", "[::1]"} - {"0.0.0.0", "::", ""}
    return {f"http://{name}:{port}" for name in names}


def run(args: argparse.Namespace) -> int:
    from ..providers.packaged_models import MissingLocalPackage

    try:
        import hypercorn.config
        import hypercorn.trio
    except ImportError:
        print("error: voxtrio serve needs hypercorn: pip install 'voxtrio[serve]'", file=sys.stderr)
        return 1
    telephony = getattr(args, "telephony", [])
    if telephony:
        from ..transports.telephony.base import ProviderSetupError
        from ..transports.telephony.command import providers_from_environment

        try:
            phone_providers = providers_from_environment(telephony)
        except (ProviderSetupError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    try:
        agent_class, module = load_agent(args.agent)
        if args.scripted:
            pipeline = scripted_pipeline()
        elif callable(getattr(module, "pipeline", None)):  # the agent file builds its own providers
            pipeline = module.pipeline()
        else:
            pipeline = build_pipeline(getattr(module, "ROUTES", ()))
    except MissingLocalPackage as error:
        print(f"\nerror: {error}\n(without the models: voxtrio serve --scripted)", file=sys.stderr)
        return 1
    except (FileNotFoundError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from ..collector import tune_collector_for_calls
    from ..session import AgentSession

    secret = os.environ.get("VOXTRIO_SECRET")
    if secret is not None and len(secret.encode()) < 16:
        print("error: VOXTRIO_SECRET must be at least 16 bytes", file=sys.stderr)
        return 1
    signer = TokenSigner(secret.encode()) if secret else TokenSigner.generate()
    if args.record:
        Path(args.record).mkdir(parents=True, exist_ok=True)
    def new_session() -> tuple[Any, Any]:
        return AgentSession(min_endpointing_delay=0.5, **pipeline), agent_class()

    server = VoiceServer(
        new_session,
        signer=signer,
        max_sessions=args.max_sessions,
        record_dir=args.record,
    )
    config = hypercorn.config.Config()
    config.bind = [f"{args.host}:{args.port}"]
    config.websocket_max_message_size = 64 * 1024  # above this hypercorn closes the socket (1009)
    config.websocket_ping_interval = 20.0
    config.accesslog = None
    config.loglevel = "WARNING"

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(hypercorn.trio.serve, server, config))
            port = int(binds[0].rsplit(":", 1)[1])
            server.allowed_origins = frozenset(default_origins(args.host, port) | set(args.origin))
            where = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{port}"
            print(f"\nvoxtrio serve: {agent_class.__name__} on {where}", flush=True)
            print(f"open this link in a browser (it holds the access key):\n  {server.access_url(where)}", flush=True)
            if secret is None:
                print("(the key changes at every start; set VOXTRIO_SECRET to keep it)", flush=True)
            print(f"pages from other origins need --origin (allowed: {', '.join(sorted(server.allowed_origins))})")
            if telephony:
                from ..transports.telephony.command import serve_calls

                await nursery.start(serve_calls, new_session, phone_providers, args)
            tune_collector_for_calls()  # see voxtrio/collector.py
            print("Ctrl-C stops the server.", flush=True)

    try:
        trio.run(main)
    except* KeyboardInterrupt:  # (trio may deliver it inside a connection's task group)
        print("\nstopped")
    finally:
        llm = pipeline.get("llm")
        if hasattr(llm, "close"):
            llm.close()
    return 0
