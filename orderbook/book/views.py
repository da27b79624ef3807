"""What clients see of all coins' books: l2Book, bbo, allMids and l4Book snapshots.

Views return the exact ``data`` object of the client channel (see
../shared/docs/ws-api.md), with prices and sizes already canonical strings, so
the feed only wraps and serializes them. Views are cached: asking twice in one
block for the same (coin, params) returns the same object, and the expensive
part (the levels) is only rebuilt after a block that changed the coin. Views
are shared objects: callers must not mutate them.

The l4Book snapshot also comes encoded (:meth:`BookViews.l4_snapshot_pieces`):
the JSON bytes of a big coin (BTC: ~16 MB, 51k orders) in pieces of
``L4_SLICE_ORDERS`` orders, made from the book's own orders without a dict
per order and without keeping anything, so the feed never holds the Python
view of a big book.

Every cache here is keyed by what the book holds (its coins and the dexes
those coins belong to), never by a client's string: an unknown coin is a
KeyError and an unknown dex an :class:`UnknownDex` before anything is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from orderbook import fixed
from orderbook.book import l2
from orderbook.book.coin_book import CoinBook
from orderbook.book.order import decode_cloid
from orderbook.book.side import Side

MAIN_DEX = ""
_Cached = tuple[Any, Any, dict[str, Any]]  # (height, inner part, the whole view)
L4_SLICE_ORDERS = 1_000  # orders per encoded piece (~300 KB of JSON)
_encode = msgspec.json.Encoder().encode


class L4Order(msgspec.Struct, gc=False):
    """An l4Book order object as encoded: the fields of ``Order.to_dict``, in its order."""

    user: str
    coin: str
    side: str
    limitPx: str
    sz: str
    oid: int
    timestamp: int
    triggerCondition: str
    isTrigger: bool
    triggerPx: str
    isPositionTpsl: bool
    reduceOnly: bool
    orderType: str
    tif: str | None
    cloid: str | None


class UnknownDex(ValueError):
    """An allMids ``dex`` that no coin of the book belongs to; ``str()`` says which."""


def dex_of(coin: str) -> str:
    """The HIP-3 dex of ``coin`` ("xyz:TSLA" -> "xyz"); "" for the main dex's coins."""
    dex, colon, _ = coin.partition(":")
    return dex if colon else MAIN_DEX


class BookViews:
    """The views half of :class:`orderbook.book.books.Books` (a mixin).

    ``Books`` owns the state (``_books``, ``height``, ``time_ms``) and calls
    :meth:`_init_views`, :meth:`_note_coin` for every coin book it creates,
    :meth:`_refresh_mid` when a best price moves and :meth:`_reset_views`
    when its whole state is replaced.
    """

    height: int | None
    time_ms: int | None
    _books: dict[str, CoinBook]

    def _init_views(self) -> None:
        self._views: dict[str, dict[tuple[Any, ...], _Cached]] = {}
        self._mids: dict[str, str] = {}  # coin -> mid, coins with both sides
        self._mids_version = 0
        self._dexes: set[str] = {MAIN_DEX}  # of the coins in _books
        self._mids_views: dict[str | None, tuple[int, dict[str, str]]] = {}  # known dexes only

    def _note_coin(self, coin: str) -> None:
        """A coin book was created: its dex is known from now on."""
        self._dexes.add(dex_of(coin))

    def _reset_views(self, mids: dict[str, str]) -> None:
        """Every coin's state was replaced: drop every cached view, take ``mids``."""
        self._views.clear()
        self._mids = mids
        self._mids_version += 1
        self._mids_views.clear()
        self._dexes = {MAIN_DEX, *map(dex_of, self._books)}

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

    def _view(
        self,
        coin: str,
        key: tuple[Any, ...],
        build: Callable[[CoinBook], Any],
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

    def dexes(self) -> list[str]:
        """The dexes the book's coins belong to, sorted ("" is the main dex, always known)."""
        return sorted(self._dexes)

    def knows_dex(self, dex: str | None) -> bool:
        """Whether ``all_mids(dex)`` answers (None and "" always do)."""
        return not dex or dex in self._dexes

    def all_mids(self, dex: str | None = None) -> dict[str, str]:
        """{coin: mid} for coins with both sides; ``dex`` "xyz" keeps only "xyz:…" coins.

        None or "" means every coin. A dex no coin belongs to raises
        :class:`UnknownDex` and leaves nothing behind.
        """
        if not dex:
            dex = None
        elif dex not in self._dexes:
            shown = dex if len(dex) <= 40 else dex[:40] + "..."
            raise UnknownDex(f"unknown dex {shown!r}")
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

    def l4_snapshot_pieces(self, coin: str) -> list[bytes]:
        """The l4Book Snapshot object encoded, in pieces: ``b"".join`` of them is
        exactly the JSON of :meth:`l4_snapshot` (nothing is cached)."""
        book = self._books[coin]
        head = _encode({"coin": coin, "time": self.time_ms, "height": self.height, "levels": []})
        pieces = [head[:-2]]  # up to '"levels":['
        pieces.extend(_side_pieces(coin, book.bids))
        pieces.append(b",")
        pieces.extend(_side_pieces(coin, book.asks))
        pieces.append(b"]}")
        return pieces


def _side_pieces(coin: str, side: Side) -> Iterator[bytes]:
    """``[order, …]`` of one side, best level first, ``L4_SLICE_ORDERS`` orders a piece."""
    yield b"["
    first = True
    for batch in _batches(_l4_orders(coin, side), L4_SLICE_ORDERS):
        encoded = _encode(batch)
        yield encoded[1:-1] if first else b"," + encoded[1:-1]
        first = False
    yield b"]"


def _l4_orders(coin: str, side: Side) -> Iterator[L4Order]:
    fmt, name = fixed.format, side.name
    for level in side.iter_levels():
        px = level.px_str
        for order in level.orders.values():
            meta = order.meta
            yield L4Order(
                order.user, coin, name, px, fmt(order.sz), order.oid, order.timestamp,
                meta[0], meta[1], meta[2], meta[3], meta[4], meta[5], meta[6],
                decode_cloid(order.cloid),
            )  # fmt: skip


def _batches(orders: Iterator[L4Order], size: int) -> Iterator[list[L4Order]]:
    batch: list[L4Order] = []
    for order in orders:
        batch.append(order)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
