"""Client subscription objects -> Subscription keys, with the clients' error texts."""

from __future__ import annotations

import pytest

from orderbook.feed.subscriptions import Subscription, SubscriptionError, parse_subscription


def test_defaults_make_equal_keys():
    """Omitted and null parameters give the same key; mantissa 1 is no mantissa."""
    plain = parse_subscription({"type": "l2Book", "coin": "BTC"})
    assert plain == parse_subscription(
        {"type": "l2Book", "coin": "BTC", "nSigFigs": None, "nLevels": 20}
    )
    assert plain == Subscription("l2Book", "BTC")
    assert (
        parse_subscription({"type": "l2Book", "coin": "BTC", "nSigFigs": 5, "mantissa": 1}).mantissa
        is None
    )
    assert parse_subscription({"type": "allMids", "dex": "xyz"}) == Subscription(
        "allMids", dex="xyz"
    )
    assert parse_subscription({"type": "trades", "coin": "@107"}).lossless


@pytest.mark.parametrize(
    ("request_", "text"),
    [
        ("BTC", "Invalid subscription: expected an object"),
        ({"type": "userFills"}, "Invalid subscription: unknown type 'userFills'"),
        ({"type": "bbo", "coin": "BTC", "x": 1}, "Invalid subscription: unknown key 'x'"),
        (
            {"type": "l2Book", "coin": "BTC", "nSigFigs": 1},
            "Invalid subscription: nSigFigs must be 2-5 or null",
        ),
        (
            {"type": "l2Book", "coin": "BTC", "nSigFigs": True},
            "Invalid subscription: nSigFigs must be 2-5 or null",
        ),
        (
            {"type": "l2Book", "coin": "BTC", "nSigFigs": 5, "mantissa": 3},
            "Invalid subscription: mantissa must be 1, 2, 5 or null",
        ),
        (
            {"type": "l2Book", "coin": "BTC", "nLevels": 101},
            "Invalid subscription: nLevels must be 1-100",
        ),
        ({"type": "l4Book", "coin": 5}, "Invalid subscription: l4Book needs a 'coin' string"),
        ({"type": "allMids", "dex": 3}, "Invalid subscription: dex must be a string"),
    ],
)
def test_errors(request_, text):
    """Each bad subscription names the problem."""
    with pytest.raises(SubscriptionError) as caught:
        parse_subscription(request_)
    assert str(caught.value).startswith(text)


def test_fast_flag_means_five_levels_unless_given():
    """The official l2Book ``fast`` flag: nLevels 5 by default; nLevels wins when given."""
    fast = parse_subscription({"type": "l2Book", "coin": "BTC", "fast": True})
    assert fast == Subscription("l2Book", "BTC", n_levels=5)
    assert parse_subscription({"type": "l2Book", "coin": "BTC", "fast": False}).n_levels == 20
    given = parse_subscription({"type": "l2Book", "coin": "BTC", "fast": True, "nLevels": 9})
    assert given.n_levels == 9
    with pytest.raises(SubscriptionError, match="fast must be true, false or null"):
        parse_subscription({"type": "l2Book", "coin": "BTC", "fast": 1})
