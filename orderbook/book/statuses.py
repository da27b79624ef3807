"""A block's order statuses, looked up by oid for the block's ``new`` diffs.

Diffs say what rests; a status only supplies the metadata of a new order
(timestamp, tif, trigger fields, cloid). Most statuses are never needed
(60-93% are rejections, many more are cancels). The first lookup makes one
pass over the block: "open" and "triggered" statuses, which nearly all
belong to a ``new`` diff, are decoded into :class:`StatusMeta` and indexed
by oid; of the other non-rejected ones (canceled, filled, ...) only the
position is noted. Those are indexed, decoding just their oids, the first
time an oid is missing from the first index: that is how orders without a
status (HIP-2) are told apart. Rejections are never decoded.
"""

from __future__ import annotations

import msgspec

from orderbook.book.events import OrderStatus
from orderbook.book.order import (
    CANONICAL_CLOID,
    METAS,
    STATUSLESS_META,
    Order,
    StatusMeta,
    decode_status_meta,
    intern_meta,
    triggered_meta,
)
from orderbook.book.times import iso_to_ms

_canonical_cloid = CANONICAL_CLOID.fullmatch


class _OrderKey(msgspec.Struct, gc=False):
    """Only the oid of a status's raw order (the rest is skipped in C)."""

    oid: int


_decode_key = msgspec.json.Decoder(_OrderKey).decode
_Hit = tuple[int, OrderStatus, StatusMeta]  # (file position, status, its decoded order)
_OPEN = "open"
_TRIGGERED = "triggered"


class BlockStatuses:
    """One block's statuses by oid; ``used`` collects the ones that supplied metadata.

    ``used`` maps coin -> ``[(file position, status)]`` (not yet sorted).
    When several statuses name one oid, a "triggered" one wins over "open",
    and otherwise the first in the file wins.
    """

    __slots__ = ("_statuses", "_time_ms", "_primary", "_others", "_secondary", "used")

    def __init__(self, statuses: list[OrderStatus], time_ms: int) -> None:
        self._statuses = statuses
        self._time_ms = time_ms
        self._primary: dict[int, _Hit] | None = None  # open and triggered, by oid
        self._others: list[int] = []  # positions of the other non-rejected statuses
        self._secondary: dict[int, int] | None = None  # their oids -> position
        self.used: dict[str, list[tuple[int, OrderStatus]]] = {}

    def order(self, oid: int, coin: str, user: str, sz: int) -> Order:
        """A new resting order ``oid`` of ``coin``, with its status's metadata.

        Without a status (HIP-2, the assistance fund) the order gets the block
        time and the metadata of a passive Alo limit order.
        """
        primary = self._primary
        if primary is None:
            primary = self._primary = self._index()
        hit = primary.get(oid)
        if hit is None:
            hit = self._other(oid)
            if hit is None:
                return Order(oid, user, sz, self._time_ms, None, STATUSLESS_META)
        position, status, source = hit
        used = self.used.get(coin)
        if used is None:
            self.used[coin] = [(position, status)]
        else:
            used.append((position, status))
        cloid = source.cloid
        if cloid is not None and _canonical_cloid(cloid):
            cloid = int(cloid, 16)
        if status.status == _TRIGGERED:
            try:
                timestamp = iso_to_ms(status.time)
            except ValueError:
                timestamp = self._time_ms
            return Order(oid, user, sz, timestamp, cloid, triggered_meta(source))
        meta = (
            source.triggerCondition,
            source.isTrigger,
            source.triggerPx,
            source.isPositionTpsl,
            source.reduceOnly,
            source.orderType,
            source.tif,
        )
        shared = METAS.get(meta)  # meta_of(source), inlined: this is the hot path
        return Order(oid, user, sz, source.timestamp, cloid, shared or intern_meta(meta))

    def _index(self) -> dict[int, _Hit]:
        """One pass: decode the open and triggered statuses, note where the others are.

        Nearly every "open" status belongs to a ``new`` diff of the block, so
        these are decoded straight into :class:`StatusMeta`.
        """
        index: dict[int, _Hit] = {}
        others = self._others
        for position, status in enumerate(self._statuses):
            name = status.status
            if name in (_OPEN, _TRIGGERED):
                try:
                    source = decode_status_meta(status.order)
                except msgspec.DecodeError:  # a bad status only loses its metadata
                    continue
                known = index.get(source.oid)
                if known is None or (name == _TRIGGERED and known[1].status != _TRIGGERED):
                    index[source.oid] = (position, status, source)
            elif not name.endswith("Rejected"):
                others.append(position)
        return index

    def _other(self, oid: int) -> _Hit | None:
        """The first other non-rejected status of ``oid`` (canceled, filled, ...)."""
        secondary = self._secondary
        if secondary is None:
            secondary = self._secondary = self._index_others()
        position = secondary.get(oid)
        if position is None:
            return None
        status = self._statuses[position]
        try:
            return position, status, decode_status_meta(status.order)
        except msgspec.DecodeError:  # its oid reads but the rest does not: skip it
            self._others.remove(position)
            self._secondary = None
            return self._other(oid)

    def _index_others(self) -> dict[int, int]:
        """oid -> position of the other statuses, decoding only their oids."""
        index: dict[int, int] = {}
        statuses = self._statuses
        for position in self._others:
            try:
                oid = _decode_key(statuses[position].order).oid
            except msgspec.DecodeError:
                continue
            if oid not in index:
                index[oid] = position
        return index
