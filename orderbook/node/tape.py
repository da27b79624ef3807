"""Trades straight from the node's fills lines, whatever state the book is in.

A trade is the node's fact (two fills sharing a ``tid``), not the book's: it
needs no snapshot, no resync and no applied block. So trades are paired here,
from every fills line the intake decodes, in file order, and handed to the
listeners' ``trades_paired`` once per tailer batch. Resyncs, buffered or
dropped blocks, bad statuses/diffs lines, late streaming rows, validation and
the bootstrap-to-live hand-over cannot lose or repeat a trade, because none
of them is on this path. A fills line at a height the tape already passed
(a file read again) is skipped: every trade is published once, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orderbook.book.trades import TradePairer
from orderbook.node.schema import FillLine

Trades = dict[str, list[dict[str, Any]]]  # coin -> its trades, in order


class TradeTape:
    """Pair fills into trades as their lines are read; publish each batch's trades.

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
        self._batch: Trades = {}

    def add(self, line: FillLine) -> None:
        """One decoded fills line (in file order)."""
        height = line.block_number
        last = self.height
        if last is not None and (height < last or (height == last and not self.streaming)):
            self.skipped_lines += 1
            return
        self.height = height
        for coin, trades in self.pairer.feed(height, line.events, self.accept).items():
            self._batch.setdefault(coin, []).extend(trades)

    def flush(self) -> None:
        """Publish the trades paired since the last flush (the end of a tailer batch)."""
        if self._batch:
            batch, self._batch = self._batch, {}
            self.publish(batch)
