"""One resting order, kept small: a million of them must fit in ~300 MB.

An :class:`Order` holds only what varies per order. Its price, side and coin
live on the level/side/book it rests in (``order.level``); the seven fields
that take only a handful of distinct values across the whole book
(triggerCondition, isTrigger, triggerPx, isPositionTpsl, reduceOnly,
orderType, tif) share one interned :data:`Meta` tuple; user addresses are
interned strings and a ``cloid`` is stored as an int when it round-trips.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any

import msgspec

from orderbook.book.events import StatusOrder

if TYPE_CHECKING:
    from orderbook.book.side import Level

# (triggerCondition, isTrigger, triggerPx, isPositionTpsl, reduceOnly, orderType, tif)
Meta = tuple[str, bool, str, bool, bool, str, "str | None"]

DEFAULT_META: Meta = ("N/A", False, "0.0", False, False, "Limit", None)
_MAX_METAS = 10_000  # beyond this, stop interning (defensive: values are few)
METAS: dict[Meta, Meta] = {DEFAULT_META: DEFAULT_META}


def intern_meta(meta: Meta) -> Meta:
    """Return the shared copy of ``meta`` (one tuple per distinct value)."""
    shared = METAS.get(meta)
    if shared is not None:
        return shared
    if len(METAS) < _MAX_METAS:
        meta = tuple(sys.intern(v) if isinstance(v, str) else v for v in meta)  # type: ignore[assignment]
        METAS[meta] = meta
    return meta


# Orders with no status (HIP-2 market making, the assistance fund) are passive
# makers: node snapshots and other servers report them as Alo limit orders.
STATUSLESS_META: Meta = intern_meta(("N/A", False, "0.0", False, False, "Limit", "Alo"))


class StatusMeta(msgspec.Struct, gc=False):
    """What a resting order keeps of a status's raw ``order`` object.

    Decoding into this instead of :class:`StatusOrder` skips the fields the
    diff supplies (coin, side, limitPx, sz) and allocates less.
    """

    oid: int
    timestamp: int
    triggerCondition: str = "N/A"
    isTrigger: bool = False
    triggerPx: str = "0.0"
    isPositionTpsl: bool = False
    reduceOnly: bool = False
    orderType: str = "Limit"
    tif: str | None = None
    cloid: str | None = None


decode_status_meta = msgspec.json.Decoder(StatusMeta).decode


def meta_of(order: StatusOrder | StatusMeta) -> Meta:
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


def triggered_meta(order: StatusOrder | StatusMeta) -> Meta:
    """Metadata of a triggered trigger order as it rests (Gtc, "Triggered")."""
    return intern_meta(
        (*TRIGGERED_META_FIELDS, order.isPositionTpsl, order.reduceOnly, order.orderType, "Gtc")
    )


CANONICAL_CLOID = re.compile(r"0x[0-9a-f]{32}")


def encode_cloid(cloid: str | None) -> int | str | None:
    """Store a canonical ``0x`` + 32 lowercase hex cloid as an int (44 vs 83 bytes)."""
    if cloid is None or not CANONICAL_CLOID.fullmatch(cloid):
        return cloid
    return int(cloid, 16)


def decode_cloid(value: int | str | None) -> str | None:
    """Inverse of :func:`encode_cloid`."""
    if value is None or isinstance(value, str):
        return value
    return f"0x{value:032x}"


class Order(msgspec.Struct, eq=False, repr_omit_defaults=True, gc=False):
    """A resting order; ``level`` gives its price, side and coin.

    A msgspec Struct rather than a slots class: built by C code (~2.5x faster
    than a Python ``__init__``), which the hot path of every ``new`` diff pays.
    Never tracked by the garbage collector (``gc=False``, 16 bytes less): a
    mainnet book makes ~130k new orders a minute that outlive a young
    collection, and walking them cost ~150 ms a minute. A resting order is
    in a cycle with its level (``level.orders``); leaving the level ends it
    (``level`` is set to None) and discarded books are cut apart
    (:func:`~orderbook.book.coin_book.dismantle`), so reference counting
    frees every order.
    """

    oid: int
    user: str
    sz: int
    timestamp: int
    cloid: int | str | None
    meta: Meta
    level: Level | None = None

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
