"""Block assembly: pairing by block_number in both layouts, gaps, bad fills."""

from __future__ import annotations

import msgspec

from orderbook.node.blocks import BlockAssembler
from orderbook.node.schema import DIRECTORIES, decode_line
from tests.node.support import envelope

DIFF = {"user": "0x1", "oid": 1, "coin": "BTC", "side": "B", "px": "1.0", "raw_book_diff": "remove"}


def _line(kind: str, height: int, events: list | None = None):
    return decode_line(kind, envelope(height, events or [])[:-1])


def _feed(assembler, kind, height, events=None):
    return assembler.add(kind, _line(kind, height, events))


def test_by_block_pairs_lines_whatever_arrives_first():
    """A block is emitted once its three lines arrived, in any order; heights increase."""
    gaps = []
    assembler = BlockAssembler("by_block", on_gap=lambda *a: gaps.append(a))
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
    assembler = BlockAssembler("by_block")
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
    assembler = BlockAssembler("by_block", on_gap=lambda *a: gaps.append(a))
    for kind in ("statuses", "diffs", "fills"):
        _feed(assembler, kind, 1)
    _feed(assembler, "diffs", 3)
    assert gaps == [("diffs", 2, 3)]


def test_by_block_bad_fills_line_costs_only_trades():
    """A bad fills line (height known or not) yields the block with fills_ok=False."""
    gaps = []
    assembler = BlockAssembler("by_block", on_gap=lambda *a: gaps.append(a))
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
    assembler = BlockAssembler("by_block", accept_coin=lambda coin: coin == "BTC")
    status = {"time": "t", "user": "0x1", "status": "open",
              "order": {"coin": "xyz:A", "side": "B", "limitPx": "1", "sz": "1", "oid": 2, "timestamp": 1}}  # fmt: skip
    _feed(assembler, "statuses", 1, [status])
    _feed(assembler, "fills", 1)
    [block] = _feed(assembler, "diffs", 1, [DIFF, dict(DIFF, coin="xyz:A", oid=2)])
    assert [d.coin for d in block.diffs] == ["BTC"] and block.statuses == []


def test_streaming_block_complete_when_later_block_in_every_stream():
    """Streaming: rows accumulate; the block is out once all streams moved past it."""
    assembler = BlockAssembler("streaming")
    for kind in ("statuses", "diffs", "fills"):  # first (possibly partial) block
        _feed(assembler, kind, 1)
    _feed(assembler, "diffs", 2, [DIFF])
    _feed(assembler, "statuses", 2)
    _feed(assembler, "diffs", 2, [dict(DIFF, oid=2)])
    assert _feed(assembler, "diffs", 3) == []
    assert _feed(assembler, "statuses", 4) == []
    [block] = _feed(assembler, "fills", 3)
    assert (block.height, [d.oid for d in block.diffs]) == (2, [1, 2])


def _fixture_blocks(mainnet_data, mode, rows_per_chunk=None):
    """Assemble the fixture; streaming statuses are made by splitting by-block lines."""
    root = mainnet_data
    lines = {}
    for kind, directory in DIRECTORIES[mode].items():
        path = root / directory / "hourly" / "20260430" / "20"
        if not path.exists():  # the capture has no streaming statuses: derive them
            by_block = root / DIRECTORIES["by_block"][kind] / "hourly" / "20260430" / "20"
            rows = []
            for raw in by_block.read_bytes().splitlines():
                doc = msgspec.json.decode(raw)
                for event in doc["events"] or [None]:
                    rows.append(msgspec.json.encode(dict(doc, events=[event] if event else [])))
            lines[kind] = rows
        else:
            lines[kind] = path.read_bytes().splitlines()
        if mode == "streaming":  # a row of the next block completes the last one
            last = msgspec.json.decode(lines[kind][-1])
            lines[kind].append(
                msgspec.json.encode(dict(last, block_number=last["block_number"] + 1, events=[]))
            )
    gaps = []
    assembler = BlockAssembler(mode, on_gap=lambda *a: gaps.append(a))
    blocks = []
    cursors = dict.fromkeys(lines, 0)
    # interleave the streams row by row, diffs first, as the node roughly does
    while any(cursors[k] < len(lines[k]) for k in lines):
        for kind in ("fills", "diffs", "statuses"):
            if cursors[kind] < len(lines[kind]):
                blocks += assembler.add(kind, decode_line(kind, lines[kind][cursors[kind]]))
                cursors[kind] += 1
    assert gaps == []  # every block has a row in every stream, in both layouts
    return blocks


def test_fixture_same_blocks_in_both_layouts(mainnet_data):
    """by-block and streaming layouts of the capture give the same diffs and fills."""
    by_block = {b.height: b for b in _fixture_blocks(mainnet_data, "by_block")}
    streaming = {b.height: b for b in _fixture_blocks(mainnet_data, "streaming")}
    assert len(by_block) == 40
    # streaming drops its first block (maybe partial)
    common = sorted(set(by_block) & set(streaming))
    assert common == list(range(978995378, 978995417))
    for height in common:
        assert by_block[height].diffs == streaming[height].diffs, height
        assert by_block[height].fills == streaming[height].fills, height
        assert by_block[height].statuses == streaming[height].statuses, height
        assert by_block[height].time_ms == streaming[height].time_ms


def test_fixture_same_trades_in_both_layouts(mainnet_data):
    """Applied to a real Books, both layouts give the same trades and book changes."""
    from orderbook.book.books import Books

    results = {}
    for mode in ("by_block", "streaming"):
        books = Books()
        results[mode] = [
            (r.height, r.trades, sorted(r.changed), {c: u.diffs for c, u in r.updates.items()})
            for r in (books.apply_block(b) for b in _fixture_blocks(mainnet_data, mode))
            if r.height > 978995377
        ]
    assert results["by_block"] == results["streaming"]
    trades = [t for _, per_coin, _, _ in results["by_block"] for t in per_coin.get("BTC", [])]
    assert len(trades) == 2


def test_streaming_gap_reported():
    """Streaming: every block has a row in every stream, so a skipped height is a gap."""
    gaps = []
    assembler = BlockAssembler("streaming", on_gap=lambda *a: gaps.append(a))
    for height in (1, 2):
        for kind in ("statuses", "diffs", "fills"):
            _feed(assembler, kind, height)
    _feed(assembler, "statuses", 4)
    assert gaps == [("statuses", 3, 4)]


def test_streaming_empty_block_rows_give_consecutive_blocks():
    """Blocks without events (one "events":[] row each) come out, none skipped."""
    gaps = []
    assembler = BlockAssembler("streaming", on_gap=lambda *a: gaps.append(a))
    blocks = []
    for height in range(1, 7):
        for kind in ("fills", "diffs", "statuses"):
            blocks += assembler.add(kind, _line(kind, height), at_file_start=height == 1)
    assert [b.height for b in blocks] == [1, 2, 3, 4, 5]
    assert gaps == []


def test_streaming_unreadable_row_excuses_one_skipped_height():
    """An unreadable fills row of unknown height: no gap, the blocks around lose trades."""
    gaps = []
    assembler = BlockAssembler("streaming", on_gap=lambda *a: gaps.append(a))
    for kind in ("statuses", "diffs", "fills"):
        assembler.add(kind, _line(kind, 1), at_file_start=True)
    assembler.add_bad("fills", None)  # block 2's only fills row, unreadable
    blocks = []
    for height in (2, 3, 4):
        for kind in ("statuses", "diffs"):
            blocks += _feed(assembler, kind, height)
    blocks += _feed(assembler, "fills", 3)
    blocks += _feed(assembler, "fills", 4)
    assert gaps == []
    # it may have been a row of 1, 2 or 3: none of them can vouch for its trades
    assert [(b.height, b.fills_ok) for b in blocks] == [(1, False), (2, False), (3, False)]
    assembler.add_bad("fills", None)
    assembler.add_bad("diffs", None)
    _feed(assembler, "fills", 7)  # two heights skipped, one excused: a gap
    assert gaps == [("fills", 5, 7)]


def test_eviction_bound_when_one_stream_lags():
    """A lagging stream: at most max_pending blocks held, drops reported with the
    stream they waited for, its late lines for dropped blocks refused; later blocks
    still assemble once it catches up."""
    for mode in ("by_block", "streaming"):
        drops = []
        assembler = BlockAssembler(
            mode, max_pending=5, on_drop=lambda h, waiting, d=drops: d.append((h, waiting))
        )
        for kind in ("statuses", "diffs", "fills"):
            assembler.add(kind, _line(kind, 1), at_file_start=True)
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
