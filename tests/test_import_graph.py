"""The import graph of ``derivex`` has no circle, and the layers point inward.

What the graph is (decided here, once):

- **Nodes are modules** (``derivex.journal.recovery``, a package's ``__init__`` as the
  package's name). Module granularity, because that is where a circle breaks an import
  (the one issue 13 removed ran ``exchange -> journal.proof -> journal.recovery ->
  exchange``), and because the subpackages are not strict layers yet: ``gateway.serve``
  (what ``derivex serve`` wires) schedules ``derivex.market``, which acts through the
  gateway's ``Venue``. The layer rules that do hold are asserted separately below.
- **Function-level imports are edges.** A lazy import still runs the imported module, at
  call time, and deferring an import is the usual way a circle is hidden: both ends of the
  circle above were lazy or typing-only.
- **``if TYPE_CHECKING:`` imports are not edges**: they never run (annotations only).
- An import of ``a.b.c`` is an edge to ``a.b.c`` (``from a.b import c``: to ``a.b.c`` if
  it is a module, else to ``a.b``), not also to the packages ``a`` and ``a.b`` whose
  ``__init__`` Python runs first: a package re-exporting its own submodules would otherwise
  be a circle with each of them.
"""

from __future__ import annotations

import ast
import copy
import functools
import itertools
from collections.abc import Iterator
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SOURCE / "derivex"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for branch in node.orelse for n in _imports(ast.Module([branch], [])))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module ``name`` starts with (None outside derivex)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, dict[str, int]]:
    """``{module: {imported module: line of the first such import}}`` within derivex (a
    copy: the walk parses every module, so it is made once per test process)."""
    return copy.deepcopy(_walk())


@functools.cache
def _walk() -> dict[str, dict[str, int]]:
    known = modules()
    graph: dict[str, dict[str, int]] = {name: {} for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the package, one level up per extra dot
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            for target in targets:
                resolved = _resolve(target, known)
                if resolved is not None and resolved != name:
                    graph[name].setdefault(resolved, node.lineno)
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One circle ``[a, b, ..., a]`` of ``graph``, or None. Iterative depth-first search,
    modules in sorted order (the same circle is reported each run). O(nodes + edges)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for root in sorted(graph):
        if root in state:
            continue
        path = [root]
        pending = [iter(sorted(graph[root]))]
        state[root] = 1
        while pending:
            step = next(pending[-1], None)
            if step is None:
                state[path.pop()] = 2
                pending.pop()
            elif state.get(step) == 1:
                return [*path[path.index(step) :], step]
            elif step not in state:
                state[step] = 1
                path.append(step)
                pending.append(iter(sorted(graph.get(step, {}))))
    return None


def _describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    hops = [
        f"  {a} -> {b} ({modules()[a].relative_to(SOURCE)}:{graph[a][b]})"
        for a, b in itertools.pairwise(cycle)
    ]
    return "import circle:\n" + "\n".join(hops)


def test_the_import_graph_has_no_circle() -> None:
    graph = import_graph()
    assert len(graph) > 100 and sum(len(edges) for edges in graph.values()) > 300
    cycle = find_cycle(graph)
    assert cycle is None, _describe(graph, cycle)


def test_the_walk_sees_lazy_imports_and_skips_typing_only_ones() -> None:
    source = """
import derivex.top
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from derivex.typing_only import T
else:
    from derivex.runtime_branch import R
class C:
    def method(self):
        from derivex.lazy import f
        return f
"""
    found = [
        node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
        for node in _imports(ast.parse(source))
    ]
    assert found == ["derivex.top", "typing", "derivex.runtime_branch", "derivex.lazy"]
    graph = import_graph()
    # Exchange.prove imports the proof module inside the method; the market's Venue and
    # InstrumentSpec are annotations only
    assert "derivex.journal.proof" in graph["derivex.exchange"]
    assert "derivex.gateway.venue" not in graph["derivex.market.inputs"]


def test_the_cycle_finder_reports_a_circle_and_its_hops() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 2}}) is None


def _importers(prefix: str) -> dict[str, set[str]]:
    """For each module under ``prefix``, the derivex modules it imports."""
    return {
        module: set(edges)
        for module, edges in import_graph().items()
        if module == prefix or module.startswith(prefix + ".")
    }


def _outside(module: str, allowed: tuple[str, ...]) -> bool:
    return not any(module == a or module.startswith(a + ".") for a in allowed)


def test_the_journal_and_the_sequencer_sit_below_the_facade() -> None:
    """The journal builds engines, never the ``Exchange`` facade or anything above it; the
    sequencer needs only the core and the door's native module (its hot state is a C
    struct there), which itself needs nothing above the core."""
    for module, imported in _importers("derivex.journal").items():
        above = {m for m in imported if _outside(m, ("derivex.journal", "derivex.core"))}
        assert not above, f"{module} imports {sorted(above)}"
    imported = _importers("derivex.sequencer")["derivex.sequencer"]
    below = ("derivex.core", "derivex.door_native")
    assert imported and not {m for m in imported if _outside(m, below)}
    leaves = ("derivex.core", "derivex._door_native_source", "derivex._kernel_cache")
    imported = _importers("derivex.door_native")["derivex.door_native"]
    assert not {m for m in imported if _outside(m, (*leaves, "derivex.results"))}


def test_the_gateway_holds_no_market_inputs_or_agents() -> None:
    """Market inputs and demo agents live in ``derivex.market``; of the gateway only
    ``serve`` (the ``derivex serve`` wiring) schedules them."""
    known = modules()
    assert "derivex.market.inputs" in known and "derivex.market.agents" in known
    assert "derivex.gateway.agents" not in known
    users = {
        module
        for module, imported in _importers("derivex.gateway").items()
        if any(m.startswith("derivex.market") for m in imported)
    }
    assert users == {"derivex.gateway.serve"}
