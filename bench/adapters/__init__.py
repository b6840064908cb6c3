"""One module per framework; see ``harness/__init__.py`` for what a module provides."""

from __future__ import annotations

import importlib

ADAPTERS = {
    "livekit": "adapters.livekit_agents",
    "pipecat": "adapters.pipecat_ai",
    "baseline": "adapters.baseline",
    "voxtrio": "adapters.voxtrio_rt",
    "baseline-trio": "adapters.baseline_trio",
}


def load(name: str):
    """Import an adapter by its command-line name (importing the framework too)."""
    return importlib.import_module(ADAPTERS[name])
