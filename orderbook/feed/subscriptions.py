"""Client requests -> validated, hashable :class:`Subscription` keys.

A subscription as a client sends it (Hyperliquid's public API, see
../shared/docs/ws-api.md)::

    {"type": "l2Book", "coin": "BTC", "nSigFigs": 5, "mantissa": 2, "nLevels": 50}
    {"type": "l2Book", "coin": "BTC", "fast": true}     (official flag: 5 levels)
    {"type": "trades", "coin": "BTC"}     {"type": "bbo", "coin": "BTC"}
    {"type": "allMids"}                   {"type": "allMids", "dex": "xyz"}
    {"type": "l4Book", "coin": "BTC"}     {"type": "status"}

Two requests that mean the same view map to the same key (defaults filled in),
so unsubscribing with ``"nSigFigs": null`` undoes a subscribe that left it out.
Every problem is a :class:`SubscriptionError` whose text is the ``error``
message the client receives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHANNELS = ("l2Book", "trades", "bbo", "allMids", "l4Book", "status")
COIN_CHANNELS = frozenset({"l2Book", "trades", "bbo", "l4Book"})
# Channels whose every message matters: a slow client queues them (bounded)
# instead of keeping only the latest one.
LOSSLESS_CHANNELS = frozenset({"trades", "l4Book"})

DEFAULT_LEVELS = 20
FAST_LEVELS = 5  # the official API's `fast` l2Book has 5 levels; here it is sent every block too
MAX_LEVELS = 100
_KEYS = {
    "l2Book": {"type", "coin", "nSigFigs", "mantissa", "nLevels", "fast"},
    "trades": {"type", "coin"},
    "bbo": {"type", "coin"},
    "allMids": {"type", "dex"},
    "l4Book": {"type", "coin"},
    "status": {"type"},
}


class SubscriptionError(Exception):
    """A request the client must be told about; ``str()`` is the error text."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """One view a client can subscribe to (hashable: the registry's key)."""

    channel: str
    coin: str | None = None
    n_sig_figs: int | None = None
    mantissa: int | None = None
    n_levels: int = DEFAULT_LEVELS
    dex: str | None = None

    @property
    def lossless(self) -> bool:
        """True when no message may be skipped (trades, l4Book)."""
        return self.channel in LOSSLESS_CHANNELS


def parse_subscription(request: Any) -> Subscription:
    """Validate the ``subscription`` object of a subscribe/unsubscribe request."""
    if not isinstance(request, dict):
        raise SubscriptionError("Invalid subscription: expected an object with a 'type'")
    channel = request.get("type")
    if channel not in CHANNELS:
        known = ", ".join(CHANNELS)
        raise SubscriptionError(f"Invalid subscription: unknown type {channel!r} (known: {known})")
    unknown = sorted(set(request) - _KEYS[channel])
    if unknown:
        raise SubscriptionError(
            f"Invalid subscription: unknown key {unknown[0]!r} for type {channel!r}"
        )
    if channel == "l2Book":
        return parse_l2(request)
    if channel == "allMids":
        return Subscription("allMids", dex=parse_dex(request.get("dex")))
    if channel == "status":
        return Subscription("status")
    return Subscription(channel, coin=_coin(request))


def parse_l2(request: dict[str, Any]) -> Subscription:
    """The l2Book parameters (also used by ``post`` info requests)."""
    coin = _coin(request)
    n_sig_figs = request.get("nSigFigs")
    if n_sig_figs is not None and (not _is_int(n_sig_figs) or not 2 <= n_sig_figs <= 5):
        raise SubscriptionError("Invalid subscription: nSigFigs must be 2-5 or null")
    mantissa = request.get("mantissa")
    if mantissa is not None:
        if mantissa not in (1, 2, 5) or not _is_int(mantissa):
            raise SubscriptionError("Invalid subscription: mantissa must be 1, 2, 5 or null")
        if n_sig_figs != 5:
            raise SubscriptionError(
                "Invalid subscription: mantissa is only allowed with nSigFigs 5"
            )
        if mantissa == 1:
            mantissa = None  # the same buckets as no mantissa
    n_levels = request.get("nLevels")
    if n_levels is None:
        n_levels = FAST_LEVELS if _fast(request.get("fast")) else DEFAULT_LEVELS
    elif not _is_int(n_levels) or not 1 <= n_levels <= MAX_LEVELS:
        raise SubscriptionError(f"Invalid subscription: nLevels must be 1-{MAX_LEVELS}")
    return Subscription("l2Book", coin, n_sig_figs, mantissa, n_levels)


def _coin(request: dict[str, Any]) -> str:
    coin = request.get("coin")
    if not isinstance(coin, str) or not coin:
        raise SubscriptionError(
            f"Invalid subscription: {request.get('type')} needs a 'coin' string"
        )
    return coin


def _fast(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    raise SubscriptionError("Invalid subscription: fast must be true, false or null")


def parse_dex(value: Any) -> str | None:
    """The allMids ``dex``: None for the main dex (absent or ""), else the string."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SubscriptionError("Invalid subscription: dex must be a string")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
