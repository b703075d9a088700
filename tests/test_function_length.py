"""Functions in src/ stay short enough to read top to bottom: none is longer than ``LIMIT`` lines, its
docstring included, except the tables of command-line arguments, which are lists rather than logic."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "archsearch"
LIMIT = 80
#: argument tables: a sequence of ``add_argument`` calls, one per flag
TABLES = {"cli.py": {"build_parser"}}


def long_functions(root: Path, limit: int) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        allowed = TABLES.get(path.relative_to(root).as_posix(), set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name not in allowed:
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_longer_than_the_limit() -> None:
    assert long_functions(SOURCE, LIMIT) == []


def test_the_check_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n")
    (tmp_path / "short.py").write_text("def short():\n    return 1\n")
    assert long_functions(tmp_path, LIMIT) == [f"long.py:1 long ({LIMIT + 1} lines)"]
