"""Snapshot loads and staging copies: load_orders, compare, adopt, replace, dismantle."""

from __future__ import annotations

import gc

import pytest

from orderbook.book.books import Books, freeze_after_load
from tests.book.blocks import BLOCK_MS, block, l4_order, load, new, oids, remove


def test_load_orders_in_chunks_then_apply_blocks():
    """Chunks append in queue order; blocks then apply on top of the declared height."""
    books = Books()
    load(books, "BTC", "B", [(1, "100.0"), (2, "100.0")])
    load(books, "BTC", "B", [(3, "100.0"), (4, "99.0")])
    load(books, "BTC", "A", [(5, "101.0")], cloid="0xABC")
    books.set_height(10, BLOCK_MS)
    assert oids(books) == [1, 2, 3, 4]
    assert l4_order(books, 5)["cloid"] == "0xABC"
    assert books.l4_snapshot("BTC")["height"] == 10
    books.apply_block(block(11, diffs=[remove(2)]))
    assert oids(books) == [1, 3, 4]


def test_load_orders_rejects_bad_entries():
    """A duplicate oid or a bad price raises ValueError naming coin and oid."""
    books = Books()
    load(books, "BTC", "B", [(1, "100.0")])
    with pytest.raises(ValueError, match="BTC side B oid 1"):
        load(books, "BTC", "B", [(1, "100.0")])
    with pytest.raises(ValueError, match="oid 2"):
        load(books, "BTC", "B", [(2, "abc")])


def test_compare_coin_finds_swapped_queue_order_deep_in_level():
    """compare_coin checks every order: a swap at position 3000 of a level is found."""
    ours, theirs = Books(), Books()
    specs = [(oid, "100.0") for oid in range(1, 5001)]
    swapped = specs[:3000] + [specs[3001], specs[3000]] + specs[3002:]
    load(ours, "BTC", "B", specs)
    load(theirs, "BTC", "B", swapped)
    differences = ours.compare_coin(theirs, "BTC")
    assert len(differences) == 1
    assert "position 3000" in differences[0] and "3001" in differences[0]
    assert "3002" in differences[0]


def test_compare_coin_reports_fields_and_missing_orders():
    """Field differences and orders/levels present on one side only name their oid."""
    ours, theirs = Books(), Books()
    load(ours, "BTC", "B", [(1, "100.0"), (2, "100.0"), (3, "99.0")])
    load(theirs, "BTC", "B", [(1, "100.0")], tif="Alo")
    load(theirs, "BTC", "B", [(4, "98.0")])
    differences = ours.compare_coin(theirs, "BTC")
    assert any("oid 1 tif" in d for d in differences)
    assert any("oid 2 only in ours" in d for d in differences)
    assert any("99.0 only in ours: oids 3" in d for d in differences)
    assert any("98.0 only in theirs: oids 4" in d for d in differences)
    assert ours.compare_coin(ours, "BTC") == []
    assert ours.compare_coin(theirs, "ETH") == []


def test_adopt_coin_and_replace_all():
    """adopt_coin swaps in one coin's book; replace_all takes everything."""
    ours, theirs = Books(), Books()
    load(ours, "BTC", "B", [(1, "100.0")])
    load(ours, "ETH", "B", [(2, "10.0")])
    load(theirs, "BTC", "B", [(3, "100.0")])
    load(theirs, "BTC", "A", [(4, "101.0")])
    ours.adopt_coin(theirs, "BTC")
    assert ours.compare_coin(Books(), "ETH") != []
    assert oids(ours) == [3] and ours.order_count() == 2 + 1
    assert ours.all_mids() == {"BTC": "100.5"}
    result = ours.apply_block(block(5, diffs=[remove(3), remove(1)]))
    assert [e.oid for e in result.errors] == [1]

    fresh = Books()
    load(fresh, "SOL", "A", [(9, "150.0")])
    fresh.set_height(40, BLOCK_MS)
    assert ours.replace_all(fresh) == {"BTC", "ETH", "SOL"}
    assert ours.coins() == ["SOL"] and ours.height == 40 and ours.order_count() == 1
    assert ours.all_mids() == {}


def test_freeze_after_load_freezes_the_heap():
    """freeze_after_load moves live objects to the permanent generation."""
    books = Books()
    load(books, "BTC", "B", [(oid, "100.0") for oid in range(1, 100)])
    try:
        freeze_after_load()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_bbo_tracking_follows_snapshot_loads_and_adoption():
    """After load_orders/adopt_coin the next block compares against the loaded top."""
    books = Books()
    load(books, "BTC", "B", [(1, "100.0")])
    deeper = books.apply_block(block(1, diffs=[new(2, "99.0")]))
    assert deeper.bbo_changed == set()
    other = Books()
    load(other, "BTC", "B", [(5, "105.0")])
    books.adopt_coin(other, "BTC")
    same_top = books.apply_block(block(2, diffs=[new(6, "104.0")]))
    assert same_top.bbo_changed == set()
    assert books.apply_block(block(3, diffs=[remove(5, "105.0")])).bbo_changed == {"BTC"}


def _big_books(orders: int, first_oid: int) -> Books:
    books = Books()
    for coin in ("BTC", "ETH"):
        specs = [(first_oid + i, f"{100 + i % 50}.0") for i in range(orders)]
        first_oid += orders
        specs.sort(key=lambda spec: -float(spec[1]))  # best first, as in a snapshot
        load(books, coin, "B", specs)
    return books


def test_discarded_books_are_freed_without_the_garbage_collector():
    """replace_all hands back the old books; dismantle cuts their cycles so reference
    counting frees them with the collector off (frozen objects included)."""
    import tracemalloc

    from orderbook.book.coin_book import dismantle

    gc.collect()
    gc.disable()
    try:
        tracemalloc.start()
        live = _big_books(20_000, 1)
        gc.freeze()  # as the server does: the collector could never free these
        loaded = tracemalloc.get_traced_memory()[0]
        live.replace_all(_big_books(10, 10_000_000))
        discarded = live.take_discarded()
        assert [book.coin for book in discarded] == ["BTC", "ETH"]
        assert live.take_discarded() == []
        steps = sum(1 for _ in dismantle(discarded, budget=5_000))
        assert steps >= 7  # spread over many reactor turns
        del discarded
        freed = loaded - tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert freed > 0.9 * loaded  # without dismantle: nothing freed (cycles)
    finally:
        gc.unfreeze()
        gc.enable()


def test_adopt_coin_and_abandon_hand_books_to_dismantle():
    """adopt_coin discards our old book of the coin; abandon empties a staging copy."""
    live, staging = _big_books(5, 1), _big_books(5, 100)
    old_btc = live.book("BTC")
    live.adopt_coin(staging, "BTC")
    assert live.take_discarded() == [old_btc]
    rest = staging.abandon()
    assert [book.coin for book in rest] == ["ETH"]
    assert staging.coins() == [] and staging.order_count() == 0


def test_resting_orders_are_invisible_to_the_collector():
    """Orders are never tracked by the collector (gc=False): a full or freeze-time
    collection walks levels, not half a million orders (150 ms a minute at mainnet
    size when they were tracked, bench in docs/performance.rst)."""
    books = Books()
    load(books, "BTC", "B", [(oid, f"{100 - oid * 0.01:.2f}") for oid in range(1, 2_001)])
    books.apply_block(block(1, diffs=[new(5_000 + i, "99.5") for i in range(500)]))
    gc.collect()
    tracked = sum(1 for o in gc.get_objects() if type(o).__name__ == "Order")
    assert books.order_count() == 2_500 and tracked == 0


def test_orders_churned_through_blocks_are_freed_by_reference_counting():
    """New orders that rest, then leave, are freed without the collector: an order
    is part of a cycle (order -> level -> its orders) only while it rests."""
    import tracemalloc

    books = Books()
    load(books, "BTC", "B", [(1, "100.0")])
    books.set_height(0, BLOCK_MS)
    gc.collect()
    gc.disable()
    try:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for height in range(1, 51):
            first = 10_000 + height * 200
            diffs = [new(oid, f"{90 + (oid % 50) * 0.1:.1f}") for oid in range(first, first + 200)]
            books.apply_block(block(2 * height - 1, diffs=diffs))
            gone = [
                remove(oid, f"{90 + (oid % 50) * 0.1:.1f}") for oid in range(first, first + 200)
            ]
            books.apply_block(block(2 * height, diffs=gone))
        kept = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert books.order_count() == 1
        assert kept < 200_000  # 10,000 orders came and went: ~2.3 MB had they been kept
    finally:
        gc.enable()
