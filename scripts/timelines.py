"""Record the timelines of every scenario file and of generated conversations, or compare.

The safety net of a behaviour-preserving change: record before, compare after; every
timeline must be byte-identical.

    .venv/bin/python scripts/timelines.py record DIR [--generated 300] [--seeds 0,1,2]
    .venv/bin/python scripts/timelines.py compare DIR

``record`` writes the generated conversations themselves into ``DIR/generated/`` (so a
change to the strategies cannot change what is compared), then the timeline of every
scenario (tests/scenarios/ and ``DIR/generated/``) under every seed into ``DIR/out/``.
``compare`` replays the same files and names each timeline that differs.
"""

import argparse
import json
import logging
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "scenarios"


def generate(directory: pathlib.Path, count: int) -> None:
    from hypothesis import HealthCheck, given, settings

    from voxtrio.testing.strategies import conversations

    directory.mkdir(parents=True, exist_ok=True)
    made: list[dict] = []
    for hostile, share in ((False, count - count // 4), (True, count // 4)):
        start = len(made)

        @settings(
            max_examples=share, derandomize=True, database=None, deadline=None,
            phases=["generate"], suppress_health_check=list(HealthCheck),
        )
        @given(conversations(hostile=hostile))
        def collect(conversation: dict) -> None:
            if len(made) - start < share:
                made.append(conversation)

        collect()
    for number, conversation in enumerate(made):
        (directory / f"{number:04d}.json").write_text(json.dumps(conversation, sort_keys=True))


def timeline(path: pathlib.Path, seed: int) -> str:
    from voxtrio.testing import load_scenario
    from voxtrio.testing.scenario import run_scenario

    lines = run_scenario(load_scenario(json.loads(path.read_text())), seed=seed)
    return "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)


def files(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(SCENARIOS.glob("*.json")) + sorted((directory / "generated").glob("*.json"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["record", "compare"])
    parser.add_argument("directory", type=pathlib.Path)
    parser.add_argument("--generated", type=int, default=300)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the timelines are the output; the runtime's logs are noise here
    out = args.directory / "out"
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.command == "record":
        generate(args.directory / "generated", args.generated)
        out.mkdir(parents=True, exist_ok=True)
        (args.directory / "seeds").write_text(args.seeds)
    else:
        seeds = [int(s) for s in (args.directory / "seeds").read_text().split(",")]
    differ = 0
    total = 0
    for path in files(args.directory):
        for seed in seeds:
            total += 1
            name = f"{path.parent.name}-{path.stem}-{seed}.jsonl"
            text = timeline(path, seed)
            if args.command == "record":
                (out / name).write_text(text)
            elif (out / name).read_text() != text:
                differ += 1
                print(f"differs: {path} seed {seed}")
    print(f"{total} timelines, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
