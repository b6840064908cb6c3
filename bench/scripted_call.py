#!/usr/bin/env python3
"""Run "scripted call v1" on voxtrio and print one result (see bench/README.md).

    .venv/bin/python bench/scripted_call.py --sessions 100 --json
    .venv/bin/python bench/scripted_call.py --quick

The same runner as ``peers.py`` with ``--framework voxtrio`` as the default:
pinned to one core, one un-measured warm-up call, then N calls staggered over
6 s in one trio run, through voxtrio's public API and its real actors
(``adapters/voxtrio_rt.py``).
"""

from __future__ import annotations

import sys

import peers

if __name__ == "__main__":
    if not any(a == "--framework" or a.startswith("--framework=") for a in sys.argv[1:]):
        sys.argv[1:1] = ["--framework", "voxtrio"]
    sys.exit(peers.main())
