"""The server's garbage-collector policy: a big long-lived heap, short-lived blocks.

Two facts shape it (measured on 520k resting orders, bench/bench_book.py):

- Applying a block allocates ~1,500 objects the collector tracks (orders,
  levels, per-coin updates, lists) and frees nearly all of them by the time
  the block has been fanned out. With CPython's default young-generation
  threshold (700) a young collection ran every other block, tracing live
  temporaries (0.3 ms each), and a full one every few hundred blocks (~34 ms,
  a reactor stall). With a threshold of 10,000 none ran in 400 busy blocks:
  the temporaries are gone before the count gets there.
- A full collection walks every tracked object, ~400 ms over 500k orders.
  Every minute the survivors of a young collection are frozen
  (``gc.freeze()``), so full passes only see what is newer than that.
"""

from __future__ import annotations

import gc

from twisted.application.internet import TimerService

GC_FREEZE_INTERVAL_S = 60.0
YOUNG_THRESHOLD = 10_000


def raise_young_threshold() -> tuple[int, int, int]:
    """Set the young generation's threshold to YOUNG_THRESHOLD; return the old thresholds."""
    previous = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, *previous[1:])
    return previous


def freeze_old_objects() -> None:
    """Collect the young generations, then move every survivor out of the collector's sight.

    Survivors of a young collection are long-lived (resting orders,
    subscriptions); ``gc.freeze()`` is O(1) and exempts them from later full
    passes. Frozen objects are still freed by reference counting, so only
    cyclic garbage older than a minute is kept (rare: the node events and
    orders never form cycles, and discarded books are cut apart).
    """
    gc.collect(1)
    gc.freeze()


class GcPolicy(TimerService):
    """While running: the raised young threshold, and a freeze every minute."""

    def __init__(self, interval_s: float = GC_FREEZE_INTERVAL_S) -> None:
        super().__init__(interval_s, freeze_old_objects)
        self._previous: tuple[int, int, int] | None = None

    def startService(self) -> None:
        self._previous = raise_young_threshold()
        super().startService()

    def stopService(self):  # type: ignore[no-untyped-def]
        if self._previous is not None:
            gc.set_threshold(*self._previous)
            self._previous = None
        return super().stopService()
