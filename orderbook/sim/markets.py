"""The simulator's coins, their price/size grids and the node's number format.

Prices and sizes are exact ints in units of 1e-8 (``UNIT``). Each market has a
tick that keeps every price on the node's grid (at most 5 significant figures,
integers always allowed, at most 6 decimals for perps and 8 for spot) as long as
its mid stays within ``DRIFT_BAND`` of the base price, and a lot size (at most
8 decimals). The simulator deliberately shares no code with ``orderbook.fixed``:
it is the independent reference the server is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

UNIT = 10**8
"""One whole coin or one dollar, in units of 1e-8."""

DRIFT_BAND = (0.8, 1.2)
"""The mid price random walk stays within these factors of the base price."""

PERP = "perp"
SPOT = "spot"
HIP3 = "hip3"
OUTCOME = "outcome"


@dataclass(frozen=True, slots=True)
class Market:
    """One coin: kind, base price, price tick and lot size (all in 1e-8 units)."""

    coin: str
    kind: str
    base_px: int
    tick: int
    lot: int
    base_token: str = ""

    @property
    def is_spot(self) -> bool:
        """Spot-like markets (spot and outcome) report Buy/Sell fills."""
        return self.kind in (SPOT, OUTCOME)

    @property
    def max_decimals(self) -> int:
        """The most decimals a price of this market may have."""
        return 8 if self.kind == SPOT else 6


def units(text: str) -> int:
    """Parse a decimal string into exact 1e-8 units (raises on finer values)."""
    value = Decimal(text) * UNIT
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} has more than 8 decimals")
    return int(value)


def fmt(value: int) -> str:
    """Format 1e-8 units the way the node does: ``"76450.0"``, ``"0.00292"``."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), UNIT)
    frac_text = f"{frac:08d}".rstrip("0") or "0"
    return f"{sign}{whole}.{frac_text}"


def sig_figs(value: int) -> int:
    """Significant figures of a positive price in 1e-8 units."""
    digits = str(abs(value)).rstrip("0")
    return len(digits)


def valid_price(market: Market, px: int) -> bool:
    """True when ``px`` is a price the node would accept for ``market``."""
    if px <= 0:
        return False
    if px % UNIT == 0:
        return True
    decimals = len(f"{px % UNIT:08d}".rstrip("0"))
    return sig_figs(px) <= 5 and decimals <= market.max_decimals


def to_grid(market: Market, px: int, up: bool = False) -> int:
    """Round ``px`` onto the market's tick and the 5-significant-figure rule."""
    step = market.tick
    if px <= step:
        return step
    while True:
        down = px - px % step
        px = down + step if up and down != px else down
        if valid_price(market, px):
            return px
        step *= 10


def _m(coin: str, kind: str, px: str, tick: str, lot: str, base: str = "") -> Market:
    return Market(coin, kind, units(px), units(tick), units(lot), base)


DEFAULT_MARKETS: tuple[Market, ...] = (
    _m("BTC", PERP, "76450", "1", "0.00001"),
    _m("ETH", PERP, "2345.6", "0.1", "0.0001"),
    _m("HYPE", PERP, "41.234", "0.001", "0.01"),
    _m("SOL", PERP, "152.34", "0.01", "0.01"),
    _m("@107", SPOT, "41.251", "0.001", "0.01", "HYPE"),
    _m("PURR/USDC", SPOT, "0.14567", "0.00001", "1", "PURR"),
    _m("xyz:TSLA", HIP3, "251.23", "0.01", "0.001"),
    _m("#12", OUTCOME, "0.5123", "0.0001", "1", "#12"),
)

_EXTRA_PERPS = (
    ("DOGE", "0.17234", "0.00001", "1"),
    ("AVAX", "23.456", "0.001", "0.01"),
    ("LINK", "14.567", "0.001", "0.1"),
    ("ARB", "0.41234", "0.00001", "1"),
    ("SUI", "3.4567", "0.0001", "0.1"),
    ("XRP", "2.3456", "0.0001", "1"),
    ("BNB", "612.34", "0.01", "0.001"),
    ("LTC", "67.654", "0.001", "0.01"),
)


def extra_perp(index: int) -> Market:
    """The ``index``-th additional perp: well-known names first, then PERP<n>."""
    if index < len(_EXTRA_PERPS):
        coin, px, tick, lot = _EXTRA_PERPS[index]
    else:
        coin, px, tick, lot = f"PERP{index}", "12.345", "0.001", "0.1"
    return _m(coin, PERP, px, tick, lot)


def markets(extra_perps: int = 0) -> tuple[Market, ...]:
    """The default markets plus ``extra_perps`` more perps."""
    return DEFAULT_MARKETS + tuple(extra_perp(i) for i in range(extra_perps))


def node_time(time_ns: int) -> str:
    """Naive UTC ISO-8601 with 9 fractional digits, as in the node's envelopes."""
    seconds, nanos = divmod(time_ns, 10**9)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}"
