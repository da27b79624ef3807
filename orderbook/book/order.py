"""One resting order, kept small: a million of them must fit in ~300 MB.

An :class:`Order` holds only what varies per order. Its price, side and coin
live on the level/side/book it rests in (``order.level``); the seven fields
that take only a handful of distinct values across the whole book
(triggerCondition, isTrigger, triggerPx, isPositionTpsl, reduceOnly,
orderType, tif) share one interned :data:`Meta` tuple; user addresses are
interned strings and a ``cloid`` is stored as an int when it round-trips.
"""

from __future__ import annotations

import calendar
import re
import sys
from typing import TYPE_CHECKING, Any

from orderbook.book.events import StatusOrder

if TYPE_CHECKING:
    from orderbook.book.side import Level

# (triggerCondition, isTrigger, triggerPx, isPositionTpsl, reduceOnly, orderType, tif)
Meta = tuple[str, bool, str, bool, bool, str, "str | None"]

DEFAULT_META: Meta = ("N/A", False, "0.0", False, False, "Limit", None)
_MAX_METAS = 10_000  # beyond this, stop interning (defensive: values are few)
_metas: dict[Meta, Meta] = {DEFAULT_META: DEFAULT_META}


def intern_meta(meta: Meta) -> Meta:
    """Return the shared copy of ``meta`` (one tuple per distinct value)."""
    shared = _metas.get(meta)
    if shared is not None:
        return shared
    if len(_metas) < _MAX_METAS:
        meta = tuple(sys.intern(v) if isinstance(v, str) else v for v in meta)  # type: ignore[assignment]
        _metas[meta] = meta
    return meta


def meta_of(order: StatusOrder) -> Meta:
    """The shared metadata tuple of a status's order."""
    return intern_meta(
        (
            order.triggerCondition,
            order.isTrigger,
            order.triggerPx,
            order.isPositionTpsl,
            order.reduceOnly,
            order.orderType,
            order.tif,
        )
    )


TRIGGERED_META_FIELDS = ("Triggered", False, "0.0")


def triggered_meta(order: StatusOrder) -> Meta:
    """Metadata of a triggered trigger order as it rests (Gtc, "Triggered")."""
    return intern_meta(
        (*TRIGGERED_META_FIELDS, order.isPositionTpsl, order.reduceOnly, order.orderType, "Gtc")
    )


_CANONICAL_CLOID = re.compile(r"0x[0-9a-f]{32}")


def encode_cloid(cloid: str | None) -> int | str | None:
    """Store a canonical ``0x`` + 32 lowercase hex cloid as an int (44 vs 83 bytes)."""
    if cloid is None or not _CANONICAL_CLOID.fullmatch(cloid):
        return cloid
    return int(cloid, 16)


def decode_cloid(value: int | str | None) -> str | None:
    """Inverse of :func:`encode_cloid`."""
    if value is None or isinstance(value, str):
        return value
    return f"0x{value:032x}"


def iso_to_ms(text: str) -> int:
    """Epoch milliseconds of a naive UTC ISO time ("2026-04-30T20:46:43.304461819").

    Fractional digits beyond milliseconds are truncated.
    """
    try:
        date, _, clock = text.partition("T")
        year, month, day = date.split("-")
        hms, _, frac = clock.partition(".")
        hour, minute, second = hms.split(":")
        seconds = calendar.timegm(
            (int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0)
        )
        return seconds * 1000 + (int((frac + "000")[:3]) if frac else 0)
    except ValueError as exc:
        raise ValueError(f"not a naive ISO-8601 time: {text!r}") from exc


class Order:
    """A resting order; ``level`` gives its price, side and coin."""

    __slots__ = ("oid", "user", "sz", "timestamp", "cloid", "meta", "level")

    def __init__(
        self,
        oid: int,
        user: str,
        sz: int,
        timestamp: int,
        cloid: int | str | None,
        meta: Meta,
    ) -> None:
        self.oid = oid
        self.user = user
        self.sz = sz
        self.timestamp = timestamp
        self.cloid = cloid
        self.meta = meta
        self.level: Level | None = None

    def to_dict(self, coin: str, side: str, px: str, fmt: Any) -> dict[str, Any]:
        """The order object of l4Book messages (``fmt`` formats the size)."""
        meta = self.meta
        return {
            "user": self.user,
            "coin": coin,
            "side": side,
            "limitPx": px,
            "sz": fmt(self.sz),
            "oid": self.oid,
            "timestamp": self.timestamp,
            "triggerCondition": meta[0],
            "isTrigger": meta[1],
            "triggerPx": meta[2],
            "isPositionTpsl": meta[3],
            "reduceOnly": meta[4],
            "orderType": meta[5],
            "tif": meta[6],
            "cloid": decode_cloid(self.cloid),
        }

    def __repr__(self) -> str:
        return f"Order(oid={self.oid}, user={self.user}, sz={self.sz})"
