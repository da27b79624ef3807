"""All coins' books: the state, fed one block at a time.

This module's public API (with the views :class:`Books` inherits from
:mod:`orderbook.book.views`) is the contract between the book and its users
(ingestion in ``orderbook.node``, fan-out in ``orderbook.feed``).

Diffs are the authority on what rests (node-data.md §4); statuses only
supply the metadata of ``new`` orders. Inconsistencies never raise: they are
reported in ``BlockResult.errors`` and the rest of the block still applies.
The apply loop (``_apply_diffs``) is inlined on purpose: it runs ~500 times
a block, and every call or attribute lookup saved there shows in bench_book.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import msgspec

from orderbook.book.coin_book import EMPTY_TOP, CoinBook, top_of
from orderbook.book.events import REMOVE, Block, BookDiff, NewDiff, OrderStatus
from orderbook.book.order import (
    Order,
)
from orderbook.book.side import ASK, BID
from orderbook.book.staging import BookStaging
from orderbook.book.statuses import BlockStatuses
from orderbook.book.views import BookViews, UnknownDex
from orderbook.fixed import MEMO as _parsed
from orderbook.fixed import parse_cached as _parse

_intern = sys.intern


@dataclass(frozen=True, slots=True)
class BookError:
    """An inconsistency found while applying a block (the coin needs a resync)."""

    coin: str
    oid: int
    message: str  # e.g. "remove of unknown oid", "new of existing oid"


class CoinUpdate(msgspec.Struct):
    """What one block did to one coin's L4 book (the l4Book Updates lists).

    ``statuses`` are the block's order statuses that supplied metadata for this
    coin's ``new`` diffs (raw, as the node wrote them, in file order);
    ``diffs`` are all of the coin's diffs in file order. (A Struct: built in C,
    once per touched coin per block; empty lists are fresh per instance.)
    """

    statuses: list[OrderStatus] = []
    diffs: list[BookDiff] = []


@dataclass(slots=True)
class BlockResult:
    """The outcome of ``Books.apply_block``."""

    height: int
    time_ms: int
    changed: set[str] = field(default_factory=set)  # coins whose resting orders changed
    updates: dict[str, CoinUpdate] = field(default_factory=dict)  # coins the block touched
    bbo_changed: set[str] = field(default_factory=set)  # coins whose best bid/ask changed
    mids_changed: bool = False
    errors: list[BookError] = field(default_factory=list)


def freeze_after_load() -> None:
    """Collect once, then move every live object out of the GC's reach.

    Call after a bulk snapshot load: a full collection walks every tracked
    object, ~464 ms over a million resting orders when not frozen. Frozen
    objects are never collected, which is fine for orders (they are freed by
    reference counting when they leave the book).
    """
    gc.collect()
    gc.freeze()


class _Skipped(Exception):
    """A diff that cannot apply to the book as it is (its message goes in a BookError)."""


__all__ = ["BlockResult", "BookError", "Books", "CoinUpdate", "UnknownDex", "freeze_after_load"]


class Books(BookStaging, BookViews):
    """Every coin's L4 book. Synchronous; fed one block at a time.

    ``accept_coin`` is the markets filter (None: every coin). Snapshot loads
    and staging copies (load_orders, replace_all, adopt_coin, ...) come from
    :class:`BookStaging`, the views (l2_view, bbo_view, all_mids, l4_snapshot)
    from :class:`BookViews`.
    """

    height: int | None  # height of the last applied block or loaded snapshot
    time_ms: int | None  # its block time, epoch ms

    def __init__(self, accept_coin: Callable[[str], bool] | None = None) -> None:
        self.height = None
        self.time_ms = None
        self._accept_coin = accept_coin
        self._accepted: dict[str, bool] = {}
        self._books: dict[str, CoinBook] = {}
        self._orders: dict[int, Order] = {}  # every resting order, across coins
        self._discarded: list[CoinBook] = []  # let go of, waiting for dismantle()
        self._tops: dict[str, tuple[Any, ...]] = {}  # coin -> _top() as last reported
        self._init_views()

    # -- feeding -----------------------------------------------------------
    def accepts(self, coin: str) -> bool:
        """Whether the markets filter keeps ``coin`` (cached per coin)."""
        accepted = self._accepted.get(coin)
        if accepted is None:
            accepted = self._accepted[coin] = self._accept_coin is None or bool(
                self._accept_coin(coin)
            )
        return accepted

    def apply_block(self, block: Block) -> BlockResult:
        """Apply one block (diffs in file order are the authority)."""
        result = BlockResult(block.height, block.time_ms)
        statuses = BlockStatuses(block.statuses, block.time_ms)
        touched = self._apply_diffs(block.diffs, statuses, result)
        updates = result.updates
        for coin, used in statuses.used.items():
            used.sort()
            updates[coin].statuses = [status for _, status in used]
        self.height, self.time_ms = block.height, block.time_ms
        views = self._views
        if views:
            for coin in result.changed:
                views.pop(coin, None)
        tops, books, bbo_changed = self._tops, self._books, result.bbo_changed
        for coin in touched:
            top = top_of(books[coin])
            last = tops.get(coin, EMPTY_TOP)
            if top != last:
                tops[coin] = top
                bbo_changed.add(coin)
                if top[0] != last[0] or top[1] != last[1]:  # a best price moved
                    result.mids_changed |= self._refresh_mid(coin)
        return result

    def _apply_diffs(
        self, diffs: list[BookDiff], statuses: BlockStatuses, result: BlockResult
    ) -> set[str]:
        """Apply ``diffs`` in order; return the coins whose best level a diff touched.

        The hot loop (~500 diffs a block): the diff kind is told apart once
        (``remove`` is the only string body); remove and update are inlined,
        new has its own method; failures raise and become BookErrors here. A
        diff touched the best level when ``side.keys[0] == level.key``.
        """
        changed, errors, updates = result.changed, result.errors, result.updates
        orders = self._orders
        touched: set[str] = set()
        entered: dict[str, tuple[CoinBook, list[BookDiff]] | tuple[()]] = {}
        for diff in diffs:
            coin = diff.coin
            entry = entered.get(coin)
            if entry is None:
                entry = entered[coin] = self._enter(coin, updates)
            if not entry:  # the markets filter drops this coin
                continue
            book, coin_diffs = entry
            coin_diffs.append(diff)
            body = diff.raw_book_diff
            try:
                if body.__class__ is str:  # "remove"
                    order = orders.pop(diff.oid, None)
                    if order is None or body != REMOVE:
                        self._not_removed(diff, order)
                    level = order.level
                    side = level.side
                    if side.coin != coin:
                        self._not_removed(diff, order)
                    queue = level.orders
                    del queue[order.oid]
                    level.size -= order.sz
                    if side.keys[0] == level.key:
                        touched.add(coin)
                    if not queue:
                        side.drop_level(level)
                elif body.new is not None:
                    if self._new(book, diff, body.new, statuses, result, touched):
                        touched.add(coin)
                else:
                    update = body.update
                    if update is None:
                        raise ValueError("raw_book_diff has neither new nor update")
                    sz = _parsed.get(update.newSz)
                    if sz is None:
                        sz = _parse(update.newSz)
                    order = orders.get(diff.oid)
                    if order is None:
                        raise _Skipped("update of unknown oid")
                    level = order.level
                    side = level.side
                    if side.coin != coin:
                        raise _Skipped(f"update of oid resting in {side.coin!r}")
                    level.size += sz - order.sz
                    order.sz = sz
                    if side.keys[0] == level.key:
                        touched.add(coin)
            except _Skipped as exc:
                errors.append(BookError(coin, diff.oid, exc.args[0]))
                continue
            except ValueError as exc:  # FixedError too: a bad px/sz/side
                errors.append(BookError(coin, diff.oid, f"bad diff: {exc}"))
                continue
            changed.add(coin)
        return touched

    def _add_coin(self, coin: str) -> CoinBook:
        """A new, empty book for ``coin`` (its dex becomes known)."""
        book = self._books[coin] = CoinBook(_intern(coin))
        self._note_coin(coin)
        return book

    def _not_removed(self, diff: BookDiff, order: Order | None) -> NoReturn:
        """Why a "remove" diff cannot apply (the order, if popped, is put back)."""
        if order is not None:
            self._orders[order.oid] = order
        if diff.raw_book_diff != REMOVE:
            raise ValueError(f"unknown raw_book_diff {diff.raw_book_diff!r}")
        if order is None:
            raise _Skipped("remove of unknown oid")
        coin = order.level.side.coin  # type: ignore[union-attr]
        raise _Skipped(f"remove of oid resting in {coin!r}")

    def _enter(
        self, coin: str, updates: dict[str, CoinUpdate]
    ) -> tuple[CoinBook, list[BookDiff]] | tuple[()]:
        """First diff of ``coin`` in this block: its book and diffs list (() if filtered)."""
        accepted = self._accepted.get(coin)
        if accepted is None:
            accepted = self.accepts(coin)
        if not accepted:
            return ()
        book = self._books.get(coin)
        if book is None:
            book = self._add_coin(coin)
        update = updates[coin] = CoinUpdate([], [])
        return book, update.diffs

    def _new(
        self,
        book: CoinBook,
        diff: BookDiff,
        body: NewDiff,
        statuses: BlockStatuses,
        result: BlockResult,
        touched: set[str],
    ) -> bool:
        """Rest a new order (metadata from its status); True when in the best level."""
        name = diff.side
        if name == BID:
            side = book.bids
        elif name == ASK:
            side = book.asks
        else:
            raise ValueError(f"{book.coin}: side must be 'B' or 'A', not {name!r}")
        px = _parsed.get(diff.px)
        if px is None:
            px = _parse(diff.px)
        sz = _parsed.get(body.sz)
        if sz is None:
            sz = _parse(body.sz)
        oid = diff.oid
        orders = self._orders
        existing = orders.get(oid)
        if existing is not None:
            result.errors.append(BookError(diff.coin, oid, "new of existing oid (replaced)"))
            self._drop(existing, result, touched)
        order = statuses.order(oid, diff.coin, _intern(diff.user), sz)
        level = side.levels.get(px)
        if level is None:
            level = side.add_level(px)
        before = body.insertBefore
        if before is None:
            level.orders[oid] = order
            level.size += sz
            order.level = level
        elif not level.insert_before(order, before):
            level.append(order)
            message = f"insertBefore of unknown oid {before} (put at back)"
            result.errors.append(BookError(diff.coin, oid, message))
        orders[oid] = order
        return side.keys[0] == level.key

    def _drop(self, order: Order, result: BlockResult, touched: set[str]) -> None:
        """Take a resting order out of whichever coin holds it."""
        side = order.level.side  # type: ignore[union-attr]
        del self._orders[order.oid]
        side.remove(order)
        result.changed.add(side.coin)
        touched.add(side.coin)

    # -- queries -----------------------------------------------------------
    def coins(self) -> list[str]:
        """Every coin with a book (possibly empty), sorted."""
        return sorted(self._books)

    def order_count(self) -> int:
        """Resting orders across all coins."""
        return len(self._orders)

    def coin_count(self) -> int:
        return len(self._books)

    def book(self, coin: str) -> CoinBook:
        """The book of ``coin`` (KeyError when unknown)."""
        return self._books[coin]
