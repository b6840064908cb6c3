"""voxtrio's import graph has no cycle, and its layers point one way.

Read from the source with ``ast``: every ``import`` executed at run time
counts, at module level or inside a function (a cycle hidden in a function
is still a cycle). Imports under ``if TYPE_CHECKING:`` are left out: they are
annotations, never executed (every module has ``from __future__ import
annotations``), and the ones that point back (to ``AgentSession``, the object
hooks and transports are given) are listed by ``type_only_edges``.
"""

from __future__ import annotations

import ast
import pathlib

import voxtrio

ROOT = pathlib.Path(voxtrio.__file__).parent


def _modules() -> dict[str, tuple[pathlib.Path, bool]]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        if package:
            parts.pop()
        modules[".".join(parts)] = (path, package)
    return modules


def _edges(*, type_only: bool = False) -> dict[str, set[str]]:
    """Module -> the voxtrio modules it imports (run-time ones, or only the
    ``TYPE_CHECKING`` ones)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, package) in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        base = name if package else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if (id(node) in typing_only) != type_only:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    prefix = ".".join(base.split(".")[: len(base.split(".")) - node.level + 1])
                    module = f"{prefix}.{module}" if module else prefix
                # "from package import submodule" imports the submodule; "from
                # module import name" the module.
                targets = [
                    f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                if target.split(".")[0] == "voxtrio":
                    resolved = resolve(target)
                    if resolved is not None and resolved != name:
                        edges[name].add(resolved)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in edges[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle():
    assert _cycles(_edges()) == []


def test_the_check_sees_a_cycle_hidden_in_a_function():
    edges = {"a": {"b"}, "b": set()}
    assert _cycles(edges) == []
    edges["b"].add("a")
    assert _cycles(edges) == [["a", "b"]]
    # A function-level import is an edge like any other.
    graph = _edges()
    assert "voxtrio.providers.threads" in graph["voxtrio.tools"]


def _reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges[node])
    return seen


def test_layers_point_one_way():
    edges = _edges()
    for name, imported in edges.items():
        if name.startswith("voxtrio.providers"):
            upward = {m for m in imported if m.startswith(("voxtrio.actors", "voxtrio.messages"))}
            assert not upward, name
    # The runtime (what ``import voxtrio`` loads) never loads the testing kit.
    assert not {m for m in _reachable(edges, "voxtrio") if m.startswith("voxtrio.testing")}
    assert not {m for m in edges["voxtrio.testing.scripted"] if m.startswith("voxtrio.actors")}
