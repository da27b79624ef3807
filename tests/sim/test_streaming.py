"""Streaming files shaped like a real node's: sparse streams, interleaved rows, spread in time.

The real shape is measured on the mainnet fixture (../shared), whose streaming
files keep ``"events":[]`` lines only because of how it was filtered
(node-data.md §1): empty rows are dropped before measuring, as a node would
not write them.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock

from orderbook.sim.exchange import QUIET_TRADE_SHARE, Exchange
from orderbook.sim.generate import generate
from orderbook.sim.service import SimulatorService
from orderbook.sim.writer import STREAMS, NodeWriter, SteppingClock
from tests.sim.nodefiles import Replayer, block_times_ms, events_by_height, read_lines, time_ms

T0 = 1_777_582_003_304_461_819
REAL_STREAMING = {"diffs": "node_raw_book_diffs_streaming", "fills": "node_fills_streaming"}


@dataclass
class Shape:
    """What one stream's lines look like, block by block."""

    blocks: int  # blocks seen in any stream
    rows: dict[int, int]  # height -> rows (lines) with events
    empty_rows: int
    events_per_row: Counter[int]
    stamps: dict[int, set[str]]  # height -> distinct local_time values
    ordered: bool  # block numbers never go down in file order

    @property
    def line_share(self) -> float:
        """Share of blocks with at least one line in this stream."""
        return len(self.rows) / self.blocks


def _shape(lines: list[dict[str, Any]], blocks: int) -> Shape:
    rows: dict[int, int] = Counter()
    stamps: dict[int, set[str]] = defaultdict(set)
    heights = [line["block_number"] for line in lines]
    for line in lines:
        if line["events"]:
            rows[line["block_number"]] += 1
            stamps[line["block_number"]].add(line["local_time"])
    return Shape(
        blocks=blocks,
        rows=dict(rows),
        empty_rows=sum(not line["events"] for line in lines),
        events_per_row=Counter(len(line["events"]) for line in lines if line["events"]),
        stamps=dict(stamps),
        ordered=heights == sorted(heights),
    )


def _real_lines(mainnet: Path, stream: str) -> list[dict[str, Any]]:
    path = mainnet / REAL_STREAMING[stream] / "hourly" / "20260430" / "20"
    return [json.loads(raw) for raw in path.read_bytes().splitlines()]


def _stamp_order(lines: dict[str, list[dict[str, Any]]], first: str, second: str) -> list[int]:
    """Per block with both streams: ``second``'s local_time minus ``first``'s, in µs."""
    stamps = {
        s: {x["block_number"]: x["local_time"] for x in lines[s] if x["events"]} for s in lines
    }
    both = sorted(set(stamps[first]) & set(stamps[second]))
    return [_us(stamps[second][h]) - _us(stamps[first][h]) for h in both]


def _us(text: str) -> int:
    return time_ms(text) * 1000 + int((text.partition(".")[2] + "000000")[3:6])


def test_real_streaming_shape_as_measured(mainnet_data: Path) -> None:
    """The fixture's measured shape (the numbers the simulator reproduces, see README)."""
    lines = {s: _real_lines(mainnet_data, s) for s in REAL_STREAMING}
    blocks = len({x["block_number"] for s in lines for x in lines[s]})
    diffs, fills = (_shape(lines[s], blocks) for s in ("diffs", "fills"))
    assert blocks == 40
    assert diffs.events_per_row == Counter({1: 140}) and fills.events_per_row == Counter({1: 4})
    assert all(len(s) == 1 for s in diffs.stamps.values())  # one local_time per stream per block
    assert diffs.ordered and fills.ordered
    assert len(diffs.rows) == 34 and max(diffs.rows.values()) == 12
    assert statistics.median(diffs.rows.values()) == 4
    assert len(fills.rows) == 1 and list(fills.rows.values()) == [4]  # 2 trades, 4 rows, 1 block
    gaps = _stamp_order(lines, "fills", "diffs")
    assert gaps and all(25 <= g <= 140 for g in gaps)  # fills stamped first, diffs ~64 µs later


@pytest.fixture
def quiet_streaming(tmp_path: Path) -> tuple[Path, Any]:
    """120 blocks of a quiet market (scale 0.05), streaming, a snapshot after every block."""
    result = generate(
        tmp_path, 120, seed=21, mode="streaming", scale=0.05, trade_share=QUIET_TRADE_SHARE,
        snapshot_every=1,
    )  # fmt: skip
    return tmp_path, result


def test_simulated_streaming_has_the_real_shape(
    quiet_streaming: tuple[Path, Any], mainnet_data: Path
) -> None:
    """One event per row, no empty rows, one stamp per stream and block, fills < diffs < statuses,
    several rows per block, and (quiet market) most blocks without a fills line, like the fixture."""
    data, result = quiet_streaming
    blocks = result.last_height - result.first_height + 1
    lines = {s: read_lines(data, s, "streaming") for s in STREAMS}
    ours = {s: _shape(lines[s], blocks) for s in STREAMS}
    real_lines = {s: _real_lines(mainnet_data, s) for s in REAL_STREAMING}
    real = {s: _shape(real_lines[s], 40) for s in REAL_STREAMING}
    for stream, shape in ours.items():
        assert shape.empty_rows == 0, stream
        assert set(shape.events_per_row) == {1}, stream
        assert all(len(s) == 1 for s in shape.stamps.values()), stream
        assert shape.ordered, stream
    assert ours["fills"].line_share <= 0.2 and real["fills"].line_share <= 0.2
    for stream in ("statuses", "diffs"):
        assert ours[stream].line_share >= real["diffs"].line_share  # 34 of 40 in the fixture
        assert statistics.median(ours[stream].rows.values()) >= statistics.median(
            real["diffs"].rows.values()
        )
    assert all(g > 0 for g in _stamp_order(lines, "fills", "diffs"))
    assert all(g > 0 for g in _stamp_order(lines, "diffs", "statuses"))


def test_replay_of_sparse_streaming_files_rebuilds_the_book(
    quiet_streaming: tuple[Path, Any],
) -> None:
    """The independent replayer, fed sparse streaming files, equals the exchange at every height."""
    data, result = quiet_streaming
    blocks = events_by_height(data, "streaming")
    assert len(blocks) == result.last_height - result.first_height + 1
    assert sum(bool(b["fills"]) for b in blocks.values()) < len(blocks) / 4
    times = block_times_ms(data, "streaming")
    expected = {h: json.loads(p.read_bytes()) for h, p in result.snapshots.items()}
    replayer = Replayer(expected[result.first_height - 1])
    for height in range(result.first_height, result.last_height + 1):
        replayer.replay(blocks, times, height)
        assert replayer.snapshot() == expected[height], height


def _recorded_writes(blocks: int, **exchange: Any) -> list[tuple[str, list[dict[str, Any]]]]:
    """(stream, parsed lines) of every write call, in order."""
    writes: list[tuple[str, list[dict[str, Any]]]] = []
    writer = NodeWriter(Path("/nonexistent"), "streaming", clock=SteppingClock(T0), seed=3)
    writer._handle = lambda stream, now: stream  # type: ignore[assignment,method-assign,return-value]
    writer._put = lambda stream, data: writes.append(  # type: ignore[method-assign]
        (stream, [json.loads(x) for x in data.splitlines()])
    )
    writer.split_probability = 0
    ex = Exchange(seed=3, scale=0.05, **exchange)
    for i in range(blocks):
        writer.write_block(ex.step(T0 + i * 69_000_000))
    return writes


def test_rows_interleave_across_streams_like_a_node() -> None:
    """Within a block the streams take turns: a diff can precede its status, the two fills of a
    trade can be in different writes, statuses trail; blocks never interleave."""
    writes = _recorded_writes(30)
    heights = [lines[0]["block_number"] for _, lines in writes]
    assert heights == sorted(heights)
    assert all(len({x["block_number"] for x in lines}) == 1 for _, lines in writes)
    turns: Counter[int] = Counter()
    diff_first = split_trades = 0
    for height in sorted(set(heights)):
        block = [(i, s, lines) for i, (s, lines) in enumerate(writes) if heights[i] == height]
        turns[sum(1 for _, s, _ in block if s == "statuses")] += 1
        status_at = {}
        for i, stream, lines in block:
            for line in lines:
                if stream == "statuses":
                    status_at.setdefault(line["events"][0]["order"]["oid"], i)
        for i, stream, lines in block:
            for line in lines:
                if stream == "diffs" and status_at.get(line["events"][0]["oid"], -1) > i:
                    diff_first += 1
        tids: dict[int, set[int]] = defaultdict(set)
        for i, stream, lines in block:
            for line in lines:
                if stream == "fills":
                    tids[line["events"][0][1]["tid"]].add(i)
        split_trades += sum(len(w) == 2 for w in tids.values())
        assert block[-1][1] == "statuses"
    assert diff_first > 0 and split_trades > 0
    assert min(turns) > 1  # several statuses writes per block


def test_service_spreads_a_streaming_block_over_time(tmp_path: Path) -> None:
    """Live streaming: a block's rows arrive over `streaming_spread_s`; make_block() writes at once."""
    reactor = MemoryReactorClock()
    service = SimulatorService(
        tmp_path, seed=4, scale=0.05, mode="streaming", blocks_per_second=10, reactor=reactor,
        clock=lambda: T0 + int(reactor.seconds() * 1e9), streaming_spread_s=0.02,
    )  # fmt: skip
    service.startService()
    try:
        reactor.advance(0)
        height = service.height

        def rows() -> int:
            return sum(
                x["block_number"] == height
                for s in STREAMS
                for x in read_lines(tmp_path, s, "streaming")
            )

        first = rows()
        reactor.advance(0.01)
        middle = rows()
        reactor.advance(0.011)
        total = rows()
        block = events_by_height(tmp_path, "streaming")[height]
        assert 0 < first < middle < total == sum(len(block[s]) for s in STREAMS)
        service.make_block()
        assert rows() == total
        assert sum(len(v) for v in events_by_height(tmp_path, "streaming")[height + 1].values()) > 0
        assert not service._pending
    finally:
        service.stopService()


def test_catching_up_a_block_s_statuses_trail_the_next_block_s_diffs(tmp_path: Path) -> None:
    """When blocks come back to back (the reactor was busy), each stream stays in block order but
    a block's last statuses rows land after the next block's diffs, as on a node catching up."""
    reactor = MemoryReactorClock()
    service = SimulatorService(
        tmp_path, seed=6, scale=0.05, mode="streaming", blocks_per_second=10, reactor=reactor,
        clock=lambda: T0 + int(reactor.seconds() * 1e9), streaming_spread_s=0.04,
    )  # fmt: skip
    order: list[tuple[str, int]] = []
    real_write = service.writer.write
    service.writer.write = lambda w: (order.append((w.stream, w.block.height)), real_write(w))  # type: ignore[method-assign]
    service.startService()
    try:
        reactor.advance(0)
        steady = len({h for _, h in order})
        reactor.advance(0.1)
        assert _overlaps(order) == 0 and steady == 1  # one block per 0.1 s, each done in 0.04 s
        reactor.advance(0.5)  # a late tick: 5 blocks are due at once
        reactor.pump([0.01] * 60)
        assert len({h for _, h in order}) >= 7
        assert _overlaps(order) > 0
        for stream in STREAMS:
            heights = [h for s, h in order if s == stream]
            assert heights == sorted(heights), stream
        service.flush()
        assert not service._pending
        lines = events_by_height(tmp_path, "streaming")
        assert all(lines[h]["statuses"] for h in {h for _, h in order})
    finally:
        service.stopService()


def _overlaps(order: list[tuple[str, int]]) -> int:
    """How many writes of a block come after a diffs write of a later block."""
    latest_diffs = 0
    count = 0
    for stream, height in order:
        if stream == "diffs":
            latest_diffs = max(latest_diffs, height)
        elif height < latest_diffs:
            count += 1
    return count
