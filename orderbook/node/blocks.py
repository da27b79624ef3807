"""Block assembly: the three streams' lines -> whole Blocks in height order.

By-block mode: each stream has one line per block, heights consecutive; a
block is complete once all three lines arrived (the diffs line often comes
first). A stream that skips a height lost a line: that is a gap.

Streaming mode: one event per line, rows of one block interleave across the
files; a block is complete in a stream once a later block appears in that
stream, and complete overall once it is complete in all three. A block with
no events in a stream may have no row there, so skipped heights are not gaps.

Blocks come out in strictly increasing height. At startup the first block of
each stream may have been read only in part; it is dropped (the snapshot
taken afterwards covers it). A bad fills line only costs that block its
trades (``fills_ok=False``); bad statuses/diffs lines are the caller's
business (resync), here they just leave their block incomplete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from orderbook.book.events import Block, BookDiff, Fill, OrderStatus
from orderbook.node.schema import DIFFS, FILLS, STATUSES, STREAM_KINDS, Line, status_coin, time_ms

GapReport = Callable[[str, int, int], None]  # (stream kind, expected height, got height)


@dataclass
class _Parts:
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


class BlockAssembler:
    """Feed decoded lines with :meth:`add` (bad ones with :meth:`add_bad`); get Blocks back.

    ``accept_coin`` drops events of coins outside the markets filter.
    ``on_gap`` hears about a by-block stream skipping heights. At most
    ``max_pending`` incomplete blocks are held (a stopped stream would
    otherwise grow it without bound); the oldest are dropped beyond that.
    """

    def __init__(
        self,
        mode: str,
        on_gap: GapReport | None = None,
        accept_coin: Callable[[str], bool] | None = None,
        max_pending: int = 1000,
    ) -> None:
        if mode not in ("by_block", "streaming"):
            raise ValueError(f"unknown mode {mode!r}")
        self.streaming = mode == "streaming"
        self.on_gap = on_gap or (lambda kind, expected, got: None)
        self.accept_coin = accept_coin
        self.max_pending = max_pending
        self.emitted: int | None = None  # height of the last Block handed out
        self.old_lines = 0  # lines of blocks already emitted or passed
        self.dropped_blocks = 0  # incomplete blocks given up
        self._pending: dict[int, _Parts] = {}
        self._last: dict[str, int] = {}  # by-block: last height per stream; streaming: current
        self._first: dict[str, int] = {}
        self._bad_unknown: dict[str, int] = dict.fromkeys(STREAM_KINDS, 0)

    def stream_heights(self) -> dict[str, int]:
        """The last height seen in each stream."""
        return dict(self._last)

    # -- input ---------------------------------------------------------------
    @property
    def trusted_from(self) -> int | None:
        """The lowest height whose rows were all read (None until every stream spoke)."""
        if len(self._first) < len(STREAM_KINDS):
            return None
        return max(self._first.values())

    def add(self, kind: str, line: Line, at_file_start: bool = False) -> list[Block]:
        """One decoded line of stream ``kind``; return the blocks it completes.

        ``at_file_start``: the line is the first of its file, so a stream's
        first block is known to be whole (streaming mode).
        """
        height = line.block_number
        if kind not in self._first and self.streaming and not at_file_start:
            self._first[kind] = height + 1  # we may have joined in the middle of this block
        if not self._accept_height(kind, height):
            return []
        parts = self._parts(height, line.block_time)
        self._store(parts, kind, self._filtered(kind, line.events))
        return self._complete(height)

    def add_bad(self, kind: str, height: int | None, block_time: str | None = None) -> list[Block]:
        """A line of ``kind`` that could not be decoded (``height`` if known).

        By-block, an unreadable line's height is the stream's next one.
        """
        if height is None and kind in self._last:
            if self.streaming:
                if kind == FILLS and (parts := self._pending.get(self._last[FILLS])):
                    parts.fills_ok = False
                return []
            height = self._last[kind] + 1
        if height is None:
            self._bad_unknown[kind] += 1
            return []
        if not self._accept_height(kind, height):
            return []
        if kind != FILLS:
            return []  # the block stays incomplete; the caller resyncs
        parts = self._parts(height, block_time)
        parts.fills_ok = False
        self._store(parts, kind, [])
        return self._complete(height)

    # -- internals -------------------------------------------------------------
    def _accept_height(self, kind: str, height: int) -> bool:
        if self.emitted is not None and height <= self.emitted:
            self.old_lines += 1
            return False
        last = self._last.get(kind)
        if last is None:
            self._first.setdefault(kind, height)
        elif height < last or (height == last and not self.streaming):
            self.old_lines += 1
            return False
        elif height > last + 1 and not self.streaming:
            self._stream_skipped(kind, last, height)
        self._last[kind] = height
        return True

    def _stream_skipped(self, kind: str, last: int, height: int) -> None:
        missing = height - last - 1
        bad = self._bad_unknown[kind]
        self._bad_unknown[kind] = 0
        if bad >= missing:
            if kind == FILLS:  # bad fills lines cost only the trades
                for lost in range(last + 1, height):
                    parts = self._parts(lost, None)
                    parts.fills_ok = False
                    self._store(parts, FILLS, [])
            return
        self.on_gap(kind, last + 1, height)

    def _parts(self, height: int, block_time: str | None) -> _Parts:
        parts = self._pending.get(height)
        if parts is None:
            parts = self._pending[height] = _Parts(block_time or "")
            if len(self._pending) > self.max_pending:
                del self._pending[min(self._pending)]
                self.dropped_blocks += 1
        elif not parts.block_time and block_time:
            parts.block_time = block_time
        return parts

    def _store(self, parts: _Parts, kind: str, events: list) -> None:
        parts.kinds.add(kind)
        if kind == STATUSES:
            parts.statuses = events if parts.statuses is None else parts.statuses + events
        elif kind == DIFFS:
            parts.diffs = events if parts.diffs is None else parts.diffs + events
        else:
            parts.fills = events if parts.fills is None else parts.fills + events

    def _filtered(self, kind: str, events: list) -> list:
        accept = self.accept_coin
        if accept is None or not events:
            return events
        if kind == STATUSES:
            return [status for status in events if accept(status_coin(status))]
        if kind == DIFFS:
            return [diff for diff in events if accept(diff.coin)]
        return [pair for pair in events if accept(pair[1].coin)]

    def _complete(self, height: int) -> list[Block]:
        if self.streaming:
            return self._complete_streaming()
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

    def _complete_streaming(self) -> list[Block]:
        if len(self._last) < 3:
            return []
        ready_through = min(self._last.values()) - 1
        start = self.trusted_from
        blocks = []
        for height in sorted(h for h in self._pending if h <= ready_through):
            parts = self._pending.pop(height)
            if height < start:
                self.dropped_blocks += 1
                continue
            blocks.append(parts.block(height))
            self.emitted = height
        return blocks
