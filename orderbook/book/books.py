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
from typing import Any

import msgspec

from orderbook import fixed
from orderbook.book import l2
from orderbook.book.book import Book, compare_books
from orderbook.book.events import (
    Block,
    BookDiff,
    NewDiff,
    OrderStatus,
    StatusOrder,
    UpdateDiff,
    decode_order,
)
from orderbook.book.order import (
    DEFAULT_META,
    Order,
    encode_cloid,
    iso_to_ms,
    meta_of,
    triggered_meta,
)
from orderbook.book.trades import TradePairer

_intern = sys.intern


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
    coin's ``new`` diffs (raw, as the node wrote them, in file order);
    ``diffs`` are all of the coin's diffs in file order.
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


def freeze_after_load() -> None:
    """Collect once, then move every live object out of the GC's reach.

    Call after a bulk snapshot load: a full collection walks every tracked
    object, ~464 ms over a million resting orders when not frozen. Frozen
    objects are never collected, which is fine for orders (they are freed by
    reference counting when they leave the book).
    """
    gc.collect()
    gc.freeze()


_PRIMARY = frozenset(("open", "triggered"))


class _StatusIndex:
    """The block's statuses by oid, decoded only when a ``new`` diff asks.

    "open" and "triggered" statuses are decoded on the first lookup (a
    "triggered" one wins over "open"); other non-rejected statuses only when
    an oid is missing there. Rejections (~93%) are never decoded.
    """

    def __init__(self, statuses: list[OrderStatus]) -> None:
        self._statuses = statuses
        self._primary: dict[int, tuple[int, OrderStatus, StatusOrder]] | None = None
        self._secondary: dict[int, tuple[int, OrderStatus, StatusOrder]] | None = None

    def lookup(self, oid: int) -> tuple[int, OrderStatus, StatusOrder] | None:
        """(file index, status, decoded order) of the status for ``oid``."""
        if self._primary is None:
            self._primary = self._index(primary=True)
        hit = self._primary.get(oid)
        if hit is None:
            if self._secondary is None:
                self._secondary = self._index(primary=False)
            hit = self._secondary.get(oid)
        return hit

    def _index(self, primary: bool) -> dict[int, tuple[int, OrderStatus, StatusOrder]]:
        index: dict[int, tuple[int, OrderStatus, StatusOrder]] = {}
        for position, status in enumerate(self._statuses):
            name = status.status
            if (name in _PRIMARY) is not primary or name.endswith("Rejected"):
                continue
            try:
                order = decode_order(status)
            except msgspec.DecodeError:  # a bad status only loses its metadata
                continue
            known = index.get(order.oid)
            if known is None or (name == "triggered" and known[1].status != "triggered"):
                index[order.oid] = (position, status, order)
        return index


class _BlockState:
    """Bookkeeping while one block is applied."""

    def __init__(self, block: Block) -> None:
        self.block = block
        self.result = BlockResult(block.height, block.time_ms)
        self.statuses = _StatusIndex(block.statuses)
        self.tops: dict[str, tuple[Any, ...]] = {}  # coin -> top of book before the block
        self.coins: dict[str, tuple[Book, CoinUpdate]] = {}  # coins with diffs so far
        self.used: dict[str, list[tuple[int, OrderStatus]]] = {}

    def error(self, coin: str, oid: int, message: str) -> None:
        self.result.errors.append(BookError(coin, oid, message))


def _top(book: Book) -> tuple[Any, ...]:
    """Best bid and ask (px, size, count), to tell whether a block changed them."""
    bids, asks = book.bids, book.asks
    bid = bids.levels[-bids.keys[0]] if bids.keys else None
    ask = asks.levels[asks.keys[0]] if asks.keys else None
    return (
        bid and (bid.px, bid.size, len(bid.orders)),
        ask and (ask.px, ask.size, len(ask.orders)),
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
        state = _BlockState(block)
        for diff in block.diffs:
            if self.accepts(diff.coin):
                self._apply_diff(diff, state)
        result = state.result
        for coin, used in state.used.items():
            used.sort(key=lambda entry: entry[0])
            result.updates[coin].statuses = [status for _, status in used]
        if block.fills_ok:
            result.trades = self._pairer.feed(block.height, block.fills, self.accepts)
        self.height, self.time_ms = block.height, block.time_ms
        for coin in result.changed:
            self._views.pop(coin, None)
        for coin, top in state.tops.items():
            if _top(self._books[coin]) != top:
                result.bbo_changed.add(coin)
                result.mids_changed |= self._refresh_mid(coin)
        return result

    def _touch(self, coin: str, state: _BlockState) -> tuple[Book, CoinUpdate]:
        """First diff of ``coin`` in this block: note its top of book."""
        book = self._books.get(coin)
        if book is None:
            book = self._books[coin] = Book(_intern(coin))
        if coin not in state.tops:  # a replaced oid may have noted it already
            state.tops[coin] = _top(book)
        update = state.result.updates[coin] = CoinUpdate()
        entry = state.coins[coin] = (book, update)
        return entry

    def _apply_diff(self, diff: BookDiff, state: _BlockState) -> None:
        coin = diff.coin
        entry = state.coins.get(coin)
        book, update = entry if entry is not None else self._touch(coin, state)
        update.diffs.append(diff)
        body = diff.raw_book_diff
        try:
            if isinstance(body, str):
                if body != "remove":
                    raise ValueError(f"unknown raw_book_diff {body!r}")
                applied = self._remove(diff, state)
            elif body.new is not None:
                applied = self._new(book, diff, body.new, state)
            elif body.update is not None:
                applied = self._update(diff, body.update, state)
            else:
                raise ValueError("raw_book_diff has neither new nor update")
        except ValueError as exc:  # FixedError too: a bad px/sz/side
            state.error(coin, diff.oid, f"bad diff: {exc}")
            return
        if applied:
            state.result.changed.add(coin)

    def _resting(self, diff: BookDiff, state: _BlockState, what: str) -> Order | None:
        order = self._orders.get(diff.oid)
        if order is None:
            state.error(diff.coin, diff.oid, f"{what} of unknown oid")
            return None
        assert order.level is not None
        if order.level.side.coin != diff.coin:
            state.error(diff.coin, diff.oid, f"{what} of oid resting in {order.level.side.coin!r}")
            return None
        return order

    def _remove(self, diff: BookDiff, state: _BlockState) -> bool:
        order = self._resting(diff, state, "remove")
        if order is None:
            return False
        del self._orders[order.oid]
        order.level.side.remove(order)  # type: ignore[union-attr]
        return True

    def _update(self, diff: BookDiff, body: UpdateDiff, state: _BlockState) -> bool:
        sz = _parse(body.newSz)
        order = self._resting(diff, state, "update")
        if order is None:
            return False
        order.level.side.resize(order, sz)  # type: ignore[union-attr]
        return True

    def _new(self, book: Book, diff: BookDiff, body: NewDiff, state: _BlockState) -> bool:
        side = book.side(diff.side)
        px, sz = _parse(diff.px), _parse(body.sz)
        oid = diff.oid
        existing = self._orders.get(oid)
        if existing is not None:
            state.error(diff.coin, oid, "new of existing oid (replaced)")
            self._drop(existing, state)
        order = self._order_for(diff, sz, state)
        level = side.level_for(px)
        before = body.insertBefore
        if before is None or not level.insert_before(order, before):
            level.append(order)
            if before is not None:
                state.error(diff.coin, oid, f"insertBefore of unknown oid {before} (put at back)")
        self._orders[oid] = order
        return True

    def _drop(self, order: Order, state: _BlockState) -> None:
        """Take a resting order out of whichever coin holds it."""
        side = order.level.side  # type: ignore[union-attr]
        if side.coin not in state.tops:
            state.tops[side.coin] = _top(self._books[side.coin])
        del self._orders[order.oid]
        side.remove(order)
        state.result.changed.add(side.coin)

    def _order_for(self, diff: BookDiff, sz: int, state: _BlockState) -> Order:
        """A new resting order, with its metadata from the block's status if any."""
        hit = state.statuses.lookup(diff.oid)
        user = _intern(diff.user)
        if hit is None:  # HIP-2 / assistance fund: no status at all
            return Order(diff.oid, user, sz, state.block.time_ms, None, DEFAULT_META)
        position, status, source = hit
        state.used.setdefault(diff.coin, []).append((position, status))
        if status.status == "triggered":
            try:
                timestamp = iso_to_ms(status.time)
            except ValueError:
                timestamp = state.block.time_ms
            meta = triggered_meta(source)
        else:
            timestamp, meta = source.timestamp, meta_of(source)
        return Order(diff.oid, user, sz, timestamp, encode_cloid(source.cloid), meta)

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
            self._refresh_mid(coin)

    def set_height(self, height: int, time_ms: int | None) -> None:
        """Declare the height (and time) the loaded state is at."""
        self.height, self.time_ms = height, time_ms

    def replace_all(self, other: Books) -> set[str]:
        """Take over ``other``'s whole state; return every coin of old or new.

        ``other`` must be discarded afterwards (its orders now belong to us).
        Unpaired fills waiting for their partner are kept.
        """
        coins = set(self._books) | set(other._books)
        self._books, self._orders = other._books, other._orders
        self.height, self.time_ms = other.height, other.time_ms
        self._mids = dict(other._mids)
        self._mids_version += 1
        self._views.clear()
        other._books, other._orders, other._mids = {}, {}, {}
        return coins

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
                self._refresh_mid(clash_side.coin)
            self._orders[order.oid] = order
        self._books[coin] = theirs
        other._refresh_mid(coin)
        self._views.pop(coin, None)
        self._refresh_mid(coin)

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
