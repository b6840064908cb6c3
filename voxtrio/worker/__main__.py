"""One worker process: ``python -m voxtrio.worker AGENT.py`` (what ``voxtrio start`` runs per core)."""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial

import trio

from ..errors import VoxtrioError
from .pool import run_child


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voxtrio.worker")
    parser.add_argument("agent")
    parser.add_argument("--drain-timeout", type=float, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s[%(process)d]: %(message)s")
    try:
        trio.run(partial(run_child, args.agent, drain_timeout=args.drain_timeout))
    except VoxtrioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
