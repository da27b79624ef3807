"""The server's GC policy: a raised young threshold while running, a freeze every minute."""

from __future__ import annotations

import gc

import pytest
from twisted.internet.task import Clock

from orderbook import gc_policy
from orderbook.gc_policy import (
    GC_FREEZE_INTERVAL_S,
    TRIM_INTERVAL_S,
    YOUNG_THRESHOLD,
    GcPolicy,
    release_memory,
    rss_kb,
)


def test_policy_raises_the_young_threshold_while_running_and_restores_it():
    before = gc.get_threshold()
    policy = GcPolicy()
    policy.freezer.clock = policy.trimmer.clock = Clock()
    policy.startService()
    try:
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
    finally:
        policy.stopService()
        gc.unfreeze()
    assert gc.get_threshold() == before


def test_policy_freezes_survivors_at_start_and_every_interval():
    policy = GcPolicy()
    clock = policy.freezer.clock = policy.trimmer.clock = Clock()
    policy.startService()
    try:
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        clock.advance(GC_FREEZE_INTERVAL_S)
        assert gc.get_freeze_count() > 0
    finally:
        policy.stopService()
        gc.unfreeze()


def test_policy_releases_memory_at_start_and_every_trim_interval(monkeypatch):
    """malloc_trim runs when the policy starts and every TRIM_INTERVAL_S, not between."""
    calls = []
    monkeypatch.setattr(gc_policy, "_MALLOC_TRIM", calls.append)
    policy = GcPolicy()
    clock = policy.freezer.clock = policy.trimmer.clock = Clock()
    policy.startService()
    try:
        clock.advance(TRIM_INTERVAL_S / 2)
        assert calls == [0]
        clock.advance(TRIM_INTERVAL_S / 2)
        assert calls == [0, 0]
    finally:
        policy.stopService()
        gc.unfreeze()


def test_release_memory_gives_freed_heap_pages_back():
    """Freed small blocks stay in the footprint until malloc_trim returns them (glibc)."""
    if rss_kb() == 0 or gc_policy._MALLOC_TRIM is None:
        pytest.skip("needs /proc and glibc's malloc_trim")
    release_memory()
    before = rss_kb()
    blocks = [bytes(range(256)) * 4 + bytes([i % 256]) for i in range(100_000)]  # ~100 MB
    pin = bytes(range(256)) * 4 + b"pin"  # the heap's top stays in use: no automatic trim
    grown = rss_kb()
    del blocks
    kept = rss_kb()
    assert release_memory()
    assert grown - before > 80_000 and kept - before > 80_000, "glibc gave it back by itself"
    assert rss_kb() - before < 20_000 and pin
