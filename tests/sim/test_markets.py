"""Number format and price grid of the simulator's markets."""

from __future__ import annotations

import pytest

from orderbook.sim.markets import (
    DEFAULT_MARKETS,
    fmt,
    markets,
    sig_figs,
    to_grid,
    units,
    valid_price,
)

BTC, ETH, *_ = DEFAULT_MARKETS
PURR = next(m for m in DEFAULT_MARKETS if m.coin == "PURR/USDC")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("76450.0", 7_645_000_000_000),
        ("0.00292", 292_000),
        ("0.0", 0),
        ("-0.00351", -351_000),
        ("11.78897", 1_178_897_000),
    ],
)
def test_units_and_fmt_round_trip_like_the_node(text: str, value: int) -> None:
    """Decimal strings <-> exact 1e-8 ints, formatted like the node ("76450.0", not "76450")."""
    assert units(text) == value
    assert fmt(value) == text


def test_units_refuses_more_than_8_decimals() -> None:
    """A 9th decimal is an error naming the value."""
    with pytest.raises(ValueError, match="0.000000001"):
        units("0.000000001")


def test_valid_price_rules() -> None:
    """5 significant figures (integers always allowed), 6 decimals for perps, 8 for spot."""
    assert valid_price(BTC, units("123456"))
    assert not valid_price(BTC, units("76450.5"))
    assert valid_price(ETH, units("2345.6")) and not valid_price(ETH, units("2345.65"))
    assert not valid_price(ETH, units("0.0000012")) and valid_price(PURR, units("0.0000012"))
    assert sig_figs(units("0.14567")) == 5
    assert not valid_price(BTC, 0)


def test_to_grid_rounds_onto_tick_and_sig_figs() -> None:
    """Prices snap to the tick (down, or up for asks) and to 5 significant figures."""
    assert to_grid(ETH, units("2345.67")) == units("2345.6")
    assert to_grid(ETH, units("2345.61"), up=True) == units("2345.7")
    assert to_grid(PURR, units("1.234567")) == units("1.2345")
    assert to_grid(BTC, 5) == BTC.tick


def test_every_market_base_price_band_is_on_the_grid() -> None:
    """Every coin's drift band stays within the price rules at its tick."""
    for market in markets(extra_perps=12):
        for factor in (0.8, 1.0, 1.2):
            px = int(market.base_px * factor)
            px -= px % market.tick
            assert valid_price(market, px), (market.coin, factor)
