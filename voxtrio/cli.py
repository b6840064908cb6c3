"""The ``voxtrio`` command.

``voxtrio scenario run FILE.json [--expect] [--all-metrics]`` plays a scenario
on a virtual clock and prints its timeline (exit 2 for an invalid file, 1 when
``--expect`` finds a difference). ``voxtrio console`` chats with the example agent in the terminal.
``voxtrio demo`` runs a spoken conversation through the offline pipeline
(``--scripted``: the model-free one). ``voxtrio serve`` serves a page to talk
to the agent in a browser (``--telephony twilio``: and answers phone calls).
``voxtrio start AGENT.py`` serves LiveKit
rooms as an agent worker (``voxtrio dev AGENT.py``: one process, restarted when
the code changes; both need ``voxtrio[livekit]``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence


def _scenario_run(args: argparse.Namespace) -> int:
    from .testing.scenario import ScenarioError, compare_expected, load_scenario, run_scenario

    try:
        with open(args.file, encoding="utf-8") as file:
            data = json.load(file)
    except OSError as error:
        print(f"error: cannot read {args.file}: {error.strerror}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as error:
        print(f"error: {args.file} is not UTF-8 text (byte {error.start}: {error.reason})", file=sys.stderr)
        return 2
    except json.JSONDecodeError as error:
        print(f"error: {args.file} is not valid JSON: {error}", file=sys.stderr)
        return 2
    except RecursionError:
        print(f"error: {args.file}: the JSON is nested too deeply to read", file=sys.stderr)
        return 2
    except ValueError as error:  # an integer longer than Python converts
        print(f"error: {args.file} cannot be read as JSON: {error}", file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(data)
    except ScenarioError as error:
        print(f"error: {args.file}: {error}", file=sys.stderr)
        return 2
    lines = run_scenario(scenario, all_metrics=args.all_metrics)
    for line in lines:
        print(json.dumps(line))
    if args.expect:
        if scenario.expect is None:
            print("error: --expect given but the scenario has no 'expect' list", file=sys.stderr)
            return 2
        problem = compare_expected(lines, scenario.expect)
        if problem:
            print(f"expectation failed: {problem}", file=sys.stderr)
            return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    if args.scripted:
        from .scripted_demo import main as scripted_main

        return scripted_main(args)
    from .demo import run

    return run(args)


def _console(args: argparse.Namespace) -> int:
    import trio

    from .demo import find_example_agent, load_module, with_progress
    from .providers.packaged_models import MissingLocalPackage
    from .session import AgentSession
    from .transports.console import ConsoleTransport

    transport = ConsoleTransport(audio=not args.no_audio)
    try:
        from .providers.smollm_llm import SmolLM

        example = load_module(find_example_agent(args.agent))
        llm = SmolLM(routes=example.ROUTES)
        with_progress("loading SmolLM2-135M-Instruct", llm.load)
        tts = None
        if transport.audio_output is not None:
            from .providers.piper_tts import PiperTTS

            tts = PiperTTS()
            with_progress("loading the Piper voice", tts.load)
    except (MissingLocalPackage, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    session = AgentSession(llm=llm, tts=tts)
    try:
        trio.run(session.main, example.WeatherDesk(), transport)
    finally:
        llm.close()
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .server.command import run

    return run(args)


def _worker(args: argparse.Namespace) -> int:
    import os

    import trio

    try:
        from .worker.credentials import Credentials
        from .worker.pool import Pool, load_agent, run_dev
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from .errors import VoxtrioError

    try:
        Credentials.from_env()
        load_agent(args.agent)
    except VoxtrioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "dev":
        trio.run(run_dev, args.agent)
    else:
        processes = args.processes or os.cpu_count() or 1
        trio.run(Pool(args.agent, processes, drain_timeout=args.drain_timeout).run)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voxtrio", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    scenario = commands.add_parser("scenario", help="scenario files")
    scenario_commands = scenario.add_subparsers(dest="scenario_command", required=True)
    run = scenario_commands.add_parser("run", help="play a scenario and print its timeline")
    run.add_argument("file")
    run.add_argument("--expect", action="store_true", help="compare with the file's 'expect' list")
    run.add_argument(
        "--all-metrics",
        action="store_true",
        help="also print voxtrio's own metrics kinds (preemptive), not only eou, llm, tts and stt",
    )
    run.set_defaults(handler=_scenario_run)
    demo = commands.add_parser("demo", help="a spoken conversation through the offline pipeline")
    demo.add_argument(
        "--fast", action="store_true", help="skip idle time (with --scripted: virtual time)"
    )
    demo.add_argument(
        "--scripted", action="store_true", help="the model-free demo on scripted providers"
    )
    demo.add_argument("--out", default="out/demo", help="where the audio and transcript go")
    demo.add_argument("--agent", default=None, help="the example agent module (examples/weather_agent.py)")
    demo.set_defaults(handler=_demo)
    console = commands.add_parser("console", help="chat with the example agent in the terminal")
    console.add_argument("--no-audio", action="store_true", help="text only, even with a sound device")
    console.add_argument("--agent", default=None, help="the example agent module (examples/weather_agent.py)")
    console.set_defaults(handler=_console)
    serve = commands.add_parser("serve", help="talk to the agent in a browser (page and WebSocket on one port)")
    serve.add_argument(
        "agent", nargs="?", default=None, help="FILE.py[:AgentClass] (default: examples/weather_agent.py)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--scripted", action="store_true", help="the model-free pipeline instead of the offline models")
    serve.add_argument(
        "--origin", action="append", default=[], help="another origin whose pages may open sessions (repeatable)"
    )
    serve.add_argument("--max-sessions", type=int, default=20, help="concurrent sessions (default 20)")
    serve.add_argument("--record", default=None, help="write each session's transcript JSON into this folder")
    serve.add_argument(
        "--telephony", action="append", default=[], choices=("twilio", "telnyx", "plivo", "vonage"),
        help="also answer this provider's phone calls (repeatable; its secrets from the environment)",
    )
    serve.add_argument("--telephony-port", type=int, default=8080, help="the phone calls' port (default 8080)")
    serve.add_argument(
        "--public-url", default=None,
        help="the https address the phone provider reaches (default: $VOXTRIO_PUBLIC_URL, else this machine)",
    )
    serve.set_defaults(handler=_serve)
    start = commands.add_parser("start", help="serve LiveKit rooms: an agent worker pool (production)")
    start.add_argument("agent", help="the agent file (defines `async def entrypoint(ctx)`)")
    start.add_argument("--processes", type=int, default=None, help="worker processes (default: one per core)")
    start.add_argument("--drain-timeout", type=float, default=None, help="seconds live calls get on SIGTERM")
    start.set_defaults(handler=_worker)
    dev = commands.add_parser("dev", help="one LiveKit worker, restarted when the code changes")
    dev.add_argument("agent", help="the agent file (defines `async def entrypoint(ctx)`)")
    dev.set_defaults(handler=_worker)
    parser.add_argument(
        "--log-level",
        default="CRITICAL",
        help="log level for voxtrio's own log (default: CRITICAL, i.e. quiet)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
