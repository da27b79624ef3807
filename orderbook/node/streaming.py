"""Streaming mode: sparse one-event rows -> whole Blocks, never waiting on a quiet stream.

With ``--stream-with-block-info`` the node writes one row per event and **no
row at all** in a stream that has no event in a block (fills are absent from
most blocks; a quiet coin filter leaves statuses and diffs sparse too). The
node writes blocks in order, so the finalisation rule is:

- block N is final once both book streams (statuses and diffs) have shown a
  later block, or once ``grace_s`` has passed since any stream first showed a
  later block and no book stream still short of N+1 has data waiting to be
  read (``behind()``: a reader catching up a backlog meets the streams at
  different paces; the grace is for a stream that is quiet, not one we have
  not read yet);
- fills never hold a block back: fills rows of a block that is already final
  go out with the next block (trades are paired by ``tid`` across blocks);
- heights no stream wrote a row for come out as empty blocks (same block
  time as the next block), so consumers see every height; more than
  ``MAX_FILLED`` missing heights in a row are reported to ``on_gap``;
- a stream that writes ``"events":[]`` rows (dense: older writers, filtered
  captures) announces every block, so a height it skips is a gap there;
- a statuses or diffs row of a block already final is *late*: it is not
  applied, ``on_late(kind, height, coins)`` hears about it (the caller
  counts it and resyncs those coins);
- at startup, blocks up to the highest one with a row in the files when
  reading began may have been joined in the middle (:meth:`trust_from`, from
  the files' last lines then; without it, the first block seen): they are
  dropped; the snapshot taken afterwards covers them. Blocks the node starts
  after that are read whole in every stream (it writes blocks in order).

The assembler has no timer of its own (``now`` is the caller's clock): a
:class:`GraceTimer` on the reactor asks :meth:`~StreamAssembler.due` when the
next grace ends and calls :meth:`~StreamAssembler.flush` then.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from orderbook.book.events import Block
from orderbook.node.blocks import GapReport, HeightBook, Parts, filtered, store
from orderbook.node.schema import DIFFS, FILLS, STATUSES, Line, status_coin

BOOK_STREAMS = (STATUSES, DIFFS)
LateReport = Callable[[str, int, set[str]], None]  # (stream kind, height, coins touched)
DEFAULT_GRACE_S = 0.1
_EPSILON = 1e-9  # float slack: a timer set for `due` fires at `due`
MAX_FILLED = 100  # empty blocks made up for heights no stream wrote; more is a gap


class StreamAssembler(HeightBook):
    """Feed decoded rows with :meth:`add` (bad ones with :meth:`add_bad`); get Blocks back."""

    def __init__(
        self,
        now: Callable[[], float],
        grace_s: float = DEFAULT_GRACE_S,
        accept_coin: Callable[[str], bool] | None = None,
        on_late: LateReport | None = None,
        on_gap: GapReport | None = None,
        max_pending: int = 1000,
        behind: Callable[[], set[str]] = set,
    ) -> None:
        self.now = now
        self.behind = behind  # streams with data waiting to be read (the tailer's view)
        self.grace_s = grace_s
        self.accept_coin = accept_coin
        self.on_late = on_late or (lambda kind, height, coins: None)
        self.on_gap = on_gap or (lambda kind, expected, got: None)
        self.max_pending = max_pending
        self.emitted: int | None = None  # height of the last Block handed out
        self.old_lines = 0  # rows below the trusted start or of given-up blocks
        self.late_rows = 0  # statuses/diffs rows of blocks already final
        self._pending: dict[int, Parts] = {}
        self._last: dict[str, int] = {}  # highest height seen per stream
        self._rises: deque[tuple[int, float]] = deque()  # (new top height, when seen)
        self._trusted_from: int | None = None
        self._late_fills: list = []  # fills rows of final blocks: go with the next block
        self._late_fills_ok = True
        self._dense: set[str] = set()  # streams seen writing empty rows

    def skip_through(self, height: int) -> None:
        """The consumer's state is at ``height`` (a snapshot): forget blocks up to it."""
        super().skip_through(height)
        self._late_fills = []

    def forget_above(self, height: int) -> None:
        """Forget stream heights and blocks above ``height`` (an absurd height seen before)."""
        self._last = {kind: h for kind, h in self._last.items() if h <= height}
        for higher in [h for h in self._pending if h > height]:
            del self._pending[higher]
        while self._rises and self._rises[-1][0] > height:
            self._rises.pop()

    # -- input ---------------------------------------------------------------
    def trust_from(self, height: int) -> None:
        """Rows of blocks from ``height`` on are all read: reading began after the
        last row of ``height - 1`` in every file (or at the files' start)."""
        self._trusted_from = height

    def add(self, kind: str, line: Line) -> list[Block]:
        """One decoded row of stream ``kind``; return the blocks now final."""
        height = line.block_number
        if self._trusted_from is None:  # reading began inside this block, maybe
            self._trusted_from = height + 1
        if height < self._trusted_from:
            self.old_lines += 1
            return []
        if not line.events:
            self._dense.add(kind)
        events = filtered(kind, line.events, self.accept_coin)
        if self.emitted is not None and height <= self.emitted:
            self._late(kind, height, events)
            return self._final()
        self._seen(kind, height)
        parts = self._pending.get(height)
        if parts is None:
            parts = self._pending[height] = Parts(line.block_time)
        store(parts, kind, events)
        return self._final()

    def add_bad(self, kind: str, height: int | None, block_time: str | None = None) -> list[Block]:
        """A row of ``kind`` that could not be decoded (``height`` if known).

        A bad fills row costs its block's trades (the newest block's when its
        height is unknown); statuses and diffs are the caller's business (resync).
        """
        if kind != FILLS:
            return []
        if height is None:
            height = self._last.get(FILLS, self.emitted)
        parts = self._pending.get(height) if height is not None else None
        if parts is not None:
            parts.fills_ok = False
        elif height is not None and self.emitted is not None and height <= self.emitted:
            self._late_fills_ok = False
        return []

    def due(self) -> float | None:
        """When the grace of the oldest pending block ends (None: nothing to wait for)."""
        if not self._pending:
            return None
        since = self._later_seen(min(self._pending))
        return None if since is None else since + self.grace_s

    def flush(self) -> list[Block]:
        """The blocks final by now (call when :meth:`due` is reached)."""
        return self._final()

    # -- internals -------------------------------------------------------------
    def _seen(self, kind: str, height: int) -> None:
        last = self._last.get(kind, -1)
        if kind in self._dense and last >= 0 and height > max(last, self.emitted or last) + 1:
            self.on_gap(kind, max(last, self.emitted or last) + 1, height)
        if height > last:
            self._last[kind] = height
        if not self._rises or height > self._rises[-1][0]:
            self._rises.append((height, self.now()))

    def _later_seen(self, height: int) -> float | None:
        """When a block above ``height`` was first seen in any stream."""
        for top, when in self._rises:
            if top > height:
                return when
        return None

    def _is_final(self, height: int) -> bool:
        short = {kind for kind in BOOK_STREAMS if self._last.get(kind, -1) <= height}
        if not short:
            return True
        since = self._later_seen(height)
        if since is None:
            return False
        if len(self._pending) > self.max_pending:
            return True
        return self.now() + _EPSILON >= since + self.grace_s and not short & self.behind()

    def _final(self) -> list[Block]:
        blocks: list[Block] = []
        while self._pending:
            height = min(self._pending)
            if not self._is_final(height):
                break
            blocks += self._emit(height, self._pending.pop(height))
        while self._rises and self.emitted is not None and self._rises[0][0] <= self.emitted:
            self._rises.popleft()
        return blocks

    def _emit(self, height: int, parts: Parts) -> list[Block]:
        if self._late_fills or not self._late_fills_ok:
            parts.fills = self._late_fills + (parts.fills or [])
            parts.fills_ok = parts.fills_ok and self._late_fills_ok
            self._late_fills, self._late_fills_ok = [], True
        blocks = self._filled(height, parts.block_time)
        blocks.append(parts.block(height))
        self.emitted = height
        return blocks

    def _filled(self, height: int, block_time: str) -> list[Block]:
        """Empty blocks for the heights between the last one out and ``height``.

        Only heights whose rows would all have been read: below the trusted
        start nothing is known (the consumer sees the jump and resyncs).
        """
        if self.emitted is None or height == self.emitted + 1:
            return []
        start = max(self.emitted + 1, self._trusted_from or 0)
        if height - start > MAX_FILLED:
            self.on_gap(STATUSES, start, height)
            return []
        return [Parts(block_time).block(h) for h in range(start, height)]

    def _late(self, kind: str, height: int, events: list) -> None:
        if kind == FILLS:
            self._late_fills.extend(events)
            return
        self.late_rows += 1
        if kind == STATUSES:
            coins = {status_coin(status) for status in events}
        else:
            coins = {diff.coin for diff in events}
        self.on_late(kind, height, coins)


class GraceTimer:
    """One reactor timer: flush the assembler when its oldest block's grace ends.

    A grace that is over while a stream is still being caught up is looked at
    again every ``recheck_s`` (new lines re-check it anyway).
    """

    recheck_s = 0.01

    def __init__(
        self,
        reactor: Any,
        assembler: Callable[[], StreamAssembler],
        deliver: Callable[[list[Block]], None],
    ) -> None:
        self.reactor = reactor
        self.assembler = assembler  # the current one (replaced after a failed bootstrap)
        self.deliver = deliver
        self._call: Any = None

    def arm(self) -> None:
        """(Re)schedule the flush for the current oldest block (after each line or flush)."""
        due = self.assembler().due()
        call = self._call
        if call is not None and call.active():
            if due is not None and call.getTime() <= due:
                return
            call.cancel()
        self._call = None
        if due is not None:
            delay = due - self.reactor.seconds()
            self._call = self.reactor.callLater(delay if delay > 0 else self.recheck_s, self._over)

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _over(self) -> None:
        self._call = None
        self.deliver(self.assembler().flush())
