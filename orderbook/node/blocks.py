"""Block assembly: the three streams' lines -> whole Blocks in height order.

By-block mode: each stream has one line per block, heights consecutive; a
block is complete once all three lines arrived (the diffs line often comes
first). A stream that skips a height lost a line: that is a gap.

Streaming mode: one event per line, rows of one block interleave across the
files; a block is complete in a stream once a later block appears in that
stream, and complete overall once it is complete in all three. Every block
has at least one row in every stream (a block without events gets one row
with ``"events":[]``; checked on the mainnet capture), so a stream that skips
a height lost rows: a gap, exactly as by-block.

Blocks come out in strictly increasing height. At startup the first block of
each stream may have been read only in part; it is dropped (the snapshot
taken afterwards covers it). A bad fills line only costs that block its
trades (``fills_ok=False``); bad statuses/diffs lines are the caller's
business (resync), here they just leave their block incomplete. An
unreadable line whose height is unknown accounts for one skipped height (it
was probably that block's line), so it is not reported a second time as a gap.

At most ``max_pending`` incomplete blocks are held: when one stream lags or
stops while the others go on, the oldest incomplete block is dropped and
reported to ``on_drop`` with the streams it was still waiting for (its data
is lost: the caller resyncs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from orderbook.book.events import Block, BookDiff, Fill, OrderStatus
from orderbook.node.schema import DIFFS, FILLS, STATUSES, STREAM_KINDS, Line, status_coin, time_ms

GapReport = Callable[[str, int, int], None]  # (stream kind, expected height, got height)
DropReport = Callable[[int, list[str]], None]  # (height, streams it still waited for)


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
    ``on_gap`` hears about a stream skipping heights (both modes). At most
    ``max_pending`` incomplete blocks are held (a stopped stream would
    otherwise grow it without bound); beyond that the oldest is dropped and
    reported to ``on_drop``.
    """

    def __init__(
        self,
        mode: str,
        on_gap: GapReport | None = None,
        accept_coin: Callable[[str], bool] | None = None,
        max_pending: int = 1000,
        on_drop: DropReport | None = None,
    ) -> None:
        if mode not in ("by_block", "streaming"):
            raise ValueError(f"unknown mode {mode!r}")
        self.streaming = mode == "streaming"
        self.on_gap = on_gap or (lambda kind, expected, got: None)
        self.on_drop = on_drop or (lambda height, waiting_for: None)
        self.accept_coin = accept_coin
        self.max_pending = max_pending
        self.emitted: int | None = None  # height of the last Block handed out
        self.old_lines = 0  # lines of blocks already emitted or passed
        self.dropped_blocks = 0  # incomplete blocks given up
        self.evicted_blocks = 0  # of which dropped because max_pending was reached
        self._pending: dict[int, _Parts] = {}
        self._last: dict[str, int] = {}  # by-block: last height per stream; streaming: current
        self._first: dict[str, int] = {}
        self._bad_unknown: dict[str, int] = dict.fromkeys(STREAM_KINDS, 0)
        self._evicted_through = -1
        self._ready_through = -1  # streaming: every stream is past this height

    def stream_heights(self) -> dict[str, int]:
        """The last height seen in each stream."""
        return dict(self._last)

    @property
    def pending(self) -> int:
        """Incomplete blocks held."""
        return len(self._pending)

    def skip_through(self, height: int) -> None:
        """The consumer's state is at ``height`` (a snapshot): forget blocks up to it."""
        if self.emitted is None or height > self.emitted:
            self.emitted = height
        for lower in [h for h in self._pending if h <= height]:
            del self._pending[lower]

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
        unreadable_before = self._bad_unknown[kind]
        if not self._accept_height(kind, height):
            return []
        parts = self._parts(height, line.block_time)
        if unreadable_before and kind == FILLS:
            parts.fills_ok = False  # the unreadable row may have been one of this block's
        self._store(parts, kind, self._filtered(kind, line.events))
        return self._complete(height)

    def add_bad(self, kind: str, height: int | None, block_time: str | None = None) -> list[Block]:
        """A line of ``kind`` that could not be decoded (``height`` if known).

        By-block, an unreadable line's height is the stream's next one.
        Streaming, it belongs to the current block or the next one: it is
        counted, and excuses one skipped height.
        """
        if height is None and kind in self._last:
            if self.streaming:
                self._bad_unknown[kind] += 1
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
        elif height > last + 1:
            self._stream_skipped(kind, last, height)
        self._bad_unknown[kind] = 0
        self._last[kind] = height
        if height <= self._evicted_through:
            self.old_lines += 1  # its block was dropped already (on_drop)
            return False
        return True

    def _stream_skipped(self, kind: str, last: int, height: int) -> None:
        missing = height - last - 1
        bad = self._bad_unknown[kind]
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
                self._evict_oldest()
        elif not parts.block_time and block_time:
            parts.block_time = block_time
        return parts

    def _evict_oldest(self) -> None:
        oldest = min(self._pending)
        parts = self._pending.pop(oldest)
        if self.streaming:  # complete in a stream once that stream moved past it
            waiting_for = [k for k in STREAM_KINDS if self._last.get(k, oldest) <= oldest]
        else:
            waiting_for = [k for k in STREAM_KINDS if k not in parts.kinds]
        self._evicted_through = max(self._evicted_through, oldest)
        self.dropped_blocks += 1
        self.evicted_blocks += 1
        self.on_drop(oldest, waiting_for)

    def _store(self, parts: _Parts, kind: str, events: list) -> None:
        # extend in place: a streaming block gathers ~1,000 one-event rows
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
        if ready_through == self._ready_through:
            return []  # rows at or below it are refused as old: nothing new can be ready
        self._ready_through = ready_through
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
