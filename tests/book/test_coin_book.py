"""CoinBook: one coin's two sides, placement, top of book, L4 levels, comparison, dismantling."""

from __future__ import annotations

import pytest

from orderbook.book.coin_book import (
    EMPTY_TOP,
    CoinBook,
    compare_books,
    dismantle,
    orders_of,
    top_of,
)
from orderbook.book.order import DEFAULT_META, Order


def order(oid: int, sz: int = 100_000_000, user: str = "0xa") -> Order:
    return Order(oid, user, sz, 1_700_000_000_000, None, DEFAULT_META)


def test_side_by_name():
    """ "B" and "A" name the sides; anything else is a ValueError naming coin and value."""
    book = CoinBook("BTC")
    assert book.side("B") is book.bids and book.side("A") is book.asks
    with pytest.raises(ValueError, match="BTC: side must be 'B' or 'A', not 'X'"):
        book.side("X")


def test_add_queues_in_order_and_in_front_of_before():
    """add appends, or inserts in front of ``before``; an unknown ``before`` goes to the back."""
    book = CoinBook("BTC")
    px = 10_000_000_000
    assert book.add(order(1), "B", px) and book.add(order(2), "B", px)
    assert book.add(order(3), "B", px, before=2)
    assert book.add(order(4), "B", px, before=99) is False
    assert list(book.bids.levels[px].orders) == [1, 3, 2, 4]
    assert book.order_count() == 4 and not book.is_empty()
    assert [o.oid for o in orders_of(book)] == [1, 3, 2, 4]


def test_top_of_reports_best_levels_or_none():
    """top_of: best bid/ask price, size and count, None for an empty side."""
    book = CoinBook("BTC")
    assert top_of(book) == EMPTY_TOP
    book.add(order(1, 50_000_000), "B", 9_900_000_000)
    book.add(order(2, 25_000_000), "B", 10_000_000_000)
    book.add(order(3, 25_000_000), "B", 10_000_000_000)
    assert top_of(book) == (10_000_000_000, None, 50_000_000, 2, None, None)
    book.add(order(4), "A", 10_100_000_000)
    assert top_of(book)[1::3] == (10_100_000_000, 100_000_000)


def test_l4_levels_best_first_with_client_fields():
    """Bids high to low, asks low to high, queue order within; prices and sizes canonical."""
    book = CoinBook("ETH")
    book.add(order(1), "B", 200_000_000_000)
    book.add(order(2), "B", 201_000_000_000)
    book.add(order(3, 150_000_000), "A", 202_000_000_000)
    bids, asks = book.l4_levels()
    assert [(o["oid"], o["limitPx"]) for o in bids] == [(2, "2010.0"), (1, "2000.0")]
    assert asks[0] | {"timestamp": 0} == {
        "user": "0xa", "coin": "ETH", "side": "A", "limitPx": "2020.0", "sz": "1.5", "oid": 3,
        "timestamp": 0, "triggerCondition": "N/A", "isTrigger": False, "triggerPx": "0.0",
        "isPositionTpsl": False, "reduceOnly": False, "orderType": "Limit", "tif": None,
        "cloid": None,
    }  # fmt: skip


def test_compare_books_against_a_missing_book():
    """A coin only one side has: every level is reported with its oids; none vs none is equal."""
    ours = CoinBook("BTC")
    ours.add(order(1), "B", 100_000_000)
    ours.add(order(2), "B", 100_000_000)
    assert compare_books(ours, None, "BTC") == ["BTC bid level 1.0 only in ours: oids 1, 2"]
    assert compare_books(None, ours, "BTC") == ["BTC bid level 1.0 only in theirs: oids 1, 2"]
    assert compare_books(None, None, "BTC") == []


def test_compare_books_names_the_field_that_differs():
    """Same oids and queue, one size and one user differ: one line each."""
    ours, theirs = CoinBook("BTC"), CoinBook("BTC")
    ours.add(order(1), "A", 100_000_000)
    theirs.add(order(1, sz=200_000_000, user="0xb"), "A", 100_000_000)
    assert compare_books(ours, theirs, "BTC") == [
        "BTC ask level 1.0: oid 1 user: ours '0xa', theirs '0xb'",
        "BTC ask level 1.0: oid 1 sz: ours '1.0', theirs '2.0'",
    ]


def test_dismantle_empties_books_in_slices():
    """dismantle yields every ``budget`` orders and leaves no level, key or back reference."""
    book = CoinBook("BTC")
    kept = [order(oid) for oid in range(10)]
    for item in kept:
        book.add(item, "B" if item.oid % 2 else "A", 100_000_000 * (1 + item.oid))
    level = kept[0].level
    steps = sum(1 for _ in dismantle([book], budget=3))
    assert steps == 3  # after orders 3, 6 and 9 of 10
    assert book.is_empty() and book.bids.keys == [] and book.asks.keys == []
    assert level.side is None and level.orders == {}
