"""State that reaches the book other than by blocks: snapshots and staging copies.

A snapshot is loaded into a fresh ``Books`` (the staging copy) in chunks;
a resync then takes it over whole (:meth:`BookStaging.replace_all`), and
periodic validation compares it with the live book and adopts it one coin
at a time (:meth:`BookStaging.compare_coin`, :meth:`BookStaging.adopt_coin`).
Books let go of are handed out for :func:`orderbook.book.coin_book.dismantle`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

from orderbook.book.coin_book import EMPTY_TOP, CoinBook, compare_books, orders_of, top_of
from orderbook.book.order import Order, encode_cloid, meta_of
from orderbook.fixed import parse_cached as _parse

_intern = sys.intern


class BookStaging:
    """The snapshot and staging half of :class:`orderbook.book.books.Books` (a mixin).

    It works on the state ``Books`` owns and uses ``Books``' coin creation,
    markets filter and view upkeep (declared below).
    """

    height: int | None
    time_ms: int | None
    _books: dict[str, CoinBook]
    _orders: dict[int, Order]
    _discarded: list[CoinBook]
    _tops: dict[str, tuple[Any, ...]]
    _views: dict[str, Any]
    _mids: dict[str, str]
    accepts: Callable[[str], bool]
    _add_coin: Callable[[str], CoinBook]
    _note_coin: Callable[[str], None]
    _refresh_mid: Callable[[str], bool]
    _reset_views: Callable[[dict[str, str]], None]

    def _refresh_top(self, coin: str) -> None:
        """Note ``coin``'s top and mid after a change outside apply_block."""
        book = self._books.get(coin)
        self._tops[coin] = top_of(book) if book is not None else EMPTY_TOP
        self._refresh_mid(coin)

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
            book = self._add_coin(coin)
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

    def replace_all(self, other: BookStaging) -> set[str]:
        """Take over ``other``'s whole state; return every coin of old or new.

        ``other`` must be discarded afterwards (its orders now belong to us).
        """
        coins = set(self._books) | set(other._books)
        self._discarded.extend(self._books.values())
        self._books, self._orders = other._books, other._orders
        self.height, self.time_ms = other.height, other.time_ms
        self._tops = dict(other._tops)
        self._reset_views(dict(other._mids))
        other._books, other._orders, other._mids, other._tops = {}, {}, {}, {}
        return coins

    def take_discarded(self) -> list[CoinBook]:
        """The coin books replaced or adopted away since the last call.

        Nothing refers to them any more: pass them to
        :func:`orderbook.book.coin_book.dismantle` so they are freed without a
        full garbage collection.
        """
        discarded, self._discarded = self._discarded, []
        return discarded

    def abandon(self) -> list[CoinBook]:
        """Empty this Books (a staging copy done with); its coin books, to dismantle."""
        books = list(self._books.values()) + self.take_discarded()
        self._books, self._orders, self._tops = {}, {}, {}
        self._reset_views({})
        return books

    def compare_coin(self, other: BookStaging, coin: str) -> list[str]:
        """Differences between our and ``other``'s book of ``coin`` (empty: equal).

        Every order of every level is compared (queue order, size, user and
        all metadata); each difference is a readable line naming the oid.
        """
        return compare_books(self._books.get(coin), other._books.get(coin), coin)

    def adopt_coin(self, other: BookStaging, coin: str) -> None:
        """Replace our book of ``coin`` with ``other``'s (taken out of ``other``)."""
        ours = self._books.pop(coin, None)
        if ours is not None:
            for order in orders_of(ours):
                self._orders.pop(order.oid, None)
            self._discarded.append(ours)
        theirs = other._books.pop(coin, None)
        if theirs is None:
            theirs = CoinBook(_intern(coin))
        for order in orders_of(theirs):
            other._orders.pop(order.oid, None)
            clash = self._orders.get(order.oid)
            if clash is not None:  # that oid rested in another of our coins: drop it
                clash_side = clash.level.side  # type: ignore[union-attr]
                clash_side.remove(clash)
                self._views.pop(clash_side.coin, None)
                self._refresh_top(clash_side.coin)
            self._orders[order.oid] = order
        self._books[coin] = theirs
        self._note_coin(coin)
        other._refresh_top(coin)
        self._views.pop(coin, None)
        self._refresh_top(coin)
