"""All coins' books: apply one block at a time, serve views.

This module's public API is the contract between the book and its users
(ingestion in ``orderbook.node``, fan-out in ``orderbook.feed``).

Views return the exact ``data`` object of the client channel (see
../shared/docs/ws-api.md), with prices and sizes already canonical strings, so
the feed only wraps and serializes them. Views are cached: asking twice in one
block for the same (coin, params) returns the same object, and the expensive
part (the levels) is only rebuilt after a block that changed the coin. Views
are shared objects: callers must not mutate them.

Diffs are the authority on what rests (node-data.md §4); statuses only
supply the metadata of ``new`` orders. Inconsistencies never raise: they are
reported in ``BlockResult.errors`` and the rest of the block still applies.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import msgspec

from orderbook import fixed
from orderbook.book import l2
from orderbook.book.book import Book, compare_books
from orderbook.book.events import REMOVE, Block, BookDiff, NewDiff, OrderStatus
from orderbook.book.order import (
    Order,
    encode_cloid,
    meta_of,
)
from orderbook.book.side import ASK, BID
from orderbook.book.statuses import BlockStatuses
from orderbook.book.trades import TradePairer

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
    trades: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # coin -> trades data
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


_EMPTY_TOP: tuple[Any, ...] = (None,) * 6


def _top(book: Book) -> tuple[Any, ...]:
    """(bid px, ask px, bid size, bid count, ask size, ask count), None for an
    empty side: to tell whether a block changed the bbo, and the mid (px only)."""
    bids, asks = book.bids, book.asks
    bid = bids.levels[-bids.keys[0]] if bids.keys else None
    ask = asks.levels[asks.keys[0]] if asks.keys else None
    return (
        bid and bid.px,
        ask and ask.px,
        bid and bid.size,
        bid and len(bid.orders),
        ask and ask.size,
        ask and len(ask.orders),
    )


_parsed: dict[str, int] = {}
_PARSED_MAX = 1 << 18


def _parse(text: str) -> int:
    """``fixed.parse`` with a memo: prices and sizes repeat a lot across blocks."""
    value = _parsed.get(text)
    if value is None:
        value = fixed.parse(text)
        if len(_parsed) >= _PARSED_MAX:
            _parsed.clear()
        _parsed[text] = value
    return value


class Books:
    """Every coin's L4 book. Synchronous; fed one block at a time.

    ``accept_coin`` is the markets filter (None: every coin).
    """

    height: int | None  # height of the last applied block or loaded snapshot
    time_ms: int | None  # its block time, epoch ms

    def __init__(self, accept_coin: Callable[[str], bool] | None = None) -> None:
        self.height = None
        self.time_ms = None
        self._accept_coin = accept_coin
        self._accepted: dict[str, bool] = {}
        self._books: dict[str, Book] = {}
        self._orders: dict[int, Order] = {}  # every resting order, across coins
        self._discarded: list[Book] = []  # let go of, waiting for dismantle()
        self._tops: dict[str, tuple[Any, ...]] = {}  # coin -> _top() as last reported
        self._pairer = TradePairer()
        self._views: dict[str, dict[tuple[Any, ...], tuple[Any, Any, dict[str, Any]]]] = {}
        self._mids: dict[str, str] = {}
        self._mids_version = 0
        self._mids_views: dict[str | None, tuple[int, dict[str, str]]] = {}

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
        if block.fills_ok:
            result.trades = self._pairer.feed(block.height, block.fills, self.accepts)
        self.height, self.time_ms = block.height, block.time_ms
        views = self._views
        if views:
            for coin in result.changed:
                views.pop(coin, None)
        tops, books, bbo_changed = self._tops, self._books, result.bbo_changed
        for coin in touched:
            top = _top(books[coin])
            last = tops.get(coin, _EMPTY_TOP)
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
        entered: dict[str, tuple[Book, list[BookDiff]] | tuple[()]] = {}
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
    ) -> tuple[Book, list[BookDiff]] | tuple[()]:
        """First diff of ``coin`` in this block: its book and diffs list (() if filtered)."""
        accepted = self._accepted.get(coin)
        if accepted is None:
            accepted = self.accepts(coin)
        if not accepted:
            return ()
        book = self._books.get(coin)
        if book is None:
            book = self._books[coin] = Book(_intern(coin))
        update = updates[coin] = CoinUpdate([], [])
        return book, update.diffs

    def _new(
        self,
        book: Book,
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

    def _refresh_mid(self, coin: str) -> bool:
        """Recompute ``coin``'s mid; True when it changed."""
        book = self._books.get(coin)
        bid = book.bids.best() if book else None
        ask = book.asks.best() if book else None
        mid = l2.format_mid(bid.px, ask.px) if bid and ask else None
        if self._mids.get(coin) == mid:
            return False
        if mid is None:
            del self._mids[coin]
        else:
            self._mids[coin] = mid
        self._mids_version += 1
        return True

    def _refresh_top(self, coin: str) -> None:
        """Note ``coin``'s top and mid after a change outside apply_block."""
        book = self._books.get(coin)
        self._tops[coin] = _top(book) if book is not None else _EMPTY_TOP
        self._refresh_mid(coin)

    # -- snapshots -----------------------------------------------------------
    def load_orders(self, coin: str, side: str, entries: Iterable[tuple[str, Any]]) -> None:
        """Append snapshot ``(user, StatusOrder)`` entries (best first, queue order).

        May be called many times per coin/side with consecutive chunks, so a
        loader can slice a big book. Raises ValueError naming the coin and oid
        on a bad entry (entries before it stay loaded).
        """
        if not self.accepts(coin):
            return
        book = self._books.get(coin)
        if book is None:
            book = self._books[coin] = Book(_intern(coin))
        book_side = book.side(side)
        orders = self._orders
        try:
            for user, source in entries:
                oid = source.oid
                if oid in orders:
                    raise ValueError("duplicate oid")
                if source.coin != coin or source.side != side:
                    raise ValueError(f"order of {source.coin!r} side {source.side!r}")
                order = Order(
                    oid,
                    _intern(user),
                    _parse(source.sz),
                    source.timestamp,
                    encode_cloid(source.cloid),
                    meta_of(source),
                )
                book_side.level_for(_parse(source.limitPx)).append(order)
                orders[oid] = order
        except ValueError as exc:
            raise ValueError(f"snapshot {coin} side {side} oid {source.oid}: {exc}") from exc
        finally:
            self._views.pop(coin, None)
            self._refresh_top(coin)

    def set_height(self, height: int, time_ms: int | None) -> None:
        """Declare the height (and time) the loaded state is at."""
        self.height, self.time_ms = height, time_ms

    def replace_all(self, other: Books) -> set[str]:
        """Take over ``other``'s whole state; return every coin of old or new.

        ``other`` must be discarded afterwards (its orders now belong to us).
        Unpaired fills waiting for their partner are kept.
        """
        coins = set(self._books) | set(other._books)
        self._discarded.extend(self._books.values())
        self._books, self._orders = other._books, other._orders
        self.height, self.time_ms = other.height, other.time_ms
        self._mids = dict(other._mids)
        self._tops = dict(other._tops)
        self._mids_version += 1
        self._views.clear()
        other._books, other._orders, other._mids, other._tops = {}, {}, {}, {}
        return coins

    def take_discarded(self) -> list[Book]:
        """The coin books replaced or adopted away since the last call.

        Nothing refers to them any more: pass them to
        :func:`orderbook.book.book.dismantle` so they are freed without a
        full garbage collection.
        """
        discarded, self._discarded = self._discarded, []
        return discarded

    def abandon(self) -> list[Book]:
        """Empty this Books (a staging copy done with); its coin books, to dismantle."""
        books = list(self._books.values()) + self.take_discarded()
        self._books, self._orders, self._views = {}, {}, {}
        return books

    def compare_coin(self, other: Books, coin: str) -> list[str]:
        """Differences between our and ``other``'s book of ``coin`` (empty: equal).

        Every order of every level is compared (queue order, size, user and
        all metadata); each difference is a readable line naming the oid.
        """
        return compare_books(self._books.get(coin), other._books.get(coin), coin)

    def adopt_coin(self, other: Books, coin: str) -> None:
        """Replace our book of ``coin`` with ``other``'s (taken out of ``other``)."""
        ours = self._books.pop(coin, None)
        if ours is not None:
            for order in _orders_of(ours):
                self._orders.pop(order.oid, None)
            self._discarded.append(ours)
        theirs = other._books.pop(coin, None)
        if theirs is None:
            theirs = Book(_intern(coin))
        for order in _orders_of(theirs):
            other._orders.pop(order.oid, None)
            clash = self._orders.get(order.oid)
            if clash is not None:  # that oid rested in another of our coins: drop it
                clash_side = clash.level.side  # type: ignore[union-attr]
                clash_side.remove(clash)
                self._views.pop(clash_side.coin, None)
                self._refresh_top(clash_side.coin)
            self._orders[order.oid] = order
        self._books[coin] = theirs
        other._refresh_top(coin)
        self._views.pop(coin, None)
        self._refresh_top(coin)

    # -- views -------------------------------------------------------------
    def coins(self) -> list[str]:
        """Every coin with a book (possibly empty), sorted."""
        return sorted(self._books)

    def order_count(self) -> int:
        """Resting orders across all coins."""
        return len(self._orders)

    def coin_count(self) -> int:
        return len(self._books)

    def pending_fills(self) -> int:
        """Fills waiting for the other side of their trade."""
        return self._pairer.pending_count()

    def book(self, coin: str) -> Book:
        """The book of ``coin`` (KeyError when unknown)."""
        return self._books[coin]

    def _view(
        self,
        coin: str,
        key: tuple[Any, ...],
        build: Callable[[Book], Any],
        wrap: Callable[[Any], dict[str, Any]],
    ) -> dict[str, Any]:
        book = self._books[coin]
        per_coin = self._views.setdefault(coin, {})
        entry = per_coin.get(key)
        if entry is not None and entry[0] == self.height:
            return entry[2]
        inner = entry[1] if entry is not None else build(book)
        outer = wrap(inner)
        per_coin[key] = (self.height, inner, outer)
        return outer

    def l2_view(
        self,
        coin: str,
        n_sig_figs: int | None = None,
        mantissa: int | None = None,
        n_levels: int = 20,
    ) -> dict[str, Any]:
        """The l2Book ``data`` object (ValueError on bad params, KeyError on unknown coin)."""
        l2.check_params(n_sig_figs, mantissa, n_levels)
        if mantissa == 1:
            mantissa = None
        return self._view(
            coin,
            ("l2", n_sig_figs, mantissa, n_levels),
            lambda book: [
                l2.side_levels(book.bids, n_sig_figs, mantissa, n_levels),
                l2.side_levels(book.asks, n_sig_figs, mantissa, n_levels),
            ],
            lambda levels: {
                "coin": coin,
                "time": self.time_ms,
                "height": self.height,
                "levels": levels,
            },
        )

    def bbo_view(self, coin: str) -> dict[str, Any]:
        """The bbo ``data`` object: best bid and ask levels (None when a side is empty)."""
        return self._view(
            coin,
            ("bbo",),
            lambda book: [l2.bbo_level(book.bids.best()), l2.bbo_level(book.asks.best())],
            lambda bbo: {"coin": coin, "time": self.time_ms, "height": self.height, "bbo": bbo},
        )

    def all_mids(self, dex: str | None = None) -> dict[str, str]:
        """{coin: mid} for coins with both sides; ``dex`` "xyz" keeps only "xyz:…" coins."""
        cached = self._mids_views.get(dex)
        if cached is not None and cached[0] == self._mids_version:
            return cached[1]
        if dex is None:
            mids = dict(self._mids)
        else:
            prefix = dex + ":"
            mids = {coin: mid for coin, mid in self._mids.items() if coin.startswith(prefix)}
        self._mids_views[dex] = (self._mids_version, mids)
        return mids

    def l4_snapshot(self, coin: str) -> dict[str, Any]:
        """The l4Book Snapshot object: every order in queue order, at our height."""
        return self._view(
            coin,
            ("l4",),
            lambda book: book.l4_levels(),
            lambda levels: {
                "coin": coin,
                "time": self.time_ms,
                "height": self.height,
                "levels": levels,
            },
        )


def _orders_of(book: Book) -> Iterator[Order]:
    for side in (book.bids, book.asks):
        for level in side.levels.values():
            yield from level.orders.values()
