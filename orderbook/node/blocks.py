"""Block assembly, by-block mode: the three streams' lines -> whole Blocks in height order.

Each stream has one line per block, heights consecutive; a block is complete
once all three lines arrived (the diffs line often comes first). A stream that
skips a height lost a line: that is a gap. (Streaming mode, where streams are
sparse, is :mod:`orderbook.node.streaming`.)

Blocks come out in strictly increasing height. At startup the first block of
each stream may have been read only in part; it is dropped (the snapshot
taken afterwards covers it). A bad fills line only costs that block its
trades (``fills_ok=False``); bad statuses/diffs lines are the caller's
business (resync), here they just leave their block incomplete. An
unreadable line whose height is unknown is the stream's next height.

At most ``max_pending`` incomplete blocks are held: when one stream lags or
stops while the others go on, the oldest incomplete block is dropped and
reported to ``on_drop`` with the streams it was still waiting for (its data
is lost: the caller resyncs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orderbook.book.events import Block, BookDiff, Fill, OrderStatus
from orderbook.node.schema import DIFFS, FILLS, STATUSES, STREAM_KINDS, Line, status_coin, time_ms

GapReport = Callable[[str, int, int], None]  # (stream kind, expected height, got height)
DropReport = Callable[[int, list[str]], None]  # (height, streams it still waited for)


@dataclass
class Parts:
    """One block's events gathered so far."""

    block_time: str
    statuses: list[OrderStatus] | None = None
    diffs: list[BookDiff] | None = None
    fills: list[tuple[str, Fill]] | None = None
    fills_ok: bool = True
    kinds: set[str] = field(default_factory=set)

    def block(self, height: int) -> Block:
        return Block(
            height=height,
            time_ms=time_ms(self.block_time),
            block_time=self.block_time,
            statuses=self.statuses or [],
            diffs=self.diffs or [],
            fills=self.fills or [],
            fills_ok=self.fills_ok,
        )


def store(parts: Parts, kind: str, events: list) -> None:
    """Add ``events`` of stream ``kind`` to ``parts`` (in place: a streaming block
    gathers ~1,000 one-event rows)."""
    parts.kinds.add(kind)
    if kind == STATUSES:
        if parts.statuses is None:
            parts.statuses = list(events)
        else:
            parts.statuses.extend(events)
    elif kind == DIFFS:
        if parts.diffs is None:
            parts.diffs = list(events)
        else:
            parts.diffs.extend(events)
    elif parts.fills is None:
        parts.fills = list(events)
    else:
        parts.fills.extend(events)


def filtered(kind: str, events: list, accept: Callable[[str], bool] | None) -> list:
    """``events`` of stream ``kind`` whose coin ``accept`` takes (all when it is None)."""
    if accept is None or not events:
        return events
    if kind == STATUSES:
        return [status for status in events if accept(status_coin(status))]
    if kind == DIFFS:
        return [diff for diff in events if accept(diff.coin)]
    return [pair for pair in events if accept(pair[1].coin)]


class HeightBook:
    """What both assemblers keep: the blocks not handed out yet, each stream's last
    height, and the height handed out last."""

    emitted: int | None
    _pending: dict[int, Any]
    _last: dict[str, int]

    def stream_heights(self) -> dict[str, int]:
        """The last height seen in each stream."""
        return dict(self._last)

    @property
    def pending(self) -> int:
        """Blocks held, not handed out yet."""
        return len(self._pending)

    def skip_through(self, height: int) -> None:
        """The consumer's state is at ``height`` (a snapshot): forget blocks up to it."""
        if self.emitted is None or height > self.emitted:
            self.emitted = height
        for lower in [h for h in self._pending if h <= height]:
            del self._pending[lower]


class BlockAssembler(HeightBook):
    """Feed decoded lines with :meth:`add` (bad ones with :meth:`add_bad`); get Blocks back.

    ``accept_coin`` drops events of coins outside the markets filter.
    ``on_gap`` hears about a stream skipping heights. At most ``max_pending``
    incomplete blocks are held (a stopped stream would otherwise grow it
    without bound); beyond that the oldest is dropped and reported to ``on_drop``.
    """

    def __init__(
        self,
        on_gap: GapReport | None = None,
        accept_coin: Callable[[str], bool] | None = None,
        max_pending: int = 1000,
        on_drop: DropReport | None = None,
    ) -> None:
        self.on_gap = on_gap or (lambda kind, expected, got: None)
        self.on_drop = on_drop or (lambda height, waiting_for: None)
        self.accept_coin = accept_coin
        self.max_pending = max_pending
        self.emitted: int | None = None  # height of the last Block handed out
        self.old_lines = 0  # lines of blocks already emitted or passed
        self.dropped_blocks = 0  # incomplete blocks given up
        self.evicted_blocks = 0  # of which dropped because max_pending was reached
        self._pending: dict[int, Parts] = {}
        self._last: dict[str, int] = {}  # last height per stream
        self._evicted_through = -1

    def forget_above(self, height: int) -> None:
        """Forget stream heights and blocks above ``height`` (an absurd height seen before)."""
        self._last = {kind: h for kind, h in self._last.items() if h <= height}
        for higher in [h for h in self._pending if h > height]:
            del self._pending[higher]
        if self.emitted is not None and self.emitted > height:
            self.emitted = height

    # -- input ---------------------------------------------------------------
    def add(self, kind: str, line: Line) -> list[Block]:
        """One decoded line of stream ``kind``; return the blocks it completes."""
        height = line.block_number
        if not self._accept_height(kind, height):
            return []
        parts = self._parts(height, line.block_time)
        store(parts, kind, filtered(kind, line.events, self.accept_coin))
        return self._complete(height)

    def add_bad(self, kind: str, height: int | None, block_time: str | None = None) -> list[Block]:
        """A line of ``kind`` that could not be decoded (``height`` if known).

        An unreadable line's height is the stream's next one.
        """
        if height is None and kind in self._last:
            height = self._last[kind] + 1
        if height is None or not self._accept_height(kind, height):
            return []
        if kind != FILLS:
            return []  # the block stays incomplete; the caller resyncs
        parts = self._parts(height, block_time)
        parts.fills_ok = False
        store(parts, kind, [])
        return self._complete(height)

    # -- internals -------------------------------------------------------------
    def _accept_height(self, kind: str, height: int) -> bool:
        if self.emitted is not None and height <= self.emitted:
            self.old_lines += 1
            return False
        last = self._last.get(kind)
        if last is not None and height <= last:
            self.old_lines += 1
            return False
        if last is not None and height > max(last, self.emitted or last) + 1:
            self.on_gap(kind, max(last, self.emitted or last) + 1, height)
        self._last[kind] = height
        if height <= self._evicted_through:
            self.old_lines += 1  # its block was dropped already (on_drop)
            return False
        return True

    def _parts(self, height: int, block_time: str | None) -> Parts:
        parts = self._pending.get(height)
        if parts is None:
            parts = self._pending[height] = Parts(block_time or "")
            if len(self._pending) > self.max_pending:
                self._evict_oldest()
        elif not parts.block_time and block_time:
            parts.block_time = block_time
        return parts

    def _evict_oldest(self) -> None:
        oldest = min(self._pending)
        parts = self._pending.pop(oldest)
        waiting_for = [k for k in STREAM_KINDS if k not in parts.kinds]
        self._evicted_through = max(self._evicted_through, oldest)
        self.dropped_blocks += 1
        self.evicted_blocks += 1
        self.on_drop(oldest, waiting_for)

    def _complete(self, height: int) -> list[Block]:
        parts = self._pending.get(height)
        if parts is None or len(parts.kinds) < 3:
            return []
        # every stream is past the lower pending heights: they can never complete
        for lower in [h for h in self._pending if h < height]:
            del self._pending[lower]
            self.dropped_blocks += 1
        del self._pending[height]
        self.emitted = height
        return [parts.block(height)]
