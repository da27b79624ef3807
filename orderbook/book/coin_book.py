"""One coin's L4 book: two sides, order placement, top of book, L4 snapshot, comparison."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from orderbook import fixed
from orderbook.book.order import Order, decode_cloid
from orderbook.book.side import ASK, BID, Side

# Order fields compared by compare_books, as (client name, getter).
_FIELDS: tuple[tuple[str, Any], ...] = (
    ("user", lambda o: o.user),
    ("sz", lambda o: fixed.format(o.sz)),
    ("timestamp", lambda o: o.timestamp),
    ("triggerCondition", lambda o: o.meta[0]),
    ("isTrigger", lambda o: o.meta[1]),
    ("triggerPx", lambda o: o.meta[2]),
    ("isPositionTpsl", lambda o: o.meta[3]),
    ("reduceOnly", lambda o: o.meta[4]),
    ("orderType", lambda o: o.meta[5]),
    ("tif", lambda o: o.meta[6]),
    ("cloid", lambda o: decode_cloid(o.cloid)),
)


class CoinBook:
    """Bids and asks of one coin."""

    __slots__ = ("coin", "bids", "asks")

    def __init__(self, coin: str) -> None:
        self.coin = coin
        self.bids = Side(coin, BID)
        self.asks = Side(coin, ASK)

    def side(self, name: str) -> Side:
        """The side named "B" or "A" (ValueError otherwise)."""
        if name == BID:
            return self.bids
        if name == ASK:
            return self.asks
        raise ValueError(f"{self.coin}: side must be 'B' or 'A', not {name!r}")

    def add(self, order: Order, side: str, px: int, before: int | None = None) -> bool:
        """Rest ``order`` at the back of its level, or in front of ``before``.

        Returns False when ``before`` is not resting in that level (the order
        then goes to the back).
        """
        level = self.side(side).level_for(px)
        if before is not None and level.insert_before(order, before):
            return True
        level.append(order)
        return before is None

    def is_empty(self) -> bool:
        return not self.bids.levels and not self.asks.levels

    def order_count(self) -> int:
        return self.bids.order_count() + self.asks.order_count()

    def l4_levels(self) -> list[list[dict[str, Any]]]:
        """[[bid orders], [ask orders]]: best level first, oldest first within."""
        fmt = fixed.format
        coin = self.coin
        result = []
        for side in (self.bids, self.asks):
            name = side.name
            result.append(
                [
                    order.to_dict(coin, name, level.px_str, fmt)
                    for level in side.iter_levels()
                    for order in level.orders.values()
                ]
            )
        return result


EMPTY_TOP: tuple[Any, ...] = (None,) * 6


def top_of(book: CoinBook) -> tuple[Any, ...]:
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


def orders_of(book: CoinBook) -> Iterator[Order]:
    """Every resting order of ``book``, bids then asks, level by level."""
    for side in (book.bids, book.asks):
        for level in side.levels.values():
            yield from level.orders.values()


def compare_books(ours: CoinBook | None, theirs: CoinBook | None, coin: str) -> list[str]:
    """Readable differences between two books of ``coin`` (empty: equal).

    Checks every order of every level: the set of levels, queue order within
    each level and every field a client sees.
    """
    diffs: list[str] = []
    for name in (BID, ASK):
        our_side = ours.side(name) if ours else Side(coin, name)
        their_side = theirs.side(name) if theirs else Side(coin, name)
        _compare_sides(our_side, their_side, coin, diffs)
    return diffs


def _compare_sides(ours: Side, theirs: Side, coin: str, diffs: list[str]) -> None:
    where = f"{coin} {'bid' if ours.is_bid else 'ask'}"
    for px in sorted(ours.levels.keys() | theirs.levels.keys(), reverse=ours.is_bid):
        our_level = ours.levels.get(px)
        their_level = theirs.levels.get(px)
        px_str = fixed.format(px)
        if our_level is None or their_level is None:
            present = "ours" if their_level is None else "theirs"
            level = our_level or their_level
            assert level is not None
            oids = ", ".join(str(oid) for oid in level.orders)
            diffs.append(f"{where} level {px_str} only in {present}: oids {oids}")
            continue
        _compare_levels(our_level.orders, their_level.orders, f"{where} level {px_str}", diffs)


def _compare_levels(
    ours: dict[int, Order], theirs: dict[int, Order], where: str, diffs: list[str]
) -> None:
    for oid in ours.keys() - theirs.keys():
        diffs.append(f"{where}: oid {oid} only in ours")
    for oid in theirs.keys() - ours.keys():
        diffs.append(f"{where}: oid {oid} only in theirs")
    common = ours.keys() & theirs.keys()
    our_queue = [oid for oid in ours if oid in common]
    their_queue = [oid for oid in theirs if oid in common]
    for position, (mine, other) in enumerate(zip(our_queue, their_queue, strict=True)):
        if mine != other:
            diffs.append(
                f"{where}: queue order differs at position {position}: "
                f"ours oid {mine}, theirs oid {other}"
            )
            break
    for oid in our_queue:
        mine, other = ours[oid], theirs[oid]
        for field, get in _FIELDS:
            a, b = get(mine), get(other)
            if a != b:
                diffs.append(f"{where}: oid {oid} {field}: ours {a!r}, theirs {b!r}")


def dismantle(books: list[CoinBook], budget: int = 20_000) -> Iterator[None]:
    """Break the order -> level -> side -> level cycles of books nobody uses any more.

    A book is a web of reference cycles; dropped whole (a resync replacing
    every coin, a validation's staging copy), only a full garbage collection
    would free it, stalling the reactor ~400 ms per half a million orders,
    or never, for objects ``gc.freeze()`` already moved out of the
    collector's sight. Cut apart, reference counting frees it at once.
    Yields after about ``budget`` orders, so callers can spread the work.
    """
    done = 0
    for book in books:
        for side in (book.bids, book.asks):
            for level in side.levels.values():
                done += len(level.orders)
                level.orders = {}  # frees its orders, and with them their level references
                level.side = None  # type: ignore[assignment]
                if done >= budget:
                    done = 0
                    yield
            side.levels = {}
            side.keys = []
