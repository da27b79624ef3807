"""All coins' books: apply one block at a time, serve views (CONTRACT STUB).

This module's public API is the contract between the book and its users
(ingestion in ``orderbook.node``, fan-out in ``orderbook.feed``). Bodies are
filled in by the book package; signatures and return shapes are fixed.

Views return the exact ``data`` object of the client channel (see
../shared/docs/ws-api.md), with prices and sizes already canonical strings, so
the feed only wraps and serializes them. Views are cached per block: asking
twice in one block for the same (coin, params) returns the same object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from orderbook.book.events import Block, BookDiff, OrderStatus


@dataclass(frozen=True, slots=True)
class BookError:
    """An inconsistency found while applying a block (the coin needs a resync)."""

    coin: str
    oid: int
    message: str  # e.g. "remove of unknown oid", "new of existing oid"


@dataclass(slots=True)
class CoinUpdate:
    """What one block did to one coin's L4 book (the l4Book Updates lists).

    ``statuses`` are the block's order statuses that supplied metadata for this
    coin's ``new`` diffs (raw, as the node wrote them); ``diffs`` are all of
    the coin's diffs in file order.
    """

    statuses: list[OrderStatus] = field(default_factory=list)
    diffs: list[BookDiff] = field(default_factory=list)


@dataclass(slots=True)
class BlockResult:
    """The outcome of ``Books.apply_block``."""

    height: int
    time_ms: int
    changed: set[str] = field(default_factory=set)  # coins whose resting orders changed
    updates: dict[str, CoinUpdate] = field(default_factory=dict)  # coins the block touched
    trades: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # coin -> trades data
    bbo_changed: set[str] = field(default_factory=set)  # coins whose best bid/ask changed
    mids_changed: bool = False
    errors: list[BookError] = field(default_factory=list)


class Books:
    """Every coin's L4 book. Synchronous; fed one block at a time.

    ``accept_coin`` is the markets filter (None: every coin).
    """

    height: int | None  # height of the last applied block or loaded snapshot
    time_ms: int | None  # its block time, epoch ms

    def __init__(self, accept_coin: Callable[[str], bool] | None = None) -> None:
        raise NotImplementedError

    # -- feeding -----------------------------------------------------------
    def apply_block(self, block: Block) -> BlockResult:
        """Apply one block (diffs in file order are the authority)."""
        raise NotImplementedError

    def load_orders(self, coin: str, side: str, entries: Iterable[tuple[str, Any]]) -> None:
        """Append snapshot ``(user, StatusOrder)`` entries (best first, queue order).

        May be called many times per coin/side with consecutive chunks, so a
        loader can slice a big book.
        """
        raise NotImplementedError

    def set_height(self, height: int, time_ms: int | None) -> None:
        """Declare the height (and time) the loaded state is at."""
        raise NotImplementedError

    def replace_all(self, other: Books) -> set[str]:
        """Take over ``other``'s whole state; return every coin of old or new."""
        raise NotImplementedError

    def compare_coin(self, other: Books, coin: str) -> list[str]:
        """Differences between our and ``other``'s book of ``coin`` (empty: equal)."""
        raise NotImplementedError

    def adopt_coin(self, other: Books, coin: str) -> None:
        """Replace our book of ``coin`` with ``other``'s."""
        raise NotImplementedError

    # -- views -------------------------------------------------------------
    def coins(self) -> list[str]:
        raise NotImplementedError

    def l2_view(
        self,
        coin: str,
        n_sig_figs: int | None = None,
        mantissa: int | None = None,
        n_levels: int = 20,
    ) -> dict[str, Any]:
        raise NotImplementedError

    def bbo_view(self, coin: str) -> dict[str, Any]:
        raise NotImplementedError

    def all_mids(self, dex: str | None = None) -> dict[str, str]:
        raise NotImplementedError

    def l4_snapshot(self, coin: str) -> dict[str, Any]:
        raise NotImplementedError
