"""msgspec structs of the node's lines, decoding straight into book events.

Every line of every stream has the same envelope (both modes; by-block lines
hold a whole block's events, streaming lines one event)::

    {"local_time":"2026-04-30T20:46:46.266630865",
     "block_time":"2026-04-30T20:46:43.304461819","block_number":978995377,
     "events":[{"user":"0xca1d…","oid":405401002917,"coin":"BTC","side":"B",
                "px":"76450.0","raw_book_diff":{"new":{"sz":"0.5"}}}]}

Statuses carry ``OrderStatus`` events, diffs ``BookDiff``, fills
``[user, Fill]`` pairs (see :mod:`orderbook.book.events`). Unknown keys are
ignored; unknown status strings are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from orderbook.book.events import BookDiff, Fill, OrderStatus, decode_order
from orderbook.book.times import iso_to_ms

STATUSES = "statuses"
DIFFS = "diffs"
FILLS = "fills"
STREAM_KINDS = (STATUSES, DIFFS, FILLS)

DIRECTORIES = {
    "by_block": {
        STATUSES: "node_order_statuses_by_block",
        DIFFS: "node_raw_book_diffs_by_block",
        FILLS: "node_fills_by_block",
    },
    "streaming": {
        STATUSES: "node_order_statuses_streaming",
        DIFFS: "node_raw_book_diffs_streaming",
        FILLS: "node_fills_streaming",
    },
}


class LineError(Exception):
    """A line could not be used; ``height``/``block_time`` when still readable."""

    def __init__(
        self, message: str, height: int | None = None, block_time: str | None = None
    ) -> None:
        super().__init__(message)
        self.height = height
        self.block_time = block_time


class Header(msgspec.Struct, gc=False):
    """The envelope without its events (to name the block of a bad line)."""

    block_number: int
    block_time: str


class StatusLine(msgspec.Struct, gc=False):
    local_time: str
    block_time: str
    block_number: int
    events: list[OrderStatus]


class DiffLine(msgspec.Struct, gc=False):
    local_time: str
    block_time: str
    block_number: int
    events: list[BookDiff]


class FillLine(msgspec.Struct, gc=False):
    local_time: str
    block_time: str
    block_number: int
    events: list[tuple[str, Fill]]


Line = StatusLine | DiffLine | FillLine

_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    STATUSES: msgspec.json.Decoder(StatusLine),
    DIFFS: msgspec.json.Decoder(DiffLine),
    FILLS: msgspec.json.Decoder(FillLine),
}
_header_decoder = msgspec.json.Decoder(Header)


def decode_line(kind: str, raw: bytes) -> Line:
    """Decode one line of stream ``kind``; raise :class:`LineError` naming the problem."""
    try:
        line = _decoders[kind].decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        header = _header_of(raw)
        if header is None:
            raise LineError(str(exc)) from None
        raise LineError(str(exc), header.block_number, header.block_time) from None
    try:
        time_ms(line.block_time)
    except ValueError as exc:
        raise LineError(str(exc), line.block_number) from None
    return line


def header_height(raw: bytes) -> int | None:
    """The block number of a line (None when its envelope cannot be read)."""
    header = _header_of(raw)
    return None if header is None else header.block_number


def _header_of(raw: bytes) -> Header | None:
    try:
        header = _header_decoder.decode(raw)
        time_ms(header.block_time)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return None
    return header


time_ms = iso_to_ms  # block times: the book's parser of node times


def market_of(coin: str) -> str:
    """The market class of a coin name: perps, spot, hip3 or outcome."""
    if coin.startswith("#"):
        return "outcome"
    if ":" in coin:
        return "hip3"
    if coin.startswith("@") or "/" in coin:
        return "spot"
    return "perps"


def coin_filter(markets: frozenset[str]) -> Callable[[str], bool] | None:
    """``accept_coin`` for the configured markets (None when all are accepted)."""
    if set(markets) >= {"perps", "spot", "hip3", "outcome"}:
        return None
    wanted = frozenset(markets)
    return lambda coin: market_of(coin) in wanted


_COIN_PREFIX = b'{"coin":"'


def status_coin(status: OrderStatus) -> str:
    """The coin of a status without decoding its whole raw order."""
    raw = bytes(status.order)
    if raw.startswith(_COIN_PREFIX):
        end = raw.find(b'"', len(_COIN_PREFIX))
        if end > 0 and b"\\" not in raw[len(_COIN_PREFIX) : end]:
            return raw[len(_COIN_PREFIX) : end].decode()
    return decode_order(status).coin
