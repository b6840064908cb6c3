"""Shrinking a failing conversation to the smallest scenario that still fails.

Hypothesis shrinks the choices a strategy made; this shrinks the scenario
itself, as JSON, which is what a person reads: it deletes whole entries (a user
speech, an LLM answer, an action, a hook step, a tool, an option, a fault) and
simplifies numbers towards round values, keeping each change only while the
scenario stays valid and still breaks the same invariant. The result is
usually a handful of lines, ready to become a regression scenario.

It is greedy (a change is kept as soon as it helps) and bounded by a budget
of runs, so it always ends; each run plays the scenario on the virtual clock.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Callable, Iterator

from .scenario import ScenarioError, load_scenario

# Keys a scenario file keeps even when the scenario would still fail without them.
KEEP = {"name", "description"}


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in ``value`` that could be deleted, larger ones first."""
    if isinstance(value, dict):
        for key in value:
            if not path and key in KEEP:
                continue
            yield path + (key,)
        for key, item in value.items():
            if not path and key in KEEP:
                continue
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for index in reversed(range(len(value))):
            yield path + (index,)
        for index, item in enumerate(value):
            yield from _paths(item, path + (index,))


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def _without(data: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    candidate = copy.deepcopy(data)
    parent = _get(candidate, path[:-1])
    del parent[path[-1]]
    return candidate


def _replaced(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    candidate = copy.deepcopy(data)
    _get(candidate, path[:-1])[path[-1]] = value
    return candidate


def _simpler_numbers(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Places holding a number, each with simpler values to try (rounder, smaller)."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        simpler = []
        for candidate in (0, round(value), round(value * 2) / 2, round(value, 1)):
            if candidate != value and abs(candidate) < abs(value) + 1e-9 and candidate not in simpler:
                simpler.append(candidate)
        for candidate in simpler:
            yield path, candidate
        return
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _simpler_numbers(item, path + (key,))


def _valid(data: dict[str, Any]) -> bool:
    try:
        load_scenario(data)
    except (ScenarioError, ValueError, TypeError):
        return False
    return True


def reduce_scenario(
    data: dict[str, Any],
    still_fails: Callable[[dict[str, Any]], bool],
    *,
    budget: int = 400,
) -> dict[str, Any]:
    """The smallest variant of ``data`` (within ``budget`` runs of
    ``still_fails``) that is a valid scenario for which ``still_fails`` holds."""
    current = copy.deepcopy(data)
    runs = 0
    seen: set[str] = set()

    def attempt(candidate: dict[str, Any]) -> bool:
        nonlocal runs
        key = json.dumps(candidate, sort_keys=True)
        if key in seen or not _valid(candidate):
            return False
        seen.add(key)
        runs += 1
        return still_fails(candidate)

    progress = True
    while progress and runs < budget:
        progress = False
        for path in list(_paths(current)):
            if runs >= budget:
                break
            try:
                _get(current, path)
            except (KeyError, IndexError, TypeError):
                continue  # gone with something removed before it
            candidate = _without(current, path)
            if attempt(candidate):
                current, progress = candidate, True
        for path, value in list(_simpler_numbers(current)):
            if runs >= budget:
                break
            try:
                if _get(current, path) == value:
                    continue
            except (KeyError, IndexError, TypeError):
                continue
            candidate = _replaced(current, path, value)
            if attempt(candidate):
                current, progress = candidate, True
    return current
