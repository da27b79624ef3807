"""TradePairer: fills paired by tid, across blocks, with expiry."""

from __future__ import annotations

from orderbook.book.trades import TradePairer, make_trade
from tests.book.blocks import ALICE, BOB, fill


def accept(coin: str) -> bool:
    return True


def test_make_trade_side_is_takers_and_users_buyer_first():
    """side = crossed fill's side; users = [buyer, seller] whatever the order."""
    trade = make_trade(fill(BOB, 1, "A", False, px="81307.00"), fill(ALICE, 1, "B", True))
    assert trade["side"] == "B" and trade["users"] == [ALICE, BOB]
    assert trade["px"] == "81307.0"


def test_pending_fill_expires():
    """A fill whose partner never comes is dropped after max_age blocks."""
    pairer = TradePairer(max_age=3)
    pairer.feed(10, [fill(ALICE, 1, "B", True)], accept)
    pairer.feed(13, [], accept)
    assert pairer.pending_count() == 1
    pairer.feed(14, [], accept)
    assert pairer.pending_count() == 0
    assert pairer.feed(15, [fill(BOB, 1, "A", False)], accept) == {}


def test_trades_grouped_per_coin_in_completion_order():
    """Each coin gets its own list, in the order trades complete."""
    pairer = TradePairer()
    fills = [
        fill(ALICE, 1, "B", True, coin="ETH"),
        fill(ALICE, 2, "B", True),
        fill(BOB, 1, "A", False, coin="ETH"),
        fill(BOB, 2, "A", False),
        fill(ALICE, 3, "A", True, coin="ETH"),
        fill(BOB, 3, "B", False, coin="ETH"),
    ]
    trades = pairer.feed(1, fills, accept)
    assert {coin: [t["tid"] for t in ts] for coin, ts in trades.items()} == {
        "ETH": [1, 3],
        "BTC": [2],
    }


def test_trades_paired_by_tid_not_position():
    """Fills pair by tid even when interleaved; side is the crossed fill's side."""
    fills = [
        fill(ALICE, 10, "B", True, px="100.0"),
        fill(ALICE, 11, "A", True, px="99.0"),
        fill(BOB, 11, "B", False, px="99.0"),
        fill(BOB, 10, "A", False, px="100.0"),
    ]
    result = TradePairer().feed(1, fills, accept)
    assert [(t["tid"], t["side"], t["px"], t["users"]) for t in result["BTC"]] == [
        (11, "A", "99.0", [BOB, ALICE]),
        (10, "B", "100.0", [ALICE, BOB]),
    ]
    assert set(result["BTC"][0]) == {
        "coin", "side", "px", "sz", "time", "hash", "tid", "users",
    }  # fmt: skip


def test_trade_split_across_blocks_is_paired_later():
    """A lone fill waits for its partner in a later block (streaming mode)."""
    pairer = TradePairer()
    assert pairer.feed(1, [fill(BOB, 20, "A", True)], accept) == {}
    assert pairer.pending_count() == 1
    second = pairer.feed(2, [fill(ALICE, 20, "B", False)], accept)
    assert [(t["side"], t["users"]) for t in second["BTC"]] == [("A", [ALICE, BOB])]
    assert pairer.pending_count() == 0


def test_fill_of_a_trade_already_paired_pairs_nothing():
    """Both fills read again (within max_age blocks): no second trade, nothing pending;
    after max_age blocks the tid is forgotten."""
    pairer = TradePairer(max_age=3)
    fills = [fill(ALICE, 7, "B", True), fill(BOB, 7, "A", False)]
    assert [t["tid"] for t in pairer.feed(10, fills, accept)["BTC"]] == [7]
    assert pairer.feed(10, fills, accept) == {} and pairer.pending_count() == 0
    pairer.feed(14, [], accept)
    assert [t["tid"] for t in pairer.feed(15, fills, accept)["BTC"]] == [7]
