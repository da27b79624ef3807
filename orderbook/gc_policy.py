"""The server's garbage-collector policy: a big long-lived heap, short-lived blocks.

Two facts shape it (measured on 520k resting orders, bench/bench_book.py):

- Applying a block allocates ~1,500 objects the collector tracks (levels,
  per-coin updates, lists; orders are untracked, ``book/order.py``) and
  frees nearly all of them by the time
  the block has been fanned out. With CPython's default young-generation
  threshold (700) a young collection ran every other block, tracing live
  temporaries (0.3 ms each), and a full one every few hundred blocks (~34 ms,
  a reactor stall). With a threshold of 10,000 none ran in 400 busy blocks:
  the temporaries are gone before the count gets there.
- A full collection walks every tracked object: ~400 ms over 500k orders
  when orders were tracked; levels and dicts still are. Every minute what
  survives a full collection is frozen (``gc.freeze()``), so full passes
  only see what is newer than that: the next one costs about what a young
  one does. Freezing without collecting everything first would
  keep cyclic garbage for good (see :func:`freeze_old_objects`).

And one fact of glibc's allocator: memory freed by Python is not given back
to the OS by itself. Big buffers (an L4 snapshot's bytes, a compressed
frame, a stalled client's queue) come from the heap once a freed
``mmap``-sized block has raised glibc's dynamic mmap threshold, and freed
heap pages stay in the footprint. Every ``TRIM_INTERVAL_S``
``malloc_trim(0)`` returns the free pages of every arena (~1 ms on a 500 MB
heap; a no-op where the C library has no ``malloc_trim``).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable

from twisted.application.internet import TimerService
from twisted.application.service import MultiService

GC_FREEZE_INTERVAL_S = 60.0
TRIM_INTERVAL_S = 5.0
YOUNG_THRESHOLD = 10_000


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _malloc_trim()


def release_memory() -> bool:
    """Give the C heap's free pages back to the OS; False where that is not possible."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


def raise_young_threshold() -> tuple[int, int, int]:
    """Set the young generation's threshold to YOUNG_THRESHOLD; return the old thresholds."""
    previous = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, *previous[1:])
    return previous


def freeze_old_objects() -> None:
    """Collect every generation, then move every survivor out of the collector's sight.

    Survivors are long-lived (resting orders, subscriptions); ``gc.freeze()``
    is O(1) and exempts them from later full passes. The collection is a
    full one because frozen objects are never collected: cyclic garbage
    frozen with them (a finished HTTP request's objects, a Deferred chain,
    anything that died in the old generation) would be kept for good, and
    did: ~12 KB per validation snapshot, issue 14. It walks only what is
    newer than the last freeze, everything older is frozen already. What is
    frozen alive is still freed by reference counting, unless it dies as a
    cycle (discarded books and connections are cut apart for that).
    """
    gc.collect()
    gc.freeze()


class GcPolicy(MultiService):
    """While running: the raised young threshold, a freeze every minute, and a
    release of free heap memory every ``trim_interval_s``."""

    def __init__(
        self, interval_s: float = GC_FREEZE_INTERVAL_S, trim_interval_s: float = TRIM_INTERVAL_S
    ) -> None:
        super().__init__()
        self.freezer = TimerService(interval_s, freeze_old_objects)
        self.trimmer = TimerService(trim_interval_s, release_memory)
        self.freezer.setServiceParent(self)
        self.trimmer.setServiceParent(self)
        self._previous: tuple[int, int, int] | None = None

    def startService(self) -> None:
        self._previous = raise_young_threshold()
        super().startService()

    def stopService(self):  # type: ignore[no-untyped-def]
        if self._previous is not None:
            gc.set_threshold(*self._previous)
            self._previous = None
        return super().stopService()
