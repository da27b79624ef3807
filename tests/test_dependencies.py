"""setup.cfg declares exactly the third-party packages the code imports.

A declared package nothing imports is dead weight (and attack surface); an
imported one that is not declared breaks a clean install. Packages an extra
brings (``twisted[tls]``: pyOpenSSL, service-identity) are not declared twice.
"""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = [REPO / "orderbook", REPO / "twisted" / "plugins"]


def declared() -> dict[str, str]:
    """install_requires as {normalized distribution name: requirement line}."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "setup.cfg")
    lines = [line.strip() for line in parser["options"]["install_requires"].splitlines()]
    return {_normalize(re.split(r"[\[<>=!~;\s]", line)[0]): line for line in lines if line}


def imported_top_levels() -> set[str]:
    """Top-level names of every absolute import in the shipped code."""
    names: set[str] = set()
    for root in SOURCES:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names


def third_party(names: set[str]) -> set[str]:
    local = {"orderbook", "__future__"}
    return {name for name in names if name not in sys.stdlib_module_names and name not in local}


def distribution(top_level: str) -> str:
    """The distribution that provides ``top_level`` (the one named like it if several)."""
    candidates = importlib.metadata.packages_distributions().get(top_level, [])
    assert candidates, f"{top_level} is imported but not installed"
    for name in candidates:
        if _normalize(name) == _normalize(top_level):
            return _normalize(name)
    return _normalize(candidates[0])


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_import_is_declared():
    """Each third-party import's distribution is in install_requires."""
    requirements = declared()
    missing = {
        name: distribution(name)
        for name in third_party(imported_top_levels())
        if distribution(name) not in requirements
    }
    assert not missing, f"imported but not in setup.cfg install_requires: {missing}"


def test_every_declaration_is_imported():
    """Each install_requires entry is imported by the shipped code (ujson, txaio were not)."""
    used = {distribution(name) for name in third_party(imported_top_levels())}
    unused = {name: line for name, line in declared().items() if name not in used}
    assert not unused, f"declared in setup.cfg but never imported: {sorted(unused.values())}"


def test_autobahn_has_the_inflation_fix():
    """autobahn >= 26.7.1 (GHSA-hxp9-w8x3-p566: compressed messages inflating past the limit)."""
    assert declared()["autobahn"] == "autobahn>=26.7.1,<27"
    installed = tuple(int(part) for part in importlib.metadata.version("autobahn").split(".")[:3])
    assert (26, 7, 1) <= installed < (27,), installed
