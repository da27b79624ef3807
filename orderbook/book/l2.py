"""L2 aggregation with the official ``l2Book`` bucketing, best bid/offer and mids.

Bucket size = mantissa x 10^max(0, d - nSigFigs) units of 1e-8, where d is
the number of digits of the price as an integer in units of 1e-8 (so
significant figures count from the first non-zero digit, above or below 1).
Bids round down to their bucket, asks round up; a bucket sums the size and
order count of the levels it covers. Rounding is monotone in price, so
buckets are built by merging consecutive levels in best-first order.
"""

from __future__ import annotations

from typing import Any

from orderbook import fixed
from orderbook.book.side import Level, Side

SIG_FIGS = (2, 3, 4, 5)
MANTISSAS = (1, 2, 5)
MAX_LEVELS = 100
_POW10 = [10**i for i in range(40)]


def check_params(n_sig_figs: int | None, mantissa: int | None, n_levels: int) -> None:
    """Raise ValueError naming the bad parameter (the feed validates first)."""
    if n_sig_figs is not None and n_sig_figs not in SIG_FIGS:
        raise ValueError(f"nSigFigs must be 2-5 or null, not {n_sig_figs!r}")
    if mantissa is not None:
        if mantissa not in MANTISSAS:
            raise ValueError(f"mantissa must be 1, 2 or 5, not {mantissa!r}")
        if n_sig_figs != 5 and mantissa != 1:
            raise ValueError("mantissa 2 or 5 needs nSigFigs 5")
    if not isinstance(n_levels, int) or not 1 <= n_levels <= MAX_LEVELS:
        raise ValueError(f"nLevels must be 1-{MAX_LEVELS}, not {n_levels!r}")


def bucket_size(px: int, n_sig_figs: int, mantissa: int = 1) -> int:
    """Bucket width in units of 1e-8 for a price of ``px`` units."""
    return mantissa * _POW10[max(0, len(str(px)) - n_sig_figs)]


def bucket_price(px: int, is_bid: bool, n_sig_figs: int, mantissa: int = 1) -> int:
    """``px`` rounded to its bucket: down for bids, up for asks."""
    size = bucket_size(px, n_sig_figs, mantissa)
    if is_bid:
        return px - px % size
    return -(-px // size) * size


def level_dict(px: str, size: int, count: int) -> dict[str, Any]:
    return {"px": px, "sz": fixed.format(size), "n": count}


def side_levels(
    side: Side, n_sig_figs: int | None, mantissa: int | None, n_levels: int
) -> list[dict[str, Any]]:
    """Up to ``n_levels`` aggregated levels of one side, best first."""
    if n_sig_figs is None:
        result = []
        for level in side.iter_levels():
            result.append(level_dict(level.px_str, level.size, len(level.orders)))
            if len(result) == n_levels:
                break
        return result
    return _bucketed(side, n_sig_figs, mantissa or 1, n_levels)


def _bucketed(side: Side, n_sig_figs: int, mantissa: int, n_levels: int) -> list[dict[str, Any]]:
    is_bid = side.is_bid
    buckets: list[list[int]] = []  # [price, size, count]
    current: list[int] | None = None
    for level in side.iter_levels():
        px = bucket_price(level.px, is_bid, n_sig_figs, mantissa)
        if current is not None and current[0] == px:
            current[1] += level.size
            current[2] += len(level.orders)
            continue
        if len(buckets) == n_levels:
            break
        current = [px, level.size, len(level.orders)]
        buckets.append(current)
    return [level_dict(fixed.format(px), size, count) for px, size, count in buckets]


def bbo_level(level: Level | None) -> dict[str, Any] | None:
    if level is None:
        return None
    return level_dict(level.px_str, level.size, len(level.orders))


def format_mid(bid: int, ask: int) -> str:
    """Exact mid of two prices in units of 1e-8, canonical.

    When bid + ask is odd the mid has a 9th decimal (a 5); it is kept exact
    rather than rounded, e.g. bid 0.00000001, ask 0.00000002 -> "0.000000015".
    """
    total = bid + ask
    if total % 2 == 0:
        return fixed.format(total // 2)
    whole, frac = divmod(total * 5, fixed.SCALE * 10)  # units of 1e-9
    return f"{whole}.{frac:09d}".rstrip("0")
