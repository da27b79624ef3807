"""The server's GC policy: a raised young threshold while running, a freeze every minute."""

from __future__ import annotations

import gc

from twisted.internet.task import Clock

from orderbook.gc_policy import GC_FREEZE_INTERVAL_S, YOUNG_THRESHOLD, GcPolicy


def test_policy_raises_the_young_threshold_while_running_and_restores_it():
    before = gc.get_threshold()
    policy = GcPolicy()
    policy.clock = Clock()
    policy.startService()
    try:
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
    finally:
        policy.stopService()
        gc.unfreeze()
    assert gc.get_threshold() == before


def test_policy_freezes_survivors_at_start_and_every_interval():
    policy = GcPolicy()
    clock = policy.clock = Clock()
    policy.startService()
    try:
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        clock.advance(GC_FREEZE_INTERVAL_S)
        assert gc.get_freeze_count() > 0
    finally:
        policy.stopService()
        gc.unfreeze()
