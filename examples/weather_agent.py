"""A weather desk that hands callers over to a packing adviser: the demo's agents.

``WeatherDesk`` has one tool, ``get_weather``, that reads local data
(``weather.json`` beside this file), and a hand-off tool that returns the
``PackingAdviser`` agent. ``ROUTES`` tells the offline LLM (SmolLM) when each
tool is wanted: a 135M model cannot decide that itself, it only fills in the
city (see ``voxtrio.providers.smollm_llm``). A cloud LLM would ignore ROUTES
and choose from the tools' descriptions.

Run it with the offline pipeline: ``voxtrio demo`` (or ``scripts/demo``).
"""

from __future__ import annotations

import json
from pathlib import Path

import voxtrio
from voxtrio.providers.smollm_llm import ToolRoute

WEATHER: dict[str, str] = json.loads((Path(__file__).with_name("weather.json")).read_text("utf-8"))

ROUTES = [
    ToolRoute(
        tool="get_weather",
        keywords=("weather", "temperature", "forecast", "raining", "rain", "sunny", "cold", "warm"),
    ),
    ToolRoute(tool="transfer_to_packing", keywords=("pack", "packing", "suitcase")),
]


class WeatherDesk(voxtrio.Agent):
    def __init__(self) -> None:
        super().__init__(
            instructions="You are the weather desk of a travel line, on a phone call. "
            "Answer in one or two short sentences."
        )

    async def on_enter(self) -> None:
        self.session.say(f"Hello, this is the weather desk. I know the weather in {_known_cities()}.")

    @voxtrio.function_tool
    async def get_weather(self, city: str) -> str:
        """Look up today's weather in a city.

        Args:
            city: the city the caller asked about
        """
        wanted = city.strip().lower()
        for name, report in WEATHER.items():
            if name.lower() in wanted or wanted in name.lower():
                return report
        return f"Sorry, I have no weather for {city}. I know {_known_cities()}."

    @voxtrio.function_tool
    async def transfer_to_packing(self) -> voxtrio.Agent:
        """Hand the caller to the packing adviser, who helps decide what to bring."""
        return PackingAdviser()


class PackingAdviser(voxtrio.Agent):
    def __init__(self) -> None:
        super().__init__(
            instructions="You help travellers decide what to pack for a trip. "
            "Answer in one or two short sentences."
        )

    async def on_enter(self) -> None:
        self.session.generate_reply(instructions="Greet the caller as the packing adviser and give one tip.")


def _known_cities() -> str:
    names = list(WEATHER)
    return ", ".join(names[:-1]) + " and " + names[-1]
