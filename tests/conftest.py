"""Shared fixtures: the reactor for pytest-twisted, and the real node fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
MAINNET = SHARED / "fixtures" / "mainnet-20260430-btc" / "hl" / "data"


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
