"""The ``voxtrio`` command.

``voxtrio scenario run FILE.json [--expect]`` plays a scenario on a virtual
clock and prints its timeline (exit 2 for an invalid file, 1 when ``--expect``
finds a difference). ``voxtrio console`` chats with the example agent in the terminal.
``voxtrio demo`` runs a spoken conversation through the offline pipeline
(``--scripted``: the model-free one).
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
    lines = run_scenario(scenario)
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voxtrio", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    scenario = commands.add_parser("scenario", help="scenario files")
    scenario_commands = scenario.add_subparsers(dest="scenario_command", required=True)
    run = scenario_commands.add_parser("run", help="play a scenario and print its timeline")
    run.add_argument("file")
    run.add_argument("--expect", action="store_true", help="compare with the file's 'expect' list")
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
