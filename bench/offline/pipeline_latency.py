"""End of speech -> first agent audio, per stage, on the offline pipeline.

Runs the demo call (five caller lines through Silero, Whisper tiny.en, SmolLM2
and Piper) in real time and prints the model load times, the timing of each
turn and the medians, with the machine's load before and after (other jobs
share these two cores). Run: .venv/bin/python bench/offline/pipeline_latency.py [--fast]
"""

import argparse
import os
import sys

from voxtrio.demo import run

parser = argparse.ArgumentParser()
parser.add_argument("--fast", action="store_true")
parser.add_argument("--out", default="out/bench-offline")
args = parser.parse_args()
print(f"load average before: {os.getloadavg()}")
code = run(argparse.Namespace(fast=args.fast, out=args.out, agent=None))
print(f"load average after: {os.getloadavg()}")
sys.exit(code)
