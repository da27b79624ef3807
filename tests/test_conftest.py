"""tests/conftest.py's list of modules that share a module-scoped fixture is complete."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO, SHARED_BY_MODULE


def module_scoped(path: Path) -> bool:
    """Whether the module defines a fixture of module (or wider) scope."""
    wide = ("module", "package", "session")
    return any(
        keyword.arg == "scope"
        and isinstance(keyword.value, ast.Constant)
        and keyword.value.value in wide
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        for keyword in node.keywords
    )


def test_every_module_with_a_module_scoped_fixture_runs_on_one_process():
    """Otherwise each parallel test process would start the module's server (or soak)."""
    found = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "tests").rglob("test_*.py")
        if module_scoped(path)
    }
    assert found == SHARED_BY_MODULE
