"""Stall detection: is the node still writing? One timer, the reactor's clock.

Every ``min(1 s, stall_timeout_s / 4)`` the watch asks why the feed would be
stale: no block completed for ``stall_timeout_s`` (the node stopped, whatever
the mode), or, by-block only, one stream silent that long while the others go
on (there every stream has a line per block; streaming streams are sparse, so
one quiet stream is normal). ``ready`` becomes ``stale`` naming the reason,
and back with the next block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import task
from twisted.logger import Logger

from orderbook.metrics import Metrics

READY = "ready"
STALE = "stale"


class StallWatch:
    """Turns ``ready`` into ``stale`` (and back) from the node's progress."""

    _log = Logger(namespace="orderbook.node.stall")

    def __init__(
        self,
        reactor: Any,
        timeout_s: float,
        last_moved_at: Callable[[], float | None],
        stopped_alone: Callable[[], list[str]],
        quiet_for: Callable[[list[str]], float],
        state: Callable[[], str],
        set_state: Callable[[str, str | None], None],
        metrics: Metrics,
    ) -> None:
        self.reactor = reactor
        self.timeout_s = timeout_s
        self.last_moved_at = last_moved_at
        self.stopped_alone = stopped_alone
        self.quiet_for = quiet_for
        self.state = state
        self.set_state = set_state
        self.m_stalls = metrics.counter("orderbook_node_stalls_total", "Times the feed went stale")
        self._loop = task.LoopingCall(self._guarded)
        self._loop.clock = reactor

    def start(self) -> None:
        self._loop.start(min(1.0, self.timeout_s / 4), now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def check(self) -> None:
        """Stale or ready again, from what the node did lately."""
        state = self.state()
        if state not in (READY, STALE):
            return
        why = self.reason()
        if why is not None and state == READY:
            self.m_stalls.inc()
            self._log.warn("ingest: stale: {reason}", reason=why)
            self.set_state(STALE, why)
        elif why is None and state == STALE:
            self.set_state(READY, None)

    def reason(self) -> str | None:
        """Why the feed is stale (a by-block stream that stopped is named), or None."""
        stopped = self.stopped_alone()
        if stopped:
            return (
                f"stream {', '.join(stopped)} stopped while the others go on "
                f"(nothing for {self.quiet_for(stopped):.1f} s)"
            )
        now, last = self.reactor.seconds(), self.last_moved_at()
        if last is not None and now - last > self.timeout_s:
            return f"no new block for {now - last:.1f} s"
        return None

    def _guarded(self) -> None:
        try:
            self.check()
        except Exception:
            self._log.failure("ingest: stall check failed; ingestion goes on")
