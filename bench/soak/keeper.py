"""The well-behaved client: subscribes, reads everything, keeps its own books.

For each coin it subscribes ``trades``, ``l4Book``, ``l2Book`` and ``bbo``
(in that order, so trades are complete from the first l2Book's height on,
and from the l4Book Snapshot's when that is later), keeps the L4 book from Snapshot + Updates with the client-side book of
``tests/e2e/l4client.py`` (written from the documentation, independent of the
server's code), counts every trade ``tid`` and checks each ``l2Book`` that
arrives at the L4 book's height against the L4 book aggregated by price. It
pings every ``ping_s`` seconds, as the docs ask.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from twisted.internet import task

from bench.soak.connect import SoakProtocol
from tests.e2e.l4client import L4Book

L2_DEPTH = 20  # an l2Book subscription's default nLevels


@dataclass
class CoinState:
    """One coin as one client sees it."""

    book: L4Book | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)
    first_height: int | None = None  # the first Snapshot's height
    # The first l2Book's height: the trades subscription (sent before it) was in place by
    # then. A Snapshot may be older than the subscription (a shared snapshot is followed
    # by the Updates since), so trades are complete after the later of the two.
    first_l2_height: int | None = None
    received: int = 0  # the highest Updates height received
    snapshots: list[int] = field(default_factory=list)  # heights of every Snapshot
    tids: Counter = field(default_factory=Counter)

    def trades_from(self) -> int | None:
        """Trades of every block above this height must have arrived."""
        known = [h for h in (self.first_height, self.first_l2_height) if h is not None]
        return max(known) if known else None


@dataclass
class KeeperState:
    """Everything one well-behaved client saw (outlives its connection)."""

    name: str
    coins: list[str]
    per_coin: dict[str, CoinState] = field(default_factory=dict)
    limit: float = float("inf")  # apply Updates up to this height only
    errors: list[str] = field(default_factory=list)
    messages: Counter = field(default_factory=Counter)
    l2_checked: int = 0
    bbo_checked: int = 0

    def __post_init__(self) -> None:
        self.per_coin = {coin: CoinState() for coin in self.coins}

    def error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(text)

    def height(self) -> int:
        """The lowest applied height over its coins (-1 before every Snapshot)."""
        books = [state.book for state in self.per_coin.values()]
        if any(book is None for book in books):
            return -1
        return min(book.height for book in books)  # type: ignore[union-attr]

    def received(self) -> int:
        return min((state.received for state in self.per_coin.values()), default=0)

    def advance(self) -> None:
        """Apply pending Updates up to ``limit``."""
        for coin, state in self.per_coin.items():
            book = state.book
            while book is not None and state.pending and state.pending[0]["height"] <= self.limit:
                update = state.pending.pop(0)
                if update["height"] <= book.height:
                    continue
                if update["height"] != book.height + 1:
                    self.error(f"{coin}: Updates {update['height']} after {book.height}")
                    state.book = book = None  # wait for a fresh Snapshot (resubscribed)
                    raise _Gap(coin)
                book.apply(update)


class _Gap(Exception):
    """An Updates message skipped a height: the client resubscribes."""

    def __init__(self, coin: str) -> None:
        super().__init__(coin)
        self.coin = coin


class KeeperProtocol(SoakProtocol):
    """The connection of a well-behaved client; its findings go to ``state``."""

    keeper: KeeperState
    ping_s: float = 15.0
    check_every: int = 10  # compare one l2Book in this many with the L4 book

    def onOpen(self) -> None:
        super().onOpen()
        for coin in self.keeper.coins:
            for channel in ("trades", "l4Book", "l2Book", "bbo"):
                self.subscribe({"type": channel, "coin": coin})
        self._pinger = task.LoopingCall(self.send_json, {"method": "ping"})
        self._pinger.clock = self.factory.reactor
        self._pinger.start(self.ping_s, now=False)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N803
        pinger = getattr(self, "_pinger", None)
        if pinger is not None and pinger.running:
            pinger.stop()
        super().onClose(wasClean, code, reason)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N803
        state = self.keeper
        try:
            message = json.loads(payload)
            channel = message["channel"]
            state.messages[channel] += 1
            handler = getattr(self, f"_on_{channel}", None)
            if handler is None:
                state.error(f"unexpected message {payload[:200]!r}")
            else:
                handler(message.get("data"))
        except _Gap as gap:
            self.subscribe({"type": "l4Book", "coin": gap.coin}, "unsubscribe")
            self.subscribe({"type": "l4Book", "coin": gap.coin})
        except Exception as exc:
            state.error(f"{type(exc).__name__}: {exc} on {payload[:200]!r}")

    def _on_l4Book(self, data: dict[str, Any]) -> None:  # noqa: N802
        if "Snapshot" in data:
            snapshot = data["Snapshot"]
            coin = self.keeper.per_coin[snapshot["coin"]]
            coin.book = L4Book(snapshot)
            coin.pending = []
            coin.snapshots.append(snapshot["height"])
            if coin.first_height is None:
                coin.first_height = snapshot["height"]
        else:
            updates = data["Updates"]
            coin = self.keeper.per_coin[updates["coin"]]
            coin.pending.append(updates)
            coin.received = max(coin.received, updates["height"])
        self.keeper.advance()

    def _on_trades(self, data: list[dict[str, Any]]) -> None:
        for trade in data:
            self.keeper.per_coin[trade["coin"]].tids[trade["tid"]] += 1

    def _on_l2Book(self, data: dict[str, Any]) -> None:  # noqa: N802
        coin = self.keeper.per_coin[data["coin"]]
        if coin.first_l2_height is None:
            coin.first_l2_height = data["height"]
        book = coin.book
        if book is None or book.height != data["height"] or coin.pending:
            return
        if self.keeper.messages["l2Book"] % self.check_every:
            return
        self.keeper.l2_checked += 1
        expected = aggregate(book.levels(), L2_DEPTH)
        got = [
            [(Decimal(v["px"]), Decimal(v["sz"]), v["n"]) for v in side] for side in data["levels"]
        ]
        if got != expected:
            self.keeper.error(
                f"{data['coin']} l2Book at {data['height']} is not its L4 book aggregated: "
                f"{got[0][:2]}, {got[1][:2]} vs {expected[0][:2]}, {expected[1][:2]}"
            )

    def _on_bbo(self, data: dict[str, Any]) -> None:
        bid, ask = data["bbo"]
        self.keeper.bbo_checked += 1
        if bid is not None and ask is not None and Decimal(bid["px"]) >= Decimal(ask["px"]):
            self.keeper.error(f"{data['coin']} bbo crossed at {data['height']}: {bid} {ask}")

    def _on_subscriptionResponse(self, data: Any) -> None:  # noqa: N802
        pass

    def _on_pong(self, data: Any) -> None:
        pass

    def _on_error(self, data: Any) -> None:
        self.keeper.error(f"error message: {data}")


def aggregate(levels: list[list[dict[str, Any]]], depth: int) -> list[list[tuple]]:
    """L4 levels -> [(px, total sz, order count)] per side, best first, ``depth`` levels."""
    result = []
    for side in levels:
        rows: dict[Decimal, list] = {}
        for order in side:
            row = rows.setdefault(Decimal(order["limitPx"]), [Decimal(0), 0])
            row[0] += Decimal(order["sz"])
            row[1] += 1
        result.append([(px, sz, n) for px, (sz, n) in list(rows.items())[:depth]])
    return result
