"""vpbench's modules import each other without cycles (read from the source with ast, so nothing is imported).

Imports under `if TYPE_CHECKING:` are left out: they never run. An import of a parent package from its own
submodule is left out too: Python imports the parent first anyway.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"vpbench": "benchmark", "vpbench.predictors": "predictors", "vpbench.datasets": "datasets",
            "vpbench.reports": "reports"}


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package's __init__)."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = (path, path.name == "__init__.py")
    return found


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for stmt in node.body for n in ast.walk(stmt)}
    return [n for n in ast.walk(tree) if id(n) not in skipped]


def import_graph() -> dict[str, set[str]]:
    modules = _modules()

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {known(a.name) for a in node.names if a.name.startswith("vpbench")}
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
                if source.startswith("vpbench"):  # `from pkg import submodule` imports the submodule
                    targets |= {f"{source}.{a.name}" if f"{source}.{a.name}" in modules else known(source)
                                for a in node.names}
        graph[name] = {t for t in targets if t and t != name and not name.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_imports():
    graph = import_graph()
    assert "vpbench.metrics.frame" in graph["vpbench.evaluation"]  # from .metrics.frame import ...
    assert "vpbench.metrics.weights" in graph["vpbench.cli"]  # an import inside a function counts
    assert "vpbench.training" not in graph["vpbench"]  # under TYPE_CHECKING only (the lazy public names)


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_cycles_finds_each_known_cycle_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(),  # a -> b -> c -> a, with a tail to d
             "e": {"f"}, "f": {"e"},  # two modules importing each other
             "g": {"g", "a"}}  # a self-import is no cycle of modules; g reaches the first cycle without being in it
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["e", "f"]]
    assert cycles({"x": {"y"}, "y": set()}) == []
