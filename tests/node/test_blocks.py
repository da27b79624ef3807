"""Block assembly: pairing by block_number in both layouts, gaps, bad fills."""

from __future__ import annotations

from orderbook.node.blocks import BlockAssembler
from orderbook.node.schema import decode_line
from tests.node.support import envelope

DIFF = {"user": "0x1", "oid": 1, "coin": "BTC", "side": "B", "px": "1.0", "raw_book_diff": "remove"}


def _line(kind: str, height: int, events: list | None = None):
    return decode_line(kind, envelope(height, events or [])[:-1])


def _feed(assembler, kind, height, events=None):
    return assembler.add(kind, _line(kind, height, events))


def test_by_block_pairs_lines_whatever_arrives_first():
    """A block is emitted once its three lines arrived, in any order; heights increase."""
    gaps = []
    assembler = BlockAssembler(on_gap=lambda *a: gaps.append(a))
    assert _feed(assembler, "diffs", 10, [DIFF]) == []
    assert _feed(assembler, "fills", 10) == []
    assert _feed(assembler, "diffs", 11) == []
    [block] = _feed(assembler, "statuses", 10)
    assert (block.height, len(block.diffs), block.fills_ok) == (10, 1, True)
    assert _feed(assembler, "fills", 11) == []
    assert [b.height for b in _feed(assembler, "statuses", 11)] == [11]
    assert gaps == []


def test_by_block_startup_drops_blocks_some_stream_started_after():
    """At startup the streams start at different heights; earlier blocks are dropped."""
    assembler = BlockAssembler()
    _feed(assembler, "statuses", 5)
    _feed(assembler, "statuses", 6)
    _feed(assembler, "fills", 6)
    assert [b.height for b in _feed(assembler, "diffs", 6)] == [6]
    assert assembler.dropped_blocks == 1
    assert _feed(assembler, "diffs", 5) == []  # late line of an emitted height: old
    assert assembler.old_lines == 1


def test_by_block_gap_reported():
    """A stream skipping a height is a gap (expected, got)."""
    gaps = []
    assembler = BlockAssembler(on_gap=lambda *a: gaps.append(a))
    for kind in ("statuses", "diffs", "fills"):
        _feed(assembler, kind, 1)
    _feed(assembler, "diffs", 3)
    assert gaps == [("diffs", 2, 3)]


def test_by_block_bad_fills_line_costs_only_trades():
    """A bad fills line (height known or not) yields the block with fills_ok=False."""
    gaps = []
    assembler = BlockAssembler(on_gap=lambda *a: gaps.append(a))
    for kind in ("statuses", "diffs", "fills"):
        _feed(assembler, kind, 1)
    assembler.add_bad("fills", 2, "2026-04-30T20:46:02.002000001")
    _feed(assembler, "diffs", 2)
    [block] = _feed(assembler, "statuses", 2)
    assert block.fills_ok is False and block.fills == []
    assembler.add_bad("fills", None)  # unreadable: block 3 by elimination
    _feed(assembler, "fills", 4)
    _feed(assembler, "diffs", 3)
    [block] = _feed(assembler, "statuses", 3)
    assert (block.height, block.fills_ok) == (3, False)
    assert gaps == []


def test_markets_filter_drops_events():
    """Events of coins outside the markets filter never reach the block."""
    assembler = BlockAssembler(accept_coin=lambda coin: coin == "BTC")
    status = {"time": "t", "user": "0x1", "status": "open",
              "order": {"coin": "xyz:A", "side": "B", "limitPx": "1", "sz": "1", "oid": 2, "timestamp": 1}}  # fmt: skip
    _feed(assembler, "statuses", 1, [status])
    _feed(assembler, "fills", 1)
    [block] = _feed(assembler, "diffs", 1, [DIFF, dict(DIFF, coin="xyz:A", oid=2)])
    assert [d.coin for d in block.diffs] == ["BTC"] and block.statuses == []


def test_eviction_bound_when_one_stream_lags():
    """A lagging stream: at most max_pending blocks held, drops reported with the
    stream they waited for, its late lines for dropped blocks refused; later blocks
    still assemble once it catches up."""
    for mode in ("by_block",):
        drops = []
        assembler = BlockAssembler(
            max_pending=5, on_drop=lambda h, waiting, d=drops: d.append((h, waiting))
        )
        for kind in ("statuses", "diffs", "fills"):
            assembler.add(kind, _line(kind, 1))
        held = []
        for height in range(2, 12):
            _feed(assembler, "diffs", height)
            _feed(assembler, "fills", height)
            held.append(height)
            assert assembler.pending <= 5
        first = 2 if mode == "by_block" else 1  # streaming: 1 waits for a statuses row of 2
        assert drops == [(h, ["statuses"]) for h in range(first, 7)], mode
        assert assembler.evicted_blocks == len(drops)
        emitted = []
        for height in held + [12]:
            emitted += _feed(assembler, "statuses", height)
        _feed(assembler, "diffs", 12)
        emitted += _feed(assembler, "fills", 12)
        heights = [b.height for b in emitted]
        assert heights == [h for h in range(7, 13) if mode == "by_block" or h < 12], mode
        assert assembler.pending <= 5
