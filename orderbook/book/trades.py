"""Fills -> trades: the two sides of a trade are paired by ``tid``.

By-block files put both fills of a trade next to each other, but streaming
mode can split them across blocks, so an unpaired fill waits (at most
``max_age`` blocks) for its partner. A fill of a trade paired in the last
``max_age`` blocks (its line read again) pairs nothing: no trade twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from orderbook import fixed
from orderbook.book.events import Fill

MAX_AGE_BLOCKS = 100


def make_trade(first: tuple[str, Fill], second: tuple[str, Fill]) -> dict[str, Any]:
    """The trades-channel object of one trade from its two fills.

    ``side`` is the taker's (the fill with ``crossed`` true); ``users`` is
    ``[buyer, seller]``.
    """
    (user_a, fill_a), (user_b, fill_b) = first, second
    taker = fill_a if fill_a.crossed or not fill_b.crossed else fill_b
    buyer, seller = (user_a, user_b) if fill_a.side == "B" else (user_b, user_a)
    return {
        "coin": fill_a.coin,
        "side": taker.side,
        "px": fixed.canonical(fill_a.px),
        "sz": fixed.canonical(fill_a.sz),
        "time": fill_a.time,
        "hash": fill_a.hash,
        "tid": fill_a.tid,
        "users": [buyer, seller],
    }


class TradePairer:
    """Pairs fills by tid across blocks; keeps unpaired ones (and paired tids) for a while."""

    def __init__(self, max_age: int = MAX_AGE_BLOCKS) -> None:
        self.max_age = max_age
        self._pending: dict[int, tuple[int, str, Fill]] = {}  # tid -> (height, user, fill)
        self._paired: dict[int, int] = {}  # tid -> height it was paired at (recent ones)

    def pending_count(self) -> int:
        return len(self._pending)

    def feed(
        self,
        height: int,
        fills: Iterable[tuple[str, Fill]],
        accept: Callable[[str], bool],
    ) -> dict[str, list[dict[str, Any]]]:
        """Trades completed by this block's ``fills``, per coin, in order."""
        trades: dict[str, list[dict[str, Any]]] = {}
        pending, paired = self._pending, self._paired
        for user, fill in fills:
            if not accept(fill.coin):
                continue
            partner = pending.pop(fill.tid, None)
            if partner is None:
                if fill.tid not in paired:  # else: a fill of a trade already out
                    pending[fill.tid] = (height, user, fill)
                continue
            paired[fill.tid] = height
            trade = make_trade((partner[1], partner[2]), (user, fill))
            trades.setdefault(fill.coin, []).append(trade)
        self._expire(height)
        return trades

    def _expire(self, height: int) -> None:
        pending, paired = self._pending, self._paired
        oldest = height - self.max_age
        while pending:
            tid, (born, _, _) = next(iter(pending.items()))
            if born >= oldest:
                break
            del pending[tid]
        while paired:
            tid, born = next(iter(paired.items()))
            if born >= oldest:
                break
            del paired[tid]
