"""The simulator stays an independent reference: no imports from the server's packages."""

from __future__ import annotations

import ast
from pathlib import Path

import orderbook.sim

FORBIDDEN = (
    "orderbook.book",
    "orderbook.node",
    "orderbook.feed",
    "orderbook.server",
    "orderbook.fixed",
)


def test_sim_imports_nothing_of_book_node_feed_server_or_fixed() -> None:
    """No module of orderbook.sim imports the code it is the reference for."""
    package = Path(orderbook.sim.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 7
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"
