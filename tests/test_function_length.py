"""No function in `src/` grows past MAX_LINES: a long handler or factory is where validation,
storage and HTTP get mixed up, and where a reviewer stops reading."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_LINES = 80


def long_functions(root: Path, limit: int) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    where = path.relative_to(root.parent)
                    found.append(f"{where} {node.name} ({length} lines)")
    return found


def test_the_checker_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(f"def short():\n    pass\n\nasync def big():\n{body}\n")
    assert long_functions(tmp_path / "pkg", MAX_LINES) == [f"pkg/m.py big ({MAX_LINES + 1} lines)"]


def test_no_function_in_src_is_longer_than_the_limit() -> None:
    assert long_functions(SRC, MAX_LINES) == []
