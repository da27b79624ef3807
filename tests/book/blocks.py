"""Builders of node events and blocks for the book's tests."""

from __future__ import annotations

from typing import Any

import msgspec

from orderbook.book.books import Books
from orderbook.book.events import (
    Block,
    BookDiff,
    DiffBody,
    Fill,
    NewDiff,
    OrderStatus,
    StatusOrder,
    UpdateDiff,
)

ALICE = "0x" + "a" * 40
BOB = "0x" + "b" * 40
BLOCK_TIME = "2026-04-30T20:46:43.304461819"
BLOCK_MS = 1777582003304


def order(
    oid: int, coin: str = "BTC", side: str = "B", px: str = "100.0", sz: str = "1.0", **fields: Any
) -> dict[str, Any]:
    """A status ``order`` object as the node writes it."""
    body: dict[str, Any] = {
        "coin": coin,
        "side": side,
        "limitPx": px,
        "sz": sz,
        "oid": oid,
        "timestamp": BLOCK_MS - 1000,
        "triggerCondition": "N/A",
        "isTrigger": False,
        "triggerPx": "0.0",
        "children": [],
        "isPositionTpsl": False,
        "reduceOnly": False,
        "orderType": "Limit",
        "origSz": sz,
        "tif": "Gtc",
        "cloid": None,
    }
    body.update(fields)
    return body


def status(
    oid: int, status: str = "open", user: str = ALICE, time: str = BLOCK_TIME, **fields: Any
) -> OrderStatus:
    """An order status with a raw order, like ingestion decodes it."""
    raw = msgspec.Raw(msgspec.json.encode(order(oid, **fields)))
    return OrderStatus(time=time, user=user, status=status, order=raw)


def snapshot_order(oid: int, **fields: Any) -> StatusOrder:
    return msgspec.convert(order(oid, **fields), StatusOrder)


def new(
    oid: int,
    px: str = "100.0",
    sz: str = "1.0",
    side: str = "B",
    coin: str = "BTC",
    user: str = ALICE,
    before: int | None = None,
) -> BookDiff:
    body = DiffBody(new=NewDiff(sz=sz, insertBefore=before))
    return BookDiff(user=user, oid=oid, coin=coin, side=side, px=px, raw_book_diff=body)


def update(
    oid: int,
    orig: str,
    new_sz: str,
    px: str = "100.0",
    side: str = "B",
    coin: str = "BTC",
    user: str = ALICE,
) -> BookDiff:
    body = DiffBody(update=UpdateDiff(origSz=orig, newSz=new_sz))
    return BookDiff(user=user, oid=oid, coin=coin, side=side, px=px, raw_book_diff=body)


def remove(
    oid: int, px: str = "100.0", side: str = "B", coin: str = "BTC", user: str = ALICE
) -> BookDiff:
    return BookDiff(user=user, oid=oid, coin=coin, side=side, px=px, raw_book_diff="remove")


def fill(
    user: str,
    tid: int,
    side: str,
    crossed: bool,
    coin: str = "BTC",
    px: str = "100.0",
    sz: str = "0.5",
    oid: int = 1,
    time: int = BLOCK_MS,
) -> tuple[str, Fill]:
    return user, Fill(
        coin=coin,
        px=px,
        sz=sz,
        side=side,
        time=time,
        hash="0x" + "0" * 64,
        oid=oid,
        crossed=crossed,
        tid=tid,
    )


def block(
    height: int = 1,
    statuses: list[OrderStatus] | None = None,
    diffs: list[BookDiff] | None = None,
    fills: list[tuple[str, Fill]] | None = None,
    fills_ok: bool = True,
    time_ms: int = BLOCK_MS,
) -> Block:
    return Block(
        height=height,
        time_ms=time_ms,
        block_time=BLOCK_TIME,
        statuses=statuses or [],
        diffs=diffs or [],
        fills=fills or [],
        fills_ok=fills_ok,
    )


def oids(books: Books, coin: str = "BTC", side: int = 0) -> list[int]:
    """The oids resting on one side of ``coin`` (0 bids, 1 asks), in L4 order."""
    return [o["oid"] for o in books.l4_snapshot(coin)["levels"][side]]


def l4_order(books: Books, oid: int, coin: str = "BTC") -> dict:
    """The l4Book order object of resting ``oid``."""
    for side in books.l4_snapshot(coin)["levels"]:
        for entry in side:
            if entry["oid"] == oid:
                return entry
    raise AssertionError(f"oid {oid} not resting")


def load(books: Books, coin: str, side: str, specs: list[tuple[int, str]], **fields) -> None:
    """Load ALICE's snapshot orders ``(oid, px)`` onto one side of ``coin``."""
    books.load_orders(
        coin,
        side,
        [(ALICE, snapshot_order(oid, coin=coin, side=side, px=px, **fields)) for oid, px in specs],
    )
