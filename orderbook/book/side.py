"""One side of one coin's book: price levels with FIFO queues and a price index.

Levels are found by price in a dict; a bisect-sorted list of keys orders them
(key = -px for bids, px for asks, so index 0 is always the best level, and a
level is the best one exactly when ``side.keys[0] == level.key``). Each
level's queue is an insertion-ordered dict oid -> Order with a running total
size; its order count is ``len(orders)``.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator

from orderbook import fixed
from orderbook.book.order import Order

BID = "B"
ASK = "A"


class Level:
    """One price level: a FIFO queue of orders and their total size."""

    __slots__ = ("px", "key", "_px_str", "orders", "size", "side")

    def __init__(self, px: int, side: Side) -> None:
        self.px = px
        self.key = -px if side.is_bid else px  # its place in side.keys
        self._px_str: str | None = None
        self.orders: dict[int, Order] = {}
        self.size = 0
        self.side = side

    @property
    def px_str(self) -> str:
        """The canonical price string (formatted on first use: most levels never need it)."""
        text = self._px_str
        if text is None:
            text = self._px_str = fixed.format(self.px)
        return text

    def append(self, order: Order) -> None:
        self.orders[order.oid] = order
        self.size += order.sz
        order.level = self

    def insert_before(self, order: Order, before: int) -> bool:
        """Put ``order`` directly in front of resting oid ``before`` (False: not here)."""
        orders = self.orders
        if before not in orders:
            return False
        # A dict cannot insert in the middle: rebuild it, copying the tail in C.
        queue: dict[int, Order] = {}
        items = iter(orders.items())
        for oid, other in items:
            if oid == before:
                queue[order.oid] = order
                queue[oid] = other
                break
            queue[oid] = other
        queue.update(items)
        self.orders = queue
        self.size += order.sz
        order.level = self
        return True


class Side:
    """Bids or asks of one coin."""

    __slots__ = ("coin", "name", "is_bid", "levels", "keys")

    def __init__(self, coin: str, name: str) -> None:
        self.coin = coin
        self.name = name
        self.is_bid = name == BID
        self.levels: dict[int, Level] = {}
        self.keys: list[int] = []  # sorted; best first

    def level_for(self, px: int) -> Level:
        """The level at ``px``, created (and indexed) when missing."""
        level = self.levels.get(px)
        if level is None:
            level = self.add_level(px)
        return level

    def add_level(self, px: int) -> Level:
        """Create and index the (missing) level at ``px``."""
        level = self.levels[px] = Level(px, self)
        insort(self.keys, level.key)
        return level

    def drop_level(self, level: Level) -> None:
        """Unindex an emptied level."""
        del self.levels[level.px]
        keys = self.keys
        del keys[bisect_left(keys, level.key)]

    def remove(self, order: Order) -> None:
        """Take ``order`` out of its level, dropping the level when it empties."""
        level = order.level
        assert level is not None and level.side is self
        del level.orders[order.oid]
        level.size -= order.sz
        order.level = None
        if not level.orders:
            self.drop_level(level)

    def resize(self, order: Order, sz: int) -> None:
        level = order.level
        assert level is not None
        level.size += sz - order.sz
        order.sz = sz

    def best(self) -> Level | None:
        keys = self.keys
        if not keys:
            return None
        return self.levels[-keys[0] if self.is_bid else keys[0]]

    def iter_levels(self) -> Iterator[Level]:
        """Levels best first."""
        levels = self.levels
        if self.is_bid:
            for key in self.keys:
                yield levels[-key]
        else:
            for key in self.keys:
                yield levels[key]

    def order_count(self) -> int:
        return sum(len(level.orders) for level in self.levels.values())
