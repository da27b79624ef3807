"""The matching engine and the events it produces."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from orderbook.sim.exchange import Exchange, OrderRequest
from orderbook.sim.markets import units, valid_price

T0 = 1_777_582_003_304_461_819
ALICE = "0x" + "a" * 40
BOB = "0x" + "b" * 40
CAROL = "0x" + "c" * 40
COMMON_STATUSES = {
    "open", "filled", "canceled", "triggered", "rejected", "marginCanceled", "reduceOnlyCanceled",
    "selfTradeCanceled", "perpMarginRejected", "iocCancelRejected", "badAloPxRejected",
    "minTradeNtlRejected", "reduceOnlyRejected", "tickRejected",
}  # fmt: skip


def _empty_exchange() -> Exchange:
    """An exchange with empty perp books and no background traffic."""
    ex = Exchange(seed=1, scale=0, orders_per_coin=0)
    ex.books["BTC"].mid = units("70000")
    return ex


def _step(ex: Exchange, *requests: OrderRequest | int, t: int = T0):
    return ex.step(t, list(requests), background=False)


def _level(ex: Exchange, coin: str, side: str, px: str) -> list[tuple[str, str]]:
    book = ex.books[coin]
    return [(o.user, o.to_json()["sz"]) for o in book.side(side).levels.get(units(px), [])]


def test_price_time_priority_partial_fill_update_and_full_fill_remove() -> None:
    """A taker fills the oldest order of the best level first; partial -> update, full -> remove."""
    ex = _empty_exchange()
    _step(
        ex,
        OrderRequest("BTC", "A", "70010", "0.5", ALICE, tif="Alo"),
        OrderRequest("BTC", "A", "70010", "0.3", BOB, tif="Alo"),
        OrderRequest("BTC", "A", "70005", "0.1", CAROL, tif="Alo"),
    )
    block = _step(ex, OrderRequest("BTC", "B", "70010", "0.4", "0x" + "d" * 40, tif="Ioc"))
    bodies = [(d["user"], d["px"], d["raw_book_diff"]) for d in block.diffs]
    assert bodies == [
        (CAROL, "70005.0", "remove"),
        (ALICE, "70010.0", {"update": {"origSz": "0.5", "newSz": "0.2"}}),
    ]
    assert _level(ex, "BTC", "A", "70010") == [(ALICE, "0.2"), (BOB, "0.3")]
    statuses = [(s["user"], s["status"], s["order"]["sz"]) for s in block.statuses]
    assert statuses == [(CAROL, "filled", "0.0"), ("0x" + "d" * 40, "filled", "0.0")]


def test_fills_are_pairs_buyer_first_sharing_tid_hash_with_crossed_taker() -> None:
    """Each trade: [buyer, fill], [seller, fill]; same tid/px/sz/hash; crossed only on the taker."""
    ex = _empty_exchange()
    _step(ex, OrderRequest("BTC", "B", "69990", "0.2", ALICE, tif="Alo", cloid="0x" + "1" * 32))
    block = _step(ex, OrderRequest("BTC", "A", "69980", "0.05", BOB, tif="Gtc"))
    (buyer, buy), (seller, sell) = block.fills
    assert (buyer, seller) == (ALICE, BOB)
    assert (buy["side"], sell["side"]) == ("B", "A")
    assert (
        buy["tid"] == sell["tid"] and buy["hash"] == sell["hash"] and buy["hash"].startswith("0x")
    )
    assert (buy["px"], buy["sz"]) == (sell["px"], sell["sz"]) == ("69990.0", "0.05")
    assert (buy["crossed"], sell["crossed"]) == (False, True)
    assert buy["cloid"] == "0x" + "1" * 32 and "cloid" not in sell
    assert (buy["dir"], sell["dir"]) == ("Open Long", "Open Short")
    assert buy["feeToken"] == "USDC" and buy["twapId"] is None
    assert sell["fee"] == "1.574775"  # 0.045% of 3499.5


def test_position_dirs_and_closed_pnl() -> None:
    """startPosition, dir and closedPnl follow the user's position: open, close, flip."""
    ex = _empty_exchange()
    _step(ex, OrderRequest("BTC", "A", "70000", "1", BOB, tif="Alo"))
    _step(ex, OrderRequest("BTC", "B", "70000", "0.5", ALICE))
    _step(ex, OrderRequest("BTC", "B", "69000", "2", BOB, tif="Alo"))
    block = _step(ex, OrderRequest("BTC", "A", "69000", "1.5", ALICE))
    alice = [f for u, f in block.fills if u == ALICE][0]
    assert (alice["startPosition"], alice["dir"], alice["closedPnl"]) == (
        "0.5",
        "Long > Short",
        "-500.0",
    )


def test_rest_remainder_after_partial_cross_with_open_status() -> None:
    """A Gtc that crosses part of the book rests the rest: open status and new diff with the remaining size."""
    ex = _empty_exchange()
    _step(ex, OrderRequest("BTC", "A", "70010", "0.1", ALICE, tif="Alo"))
    block = _step(ex, OrderRequest("BTC", "B", "70010", "0.25", BOB))
    new = block.diffs[-1]
    assert new["user"] == BOB and new["raw_book_diff"] == {"new": {"sz": "0.15"}}
    status = block.statuses[-1]
    assert (status["status"], status["order"]["sz"], status["order"]["origSz"]) == (
        "open",
        "0.15",
        "0.25",
    )
    assert status["hash"] == block.fills[0][1]["hash"]


def test_alo_crossing_is_rejected_and_insert_before_queues_in_front() -> None:
    """An ALO that would cross: badAloPxRejected, no diff; insertBefore puts it ahead of that oid."""
    ex = _empty_exchange()
    block = _step(ex, OrderRequest("BTC", "A", "70010", "0.1", ALICE, tif="Alo"))
    resting = block.statuses[0]["order"]["oid"]
    block = _step(ex, OrderRequest("BTC", "B", "70010", "0.1", BOB, tif="Alo"))
    assert [s["status"] for s in block.statuses] == ["badAloPxRejected"] and not block.diffs
    block = _step(
        ex, OrderRequest("BTC", "A", "70010", "0.2", BOB, tif="Alo", insert_before=resting)
    )
    assert block.diffs[0]["raw_book_diff"] == {"new": {"sz": "0.2", "insertBefore": resting}}
    assert _level(ex, "BTC", "A", "70010") == [(BOB, "0.2"), (ALICE, "0.1")]


def test_self_trade_cancels_the_resting_order() -> None:
    """A taker meeting its own resting order cancels it (selfTradeCanceled + remove) and goes on."""
    ex = _empty_exchange()
    _step(ex, OrderRequest("BTC", "A", "70010", "0.1", ALICE, tif="Alo"))
    _step(ex, OrderRequest("BTC", "A", "70020", "0.1", BOB, tif="Alo"))
    block = _step(ex, OrderRequest("BTC", "B", "70020", "0.1", ALICE, tif="Ioc"))
    assert [s["status"] for s in block.statuses] == ["selfTradeCanceled", "filled", "filled"]
    assert block.diffs[0]["raw_book_diff"] == "remove" and block.diffs[0]["user"] == ALICE
    assert [u for u, _ in block.fills] == [ALICE, BOB]


def test_ioc_and_market_orders_never_rest() -> None:
    """IOC without a match: iocCancelRejected; a partly filled market order's rest is canceled."""
    ex = _empty_exchange()
    block = _step(ex, OrderRequest("BTC", "B", "69000", "0.1", ALICE, tif="Ioc"))
    assert [s["status"] for s in block.statuses] == ["iocCancelRejected"] and not block.diffs
    _step(ex, OrderRequest("BTC", "A", "70010", "0.1", BOB, tif="Alo"))
    block = _step(
        ex,
        OrderRequest("BTC", "B", "73500", "0.3", ALICE, tif="FrontendMarket", order_type="Market"),
    )
    assert [(s["status"], s["order"]["sz"]) for s in block.statuses] == [
        ("filled", "0.0"),
        ("canceled", "0.2"),
    ]
    assert [d["raw_book_diff"] for d in block.diffs] == ["remove"]
    block = _step(
        ex,
        OrderRequest("BTC", "B", "73500", "0.3", ALICE, tif="FrontendMarket", order_type="Market"),
    )
    assert [s["status"] for s in block.statuses] == ["marketOrderNoLiquidityRejected"]


def test_trigger_order_triggers_then_rests_with_the_converted_fields() -> None:
    """Untriggered: open status, no diff. Triggered: status 'triggered', then it rests as Gtc/Triggered."""
    ex = _empty_exchange()
    block = _step(
        ex,
        OrderRequest(
            "BTC", "B", "70500", "0.1", ALICE, tif=None, order_type="Stop Limit", trigger_px="70400"
        ),
    )
    assert [s["status"] for s in block.statuses] == ["open"] and not block.diffs
    order = block.statuses[0]["order"]
    assert (order["isTrigger"], order["triggerPx"], order["triggerCondition"]) == (
        True,
        "70400.0",
        "Price above 70400",
    )
    assert ex.snapshot()[1][0][1][0] == []
    ex.books["BTC"].mid = units("70450")
    block = _step(ex, t=T0 + 10**9)
    assert [s["status"] for s in block.statuses] == ["triggered"]
    assert block.statuses[0]["order"]["isTrigger"] is True
    assert block.diffs[0]["raw_book_diff"] == {"new": {"sz": "0.1"}}
    user, rested = ex.snapshot()[1][0][1][0][0]
    assert user == ALICE
    assert rested["timestamp"] == (T0 + 10**9) // 10**6
    assert (
        rested["tif"],
        rested["triggerCondition"],
        rested["isTrigger"],
        rested["triggerPx"],
    ) == (
        "Gtc",
        "Triggered",
        False,
        "0.0",
    )
    assert rested["orderType"] == "Stop Limit"


def test_cancel_by_oid_and_unknown_oid() -> None:
    """Cancelling an oid gives canceled + remove; an unknown oid is an error naming it."""
    ex = _empty_exchange()
    oid = _step(ex, OrderRequest("BTC", "B", "69000", "0.1", ALICE, tif="Alo")).statuses[0][
        "order"
    ]["oid"]
    block = _step(ex, oid)
    assert [s["status"] for s in block.statuses] == ["canceled"]
    assert [d["raw_book_diff"] for d in block.diffs] == ["remove"]
    with pytest.raises(ValueError, match=str(oid)):
        _step(ex, oid)


def test_snapshot_structure_best_first_oldest_first() -> None:
    """[height, [[coin, [bids, asks]]]]: bids high to low, asks low to high, FIFO in a level."""
    ex = _empty_exchange()
    _step(
        ex,
        OrderRequest("BTC", "B", "69000", "0.1", ALICE, tif="Alo"),
        OrderRequest("BTC", "B", "69500", "0.1", BOB, tif="Alo"),
        OrderRequest("BTC", "B", "69500", "0.2", ALICE, tif="Alo"),
        OrderRequest("BTC", "A", "70600", "0.1", ALICE, tif="Alo"),
        OrderRequest("BTC", "A", "70500", "0.1", BOB, tif="Alo"),
    )
    height, coins = ex.snapshot()
    assert height == ex.height
    assert [c for c, _ in coins] == [m.coin for m in ex.markets]
    bids, asks = coins[0][1]
    assert [(u, o["limitPx"], o["sz"]) for u, o in bids] == [
        (BOB, "69500.0", "0.1"),
        (ALICE, "69500.0", "0.2"),
        (ALICE, "69000.0", "0.1"),
    ]
    assert [o["limitPx"] for _, o in asks] == ["70500.0", "70600.0"]
    assert list(bids[0][1]) == [
        "coin", "side", "limitPx", "sz", "oid", "timestamp", "triggerCondition", "isTrigger",
        "triggerPx", "children", "isPositionTpsl", "reduceOnly", "orderType", "origSz", "tif", "cloid",
    ]  # fmt: skip


def _generated(blocks: int = 200, scale: float = 0.1) -> tuple[Exchange, list[Any]]:
    ex = Exchange(seed=21, scale=scale)
    out = [ex.step(T0 + i * 69_000_000) for i in range(blocks)]
    return ex, out


def test_status_mix_is_mainnet_like_and_covers_common_statuses() -> None:
    """Most statuses are badAloPxRejected; every common status string shows up."""
    _, blocks = _generated()
    counts = Counter(s["status"] for b in blocks for s in b.statuses)
    assert set(counts) >= COMMON_STATUSES, COMMON_STATUSES - set(counts)
    assert counts.most_common(1)[0][0] == "badAloPxRejected"
    assert counts["badAloPxRejected"] > 0.5 * sum(counts.values())


def test_prices_and_sizes_follow_the_node_rules() -> None:
    """<= 5 significant figures (integers allowed), <= 6/8 decimals, sizes on the coin's lot."""
    ex, blocks = _generated()
    markets = {m.coin: m for m in ex.markets}
    for block in blocks:
        for status in block.statuses:
            order = status["order"]
            market = markets[order["coin"]]
            if status["status"] != "tickRejected":
                assert valid_price(market, units(order["limitPx"])), order
            assert units(order["origSz"]) % market.lot == 0, order
        for diff in block.diffs:
            assert valid_price(markets[diff["coin"]], units(diff["px"])), diff
    coins = {s["order"]["coin"] for b in blocks for s in b.statuses}
    assert {"BTC", "ETH", "HYPE", "SOL", "@107", "PURR/USDC", "xyz:TSLA", "#12"} <= coins


def test_hip2_spot_orders_have_diffs_but_no_status() -> None:
    """Hyperliquidity orders on spot coins appear only as diffs (new/remove), never in statuses."""
    ex, blocks = _generated(60)
    status_oids = {s["order"]["oid"] for b in blocks for s in b.statuses}
    silent = [d for b in blocks for d in b.diffs if d["user"] == ex.hip2_user]
    assert silent and {d["coin"] for d in silent} <= {"@107", "PURR/USDC"}
    assert not {d["oid"] for d in silent} & status_oids


def test_spot_fills_use_buy_sell_and_base_fee_token() -> None:
    """Spot fills: dir Buy/Sell, the buyer pays its fee in the base token."""
    ex, blocks = _generated(400)
    spot = [f for b in blocks for _, f in b.fills if f["coin"] in ("@107", "PURR/USDC")]
    assert spot
    for fill in spot:
        assert fill["dir"] == ("Buy" if fill["side"] == "B" else "Sell")
        base = {"@107": "HYPE", "PURR/USDC": "PURR"}[fill["coin"]]
        assert fill["feeToken"] == (base if fill["side"] == "B" else "USDC")
    twap = [f for b in blocks for _, f in b.fills if f["twapId"] is not None]
    assert twap and all(f["hash"] == "0x" + "0" * 64 and f["crossed"] for f in twap)


def test_extra_perps_and_price_drift() -> None:
    """extra_perps adds coins; mids drift but stay on the grid."""
    ex = Exchange(seed=3, scale=0.01, extra_perps=10)
    assert [m.coin for m in ex.markets][-10:] == [
        "DOGE", "AVAX", "LINK", "ARB", "SUI", "XRP", "BNB", "LTC", "PERP8", "PERP9",
    ]  # fmt: skip
    start = {c: b.mid for c, b in ex.books.items()}
    for i in range(50):
        ex.step(T0 + i * 69_000_000)
    assert any(b.mid != start[c] for c, b in ex.books.items())
    assert all(valid_price(b.market, b.mid) for b in ex.books.values())


def test_deep_book_is_mainnet_sized_and_stays_so() -> None:
    """deep={"BTC": 51000}: ~51k resting BTC orders, one level of 4-6k, a 15-20 MB L4 snapshot."""
    ex = Exchange(seed=3, scale=0.1, deep={"BTC": 51_000})
    book = ex.books["BTC"]
    assert len(book.resting) == 51_000
    biggest = max(len(level) for side in (book.bids, book.asks) for level in side.levels.values())
    assert 4_000 <= biggest <= 6_000
    assert len(book.bids.levels) > 1_000 and len(book.asks.levels) > 1_000
    btc = next(entry for entry in ex.snapshot()[1] if entry[0] == "BTC")
    size = len(json.dumps([ex.height, [btc]], separators=(",", ":")))
    assert 15_000_000 < size < 20_000_000
    assert all(valid_price(book.market, px) for px in book.bids.prices + book.asks.prices)
    assert len(ex.books["ETH"].resting) < 200  # other coins keep the scale's depth
    for i in range(60):
        ex.step(T0 + i * 69_000_000)
    assert 50_000 <= len(book.resting) <= 52_000
    assert max(len(level) for level in book.bids.levels.values()) >= biggest * 0.95


@pytest.mark.parametrize(
    ("deep", "message"),
    [({"DOGE": 10}, "unknown coin 'DOGE'"), ({"BTC": 0}, "positive"), ({"BTC": 1.5}, "positive")],
)
def test_deep_refuses_unknown_coins_and_bad_counts(deep: dict[str, Any], message: str) -> None:
    """A bad deep spec names the coin or the count."""
    with pytest.raises(ValueError, match=message):
        Exchange(deep=deep)


@pytest.mark.parametrize(("share", "low", "high"), [(1.0, 0.7, 0.95), (0.1, 0.04, 0.16)])
def test_trade_share_sets_how_many_blocks_have_fills(share: float, low: float, high: float) -> None:
    """trade_share 1.0: fills in most blocks; the quiet market (0.1): in about one block in ten."""
    ex = Exchange(seed=8, scale=0.05, trade_share=share)
    with_fills = sum(bool(ex.step(T0 + i * 69_000_000).fills) for i in range(400))
    assert low <= with_fills / 400 <= high
    with pytest.raises(ValueError, match="trade_share"):
        Exchange(trade_share=1.5)
