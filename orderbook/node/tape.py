"""Trades straight from the node's fills lines, in step with the book when it is live.

A trade is the node's fact (two fills sharing a ``tid``), not the book's: it
needs no snapshot, no resync and no applied block. So trades are paired here,
from every fills line the intake decodes, in file order, and nothing the
ingest state machine does to blocks (buffering, dropping, a bad
statuses/diffs line, a late streaming row, validation, the hand-over from a
snapshot to the live book) can lose or repeat one.

When they are *published* follows the book, so that a client's view is
whole: while the book is live, a block's trades are held until that block is
applied (a client subscribing at book height H gets every trade of the
blocks after H); while there is no live book (bootstrapping, resyncing)
they go out at the end of each read, in height order, and are not published
again when the buffered blocks are applied at go-live.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from orderbook.book.trades import TradePairer
from orderbook.node.schema import FillLine

Trades = dict[str, list[dict[str, Any]]]  # coin -> its trades, in order


class TradeTape:
    """Pair fills into trades as their lines are read; publish them through a height.

    ``streaming``: several rows share a block (rows of the current height are
    new); by-block: one line per block (a repeated height is a re-read).
    """

    def __init__(
        self,
        accept_coin: Callable[[str], bool] | None,
        streaming: bool,
        publish: Callable[[Trades], None],
    ) -> None:
        self.accept = accept_coin or (lambda coin: True)
        self.streaming = streaming
        self.publish = publish
        self.pairer = TradePairer()
        self.height: int | None = None  # the last fills height read
        self.skipped_lines = 0  # lines at a height already passed
        self._held: deque[tuple[int, Trades]] = deque()  # (height, its trades), in order

    @property
    def held(self) -> int:
        """Heights whose trades wait for their block to be applied."""
        return len(self._held)

    def add(self, line: FillLine) -> None:
        """One decoded fills line (in file order): its trades wait for :meth:`release`."""
        height = line.block_number
        last = self.height
        if last is not None and (height < last or (height == last and not self.streaming)):
            self.skipped_lines += 1
            return
        self.height = height
        trades = self.pairer.feed(height, line.events, self.accept)
        if trades:
            self._held.append((height, trades))

    def release(self, through: int | None) -> None:
        """Publish the held trades of blocks up to ``through`` (None: all), in order."""
        held = self._held
        out: Trades = {}
        while held and (through is None or held[0][0] <= through):
            for coin, trades in held.popleft()[1].items():
                out.setdefault(coin, []).extend(trades)
        if out:
            self.publish(out)
