"""The book's input language: one block of node events, as typed structs.

These are the shapes of the node's JSON lines (see ../shared/docs/node-data.md
§2-§5); ingestion decodes lines straight into them with msgspec
(``orderbook.node.schema``) and the simulator's tests encode them back.
Unknown extra keys are ignored (forward compatible); unknown status strings
are kept as they are.

A status line event, as the node writes it::

    {"time":"2026-04-30T20:46:43.304461819","user":"0xca1d…","hash":"0x98…",
     "builder":null,"status":"open","order":{"coin":"BTC","side":"B",
     "limitPx":"76450.0","sz":"0.5","oid":405401002917,"timestamp":1777582003304,
     "triggerCondition":"N/A","isTrigger":false,"triggerPx":"0.0","children":[],
     "isPositionTpsl":false,"reduceOnly":false,"orderType":"Limit",
     "origSz":"0.5","tif":"Alo","cloid":"0x0000…41"}}

The ``order`` object stays raw JSON (``msgspec.Raw``) until someone needs it:
~93% of statuses are rejections whose order nobody reads. The event structs
are ``gc=False`` (they never form reference cycles): a block makes thousands
of them, and untracked objects keep the cyclic collector's passes short.
"""

from __future__ import annotations

from typing import Any

import msgspec


class StatusOrder(msgspec.Struct, frozen=True, gc=False):
    """The ``order`` object of an order status (also the snapshot's order)."""

    coin: str
    side: str
    limitPx: str
    sz: str
    oid: int
    timestamp: int
    triggerCondition: str = "N/A"
    isTrigger: bool = False
    triggerPx: str = "0.0"
    children: list[Any] = []
    isPositionTpsl: bool = False
    reduceOnly: bool = False
    orderType: str = "Limit"
    origSz: str = ""
    tif: str | None = None
    cloid: str | None = None


class OrderStatus(msgspec.Struct, frozen=True, gc=False):
    """One order status event; ``order`` is raw JSON, see :func:`decode_order`.

    The node's ``hash`` and ``builder`` are skipped while decoding: nothing
    reads them (l4Book sends time, user, status and order), and a block's
    ~1,000 hash strings cost ~10% of the statuses line's decode.
    """

    time: str
    user: str
    status: str
    order: msgspec.Raw


class NewDiff(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """``{"new": {"sz": …, "insertBefore": oid?}}``: the order starts resting."""

    sz: str
    insertBefore: int | None = None


class UpdateDiff(msgspec.Struct, frozen=True, gc=False):
    """``{"update": {"origSz": …, "newSz": …}}``: its resting size changed."""

    origSz: str
    newSz: str


class DiffBody(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """The object form of ``raw_book_diff``: exactly one of new/update is set."""

    new: NewDiff | None = None
    update: UpdateDiff | None = None


REMOVE = "remove"


class BookDiff(msgspec.Struct, frozen=True, gc=False):
    """One raw book diff; ``raw_book_diff`` is a DiffBody or the string "remove"."""

    user: str
    oid: int
    coin: str
    side: str
    px: str
    raw_book_diff: DiffBody | str


class Fill(msgspec.Struct, frozen=True, gc=False):
    """One side of a trade (the second element of a ``[user, fill]`` pair)."""

    coin: str
    px: str
    sz: str
    side: str
    time: int
    hash: str
    oid: int
    crossed: bool
    tid: int
    startPosition: str = "0.0"
    dir: str = ""
    closedPnl: str = "0.0"
    fee: str = "0.0"
    feeToken: str = "USDC"
    twapId: int | None = None
    cloid: str | None = None


class Block(msgspec.Struct):
    """Everything one block did, in file order, ready for ``Books.apply_block``.

    ``time_ms`` is ``block_time`` in epoch milliseconds (the ``time`` of client
    messages). ``fills`` holds ``(user, Fill)`` pairs (``fills_ok`` is False when
    the block's fills line was bad); the book does not use them: trades are
    paired from the fills lines as they are read (``orderbook.node.tape``).
    """

    height: int
    time_ms: int
    block_time: str
    statuses: list[OrderStatus]
    diffs: list[BookDiff]
    fills: list[tuple[str, Fill]]
    fills_ok: bool = True


_order_decoder = msgspec.json.Decoder(StatusOrder)


def decode_order(status: OrderStatus) -> StatusOrder:
    """Decode a status's raw ``order`` object (raises msgspec.DecodeError)."""
    return _order_decoder.decode(status.order)
