#!/usr/bin/env python3
"""Where a phone server's CPU goes: transport, codec, runtime (from a py-spy raw profile).

    .venv/bin/python bench/phone_call.py --sessions 100 --profile prof.txt   # records it
    .venv/bin/python bench/profile_split.py prof.txt

py-spy's ``--format raw`` writes one line per distinct stack ("frame;frame;... count",
root first). Each sample goes to the first bucket one of its frames belongs to,
in this order:

* codec: μ-law (``telephony/g711.py``) and resampling (soxr, whoever calls it);
* transport: the WebSocket (trio-websocket, wsproto), JSON, base64, the socket
  and the telephony transport's own code (``voxtrio/transports/telephony/``);
* runtime: the rest of voxtrio (actors, session, providers) and the bench's
  fakes and fake-pipeline;
* scheduler: samples in trio's run loop with no task frame (the cost of waking
  tasks up and of ``epoll``, shared by all of the above), and the rest.

The bucket is that of the frame nearest the leaf that belongs to one, so a
channel send in the transport's reader is the transport's, the same send in
an actor the runtime's, and base64 inside the Twilio serializer transport.
"""

from __future__ import annotations

import collections
import re
import sys

BUCKETS = ("codec", "transport", "runtime", "scheduler")
_CODEC = re.compile(r"g711\.py|soxr|ResampleStream|resample")
_TRANSPORT = re.compile(
    r"trio_websocket|wsproto|/json/|base64|_highlevel_socket|trio/_socket|transports/telephony/|h11"
)
_RUNTIME = re.compile(r"voxtrio/|phone_server\.py|adapters/|harness/")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:]*)(?::\d+)?\)$")


def bucket(stack: list[str]) -> str:
    """The bucket of the frame nearest the leaf that belongs to one.

    The entry frames (``main``, ``trio.run``) are in every stack: only what
    runs below trio's run loop counts, so that a sample in the loop itself
    (waking tasks, ``epoll``) is the scheduler's.
    """
    task: list[str] = []
    for i, frame in enumerate(stack):
        if "trio/_core/_run.py" in frame and frame.startswith(("run ", "unrolled_run ")):
            task = stack[i + 1 :]
    if "trio/_core/_run.py" not in ";".join(stack):
        task = stack  # another thread
    for frame in reversed(task):
        if _CODEC.search(frame):
            return "codec"
        if _TRANSPORT.search(frame):
            return "transport"
        if _RUNTIME.search(frame):
            return "runtime"
    return "scheduler"


def split(path: str) -> tuple[dict[str, float], collections.Counter]:
    counts: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    with open(path) as f:
        for line in f:
            stack_text, _, n = line.rstrip("\n").rpartition(" ")
            if not stack_text:
                continue
            stack = stack_text.split(";")
            counts[bucket(stack)] += int(n)
            leaves[f"{bucket(stack)}: {stack[-1]}"] += int(n)
    total = sum(counts.values()) or 1
    return {b: round(100 * counts[b] / total, 1) for b in BUCKETS}, leaves


def main() -> int:
    shares, leaves = split(sys.argv[1])
    print("  ".join(f"{b} {shares[b]} %" for b in BUCKETS))
    total = sum(leaves.values()) or 1
    for leaf, n in leaves.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 25):
        print(f"{100 * n / total:5.1f} %  {leaf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
