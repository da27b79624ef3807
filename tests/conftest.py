"""Shared fixtures (the reactor for pytest-twisted, the real node fixtures) and the
order of tests over parallel test processes (pytest-xdist, setup.cfg's addopts).

Slow tests run first, so the long ones start at once on different processes
and the short ones fill in around them, instead of one long test starting
last. Every test is scheduled on its own, except those of a module that shares
a module-scoped fixture (one server, browser or soak run for the module): such
a module runs on one process, or every process would start its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
MAINNET = SHARED / "fixtures" / "mainnet-20260430-btc" / "hl" / "data"

# The modules with a module-scoped fixture (tests/test_conftest.py keeps this list true).
SHARED_BY_MODULE = frozenset(
    {
        "tests/e2e/test_page.py",
        "tests/e2e/test_soak.py",
        "tests/e2e/test_wamp_e2e.py",
        "tests/server/test_stalled_rss.py",
        "tests/server/test_wamp_publisher.py",
    }
)


@pytest.fixture
def reactor():
    """The global reactor, for tests driven by pytest-twisted."""
    from twisted.internet import reactor as global_reactor

    return global_reactor


@pytest.fixture
def mainnet_data() -> Path:
    """The real mainnet node output under ../shared (skipped when absent)."""
    if not MAINNET.is_dir():
        pytest.skip(f"real node fixtures not found at {MAINNET} (../shared is absent)")
    return MAINNET


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` first, otherwise in the collected order (stable sort)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's load-by-scope scheduling, a scope being one test or one module of
    SHARED_BY_MODULE. (Its ``--dist loadgroup`` would do, but its group marks do not
    reach node ids on pytest >= 9.2.)"""
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in SHARED_BY_MODULE else nodeid

    return Scheduling(config, log)
