"""The import rules of docs/architecture.rst: server -> feed -> book <- node.

The book imports nothing of Twisted or autobahn; feed does not reach into
server or node, and knows no transports or autobahn (the send path is
server/outbox.py); node does not reach into feed or server; nothing
imports tap.
(The simulator's own rule is in tests/sim/test_package.py.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "orderbook"

RULES = {
    "book": ("twisted", "autobahn", "txaio", "orderbook.node", "orderbook.feed",
             "orderbook.server", "orderbook.sim", "orderbook.tap"),
    "feed": ("autobahn", "twisted.internet", "orderbook.node", "orderbook.server",
             "orderbook.sim", "orderbook.tap"),
    "node": ("orderbook.feed", "orderbook.server", "orderbook.sim", "orderbook.tap"),
    "server": ("orderbook.node", "orderbook.sim", "orderbook.tap"),
}  # fmt: skip


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_imports_flow_one_way(package):
    """No module of the package imports what its layer must not see."""
    modules = sorted((PACKAGE / package).rglob("*.py"))  # subpackages too (server/wamp/)
    assert modules
    for path in modules:
        for name in imported(path):
            forbidden = [
                rule for rule in RULES[package] if name == rule or name.startswith(rule + ".")
            ]
            assert not forbidden, f"{path.relative_to(PACKAGE.parent)} imports {name}"


def test_nothing_imports_tap():
    """tap wires everything; it is imported by twistd only."""
    for path in PACKAGE.rglob("*.py"):
        if path.name != "tap.py":
            assert "orderbook.tap" not in imported(path), path
