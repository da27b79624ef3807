"""A small exchange: price-time matching and the node events it produces.

Every call of :meth:`Exchange.step` is one block: the mid prices drift,
untriggered trigger orders that crossed their price trigger, and simulated
traders place, cancel, modify and cross orders. The block's events come out
exactly as a node writes them (``order`` objects, ``raw_book_diff`` bodies and
``[user, fill]`` pairs, see ../shared/docs/node-data.md §3-§5); the book after
the block is available in the node's snapshot format (:meth:`snapshot`).

This module is the independent reference the server's book is tested against:
it shares no code with ``orderbook.book`` (plain lists, dicts and ints in 1e-8
units). Determinism: all randomness comes from one ``random.Random(seed)`` and
nothing iterates over a set, so one seed gives one history.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orderbook.sim.markets import (
    DRIFT_BAND,
    PERP,
    SPOT,
    UNIT,
    Market,
    fmt,
    markets,
    node_time,
    to_grid,
    units,
)

ZERO_HASH = "0x" + "0" * 64

CANCEL_STATUSES = (
    ("canceled", 900),
    ("marginCanceled", 25),
    ("scheduledCancel", 8),
    ("siblingFilledCanceled", 8),
    ("openInterestCapCanceled", 4),
    ("vaultWithdrawalCanceled", 3),
    ("liquidatedCanceled", 3),
    ("delistedCanceled", 1),
)
PERP_REJECTIONS = (
    ("perpMarginRejected", 300),
    ("minTradeNtlRejected", 20),
    ("tickRejected", 15),
    ("reduceOnlyRejected", 15),
    ("badTriggerPxRejected", 6),
    ("oracleRejected", 4),
    ("perpMaxPositionRejected", 3),
    ("openInterestIncreaseRejected", 3),
    ("positionIncreaseAtOpenInterestCapRejected", 2),
    ("positionFlipAtOpenInterestCapRejected", 1),
    ("tooAggressiveAtOpenInterestCapRejected", 1),
    ("rejected", 4),
)
SPOT_REJECTIONS = (
    ("insufficientSpotBalanceRejected", 60),
    ("minTradeSpotNtlRejected", 10),
    ("tickRejected", 10),
    ("rejected", 3),
)
TRIGGER_TYPES = ("Stop Market", "Stop Limit", "Take Profit Market", "Take Profit Limit")

# Relative weights of the background actions of a block (takers are separate).
ACTIONS = (
    ("alo_reject", 62.0),
    ("book", 30.0),
    ("modify", 2.0),
    ("reject", 5.0),
    ("ioc_reject", 1.2),
    ("trigger", 0.5),
    ("reduce_only", 0.6),
)
TAKERS = (("gtc", 3), ("ioc", 4), ("market", 2), ("twap", 1))

QUIET_TRADE_SHARE = 0.1
"""``trade_share`` of a quiet market (``--quiet``): 9 blocks in 10 have no fills."""

DEEP_LEVEL_SHARE = 0.1
"""A deep book's biggest level holds this share of its orders (mainnet BTC: 4-6k of ~51k)."""

DEEP_MEAN_TICKS = 400
"""Mean distance from the mid, in ticks, of a deep book's seeded orders."""


@dataclass(eq=False, slots=True)
class Order:
    """An order as the exchange tracks it; ``sz`` is the current resting size."""

    oid: int
    user: str
    coin: str
    side: str
    px: int
    sz: int
    orig_sz: int
    timestamp: int
    order_type: str = "Limit"
    tif: str | None = "Alo"
    reduce_only: bool = False
    cloid: str | None = None
    trigger_condition: str = "N/A"
    is_trigger: bool = False
    trigger_px: int = 0
    is_position_tpsl: bool = False
    silent: bool = False
    anchored: bool = False
    slot: int = -1

    def to_json(self, sz: int | None = None) -> dict[str, Any]:
        """The node's ``order`` object (status events and snapshots)."""
        return {
            "coin": self.coin,
            "side": self.side,
            "limitPx": fmt(self.px),
            "sz": fmt(self.sz if sz is None else sz),
            "oid": self.oid,
            "timestamp": self.timestamp,
            "triggerCondition": self.trigger_condition,
            "isTrigger": self.is_trigger,
            "triggerPx": fmt(self.trigger_px),
            "children": [],
            "isPositionTpsl": self.is_position_tpsl,
            "reduceOnly": self.reduce_only,
            "orderType": self.order_type,
            "origSz": fmt(self.orig_sz),
            "tif": self.tif,
            "cloid": self.cloid,
        }


class BookSide:
    """One side of one coin: FIFO price levels and a sorted price list."""

    __slots__ = ("is_bid", "levels", "prices")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, list[Order]] = {}
        self.prices: list[int] = []

    def best(self) -> int | None:
        """The best price, or None when the side is empty."""
        if not self.prices:
            return None
        return self.prices[-1] if self.is_bid else self.prices[0]

    def front(self) -> Order:
        """The oldest order at the best price."""
        return self.levels[self.best()][0]  # type: ignore[index]

    def add(self, order: Order, before: Order | None = None) -> None:
        """Rest ``order`` at the back of its level, or just in front of ``before``."""
        level = self.levels.get(order.px)
        if level is None:
            self.levels[order.px] = [order]
            bisect.insort(self.prices, order.px)
        elif before is None:
            level.append(order)
        else:
            level.insert(level.index(before), order)

    def remove(self, order: Order) -> None:
        """Take ``order`` off the book."""
        level = self.levels[order.px]
        level.remove(order)
        if not level:
            del self.levels[order.px]
            del self.prices[bisect.bisect_left(self.prices, order.px)]

    def orders(self) -> Iterator[Order]:
        """All orders, best price first, oldest first within a level."""
        prices = reversed(self.prices) if self.is_bid else self.prices
        for px in prices:
            yield from self.levels[px]


@dataclass(slots=True)
class CoinBook:
    """Everything the exchange keeps for one coin."""

    market: Market
    mid: int
    bids: BookSide = field(default_factory=lambda: BookSide(True))
    asks: BookSide = field(default_factory=lambda: BookSide(False))
    resting: list[Order] = field(default_factory=list)
    triggers: list[Order] = field(default_factory=list)

    def side(self, side: str) -> BookSide:
        """The side an order of ``side`` ("B"/"A") rests on."""
        return self.bids if side == "B" else self.asks

    def opposite(self, side: str) -> BookSide:
        """The side an order of ``side`` trades against."""
        return self.asks if side == "B" else self.bids


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order a test submits through :meth:`Exchange.step` (prices as strings)."""

    coin: str
    side: str
    px: str
    sz: str
    user: str = "0x" + "1" * 40
    tif: str | None = "Gtc"
    order_type: str = "Limit"
    reduce_only: bool = False
    trigger_px: str | None = None
    cloid: str | None = None
    insert_before: int | None = None


@dataclass(slots=True)
class Block:
    """One block's events, in the node's JSON shapes and file order."""

    height: int
    time_ns: int
    statuses: list[dict[str, Any]] = field(default_factory=list)
    diffs: list[dict[str, Any]] = field(default_factory=list)
    fills: list[list[Any]] = field(default_factory=list)


@dataclass(slots=True)
class _Ctx:
    """The block being built."""

    block: Block
    time: str
    ms: int


@functools.cache
def _cumulative(table: tuple[tuple[str, float], ...]) -> tuple[list[float], list[str]]:
    return list(itertools.accumulate(w for _, w in table)), [name for name, _ in table]


def _weighted(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    """A name from ``table`` picked with probability proportional to its weight."""
    bounds, names = _cumulative(table)
    return names[min(bisect.bisect_right(bounds, rng.random() * bounds[-1]), len(names) - 1)]


def _round6(value: int) -> int:
    """Truncate 1e-8 units to 6 decimals toward zero (fees and PnL)."""
    return value - value % 100 if value >= 0 else -((-value) - (-value) % 100)


def _check_deep(deep: Mapping[str, int], books: Mapping[str, CoinBook]) -> dict[str, int]:
    """Validate ``{coin: orders}`` for deep books; raises ValueError naming the bad entry."""
    checked = {}
    for coin, count in deep.items():
        if coin not in books:
            raise ValueError(f"deep: unknown coin {coin!r} (known: {', '.join(books)})")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"deep: {coin} needs a positive number of orders, got {count!r}")
        checked[coin] = count
    return checked


def _trigger_text(px: int) -> str:
    text = fmt(px)
    return text[:-2] if text.endswith(".0") else text


class Exchange:
    """The simulated exchange: books, traders and the matching engine."""

    def __init__(
        self,
        seed: int = 0,
        scale: float = 1.0,
        extra_perps: int = 0,
        start_height: int = 1_000_000_000,
        start_time_ns: int = 1_777_582_000_000_000_000,
        orders_per_coin: int | None = None,
        trade_share: float = 1.0,
        deep: Mapping[str, int] | None = None,
    ) -> None:
        """``trade_share``: the share of blocks in which takers trade and trigger
        orders fire (1.0: a few takers in every block; :data:`QUIET_TRADE_SHARE`
        for a quiet market). ``deep``: coin -> resting orders for mainnet-deep
        books (``{"BTC": 51_000}``), see :meth:`_seed_deep`.
        """
        if not 0.0 <= trade_share <= 1.0:
            raise ValueError(f"trade_share must be within 0..1, got {trade_share}")
        self.rng = random.Random(seed)
        self.scale = scale
        self.trade_share = trade_share
        self.height = start_height
        self.markets = markets(extra_perps)
        self._next_oid = 400_000_000_000
        self._twap_id = 1_780_000
        self._positions: dict[tuple[str, str], list[int]] = {}
        self._make_users()
        target = orders_per_coin if orders_per_coin is not None else int(600 * scale) + 20
        self.target_orders = max(0, target)
        self.books: dict[str, CoinBook] = {m.coin: CoinBook(m, m.base_px) for m in self.markets}
        self.deep = _check_deep(deep or {}, self.books)
        self._coin_weights = tuple((m.coin, self._coin_weight(m)) for m in self.markets)
        # computed once: hashing a few hundred weights per pick was a third of step()
        self._coin_bounds, self._coin_names = _cumulative(self._coin_weights)
        self._seed_books(start_time_ns // 1_000_000)
        for coin, count in self.deep.items():
            self._seed_deep(self.books[coin], count, start_time_ns // 1_000_000)

    # -- setup -------------------------------------------------------------

    def _address(self) -> str:
        return f"0x{self.rng.getrandbits(160):040x}"

    def _make_users(self) -> None:
        self.makers = [self._address() for _ in range(12)]
        self.takers = [self._address() for _ in range(48)]
        self.hip2_user = self._address()
        builders = [self._address() for _ in range(3)]
        self._builder: dict[str, dict[str, Any] | None] = {}
        for user in self.makers + self.takers:
            use = self.rng.random() < 0.12
            fee = self.rng.choice((10, 20, 50))
            self._builder[user] = {"b": self.rng.choice(builders), "f": fee} if use else None

    @staticmethod
    def _coin_weight(market: Market) -> float:
        return {"BTC": 25.0, "ETH": 15.0, "xyz:TSLA": 12.0, "HYPE": 10.0}.get(market.coin, 5.0)

    def _seed_books(self, ms: int) -> None:
        for book in self.books.values():
            for _ in range(self.target_orders):
                user = self.rng.choice(self.makers)
                side = self.rng.choice("BA")
                order = self._new_order(book, user, side, self._passive_px(book, side), ms)
                self._rest(book, order)
            if book.market.kind == SPOT:
                for i in range(16):
                    side = "BA"[i % 2]
                    order = self._new_order(book, self.hip2_user, side, 0, ms)
                    order.px = self._passive_px(book, side)
                    order.cloid = None
                    order.silent = True
                    self._rest(book, order)

    def _seed_deep(self, book: CoinBook, count: int, ms: int) -> None:
        """Fill ``book`` up to ``count`` resting orders, mainnet-shaped.

        One bid level ~1% under the mid holds ``DEEP_LEVEL_SHARE`` of them
        (those orders are never cancelled at random, so the level stays big);
        the rest spread over ~``DEEP_MEAN_TICKS`` ticks each side.
        """
        missing = count - len(book.resting)
        level_px = to_grid(book.market, book.mid * 99 // 100)
        for _ in range(int(count * DEEP_LEVEL_SHARE)):
            order = self._new_order(book, self.rng.choice(self.makers), "B", level_px, ms)
            order.anchored = True
            self._rest(book, order)
            missing -= 1
        for _ in range(max(0, missing)):
            side = self.rng.choice("BA")
            px = self._passive_px(book, side, DEEP_MEAN_TICKS)
            self._rest(book, self._new_order(book, self.rng.choice(self.makers), side, px, ms))

    # -- public ------------------------------------------------------------

    def step(
        self, time_ns: int, requests: Sequence[OrderRequest | int] = (), background: bool = True
    ) -> Block:
        """Produce the next block at ``time_ns`` (epoch nanoseconds).

        ``requests`` (orders, or oids to cancel) run first, in order; with
        ``background=False`` nothing else happens (no drift, no traders), which
        makes scenario tests exact.
        """
        self.height += 1
        ctx = _Ctx(Block(self.height, time_ns), node_time(time_ns), time_ns // 1_000_000)
        trading = self._trading() if background else True
        for book in self.books.values():
            if background:
                self._drift(book)
            if trading:
                self._fire_triggers(book, ctx)
        for request in requests:
            self._submit(ctx, request)
        if not background:
            return ctx.block
        for _ in range(self._background_count()):
            self._background(ctx)
        if trading:
            low = 0 if self.trade_share >= 1.0 else 1
            for _ in range(self.rng.randint(low, 3)):
                self._taker(ctx)
        self._hip2(ctx)
        return ctx.block

    def snapshot(self) -> list[Any]:
        """The book in the node's fileSnapshot format: ``[height, [[coin, [bids, asks]]]]``."""
        coins = []
        for coin, book in self.books.items():
            bids = [[o.user, o.to_json()] for o in book.bids.orders()]
            asks = [[o.user, o.to_json()] for o in book.asks.orders()]
            coins.append([coin, [bids, asks]])
        return [self.height, coins]

    def order_count(self) -> int:
        """How many orders rest on all books."""
        return sum(len(b.resting) for b in self.books.values())

    # -- helpers -----------------------------------------------------------

    def _trading(self) -> bool:
        """Whether takers trade in this block (always, unless ``trade_share`` < 1)."""
        return self.trade_share >= 1.0 or self.rng.random() < self.trade_share

    def _background_count(self) -> int:
        if self.scale <= 0:
            return 0
        return max(1, round(self.rng.randint(500, 1500) * self.scale))

    def _pick_book(self) -> CoinBook:
        bounds, names = self._coin_bounds, self._coin_names
        pick = min(bisect.bisect_right(bounds, self.rng.random() * bounds[-1]), len(names) - 1)
        return self.books[names[pick]]

    def _oid(self) -> int:
        self._next_oid += self.rng.randint(1, 40)
        return self._next_oid

    def _hash(self) -> str:
        return f"0x{self.rng.getrandbits(256):064x}"

    def _cloid(self, user: str) -> str | None:
        if user in self.makers or self.rng.random() < 0.5:
            return f"0x{self.rng.getrandbits(128):032x}"
        return None

    def _size(self, book: CoinBook, big: bool = False) -> int:
        lots = int(self.rng.expovariate(1 / 40)) + 1
        if big:
            lots *= 200
        # Keep most orders above the $10 minimum notional.
        floor = (11 * UNIT * UNIT) // (book.mid * book.market.lot) + 1
        return max(lots, floor) * book.market.lot

    def _passive_px(self, book: CoinBook, side: str, mean_ticks: int = 12) -> int:
        ticks = int(self.rng.expovariate(1 / mean_ticks)) + 1
        tick = book.market.tick
        if side == "B":
            px = book.mid - ticks * tick
            best_ask = book.asks.best()
            if best_ask is not None:
                px = min(px, best_ask - tick)
            return to_grid(book.market, px)
        px = book.mid + ticks * tick
        best_bid = book.bids.best()
        if best_bid is not None:
            px = max(px, best_bid + tick)
        return to_grid(book.market, px, up=True)

    def _new_order(
        self, book: CoinBook, user: str, side: str, px: int, ms: int, **kw: Any
    ) -> Order:
        sz = kw.pop("sz", None) or self._size(book)
        return Order(
            oid=self._oid(),
            user=user,
            coin=book.market.coin,
            side=side,
            px=px,
            sz=sz,
            orig_sz=sz,
            timestamp=ms,
            cloid=kw.pop("cloid", self._cloid(user)),
            **kw,
        )

    def _status(
        self, ctx: _Ctx, order: Order, status: str, hash_: str | None = None, sz: int | None = None
    ) -> None:
        ctx.block.statuses.append(
            {
                "time": ctx.time,
                "user": order.user,
                "hash": hash_,
                "builder": self._builder.get(order.user),
                "status": status,
                "order": order.to_json(sz),
            }
        )

    def _diff(self, ctx: _Ctx, order: Order, body: Any) -> None:
        ctx.block.diffs.append(
            {
                "user": order.user,
                "oid": order.oid,
                "coin": order.coin,
                "side": order.side,
                "px": fmt(order.px),
                "raw_book_diff": body,
            }
        )

    def _rest(self, book: CoinBook, order: Order, before: Order | None = None) -> None:
        book.side(order.side).add(order, before)
        order.slot = len(book.resting)
        book.resting.append(order)

    def _unrest(self, book: CoinBook, order: Order) -> None:
        book.side(order.side).remove(order)
        last = book.resting.pop()
        if last is not order:
            book.resting[order.slot] = last
            last.slot = order.slot
        order.slot = -1

    def _rest_new(
        self, ctx: _Ctx, book: CoinBook, order: Order, before: Order | None = None
    ) -> None:
        self._rest(book, order, before)
        body: dict[str, Any] = {"sz": fmt(order.sz)}
        if before is not None:
            body["insertBefore"] = before.oid
        self._diff(ctx, order, {"new": body})

    def _cancel(self, ctx: _Ctx, book: CoinBook, order: Order, status: str) -> None:
        self._unrest(book, order)
        if not order.silent:
            self._status(ctx, order, status)
        self._diff(ctx, order, "remove")

    # -- price drift and triggers -----------------------------------------

    def _drift(self, book: CoinBook) -> None:
        market = book.market
        step = self.rng.choice((-2, -1, -1, 0, 0, 0, 0, 1, 1, 2)) * market.tick
        low = int(market.base_px * DRIFT_BAND[0])
        high = int(market.base_px * DRIFT_BAND[1])
        book.mid = to_grid(market, min(high, max(low, book.mid + step)))

    def _fire_triggers(self, book: CoinBook, ctx: _Ctx) -> None:
        fired = [o for o in book.triggers if self._triggered(book, o)]
        for order in fired:
            book.triggers.remove(order)
            self._status(ctx, order, "triggered")
            shown = Order(**{k: getattr(order, k) for k in Order.__slots__})
            order.timestamp = ctx.ms
            order.tif = "Gtc"
            order.trigger_condition = "Triggered"
            order.is_trigger = False
            order.trigger_px = 0
            self._execute(ctx, book, order, self._hash(), shown=shown)

    @staticmethod
    def _triggered(book: CoinBook, order: Order) -> bool:
        above = order.trigger_condition.startswith("Price above")
        return book.mid >= order.trigger_px if above else book.mid <= order.trigger_px

    # -- background actions -----------------------------------------------

    def _background(self, ctx: _Ctx) -> None:
        book = self._pick_book()
        action = _weighted(self.rng, ACTIONS)
        getattr(self, f"_do_{action}")(ctx, book)

    def _do_alo_reject(self, ctx: _Ctx, book: CoinBook) -> None:
        """An ALO order that would cross: badAloPxRejected (95% of mainnet statuses)."""
        side = self.rng.choice("BA")
        best = book.opposite(side).best()
        tick = book.market.tick
        ticks = self.rng.randint(0, 3)
        if best is None:
            px = book.mid
        else:
            px = best + ticks * tick if side == "B" else best - ticks * tick
        px = to_grid(book.market, px, up=side == "B")
        user = self.rng.choice(self.makers)
        order = self._new_order(book, user, side, px, ctx.ms)
        self._status(ctx, order, "badAloPxRejected")

    def _do_book(self, ctx: _Ctx, book: CoinBook) -> None:
        """Place or cancel so that each book hovers around ``target_orders``."""
        target = self.deep.get(book.market.coin, self.target_orders)
        if self.rng.random() < len(book.resting) / (2 * max(1, target)):
            self._cancel_random(ctx, book)
        else:
            self._place_passive(ctx, book)

    def _cancel_random(self, ctx: _Ctx, book: CoinBook) -> None:
        order = self.rng.choice(book.resting)
        if order.silent or order.anchored:
            return
        if order.reduce_only and self.rng.random() < 0.5:
            status = "reduceOnlyCanceled"
        else:
            status = _weighted(self.rng, CANCEL_STATUSES)
        self._cancel(ctx, book, order, status)

    def _place_passive(self, ctx: _Ctx, book: CoinBook) -> None:
        side = self.rng.choice("BA")
        user = self.rng.choice(self.makers if self.rng.random() < 0.85 else self.takers)
        tif = "Alo" if self.rng.random() < 0.9 else "Gtc"
        order = self._new_order(book, user, side, self._passive_px(book, side), ctx.ms, tif=tif)
        self._status(ctx, order, "open", self._hash())
        before = None
        level = book.side(side).levels.get(order.px)
        if level and tif == "Alo" and self.rng.random() < 0.08:
            before = self.rng.choice(level)
        self._rest_new(ctx, book, order, before)

    def _do_modify(self, ctx: _Ctx, book: CoinBook) -> None:
        """Shrink an order in place (an ``update`` diff) or move it (cancel + new oid)."""
        if not book.resting:
            return
        order = self.rng.choice(book.resting)
        if order.silent or order.anchored:
            return
        lots = order.sz // book.market.lot
        if lots > 1 and self.rng.random() < 0.6:
            new_sz = self.rng.randint(1, lots - 1) * book.market.lot
            self._diff(ctx, order, {"update": {"origSz": fmt(order.sz), "newSz": fmt(new_sz)}})
            order.sz = new_sz
            self._status(ctx, order, "open", self._hash())
            return
        self._cancel(ctx, book, order, "canceled")
        moved = self._new_order(
            book,
            order.user,
            order.side,
            self._passive_px(book, order.side),
            ctx.ms,
            cloid=order.cloid,
        )
        self._status(ctx, moved, "open", self._hash())
        self._rest_new(ctx, book, moved)

    def _do_reject(self, ctx: _Ctx, book: CoinBook) -> None:
        """Rejections other than badAloPx: margin, min notional, tick, reduce-only…"""
        table = SPOT_REJECTIONS if book.market.is_spot else PERP_REJECTIONS
        status = _weighted(self.rng, table)
        side = self.rng.choice("BA")
        user = self.rng.choice(self.takers)
        px = self._passive_px(book, side)
        kw: dict[str, Any] = {"tif": self.rng.choice(("Alo", "Gtc", "Ioc"))}
        if status in ("perpMarginRejected", "insufficientSpotBalanceRejected"):
            kw["sz"] = self._size(book, big=True)
        elif status in ("minTradeNtlRejected", "minTradeSpotNtlRejected"):
            kw["sz"] = book.market.lot
        elif status == "tickRejected":
            px += book.market.tick // 10 or 1
        elif status == "reduceOnlyRejected":
            kw["reduce_only"] = True
        if status == "badTriggerPxRejected":
            order = self._trigger_order(ctx, book, user, side, wrong_side=True)
        else:
            order = self._new_order(book, user, side, px, ctx.ms, **kw)
        self._status(ctx, order, status)

    def _do_ioc_reject(self, ctx: _Ctx, book: CoinBook) -> None:
        """An IOC order priced away from the book: iocCancelRejected."""
        side = self.rng.choice("BA")
        user = self.rng.choice(self.takers)
        order = self._new_order(book, user, side, self._passive_px(book, side), ctx.ms, tif="Ioc")
        self._status(ctx, order, "iocCancelRejected")

    def _do_trigger(self, ctx: _Ctx, book: CoinBook) -> None:
        """A stop / take-profit order: status open, no diff until it triggers."""
        if book.market.is_spot:
            return self._do_alo_reject(ctx, book)
        user = self.rng.choice(self.takers)
        order = self._trigger_order(ctx, book, user, self.rng.choice("BA"))
        self._status(ctx, order, "open", self._hash())
        if self.rng.random() < 0.1:
            self._status(ctx, order, "canceled")
        else:
            book.triggers.append(order)

    def _trigger_order(
        self, ctx: _Ctx, book: CoinBook, user: str, side: str, wrong_side: bool = False
    ) -> Order:
        kind = self.rng.choice(TRIGGER_TYPES)
        stop = kind.startswith("Stop")
        # A sell stop triggers below the mid, a sell take-profit above (mirrored for buys).
        above = (side == "B") == stop
        if wrong_side:
            above = not above
        ticks = self.rng.randint(2, 40) * (1 if above else -1)
        trigger_px = to_grid(book.market, book.mid + ticks * book.market.tick, up=above)
        slip = trigger_px // 20 if kind.endswith("Market") else book.market.tick * 2
        limit = trigger_px + slip if side == "B" else trigger_px - slip
        word = "above" if above else "below"
        return self._new_order(
            book,
            user,
            side,
            to_grid(book.market, limit, up=side == "B"),
            ctx.ms,
            order_type=kind,
            tif=None,
            trigger_condition=f"Price {word} {_trigger_text(trigger_px)}",
            is_trigger=True,
            trigger_px=trigger_px,
        )

    def _do_reduce_only(self, ctx: _Ctx, book: CoinBook) -> None:
        """A resting reduce-only order, clamped to the position (diff size < status size)."""
        if book.market.kind != PERP:
            return self._do_alo_reject(ctx, book)
        user = self.rng.choice(self.takers + self.makers)
        position = self._positions.get((user, book.market.coin), [0, 0])[0]
        side = "A" if position > 0 else "B"
        order = self._new_order(
            book, user, side, self._passive_px(book, side), ctx.ms, tif="Gtc", reduce_only=True
        )
        if position == 0:
            self._status(ctx, order, "reduceOnlyRejected")
            return
        self._status(ctx, order, "open", self._hash())
        order.sz = min(order.sz, abs(position))
        self._rest_new(ctx, book, order)

    # -- explicit requests ---------------------------------------------------

    def find(self, oid: int) -> Order | None:
        """The resting or untriggered order ``oid``, if any."""
        for book in self.books.values():
            for order in book.resting + book.triggers:
                if order.oid == oid:
                    return order
        return None

    def _submit(self, ctx: _Ctx, request: OrderRequest | int) -> None:
        if isinstance(request, int):
            order = self.find(request)
            if order is None:
                raise ValueError(f"cannot cancel oid {request}: not on the book")
            book = self.books[order.coin]
            if order.is_trigger:
                book.triggers.remove(order)
                self._status(ctx, order, "canceled")
            else:
                self._cancel(ctx, book, order, "canceled")
            return
        book = self.books[request.coin]
        kw: dict[str, Any] = {
            "tif": request.tif,
            "order_type": request.order_type,
            "reduce_only": request.reduce_only,
            "cloid": request.cloid,
            "sz": units(request.sz),
        }
        if request.trigger_px is not None:
            trigger_px = units(request.trigger_px)
            word = "above" if trigger_px > book.mid else "below"
            kw.update(
                trigger_px=trigger_px,
                is_trigger=True,
                trigger_condition=f"Price {word} {_trigger_text(trigger_px)}",
            )
        order = self._new_order(book, request.user, request.side, units(request.px), ctx.ms, **kw)
        if order.is_trigger:
            self._status(ctx, order, "open", self._hash())
            book.triggers.append(order)
        elif request.tif == "Alo":
            self._place_alo(ctx, book, order, request.insert_before)
        else:
            self._execute(ctx, book, order, self._hash())

    def _place_alo(
        self, ctx: _Ctx, book: CoinBook, order: Order, insert_before: int | None
    ) -> None:
        best = book.opposite(order.side).best()
        if best is not None and (best <= order.px if order.side == "B" else best >= order.px):
            self._status(ctx, order, "badAloPxRejected")
            return
        before = None
        if insert_before is not None:
            before = self.find(insert_before)
            if before is None or before.px != order.px or before.side != order.side:
                raise ValueError(
                    f"insertBefore {insert_before}: no resting order at {fmt(order.px)}"
                )
        self._status(ctx, order, "open", self._hash())
        self._rest_new(ctx, book, order, before)

    # -- takers and matching ----------------------------------------------

    def _taker(self, ctx: _Ctx) -> None:
        book = self._pick_book()
        kind = _weighted(self.rng, TAKERS)
        side = self.rng.choice("BA")
        opposite = book.opposite(side).best()
        user = self.rng.choice(self.takers if self.rng.random() < 0.8 else self.makers)
        if opposite is None:
            if kind == "market":
                order = self._new_order(
                    book, user, side, book.mid, ctx.ms, tif="FrontendMarket", order_type="Market"
                )
                self._status(ctx, order, "marketOrderNoLiquidityRejected")
            return
        deep = self.rng.randint(0, 4) * book.market.tick
        limit = opposite + deep if side == "B" else opposite - deep
        kw: dict[str, Any] = {"tif": "Gtc"}
        if kind == "ioc":
            kw["tif"] = "Ioc"
        elif kind == "market":
            slip = book.mid // 20
            limit = book.mid + slip if side == "B" else book.mid - slip
            kw.update(tif="FrontendMarket", order_type="Market")
        elif kind == "twap":
            kw.update(tif="Ioc", cloid=None)
        limit = to_grid(book.market, max(limit, book.market.tick), up=side == "B")
        order = self._new_order(book, user, side, limit, ctx.ms, **kw)
        if kind == "twap":
            order.silent = True
            self._twap_id += self.rng.randint(1, 5)
            self._execute(ctx, book, order, ZERO_HASH, twap_id=self._twap_id)
        else:
            self._execute(ctx, book, order, self._hash())

    def _execute(
        self,
        ctx: _Ctx,
        book: CoinBook,
        order: Order,
        hash_: str,
        shown: Order | None = None,
        twap_id: int | None = None,
    ) -> None:
        """Match ``order`` against the book, then rest, fill or cancel the rest."""
        shown = shown or order
        self._match(ctx, book, order, hash_, twap_id)
        silent = order.silent
        order.silent = False
        if order.sz == 0:
            if not silent:
                self._status(ctx, shown, "filled", hash_, sz=0)
        elif order.tif in ("Ioc", "FrontendMarket"):
            if silent:
                return
            if order.sz < order.orig_sz:
                self._status(ctx, shown, "canceled", hash_)
            elif order.tif == "Ioc":
                self._status(ctx, shown, "iocCancelRejected")
            else:
                self._status(ctx, shown, "marketOrderNoLiquidityRejected")
        else:
            if shown is order:
                self._status(ctx, order, "open", hash_)
            self._rest_new(ctx, book, order)

    def _match(
        self, ctx: _Ctx, book: CoinBook, taker: Order, hash_: str, twap_id: int | None
    ) -> None:
        makers = book.opposite(taker.side)
        while taker.sz > 0:
            best = makers.best()
            if best is None or (best > taker.px if taker.side == "B" else best < taker.px):
                return
            maker = makers.front()
            if maker.user == taker.user:
                self._cancel(ctx, book, maker, "selfTradeCanceled")
                continue
            qty = min(taker.sz, maker.sz)
            self._fill_pair(ctx, taker, maker, qty, hash_, twap_id)
            taker.sz -= qty
            if qty == maker.sz:
                maker.sz = 0
                self._unrest(book, maker)
                self._diff(ctx, maker, "remove")
                if not maker.silent:
                    self._status(ctx, maker, "filled", sz=0)
            else:
                new_sz = maker.sz - qty
                self._diff(ctx, maker, {"update": {"origSz": fmt(maker.sz), "newSz": fmt(new_sz)}})
                maker.sz = new_sz

    def _fill_pair(
        self, ctx: _Ctx, taker: Order, maker: Order, qty: int, hash_: str, twap_id: int | None
    ) -> None:
        tid = self.rng.getrandbits(50)
        market = self.books[taker.coin].market
        taker_fill = self._fill(ctx, market, taker, maker.px, qty, hash_, tid, True, twap_id)
        maker_fill = self._fill(ctx, market, maker, maker.px, qty, hash_, tid, False, None)
        pairs = [[taker.user, taker_fill], [maker.user, maker_fill]]
        if taker.side == "A":
            pairs.reverse()
        ctx.block.fills.extend(pairs)

    def _fill(
        self,
        ctx: _Ctx,
        market: Market,
        order: Order,
        px: int,
        qty: int,
        hash_: str,
        tid: int,
        crossed: bool,
        twap_id: int | None,
    ) -> dict[str, Any]:
        start, direction, pnl = self._apply_position(order.user, market, order.side, px, qty)
        notional = px * qty // UNIT
        rate = (45, 100_000) if crossed else self.rng.choice(((15, 100_000), (-1, 100_000)))
        fee_base = qty if market.is_spot and order.side == "B" else notional
        fee = _round6(
            fee_base * rate[0] // rate[1] if rate[0] > 0 else -(fee_base * -rate[0] // rate[1])
        )
        fill: dict[str, Any] = {
            "coin": market.coin,
            "px": fmt(px),
            "sz": fmt(qty),
            "side": order.side,
            "time": ctx.ms,
            "startPosition": fmt(start),
            "dir": direction,
            "closedPnl": fmt(pnl),
            "hash": hash_,
            "oid": order.oid,
            "crossed": crossed,
            "fee": fmt(fee),
            "tid": tid,
        }
        if order.cloid is not None:
            fill["cloid"] = order.cloid
        fill["feeToken"] = market.base_token if market.is_spot and order.side == "B" else "USDC"
        fill["twapId"] = twap_id
        return fill

    def _apply_position(
        self, user: str, market: Market, side: str, px: int, qty: int
    ) -> tuple[int, str, int]:
        """Update ``user``'s position; return (start position, dir, closed PnL)."""
        key = (user, market.coin)
        position = self._positions.get(key)
        if position is None:
            start_balance = self.rng.randint(0, 5000) * market.lot if market.is_spot else 0
            position = self._positions[key] = [start_balance, px]
        start, entry = position
        signed = qty if side == "B" else -qty
        if market.is_spot:
            pnl = 0 if side == "B" else _round6((px - entry) * qty // UNIT)
            position[0] = start + signed
            if side == "B" and position[0] > 0:
                position[1] = (entry * max(start, 0) + px * qty) // position[0]
            return start, "Buy" if side == "B" else "Sell", pnl
        if start == 0 or (start > 0) == (signed > 0):
            position[1] = (entry * abs(start) + px * qty) // (abs(start) + qty)
            position[0] = start + signed
            return start, "Open Long" if signed > 0 else "Open Short", 0
        closed = min(abs(start), qty)
        pnl = _round6((px - entry) * closed // UNIT * (1 if start > 0 else -1))
        position[0] = start + signed
        if qty <= abs(start):
            direction = "Close Long" if start > 0 else "Close Short"
        else:
            direction = "Long > Short" if start > 0 else "Short > Long"
            position[1] = px
        return start, direction, pnl

    # -- HIP-2 ------------------------------------------------------------

    def _hip2(self, ctx: _Ctx) -> None:
        """Hyperliquidity on spot coins: orders that move with diffs only, no statuses."""
        for book in self.books.values():
            if book.market.kind != SPOT or self.rng.random() < 0.5:
                continue
            mine = [o for o in book.resting if o.silent]
            if mine:
                self._cancel(ctx, book, self.rng.choice(mine), "canceled")
            side = self.rng.choice("BA")
            order = self._new_order(
                book, self.hip2_user, side, self._passive_px(book, side), ctx.ms, cloid=None
            )
            order.silent = True
            self._rest_new(ctx, book, order)
