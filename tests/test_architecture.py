"""The import rules of docs/architecture.rst: server -> feed -> book <- node.

The book imports nothing of Twisted or autobahn; feed does not reach into
server or node, and knows no transports or autobahn (the send path is
server/outbox.py); node does not reach into feed or server; workers (the
multi-process parent) use node's snapshot request, config and metrics, never
book, feed or server; only tap imports workers; the top-level modules
(config, tls, process, listening, logs, metrics, fixed, gc_policy) import no
package of orderbook; nothing imports tap; the module map of the docs names
every module; no module outgrows ~450 lines nor a class ~260.
(The simulator's own rule is in tests/sim/test_package.py.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "orderbook"

PACKAGES = ("book", "feed", "node", "server", "sim", "workers")

RULES = {
    "book": ("twisted", "autobahn", "txaio", "orderbook.node", "orderbook.feed",
             "orderbook.server", "orderbook.sim", "orderbook.workers", "orderbook.tap"),
    "feed": ("autobahn", "twisted.internet", "orderbook.node", "orderbook.server",
             "orderbook.sim", "orderbook.workers", "orderbook.tap"),
    "node": ("orderbook.feed", "orderbook.server", "orderbook.sim", "orderbook.workers",
             "orderbook.tap"),
    "server": ("orderbook.node", "orderbook.sim", "orderbook.workers", "orderbook.tap"),
    "workers": ("orderbook.book", "orderbook.feed", "orderbook.server", "orderbook.sim",
                "orderbook.tap"),
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


def test_only_tap_imports_workers():
    """The multi-process parent is wired by tap; no layer depends on it."""
    for path in PACKAGE.rglob("*.py"):
        if path.name != "tap.py" and PACKAGE / "workers" not in path.parents:
            names = imported(path)
            assert not any(n.startswith("orderbook.workers") for n in names), path


def test_top_level_modules_import_no_package():
    """config, tls, process, listening, logs, metrics, fixed, gc_policy are the base."""
    modules = [p for p in PACKAGE.glob("*.py") if p.name not in ("tap.py", "__init__.py")]
    assert {p.stem for p in modules} >= {"config", "listening", "process", "tls"}
    forbidden = tuple(f"orderbook.{name}" for name in PACKAGES) + ("orderbook.tap",)
    for path in modules:
        for name in imported(path):
            assert not name.startswith(forbidden), f"{path.name} imports {name}"


def mapped_modules(page: str) -> set[str]:
    """The files the module map of docs/architecture.rst names, as paths under orderbook/."""
    block = page.split("Module map\n==========\n", 1)[1]
    stack: list[tuple[int, str]] = []
    found: set[str] = set()
    for line in block.splitlines():
        name = line.strip().split(" ", 1)[0]
        if not line.startswith("    ") or not name.endswith(("/", ".py")):
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "".join(part for _, part in stack) + name
        if name.endswith("/"):
            stack.append((indent, name))
        else:
            found.add(path)
    return found


def test_the_module_map_names_every_module():
    """docs/architecture.rst's module map lists each module of orderbook/, and only those."""
    page = (PACKAGE.parent / "docs" / "architecture.rst").read_text()
    mapped = {p[len("orderbook/") :] for p in mapped_modules(page) if p.startswith("orderbook/")}
    present = {
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
    }
    assert sorted(present - mapped) == [], "modules missing from the map"
    assert sorted(mapped - present) == [], "the map names modules that do not exist"


MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 260
AS_ONE_THING = {"sim/exchange.py"}  # the simulator's exchange model reads as one


def test_no_module_or_class_outgrows_its_room():
    too_big = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name in AS_ONE_THING:
            continue
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_big.append(f"{name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno >= MAX_CLASS_LINES:
                too_big.append(f"{name}: class {node.name} {node.end_lineno - node.lineno + 1}")
    assert not too_big, too_big
