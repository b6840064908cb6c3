"""The span tree of a finished trace, as text: for tests and for reading a trace by eye.

Takes the SDK's finished spans (``InMemorySpanExporter.get_finished_spans()``)
and draws them nested by parent, in start order, each with its start (seconds
from the root's) and its duration::

    agent_session  0.000 +11.200
    ├── user_speaking  0.550 +2.450
    ...
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence


def span_tree(spans: Iterable[Any], *, attributes: Sequence[str] = ()) -> list[str]:
    """One line a span: name, start and duration in seconds, and the ``attributes`` it has."""
    spans = list(spans)
    children: dict[Any, list[Any]] = {}
    ids = {span.context.span_id for span in spans}
    roots = []
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        if parent in ids:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    origin = min((span.start_time for span in roots), default=0)
    lines: list[str] = []

    def describe(span: Any) -> str:
        start = (span.start_time - origin) / 1e9
        duration = (span.end_time - span.start_time) / 1e9
        shown = [f"{key}={span.attributes[key]!r}" for key in attributes if key in span.attributes]
        return " ".join([span.name, f"{start:.3f}", f"+{duration:.3f}", *shown])

    def walk(span: Any, prefix: str, last: bool, top: bool) -> None:
        lines.append(describe(span) if top else f"{prefix}{'└── ' if last else '├── '}{describe(span)}")
        kids = sorted(children.get(span.context.span_id, []), key=lambda s: (s.start_time, s.end_time, s.name))
        inner = "" if top else prefix + ("    " if last else "│   ")
        for index, kid in enumerate(kids):
            walk(kid, inner, index == len(kids) - 1, False)

    for root in sorted(roots, key=lambda s: s.start_time):
        walk(root, "", True, True)
    return lines
