#!/usr/bin/env python3
"""Put a generated markdown fragment into README.md between the performance markers.

    python bench/update_readme.py bench/results/performance.md

The README's numbers are never typed: ``bench/compare.py --readme`` writes the
fragment and calls this. Everything between ``<!-- performance:begin -->`` and
``<!-- performance:end -->`` is replaced; the markers must exist.
"""

from __future__ import annotations

import os
import sys

BEGIN, END = "<!-- performance:begin -->", "<!-- performance:end -->"
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def insert(readme: str, fragment: str) -> str:
    head, sep, rest = readme.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"README.md lacks the markers {BEGIN} ... {END}")
    return f"{head}{BEGIN}\n{fragment.strip()}\n{END}{tail}"


def main() -> int:
    with open(sys.argv[1]) as f:
        fragment = f.read()
    with open(README) as f:
        readme = f.read()
    with open(README, "w") as f:
        f.write(insert(readme, fragment))
    return 0


if __name__ == "__main__":
    sys.exit(main())
