"""Functions of the harness core stay short enough to read as one step: none in benchmark/ is over MAX_LINES
lines (decorators, signature and docstring included), read from the source with ast."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 60


def long_functions(source: str, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """(name, lines) of every function or method longer than `limit` lines, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if node.end_lineno - first + 1 > limit:
                found.append((node.name, node.end_lineno - first + 1))
    return found


def test_no_function_in_the_core_is_over_the_limit() -> None:
    found = {str(path.relative_to(ROOT)): long for path in sorted((ROOT / "benchmark").rglob("*.py"))
             if (long := long_functions(path.read_text(encoding="utf-8")))}
    assert found == {}


def test_a_long_function_is_found() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
    source = f"@staticmethod\ndef long():\n{body}\ndef short():\n    return 1\n"
    assert long_functions(source) == [("long", MAX_LINES + 2)]
