"""Views: l2Book, bbo, allMids (per known dex only) and l4Book snapshots, and their caches."""

from __future__ import annotations

import gc
import tracemalloc

import msgspec
import pytest

from orderbook.book import views
from orderbook.book.books import Books
from orderbook.book.views import UnknownDex, dex_of
from tests.book.blocks import BLOCK_MS, block, load, new, oids


def two_dex_books() -> Books:
    """Mids in a spot coin (main dex, odd sum) and a HIP-3 coin of dex "xyz"."""
    books = Books()
    books.apply_block(
        block(
            1,
            diffs=[
                new(1, "0.00000001", coin="@9"),
                new(2, "0.00000002", side="A", coin="@9"),
                new(3, "250.0", coin="xyz:TSLA"),
                new(4, "251.5", side="A", coin="xyz:TSLA"),
            ],
        )
    )
    return books


def test_all_mids_dex_filter_and_exact_half():
    """all_mids(dex) keeps that dex's coins; an odd sum keeps its exact 9th decimal."""
    books = two_dex_books()
    assert books.all_mids() == {"@9": "0.000000015", "xyz:TSLA": "250.75"}
    assert books.all_mids("") is books.all_mids()
    assert books.all_mids("xyz") == {"xyz:TSLA": "250.75"}
    assert books.dexes() == ["", "xyz"]


def test_dex_of_coin_names():
    """The dex is what comes before the colon of a HIP-3 coin; "" for every other coin."""
    assert [dex_of(c) for c in ("xyz:TSLA", "BTC", "@107", "PURR/USDC", "#12")] == [
        "xyz",
        "",
        "",
        "",
        "",
    ]


def test_unknown_dex_is_an_error_naming_it():
    """A dex no coin belongs to raises UnknownDex (a ValueError) with the dex in its text;
    a very long one is shortened there."""
    books = two_dex_books()
    assert not books.knows_dex("abc") and books.knows_dex("xyz") and books.knows_dex(None)
    with pytest.raises(UnknownDex, match="unknown dex 'abc'"):
        books.all_mids("abc")
    with pytest.raises(ValueError) as info:
        books.all_mids("q" * 1000)
    assert len(str(info.value)) < 80
    with pytest.raises(UnknownDex):
        books.all_mids("TSLA")  # a coin's name after the colon is not a dex


def test_dexes_follow_the_coins_through_loads_and_replacement():
    """A dex is known once a coin of it is loaded, and forgotten when replace_all drops it."""
    books = Books()
    with pytest.raises(UnknownDex):
        books.all_mids("abc")
    load(books, "abc:GOLD", "B", [(1, "10.0")])
    load(books, "abc:GOLD", "A", [(2, "11.0")])
    assert books.all_mids("abc") == {"abc:GOLD": "10.5"}
    fresh = Books()
    load(fresh, "BTC", "B", [(3, "100.0")])
    books.replace_all(fresh)
    assert books.dexes() == [""]
    with pytest.raises(UnknownDex):
        books.all_mids("abc")


def test_junk_dex_strings_leave_nothing_behind():
    """20,000 distinct ~1 KB dex strings: each refused, none retained (issue 14: the
    mids cache was keyed by any client string and kept every one forever)."""
    books = two_dex_books()
    books.all_mids("xyz")
    junk = (f"{i:06d}" + "x" * 1018 for i in range(20_000))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        refused = 0
        for dex in junk:
            try:
                books.all_mids(dex)
            except UnknownDex:
                refused += 1
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert refused == 20_000
    assert retained < 20_000  # bytes: far below one kept string per request (~20 MB)
    assert set(books._mids_views) <= {None, "xyz"}


def test_views_cached_per_block_and_rebuilt_after_change():
    """Same object twice in a block; a new one after the coin changed."""
    books = Books()
    books.apply_block(block(1, diffs=[new(1), new(2, "101.0", side="A"), new(3, coin="ETH")]))
    view = books.l2_view("BTC", 3)
    assert books.l2_view("BTC", 3) is view
    assert books.bbo_view("BTC") is books.bbo_view("BTC")
    assert books.l4_snapshot("BTC") is books.l4_snapshot("BTC")
    assert books.all_mids() is books.all_mids()
    assert books.l2_view("BTC", 3, n_levels=5) is not view
    books.apply_block(block(2, diffs=[new(4, "99.0")]))
    changed = books.l2_view("BTC", 3)
    assert changed is not view
    assert changed["levels"][0][-1] == {"px": "99.0", "sz": "1.0", "n": 1}
    assert changed["height"] == 2


def test_unchanged_coin_view_reports_current_height():
    """A coin the block did not touch keeps its levels but shows the new height/time."""
    books = Books()
    books.apply_block(block(1, diffs=[new(1)]))
    before = books.l4_snapshot("BTC")
    books.apply_block(block(2, diffs=[new(2, coin="ETH")], time_ms=BLOCK_MS + 70))
    after = books.l4_snapshot("BTC")
    assert (after["height"], after["time"]) == (2, BLOCK_MS + 70)
    assert after["levels"] is before["levels"]


def test_views_of_unknown_coin_raise_key_error():
    """Unknown coins raise KeyError; bad parameters raise ValueError."""
    books = Books()
    with pytest.raises(KeyError):
        books.l2_view("NOPE")
    with pytest.raises(KeyError):
        books.bbo_view("NOPE")
    with pytest.raises(KeyError):
        books.l4_snapshot("NOPE")
    books.apply_block(block(1, diffs=[new(1)]))
    for params in [(1, None, 20), (5, 3, 20), (4, 2, 20), (None, None, 0), (None, None, 101)]:
        with pytest.raises(ValueError):
            books.l2_view("BTC", *params)


def test_l4_snapshot_queue_order():
    """Bids best (highest) first, asks best (lowest) first, oldest first within a level."""
    books = Books()
    books.apply_block(
        block(
            1,
            diffs=[
                new(1, "99.0"),
                new(2, "100.0"),
                new(3, "99.0"),
                new(4, "102.0", side="A"),
                new(5, "101.0", side="A"),
                new(6, "102.0", side="A"),
            ],
        )
    )
    snap = books.l4_snapshot("BTC")
    assert (snap["coin"], snap["height"], snap["time"]) == ("BTC", 1, BLOCK_MS)
    assert oids(books, side=0) == [2, 1, 3]
    assert oids(books, side=1) == [5, 4, 6]
    assert books.coins() == ["BTC"] and books.coin_count() == 1


def test_l4_snapshot_pieces_are_the_snapshot_json_byte_for_byte(monkeypatch):
    """Joined, the pieces are the encoded l4_snapshot: every field kind, several
    slices per side, an empty side; nothing is cached for them."""
    monkeypatch.setattr(views, "L4_SLICE_ORDERS", 2)
    books = Books()
    load(books, "BTC", "B", [(1, "99.0"), (2, "100.0"), (3, "99.0")], cloid="0x" + "ab" * 16)
    load(books, "BTC", "B", [(4, "98.5")], cloid="not-canonical", tif=None, sz="0.00000001")
    load(
        books,
        "BTC",
        "B",
        [(5, "97.0"), (6, "97.0")],
        triggerCondition="Price above 96",
        isTrigger=True,
        triggerPx="96.0",
        isPositionTpsl=True,
        reduceOnly=True,
        orderType="Stop Market",
    )
    load(books, "ETH", "A", [(7, "10.0")])
    books.set_height(42, BLOCK_MS)
    for coin in ("BTC", "ETH"):
        pieces = books.l4_snapshot_pieces(coin)
        assert coin not in books._views
        expected = msgspec.json.encode(books.l4_snapshot(coin))
        assert b"".join(pieces) == expected
    assert len(books.l4_snapshot_pieces("BTC")) > 6  # 6 bids: 3 slices, plus the frame
    assert b'"levels":[[],[{' in b"".join(books.l4_snapshot_pieces("ETH"))
