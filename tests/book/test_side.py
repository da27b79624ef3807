"""Side: price index order, running level totals, empty levels dropped."""

from __future__ import annotations

from orderbook.book.order import DEFAULT_META, Order
from orderbook.book.side import Side


def order(oid: int, sz: int = 10) -> Order:
    return Order(oid, "0xu", sz, 0, None, DEFAULT_META)


def test_levels_best_first_on_both_sides():
    """Bids iterate highest first, asks lowest first."""
    bids, asks = Side("BTC", "B"), Side("BTC", "A")
    for px in (5, 9, 1, 7):
        bids.level_for(px).append(order(px))
        asks.level_for(px).append(order(100 + px))
    assert [lv.px for lv in bids.iter_levels()] == [9, 7, 5, 1]
    assert [lv.px for lv in asks.iter_levels()] == [1, 5, 7, 9]
    assert bids.best().px == 9 and asks.best().px == 1


def test_level_totals_and_removal():
    """A level keeps its size total; removing its last order drops it from the index."""
    side = Side("BTC", "B")
    a, b = order(1, 10), order(2, 25)
    side.level_for(100).append(a)
    side.level_for(100).append(b)
    side.resize(a, 4)
    assert side.levels[100].size == 29 and side.order_count() == 2
    side.remove(a)
    side.remove(b)
    assert side.levels == {} and side.keys == [] and side.best() is None
    assert b.level is None


def test_insert_before():
    """insert_before puts the order in front of the target; False when absent."""
    side = Side("BTC", "A")
    level = side.level_for(50)
    for oid in (1, 2, 3):
        level.append(order(oid))
    assert level.insert_before(order(4), 3)
    assert not level.insert_before(order(5), 99)
    assert list(level.orders) == [1, 2, 4, 3] and level.size == 40


def test_level_key_marks_the_best_level():
    """side.keys[0] == level.key exactly for the best level; px_str is canonical."""
    bids, asks = Side("BTC", "B"), Side("BTC", "A")
    for px in (5, 9):
        bids.level_for(px * 10**8).append(order(px))
        asks.level_for(px * 10**8).append(order(10 + px))
    assert [lv.key == bids.keys[0] for lv in bids.iter_levels()] == [True, False]
    assert [lv.key == asks.keys[0] for lv in asks.iter_levels()] == [True, False]
    assert bids.best().px_str == "9.0" and asks.best().px_str == "5.0"
