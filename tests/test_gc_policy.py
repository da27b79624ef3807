"""The server's GC policy: a raised young threshold while running, a freeze every minute."""

from __future__ import annotations

import gc
import weakref

import pytest
from twisted.internet.task import Clock

from orderbook import gc_policy
from orderbook.gc_policy import (
    GC_FREEZE_INTERVAL_S,
    TRIM_INTERVAL_S,
    YOUNG_THRESHOLD,
    GcPolicy,
    freeze_old_objects,
    release_memory,
)
from tests.e2e.procs import own_rss_kb


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
    if own_rss_kb() == 0 or gc_policy._MALLOC_TRIM is None:
        pytest.skip("needs /proc and glibc's malloc_trim")
    release_memory()
    before = own_rss_kb()
    blocks = [bytes(range(256)) * 4 + bytes([i % 256]) for i in range(100_000)]  # ~100 MB
    pin = bytes(range(256)) * 4 + b"pin"  # the heap's top stays in use: no automatic trim
    grown = own_rss_kb()
    del blocks
    kept = own_rss_kb()
    assert release_memory()
    assert grown - before > 80_000 and kept - before > 80_000, "glibc gave it back by itself"
    assert own_rss_kb() - before < 20_000 and pin


class _Cycle:
    """An object that refers to itself: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


def old_cyclic_garbage() -> weakref.ref[_Cycle]:
    """A cycle that reached the old generation alive (a full collection moves survivors
    there), then became garbage; a weak reference to it."""
    cycle = _Cycle()
    gc.collect()
    ref = weakref.ref(cycle)
    del cycle
    return ref


@pytest.fixture
def no_automatic_gc():
    """Only explicit collections run (none may free the garbage by chance); nothing
    stays frozen after the test."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def test_freeze_collects_old_cyclic_garbage_instead_of_keeping_it(no_automatic_gc):
    """Issue 14: a young collection before ``gc.freeze()`` left the old generation's
    cyclic garbage to be frozen, where no collection ever frees it."""
    garbage = old_cyclic_garbage()
    freeze_old_objects()
    assert garbage() is None
    gc.collect()  # a frozen survivor would be out of its reach
    assert gc.get_freeze_count() > 0


def test_freeze_keeps_what_is_alive(no_automatic_gc):
    """What is still referenced is frozen, not freed, and reference counting frees it later."""
    alive = _Cycle()
    alive.me = None  # no cycle: freed by reference counting even when frozen
    ref = weakref.ref(alive)
    freeze_old_objects()
    assert ref() is alive
    del alive
    assert ref() is None
