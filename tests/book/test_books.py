"""Books: applying blocks, errors, trades and the block result's change sets."""

from __future__ import annotations

from pathlib import Path

import msgspec

from orderbook import fixed
from orderbook.book.books import BlockResult, BookError, Books, CoinUpdate
from orderbook.book.events import Block, BookDiff, Fill, OrderStatus
from orderbook.book.times import iso_to_ms
from orderbook.book.trades import TradePairer
from tests.book.blocks import (
    ALICE,
    BLOCK_MS,
    BOB,
    block,
    fill,
    l4_order,
    new,
    oids,
    remove,
    snapshot_order,
    status,
    update,
)

# -- applying diffs --------------------------------------------------------


def test_new_takes_metadata_from_status_and_size_price_from_diff():
    """A new diff rests with the diff's px/sz and the status's metadata."""
    books = Books()
    st = status(7, px="101.0", sz="3.0", tif="Alo", cloid="0x" + "0" * 30 + "2a", reduceOnly=True)
    result = books.apply_block(
        block(5, [status(8, "badAloPxRejected"), st], [new(7, "100.0", "2.5")])
    )
    assert l4_order(books, 7) == {
        "user": ALICE,
        "coin": "BTC",
        "side": "B",
        "limitPx": "100.0",
        "sz": "2.5",
        "oid": 7,
        "timestamp": BLOCK_MS - 1000,
        "triggerCondition": "N/A",
        "isTrigger": False,
        "triggerPx": "0.0",
        "isPositionTpsl": False,
        "reduceOnly": True,
        "orderType": "Limit",
        "tif": "Alo",
        "cloid": "0x" + "0" * 30 + "2a",
    }
    assert result.changed == {"BTC"}
    assert result.updates["BTC"].statuses == [st]
    assert result.errors == []
    assert (books.height, books.time_ms) == (5, BLOCK_MS)


def test_insert_before_puts_order_in_front_of_resting_oid():
    """insertBefore places the new order directly ahead of that oid in its level."""
    books = Books()
    books.apply_block(block(1, diffs=[new(1), new(2), new(3)]))
    books.apply_block(block(2, diffs=[new(4, before=2), new(5, before=1)]))
    assert oids(books) == [5, 1, 4, 2, 3]
    assert books.l2_view("BTC")["levels"][0] == [{"px": "100.0", "sz": "5.0", "n": 5}]


def test_insert_before_unknown_oid_goes_to_back_and_is_reported():
    """An unknown insertBefore target: the order rests at the back, the error is reported."""
    books = Books()
    books.apply_block(block(1, diffs=[new(1), new(2)]))
    result = books.apply_block(block(2, diffs=[new(3, before=99)]))
    assert oids(books) == [1, 2, 3]
    assert [(e.coin, e.oid) for e in result.errors] == [("BTC", 3)]
    assert "99" in result.errors[0].message


def test_update_chain_in_one_block():
    """Several partial fills of one oid within a block chain; the last newSz wins."""
    books = Books()
    books.apply_block(block(1, diffs=[new(1, sz="1.0"), new(2, sz="2.0")]))
    diffs = [update(1, "1.0", "0.7"), update(1, "0.7", "0.25"), update(2, "2.0", "1.5")]
    result = books.apply_block(block(2, diffs=diffs))
    assert l4_order(books, 1)["sz"] == "0.25"
    assert books.l2_view("BTC")["levels"][0] == [{"px": "100.0", "sz": "1.75", "n": 2}]
    assert result.updates["BTC"].diffs == diffs
    assert result.updates["BTC"].statuses == []


def test_new_update_remove_in_one_block_in_file_order():
    """Diffs apply strictly in file order: an order can come and go in one block."""
    books = Books()
    result = books.apply_block(
        block(1, [status(1)], [new(1), update(1, "1.0", "0.5"), remove(1), new(2, "99.0")])
    )
    assert oids(books) == [2]
    assert result.errors == []


def test_triggered_order_conversion():
    """A triggered order rests as Gtc/"Triggered" with its status time as timestamp."""
    books = Books()
    st = status(
        9,
        "triggered",
        time="2026-04-30T20:46:45.123999999",
        side="A",
        orderType="Stop Market",
        triggerCondition="Price below 77409",
        isTrigger=True,
        triggerPx="77409.0",
        tif=None,
        reduceOnly=True,
    )
    rejected = status(9, "minTradeNtlRejected", side="A")
    result = books.apply_block(block(1, [st, rejected], [new(9, "76635.0", "0.00012", "A")]))
    entry = l4_order(books, 9)
    assert entry["timestamp"] == iso_to_ms("2026-04-30T20:46:45.123") == 1777582005123
    assert (entry["tif"], entry["triggerCondition"], entry["isTrigger"], entry["triggerPx"]) == (
        "Gtc",
        "Triggered",
        False,
        "0.0",
    )
    assert (entry["orderType"], entry["reduceOnly"], entry["limitPx"]) == (
        "Stop Market",
        True,
        "76635.0",
    )
    assert result.updates["BTC"].statuses == [st]


def test_statusless_diff_builds_order_from_diff():
    """HIP-2 / assistance fund diffs without a status still rest, with default metadata."""
    books = Books()
    books.apply_block(
        block(3, [status(1, "open")], [new(50, "0.0012345", "10.0", "A", "@107", BOB)])
    )
    assert books.l4_snapshot("@107")["levels"][1] == [
        {
            "user": BOB,
            "coin": "@107",
            "side": "A",
            "limitPx": "0.0012345",
            "sz": "10.0",
            "oid": 50,
            "timestamp": BLOCK_MS,
            "triggerCondition": "N/A",
            "isTrigger": False,
            "triggerPx": "0.0",
            "isPositionTpsl": False,
            "reduceOnly": False,
            "orderType": "Limit",
            "tif": "Alo",
            "cloid": None,
        }
    ]


def test_non_rejected_status_is_fallback_metadata():
    """With no open/triggered status, another non-rejected status supplies metadata."""
    books = Books()
    st = status(4, "filled", tif="Ioc")
    books.apply_block(block(1, [status(4, "badAloPxRejected", tif="Alo"), st], [new(4)]))
    assert l4_order(books, 4)["tif"] == "Ioc"


def test_undecodable_status_only_loses_its_metadata():
    """A status whose order does not decode is skipped: the next usable one supplies."""
    books = Books()
    bad_open = status(4, "open", timestamp="soon", tif="Gtc")  # oid reads, the rest does not
    bad_cancel = status(4, "canceled", timestamp="later", tif="Alo")
    good_cancel = status(4, "canceled", tif="Ioc")
    books.apply_block(block(1, [bad_open, bad_cancel, good_cancel], [new(4)]))
    assert l4_order(books, 4)["tif"] == "Ioc"
    only_bad = [status(5, "open", timestamp="soon"), status(5, "filled", timestamp="x")]
    books.apply_block(block(2, only_bad, [new(5)]))
    assert l4_order(books, 5)["tif"] == "Alo"  # as an order without a status
    assert l4_order(books, 5)["timestamp"] == BLOCK_MS


def test_inconsistent_diffs_are_reported_not_raised():
    """Unknown oids, duplicate news and bad numbers are errors; the rest still applies."""
    books = Books()
    books.apply_block(block(1, diffs=[new(1), new(2, coin="ETH")]))
    result = books.apply_block(
        block(
            2,
            diffs=[
                remove(77),
                update(78, "1.0", "0.5"),
                new(1, "101.0"),
                remove(2),  # rests in ETH, not BTC
                new(3, px="1e5"),
                new(4, side="X"),
                new(5),
            ],
        )
    )
    assert all(isinstance(e, BookError) for e in result.errors)
    assert [(e.coin, e.oid) for e in result.errors] == [
        ("BTC", 77),
        ("BTC", 78),
        ("BTC", 1),
        ("BTC", 2),
        ("BTC", 3),
        ("BTC", 4),
    ]
    assert "remove of unknown oid" in result.errors[0].message
    assert "update of unknown oid" in result.errors[1].message
    assert "new of existing oid" in result.errors[2].message
    assert oids(books) == [1, 5]
    assert l4_order(books, 1)["limitPx"] == "101.0"
    assert oids(books, "ETH") == [2]
    assert books.order_count() == 3


def test_markets_filter_skips_coins():
    """Diffs, fills and snapshot entries of coins the filter rejects are ignored."""
    books = Books(accept_coin=lambda coin: not coin.startswith("@"))
    books.apply_block(
        block(
            1,
            diffs=[new(1, coin="@1"), new(2)],
            fills=[fill(ALICE, 5, "B", True, coin="@1"), fill(BOB, 5, "A", False, coin="@1")],
        )
    )
    books.load_orders("@2", "B", [(ALICE, snapshot_order(3, coin="@2"))])
    assert books.coins() == ["BTC"]
    assert books.order_count() == 1


# -- block result: bbo, mids ---------------------------------------


def test_bbo_and_mids_changed():
    """bbo_changed names coins whose top changed; mids_changed when a mid string did."""
    books = Books()
    first = books.apply_block(block(1, diffs=[new(1, "100.0"), new(2, "101.0", side="A")]))
    assert first.bbo_changed == {"BTC"} and first.mids_changed
    assert books.all_mids() == {"BTC": "100.5"}
    deeper = books.apply_block(block(2, diffs=[new(3, "99.0")]))
    assert deeper.changed == {"BTC"}
    assert deeper.bbo_changed == set() and not deeper.mids_changed
    top_size = books.apply_block(block(3, diffs=[new(4, "100.0")]))
    assert top_size.bbo_changed == {"BTC"} and not top_size.mids_changed
    gone = books.apply_block(block(4, diffs=[remove(2, "101.0", "A")]))
    assert gone.mids_changed and books.all_mids() == {}
    assert books.bbo_view("BTC")["bbo"] == [{"px": "100.0", "sz": "2.0", "n": 2}, None]


# -- the real mainnet fixture -----------------------------------------------


def envelope(event_type: type) -> msgspec.json.Decoder:
    fields = [("block_number", int), ("block_time", str), ("events", list[event_type])]
    return msgspec.json.Decoder(msgspec.defstruct("Envelope", fields))


def read_stream(mainnet_data: Path, kind: str, event_type: type) -> dict:
    decoder = envelope(event_type)
    lines = (mainnet_data / kind / "hourly" / "20260430" / "20").read_bytes().splitlines()
    return {line.block_number: line for line in map(decoder.decode, lines)}


def test_mainnet_fixture_applies(mainnet_data: Path):
    """All 40 real blocks apply; unknown-oid errors (no pre-snapshot book) are reported."""
    statuses = read_stream(mainnet_data, "node_order_statuses_by_block", OrderStatus)
    diffs = read_stream(mainnet_data, "node_raw_book_diffs_by_block", BookDiff)
    fills = read_stream(mainnet_data, "node_fills_by_block", tuple[str, Fill])
    books = Books()
    results: list[BlockResult] = []
    for height in sorted(statuses):
        line = statuses[height]
        results.append(
            books.apply_block(
                Block(
                    height=height,
                    time_ms=iso_to_ms(line.block_time),
                    block_time=line.block_time,
                    statuses=line.events,
                    diffs=diffs[height].events,
                    fills=fills[height].events,
                )
            )
        )
    assert len(results) == 40 and books.height == 978995416
    errors = [e for r in results for e in r.errors]
    assert errors and all(e.coin == "BTC" for e in errors)
    assert {e.message for e in errors} <= {"remove of unknown oid", "update of unknown oid"}
    updates = [r.updates["BTC"] for r in results if "BTC" in r.updates]
    news = [d for u in updates for d in u.diffs if not isinstance(d.raw_book_diff, str)]
    news = [d for d in news if d.raw_book_diff.new is not None]
    assert len(news) == sum(len(u.statuses) for u in updates) == 71  # every new had a status
    pairer = TradePairer()  # trades come from the fills, not the book (node.tape)
    trades = [
        t
        for height in sorted(fills)
        for t in pairer.feed(height, fills[height].events, lambda coin: True).get("BTC", [])
    ]
    assert [(t["tid"], t["side"], t["px"], t["sz"]) for t in trades] == [
        (457367674387223, "B", "76471.0", "0.00153"),
        (967518309923970, "B", "76471.0", "0.00153"),
    ]
    assert trades[0]["users"] == [
        "0xfca397d8b8de71639d9e4573d7ecc8199cbff42f",
        "0xc8264ebc379e26946e7d31ae4746c27182849755",
    ]
    view = books.l2_view("BTC", 5, 2, 5)
    assert view["time"] == 1777582006008
    bids, asks = view["levels"]
    assert fixed.parse(bids[0]["px"]) < fixed.parse(asks[0]["px"])
    assert len(bids) == len(asks) == 5
    assert books.order_count() == sum(len(side) for side in books.l4_snapshot("BTC")["levels"])


# -- hot-path bookkeeping -----------------------------------------------------


def test_bbo_changed_only_when_top_differs_after_the_block():
    """A new and remove at the top within one block leave the bbo unchanged; deeper diffs too."""
    books = Books()
    books.apply_block(block(1, diffs=[new(1, "100.0"), new(2, "101.0", side="A"), new(3, "99.0")]))
    flicker = books.apply_block(block(2, diffs=[new(4, "100.5"), remove(4, "100.5")]))
    assert flicker.changed == {"BTC"} and flicker.bbo_changed == set()
    deep = books.apply_block(block(3, diffs=[update(3, "1.0", "0.5", "99.0"), remove(3, "99.0")]))
    assert deep.bbo_changed == set() and not deep.mids_changed
    top = books.apply_block(block(4, diffs=[update(1, "1.0", "0.5")]))
    assert top.bbo_changed == {"BTC"} and not top.mids_changed
    assert books.bbo_view("BTC")["bbo"][0] == {"px": "100.0", "sz": "0.5", "n": 1}


def test_new_replacing_an_oid_of_another_coin_marks_both():
    """A new of an oid resting elsewhere drops it there: both coins changed, both tops checked."""
    books = Books()
    books.apply_block(block(1, diffs=[new(1, coin="ETH"), new(2, "101.0", side="A", coin="ETH")]))
    result = books.apply_block(block(2, diffs=[new(1, "100.0")]))
    assert result.changed == {"BTC", "ETH"} and result.bbo_changed == {"BTC", "ETH"}
    assert [e.message for e in result.errors] == ["new of existing oid (replaced)"]
    assert books.bbo_view("ETH")["bbo"][0] is None
    assert books.order_count() == 2


def test_remove_of_oid_in_another_coin_keeps_it_resting():
    """A remove naming the wrong coin is reported and the order stays where it rests."""
    books = Books()
    books.apply_block(block(1, diffs=[new(1, coin="ETH")]))
    result = books.apply_block(block(2, diffs=[remove(1), update(1, "1.0", "0.5")]))
    assert [e.message for e in result.errors] == [
        "remove of oid resting in 'ETH'",
        "update of oid resting in 'ETH'",
    ]
    assert oids(books, "ETH") == [1] and l4_order(books, 1, "ETH")["sz"] == "1.0"
    assert result.changed == set()


def test_unknown_diff_string_is_a_bad_diff():
    """A raw_book_diff string other than "remove" is reported and skipped."""
    books = Books()
    books.apply_block(block(1, diffs=[new(1)]))
    odd = BookDiff(user=ALICE, oid=1, coin="BTC", side="B", px="100.0", raw_book_diff="gone")
    result = books.apply_block(block(2, diffs=[odd]))
    assert [e.message for e in result.errors] == ["bad diff: unknown raw_book_diff 'gone'"]
    assert oids(books) == [1]


def test_statuses_of_one_coin_listed_in_file_order():
    """updates[coin].statuses are the used statuses in file order, whatever the diff order."""
    books = Books()
    first, second, other = status(1), status(2), status(3, coin="ETH")
    result = books.apply_block(
        block(1, [first, other, second], [new(2), new(3, coin="ETH"), new(1)])
    )
    assert result.updates["BTC"].statuses == [first, second]
    assert result.updates["ETH"].statuses == [other]


def test_first_triggered_status_wins_over_open_and_later_ones():
    """With open and triggered statuses for one oid, the first triggered supplies metadata."""
    books = Books()
    opened = status(9, "open", tif="Alo")
    fired = status(9, "triggered", time="2026-04-30T20:46:45.000", tif=None)
    later = status(9, "triggered", time="2026-04-30T20:46:46.000", tif=None)
    result = books.apply_block(block(1, [opened, fired, later], [new(9)]))
    assert l4_order(books, 9)["timestamp"] == 1777582005000
    assert result.updates["BTC"].statuses == [fired]


def test_coin_updates_do_not_share_lists():
    """Each CoinUpdate gets its own empty lists."""
    first, second = CoinUpdate(), CoinUpdate()
    first.diffs.append(remove(1))
    assert second.diffs == [] and second.statuses == []
