"""Property: random valid diff sequences give the same L4, L2 and bbo as a plain model.

The reference model is deliberately naive: one Python list of orders (queue
order = list order), Decimal arithmetic, and bucketing by Decimal rounding
to significant figures, written independently of orderbook.book.l2.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderbook.book.books import Books
from tests.book.blocks import ALICE, BOB, block, new, remove, update

PRICES = [
    "0.00000003",
    "0.00099",
    "0.0011999",
    "0.0012301",
    "0.0012345",
    "9.99",
    "10.0",
    "10.01",
    "99.95",
    "99.99",
    "100.0",
    "100.5",
    "101.0",
    "99999.0",
    "100001.0",
    "106210.0",
    "106217.0",
]
SIZES = ["0.00000001", "0.5", "1.0", "3.0", "123.45678901"]
COINS = ["BTC", "@1"]
VIEWS = [(None, None)] + [(n, None) for n in (2, 3, 4, 5)] + [(5, 2), (5, 5)]


def fmt(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"


class Model:
    """All resting orders of all coins in one list, in arrival/queue order."""

    def __init__(self) -> None:
        self.orders: list[dict] = []
        self.next_oid = 1

    def side_orders(self, coin: str, side: str) -> list[dict]:
        mine = [o for o in self.orders if o["coin"] == coin and o["side"] == side]
        return sorted(mine, key=lambda o: -o["px"] if side == "B" else o["px"])  # stable

    def l4(self, coin: str) -> list[list[tuple]]:
        return [
            [(o["oid"], fmt(o["px"]), fmt(o["sz"]), o["user"]) for o in self.side_orders(coin, s)]
            for s in ("B", "A")
        ]

    def l2(self, coin: str, sig: int | None, mantissa: int | None, n_levels: int) -> list:
        result = []
        for side in ("B", "A"):
            buckets: dict[Decimal, list] = {}
            for o in self.side_orders(coin, side):
                px = o["px"] if sig is None else bucket(o["px"], sig, mantissa or 1, side == "B")
                entry = buckets.setdefault(px, [Decimal(0), 0])
                entry[0] += o["sz"]
                entry[1] += 1
            ordered = sorted(buckets.items(), reverse=side == "B")[:n_levels]
            result.append([{"px": fmt(px), "sz": fmt(sz), "n": n} for px, (sz, n) in ordered])
        return result


def bucket(px: Decimal, sig: int, mantissa: int, is_bid: bool) -> Decimal:
    exponent = max(px.adjusted() - sig + 1, -8)
    size = mantissa * Decimal(10) ** exponent
    rounding = ROUND_FLOOR if is_bid else ROUND_CEILING
    return (px / size).to_integral_value(rounding=rounding) * size


@st.composite
def operation(draw, model: Model):
    kinds = ["new", "new"] + (["insert", "update", "remove"] if model.orders else [])
    kind = draw(st.sampled_from(kinds))
    if kind in ("update", "remove"):
        target = draw(st.sampled_from(model.orders))
        args = dict(px=fmt(target["px"]), side=target["side"], coin=target["coin"])
        if kind == "remove":
            model.orders.remove(target)
            return remove(target["oid"], **args)
        sz = Decimal(draw(st.sampled_from(SIZES)))
        diff = update(target["oid"], fmt(target["sz"]), fmt(sz), **args)
        target["sz"] = sz
        return diff
    oid, model.next_oid = model.next_oid, model.next_oid + 1
    order = {"oid": oid, "sz": Decimal(draw(st.sampled_from(SIZES)))}
    order["user"] = draw(st.sampled_from([ALICE, BOB]))
    if kind == "insert":
        target = draw(st.sampled_from(model.orders))
        order.update(coin=target["coin"], side=target["side"], px=target["px"])
        model.orders.insert(model.orders.index(target), order)
        before = target["oid"]
    else:
        order["coin"] = draw(st.sampled_from(COINS))
        order["side"] = draw(st.sampled_from(["B", "A"]))
        order["px"] = Decimal(draw(st.sampled_from(PRICES)))
        model.orders.append(order)
        before = None
    return new(
        oid, fmt(order["px"]), fmt(order["sz"]), order["side"], order["coin"], order["user"], before
    )


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_books_match_reference_model(data):
    """After every block: L4 queues, every L2 bucketing and bbo equal the model's."""
    books, model = Books(), Model()
    for height in range(1, data.draw(st.integers(1, 6)) + 1):
        diffs = [data.draw(operation(model)) for _ in range(data.draw(st.integers(1, 12)))]
        result = books.apply_block(block(height, diffs=diffs))
        assert result.errors == []
        for coin in set(books.coins()) | {o["coin"] for o in model.orders}:
            snap = books.l4_snapshot(coin)["levels"]
            ours = [[(o["oid"], o["limitPx"], o["sz"], o["user"]) for o in side] for side in snap]
            assert ours == model.l4(coin)
            n_levels = data.draw(st.integers(1, 6))
            for sig, mantissa in VIEWS:
                view = books.l2_view(coin, sig, mantissa, n_levels)
                assert view["levels"] == model.l2(coin, sig, mantissa, n_levels), (sig, mantissa)
            top = model.l2(coin, None, None, 1)
            assert books.bbo_view(coin)["bbo"] == [
                top[0][0] if top[0] else None,
                top[1][0] if top[1] else None,
            ]
            mids = books.all_mids()
            if top[0] and top[1]:
                mid = (Decimal(top[0][0]["px"]) + Decimal(top[1][0]["px"])) / 2
                assert mids[coin] == fmt(mid)
            else:
                assert coin not in mids
