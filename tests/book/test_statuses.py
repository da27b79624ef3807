"""BlockStatuses: the metadata a new order takes from its block's statuses."""

from __future__ import annotations

import msgspec

from orderbook.book.events import OrderStatus
from orderbook.book.order import STATUSLESS_META, decode_cloid
from orderbook.book.statuses import BlockStatuses
from tests.book.blocks import ALICE, BLOCK_MS, BLOCK_TIME, status


def broken(oid_text: str, name: str) -> OrderStatus:
    """A status whose raw order does not decode (``oid_text`` is spliced in as is)."""
    raw = msgspec.Raw(b'{"oid":' + oid_text.encode() + b',"timestamp":"soon"}')
    return OrderStatus(time=BLOCK_TIME, user=ALICE, status=name, order=raw)


def test_open_status_supplies_metadata_and_is_noted_as_used():
    """The order takes timestamp, tif, trigger fields and cloid (packed) from its status."""
    opened = status(7, tif="Alo", reduceOnly=True, cloid="0x" + "0" * 30 + "2a")
    statuses = BlockStatuses([status(1, "badAloPxRejected"), opened], BLOCK_MS)
    order = statuses.order(7, "BTC", ALICE, 5)
    assert (order.oid, order.sz, order.timestamp) == (7, 5, BLOCK_MS - 1000)
    assert order.meta[4] is True and order.meta[6] == "Alo"
    assert order.cloid == 42 and decode_cloid(order.cloid) == "0x" + "0" * 30 + "2a"
    assert statuses.used == {"BTC": [(1, opened)]}


def test_without_a_status_the_order_is_a_passive_limit_at_block_time():
    """HIP-2 and other status-less orders: block time, Alo limit metadata, nothing used."""
    statuses = BlockStatuses([status(1, "canceled")], BLOCK_MS)
    order = statuses.order(99, "BTC", ALICE, 1)
    assert (order.timestamp, order.meta, order.cloid) == (BLOCK_MS, STATUSLESS_META, None)
    assert statuses.used == {}


def test_triggered_wins_and_takes_its_time_and_gtc():
    """A triggered status beats an earlier open one: status time, Gtc, "Triggered"."""
    opened = status(9, tif="Alo")
    fired = status(9, "triggered", time="2026-04-30T20:46:45.5", isTrigger=True, tif=None)
    order = BlockStatuses([opened, fired], BLOCK_MS).order(9, "BTC", ALICE, 1)
    assert order.timestamp == 1777582005500
    assert order.meta[:3] == ("Triggered", False, "0.0") and order.meta[6] == "Gtc"


def test_triggered_with_unreadable_time_falls_back_to_block_time():
    """A bad status time costs only the timestamp."""
    fired = status(9, "triggered", time="later")
    assert BlockStatuses([fired], BLOCK_MS).order(9, "BTC", ALICE, 1).timestamp == BLOCK_MS


def test_other_non_rejected_status_is_the_fallback():
    """With no open/triggered status, the first canceled/filled one supplies metadata."""
    first, second = status(4, "filled", tif="Ioc"), status(4, "canceled", tif="Gtc")
    statuses = BlockStatuses([status(4, "badAloPxRejected", tif="Alo"), first, second], BLOCK_MS)
    assert statuses.order(4, "ETH", ALICE, 1).meta[6] == "Ioc"
    assert statuses.used == {"ETH": [(1, first)]}


def test_undecodable_statuses_are_skipped_and_rejections_never_read():
    """A broken open or canceled status only loses its metadata; a broken rejection is
    never even decoded."""
    statuses = BlockStatuses(
        [
            broken("5", "open"),
            broken("not json", "minTradeNtlRejected"),
            broken("5", "canceled"),
            status(5, "canceled", tif="Ioc"),
        ],
        BLOCK_MS,
    )
    assert statuses.order(5, "BTC", ALICE, 1).meta[6] == "Ioc"
    only_bad = BlockStatuses([broken("6", "open"), broken("6", "filled")], BLOCK_MS)
    assert only_bad.order(6, "BTC", ALICE, 1).meta == STATUSLESS_META


def test_used_statuses_per_coin_are_listed_as_found():
    """``used`` keeps (file position, status) per coin; Books sorts them."""
    a, b, c = status(1), status(2, coin="ETH"), status(3)
    statuses = BlockStatuses([a, b, c], BLOCK_MS)
    for oid, coin in ((3, "BTC"), (2, "ETH"), (1, "BTC")):
        statuses.order(oid, coin, ALICE, 1)
    assert statuses.used == {"BTC": [(2, c), (0, a)], "ETH": [(1, b)]}
