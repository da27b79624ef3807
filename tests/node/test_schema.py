"""Line envelopes decode into the book's event structs; times are exact."""

from __future__ import annotations

import pytest

from orderbook.book.events import DiffBody, OrderStatus
from orderbook.node.schema import (
    DIRECTORIES,
    LineError,
    coin_filter,
    decode_line,
    market_of,
    status_coin,
    time_ms,
)


def test_time_ms_exact():
    """block_time becomes epoch ms by truncation, with 9, 3 or no fractional digits."""
    assert time_ms("2026-04-30T20:46:43.304461819") == 1777582003304
    assert time_ms("2026-04-30T20:46:43.999999999") == 1777582003999
    assert time_ms("2026-04-30T20:46:43.3") == 1777582003300
    assert time_ms("2026-04-30T20:46:43") == 1777582003000
    assert time_ms("1970-01-01T00:00:00.001") == 1
    for bad in (
        "2026-04-30 20:46:43",
        "2026-13-01T00:00:00",
        "x",
        "2026-04-30T20:46:43.1234567890",
    ):
        with pytest.raises(ValueError):
            time_ms(bad)


def test_every_fixture_line_decodes(mainnet_data):
    """All lines of the mainnet capture decode in both layouts, unknown keys ignored."""
    counts = {}
    for mode, streams in DIRECTORIES.items():
        for kind, directory in streams.items():
            path = mainnet_data / directory / "hourly" / "20260430" / "20"
            if not path.exists():
                continue
            lines = [decode_line(kind, raw) for raw in path.read_bytes().splitlines()]
            counts[(mode, kind)] = sum(len(line.events) for line in lines)
    assert counts[("by_block", "statuses")] == 7769
    assert counts[("by_block", "diffs")] == counts[("streaming", "diffs")] == 140
    assert counts[("by_block", "fills")] == counts[("streaming", "fills")] == 4


def test_decode_status_line_with_unknown_status_and_keys():
    """Unknown status strings and extra keys are accepted."""
    raw = (
        b'{"local_time":"2026-04-30T20:46:46.2","block_time":"2026-04-30T20:46:43.1",'
        b'"block_number":7,"extra":1,"events":[{"time":"t","user":"0x1","status":"brandNew",'
        b'"order":{"coin":"BTC","side":"B","limitPx":"1.0","sz":"1","oid":3,"timestamp":4},'
        b'"newKey":[1]}]}'
    )
    line = decode_line("statuses", raw)
    assert line.block_number == 7
    assert isinstance(line.events[0], OrderStatus)
    assert line.events[0].status == "brandNew"
    assert status_coin(line.events[0]) == "BTC"


def test_decode_diff_shapes():
    """raw_book_diff decodes as new/update bodies or the bare "remove" string."""
    raw = (
        b'{"local_time":"2026-04-30T20:46:46.2","block_time":"2026-04-30T20:46:43.1",'
        b'"block_number":7,"events":['
        b'{"user":"0x1","oid":1,"coin":"BTC","side":"A","px":"2.0","raw_book_diff":{"new":{"sz":"1","insertBefore":5}}},'
        b'{"user":"0x1","oid":1,"coin":"BTC","side":"A","px":"2.0","raw_book_diff":{"update":{"origSz":"1","newSz":"0.5"}}},'
        b'{"user":"0x1","oid":1,"coin":"BTC","side":"A","px":"2.0","raw_book_diff":"remove"}]}'
    )
    events = decode_line("diffs", raw).events
    assert isinstance(events[0].raw_book_diff, DiffBody)
    assert events[0].raw_book_diff.new.insertBefore == 5
    assert events[1].raw_book_diff.update.newSz == "0.5"
    assert events[2].raw_book_diff == "remove"


def test_bad_line_names_its_block_when_readable():
    """A line with broken events still tells its block; garbage tells nothing."""
    raw = b'{"local_time":"x","block_time":"2026-04-30T20:46:43.1","block_number":9,"events":[{"oid":"no"}]}'
    with pytest.raises(LineError) as info:
        decode_line("diffs", raw)
    assert info.value.height == 9
    assert info.value.block_time == "2026-04-30T20:46:43.1"
    with pytest.raises(LineError) as info:
        decode_line("fills", b'{"block_number": 3, "ev')
    assert info.value.height is None


def test_markets():
    """Coin classes: perps plain, spot @N or A/B, hip3 dex:NAME, outcome #N."""
    assert [market_of(c) for c in ("BTC", "@107", "PURR/USDC", "xyz:TSLA", "#12")] == [
        "perps", "spot", "spot", "hip3", "outcome",
    ]  # fmt: skip
    assert coin_filter(frozenset({"perps", "spot", "hip3", "outcome"})) is None
    accept = coin_filter(frozenset({"perps", "spot"}))
    assert accept("BTC") and accept("@1") and not accept("xyz:TSLA") and not accept("#1")
