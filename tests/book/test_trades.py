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
