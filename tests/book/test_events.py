"""The book's input language: node JSON decodes into the event structs as documented."""

from __future__ import annotations

import gc

import msgspec
import pytest

from orderbook.book.events import (
    REMOVE,
    Block,
    BookDiff,
    DiffBody,
    Fill,
    NewDiff,
    OrderStatus,
    StatusOrder,
    UpdateDiff,
    decode_order,
)
from tests.book.blocks import BLOCK_TIME, order

STATUS_LINE_EVENT = (
    b'{"time":"2026-04-30T20:46:43.304461819","user":"0xca1d","hash":"0x98ab",'
    b'"builder":null,"status":"open","order":{"coin":"BTC","side":"B",'
    b'"limitPx":"76450.0","sz":"0.5","oid":405401002917,"timestamp":1777582003304,'
    b'"triggerCondition":"N/A","isTrigger":false,"triggerPx":"0.0","children":[],'
    b'"isPositionTpsl":false,"reduceOnly":false,"orderType":"Limit",'
    b'"origSz":"0.5","tif":"Alo","cloid":"0x0000000000000000000000000000041a"}}'
)


def test_status_keeps_its_order_raw_until_asked():
    """hash and builder are dropped; the order stays raw JSON and decodes on demand."""
    status = msgspec.json.decode(STATUS_LINE_EVENT, type=OrderStatus)
    assert (status.user, status.status, status.time) == ("0xca1d", "open", BLOCK_TIME)
    assert not hasattr(status, "hash")
    assert isinstance(status.order, msgspec.Raw)
    decoded = decode_order(status)
    assert decoded == StatusOrder(
        coin="BTC",
        side="B",
        limitPx="76450.0",
        sz="0.5",
        oid=405401002917,
        timestamp=1777582003304,
        origSz="0.5",
        tif="Alo",
        cloid="0x0000000000000000000000000000041a",
    )


def test_bad_raw_order_raises_decode_error():
    """A status whose order lacks a field is a msgspec.DecodeError when decoded."""
    body = {k: v for k, v in order(1).items() if k != "oid"}
    status = OrderStatus(
        time=BLOCK_TIME, user="0xa", status="open", order=msgspec.Raw(msgspec.json.encode(body))
    )
    with pytest.raises(msgspec.DecodeError, match="oid"):
        decode_order(status)


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (b'"remove"', REMOVE),
        (b'{"new":{"sz":"0.5"}}', DiffBody(new=NewDiff(sz="0.5"))),
        (b'{"new":{"sz":"0.5","insertBefore":42}}', DiffBody(new=NewDiff("0.5", 42))),
        (b'{"update":{"origSz":"1.0","newSz":"0.25"}}', DiffBody(update=UpdateDiff("1.0", "0.25"))),
    ],
)
def test_diff_bodies(raw, body):
    """raw_book_diff is the string "remove" or an object with new or update."""
    line = (
        b'{"user":"0xa","oid":7,"coin":"BTC","side":"A","px":"101.0","raw_book_diff":' + raw + b"}"
    )
    diff = msgspec.json.decode(line, type=BookDiff)
    assert (diff.oid, diff.coin, diff.side, diff.px) == (7, "BTC", "A", "101.0")
    assert diff.raw_book_diff == body


def test_unknown_keys_are_ignored_and_defaults_fill_in():
    """Forward compatible: extra keys are skipped; a fill's optional fields default."""
    raw = (
        b'{"coin":"BTC","px":"100.0","sz":"0.5","side":"B","time":1,"hash":"0x1","oid":3,'
        b'"crossed":true,"tid":9,"newField":{"x":1}}'
    )
    fill = msgspec.json.decode(raw, type=Fill)
    assert (fill.tid, fill.crossed, fill.fee, fill.feeToken, fill.cloid) == (
        9,
        True,
        "0.0",
        "USDC",
        None,
    )


def test_event_structs_stay_out_of_the_cyclic_collector():
    """gc=False structs are untracked: a block's thousands of events cost the collector nothing."""
    status = msgspec.json.decode(STATUS_LINE_EVENT, type=OrderStatus)
    diff = BookDiff("0xa", 1, "BTC", "B", "1.0", DiffBody(new=NewDiff("1.0")))
    assert not any(gc.is_tracked(value) for value in (status, diff, decode_order(status)))


def test_block_fills_ok_defaults_true():
    """A block's trades are emitted unless its fills line was bad."""
    block = Block(height=1, time_ms=2, block_time=BLOCK_TIME, statuses=[], diffs=[], fills=[])
    assert block.fills_ok is True
