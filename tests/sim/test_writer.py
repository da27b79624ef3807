"""The node files: exact line shapes (against mainnet), layout, rotation, splits, faults."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from orderbook.sim.exchange import Block, Exchange
from orderbook.sim.generate import generate
from orderbook.sim.markets import node_time
from orderbook.sim.writer import (
    GARBAGE_LINE,
    STREAMS,
    NodeWriter,
    ScaledClock,
    SteppingClock,
    hourly_path,
)
from tests.sim.nodefiles import read_lines, stream_files

FIXTURE_FILES = {
    ("statuses", "by_block"): "node_order_statuses_by_block",
    ("diffs", "by_block"): "node_raw_book_diffs_by_block",
    ("fills", "by_block"): "node_fills_by_block",
    ("diffs", "streaming"): "node_raw_book_diffs_streaming",
    ("fills", "streaming"): "node_fills_streaming",
}
ENVELOPE = ("local_time", "block_time", "block_number", "events")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}$")
# Documented in node-data.md §4 but absent from the captured hour.
EXTENSIONS = {"diff.raw_book_diff.new": {("sz", "insertBefore")}}
EXTENSION_TYPES = {"diff.raw_book_diff.new.insertBefore": {"int"}}
T0 = 1_777_593_599_000_000_000  # 2026-04-30T23:59:59


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class Shapes:
    """Key orders per object path and JSON types per field path."""

    def __init__(self) -> None:
        self.keys: dict[str, set[tuple[str, ...]]] = defaultdict(set)
        self.types: dict[str, set[str]] = defaultdict(set)

    def walk(self, value: Any, path: str) -> None:
        if isinstance(value, dict):
            self.keys[path].add(tuple(value))
            for key, item in value.items():
                self.types[f"{path}.{key}"].add(_type(item))
                self.walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for item in value:
                self.types[f"{path}[]"].add(_type(item))
                self.walk(item, f"{path}[]")

    def event(self, stream: str, event: Any) -> None:
        if stream == "fills":
            assert isinstance(event, list) and len(event) == 2, event
            self.types["fill.user"].add(_type(event[0]))
            self.walk(event[1], "fill")
        else:
            self.walk(event, stream[:-1] if stream != "statuses" else "status")


def _check_envelope(line: dict[str, Any]) -> None:
    assert tuple(line) == ENVELOPE
    assert [_type(line[k]) for k in ENVELOPE] == ["str", "str", "int", "list"]
    assert TIME.match(line["local_time"]) and TIME.match(line["block_time"])


def _shapes_of(data_dir: Path, files: dict[tuple[str, str], str]) -> Shapes:
    shapes = Shapes()
    for (stream, mode), _ in files.items():
        for line in read_lines(data_dir, stream, mode):
            _check_envelope(line)
            if mode == "streaming":
                assert len(line["events"]) <= 1
            for event in line["events"]:
                shapes.event(stream, event)
    return shapes


@pytest.mark.parametrize("mode", ["by_block", "streaming"])
def test_every_line_has_the_mainnet_keys_order_and_types(
    tmp_path: Path, mainnet_data: Path, mode: str
) -> None:
    """Envelope, statuses, diffs and fills match the real node key by key, in order, type by type."""
    real = _shapes_of(mainnet_data, FIXTURE_FILES)
    generate(tmp_path, 150, seed=11, mode=mode, scale=0.1)
    ours = _shapes_of(tmp_path, {(s, mode): "" for s in STREAMS})
    assert set(ours.keys) == set(real.keys)
    for path, orders in ours.keys.items():
        assert orders == real.keys[path] | EXTENSIONS.get(path, set()), path
    for path, types in ours.types.items():
        assert types == real.types.get(path, EXTENSION_TYPES.get(path)), path


def test_by_block_lines_one_per_block_per_stream_in_node_order(tmp_path: Path) -> None:
    """Each block has one line per stream (empty ones too), written fills, diffs, statuses."""
    result = generate(tmp_path, 30, seed=3, scale=0.01)
    per_stream = {s: read_lines(tmp_path, s, "by_block") for s in STREAMS}
    for lines in per_stream.values():
        assert [line["block_number"] for line in lines] == list(
            range(result.first_height, result.last_height + 1)
        )
    assert any(not line["events"] for line in per_stream["fills"])
    for fill, diff, status in zip(*per_stream.values(), strict=True):
        assert fill["local_time"] < diff["local_time"] < status["local_time"]
        assert fill["block_time"] == diff["block_time"] == status["block_time"] < fill["local_time"]


def test_streaming_one_event_per_line_and_no_line_for_an_empty_stream(tmp_path: Path) -> None:
    """Streaming: a row per event sharing the stream's local_time; a stream with no event has no line."""
    result = generate(tmp_path, 40, seed=3, scale=0.01, mode="streaming", trade_share=0.1)
    all_heights = set(range(result.first_height, result.last_height + 1))
    fill_heights = set()
    for stream in STREAMS:
        stamps: dict[int, set[str]] = defaultdict(set)
        for line in read_lines(tmp_path, stream, "streaming"):
            assert len(line["events"]) == 1, line
            stamps[line["block_number"]].add(line["local_time"])
        assert all(len(s) == 1 for s in stamps.values())
        if stream == "fills":
            fill_heights = set(stamps)
    assert fill_heights and fill_heights < all_heights  # sparse: most blocks have no fills line


def test_by_block_keeps_a_line_for_every_block_even_in_a_quiet_market(tmp_path: Path) -> None:
    """By-block mode still writes one line per stream per block, events:[] included."""
    result = generate(tmp_path, 30, seed=3, scale=0.01, trade_share=0.1)
    fills = read_lines(tmp_path, "fills", "by_block")
    assert [line["block_number"] for line in fills] == list(
        range(result.first_height, result.last_height + 1)
    )
    assert sum(not line["events"] for line in fills) > 15


def test_rotation_across_hour_and_date(tmp_path: Path) -> None:
    """A new hourly file at the first write after the hour, a new date directory at midnight."""
    generate(tmp_path, 40, seed=2, scale=0.01, start_time_ns=T0 - 1_000_000_000)
    for stream in STREAMS:
        files = stream_files(tmp_path, stream, "by_block")
        assert [f"{p.parent.name}/{p.name}" for p in files] == ["20260430/23", "20260501/0"]
        first = read_lines(tmp_path, stream, "by_block")
        lines_in_new = files[1].read_bytes().splitlines()
        assert json.loads(lines_in_new[0])["local_time"].startswith("2026-05-01T00:00:00")
        assert len(first) == 40


def test_short_hour_clock_rotates_quickly() -> None:
    """ScaledClock(hour_seconds=2) turns 1 real second into half an hour of file time."""
    now = [0]
    clock = ScaledClock(hour_seconds=2, start_ns=T0, base=lambda: now[0])
    assert clock() == T0
    now[0] = 1_000_000_000
    assert clock() == T0 + 1800 * 10**9
    assert hourly_path(Path("/d"), "fills", "by_block", clock()).parts[-2:] == ("20260501", "0")
    assert str(hourly_path(Path("/d"), "diffs", "streaming", T0)).endswith(
        "node_raw_book_diffs_streaming/hourly/20260430/23"
    )
    with pytest.raises(ValueError):
        ScaledClock(hour_seconds=0)


def test_some_lines_are_split_across_two_writes(tmp_path: Path) -> None:
    """With split_probability, lines reach the file in two flushed writes (and stay intact)."""
    writes: list[bytes] = []
    writer = NodeWriter(tmp_path, clock=SteppingClock(T0), split_probability=0.5)
    real_put = writer._put
    writer._put = lambda handle, data: (writes.append(data), real_put(handle, data))  # type: ignore[method-assign]
    ex = Exchange(seed=4, scale=0.01)
    for i in range(20):
        writer.write_block(ex.step(T0 + i * 69_000_000))
    writer.close()
    assert writer.split_writes > 5
    assert sum(not w.endswith(b"\n") for w in writes) == writer.split_writes
    assert len(read_lines(tmp_path, "statuses", "by_block")) == 20


def _write(writer: NodeWriter, ex: Exchange, count: int, t: int = T0) -> None:
    for i in range(count):
        writer.write_block(ex.step(t + i * 69_000_000))


def test_gap_fault_skips_exactly_one_block(tmp_path: Path) -> None:
    """gap: block N+1 is made but never written; the files go N, N+2."""
    ex = Exchange(seed=1, scale=0.01)
    writer = NodeWriter(tmp_path, clock=SteppingClock(T0))
    _write(writer, ex, 2)
    writer.gap()
    _write(writer, ex, 2)
    for stream in STREAMS:
        heights = [line["block_number"] for line in read_lines(tmp_path, stream, "by_block")]
        start = heights[0]
        assert heights == [start, start + 1, start + 3]
    assert writer.blocks_skipped == [ex.height - 1]


@pytest.mark.parametrize("mode", ["by_block", "streaming"])
def test_garbage_and_truncated_faults(tmp_path: Path, mode: str) -> None:
    """garbage adds one non-JSON line to its stream; truncated cuts the next line short."""
    ex = Exchange(seed=1, scale=0.01)
    writer = NodeWriter(tmp_path, mode, clock=SteppingClock(T0), split_probability=0)
    _write(writer, ex, 1)
    writer.garbage("diffs")
    writer.truncate("statuses")
    _write(writer, ex, 2)
    writer.close()
    raw = {
        s: b"".join(p.read_bytes() for p in stream_files(tmp_path, s, mode)).splitlines()
        for s in STREAMS
    }
    assert raw["diffs"].count(GARBAGE_LINE.rstrip(b"\n")) == 1
    bad = []
    for line in raw["statuses"]:
        try:
            json.loads(line)
        except ValueError:
            bad.append(line)
    assert len(bad) == 1 and bad[0].startswith(b'{"local_time":"')
    assert all(json.loads(line) for line in raw["fills"])


def test_delete_old_keeps_only_the_current_files(tmp_path: Path) -> None:
    """delete_old removes past hourly files (and empty date dirs) but not the ones in use."""
    ex = Exchange(seed=1, scale=0.01)
    writer = NodeWriter(tmp_path, clock=SteppingClock(T0 - 2 * 10**9, step_ns=200_000_000))
    _write(writer, ex, 20)
    assert len(stream_files(tmp_path, "fills", "by_block")) == 2
    deleted = writer.delete_old()
    assert len(deleted) == 3
    assert not (tmp_path / "node_fills_by_block/hourly/20260430").exists()
    current = writer.current_paths()
    assert all(stream_files(tmp_path, s, "by_block") == [current[s]] for s in STREAMS)
    _write(writer, ex, 1)
    assert all(p.exists() for p in current.values())


def test_restart_reopens_files_and_heights_continue(tmp_path: Path) -> None:
    """restart drops the handles; later blocks append to (or recreate) the file, heights continue."""
    ex = Exchange(seed=1, scale=0.01)
    writer = NodeWriter(tmp_path, clock=SteppingClock(T0))
    _write(writer, ex, 2)
    path = writer.current_paths()["diffs"]
    writer.restart()
    assert writer.current_paths() == {}
    path.unlink()
    _write(writer, ex, 2)
    heights = [line["block_number"] for line in read_lines(tmp_path, "diffs", "by_block")]
    assert heights == [ex.height - 1, ex.height]
    assert len(read_lines(tmp_path, "fills", "by_block")) == 4


def test_envelope_time_format() -> None:
    """Times are naive UTC with 9 fractional digits."""
    assert node_time(1_777_582_003_304_461_819) == "2026-04-30T20:46:43.304461819"
    assert node_time(1_777_582_003_000_000_000) == "2026-04-30T20:46:43.000000000"
    block = Block(5, 1_777_582_003_304_461_819)
    from orderbook.sim.writer import envelope

    line = envelope(1_777_582_003_504_461_819, block, [])
    assert line == (
        b'{"local_time":"2026-04-30T20:46:43.504461819","block_time":"2026-04-30T20:46:43.304461819",'
        b'"block_number":5,"events":[]}\n'
    )


def test_bad_mode_and_stream_are_refused(tmp_path: Path) -> None:
    """Unknown layout or stream names fail loudly, naming the value."""
    with pytest.raises(ValueError, match="'weekly'"):
        NodeWriter(tmp_path, "weekly")
    with pytest.raises(ValueError, match="'trades'"):
        NodeWriter(tmp_path).garbage("trades")


@pytest.mark.parametrize("mode", ["by_block", "streaming"])
def test_absurd_height_fault_is_one_parseable_line(tmp_path: Path, mode: str) -> None:
    """absurd_height: the stream's next line names a block far ahead (or behind); nothing else moves."""
    ex = Exchange(seed=1, scale=0.05)
    writer = NodeWriter(tmp_path, mode, clock=SteppingClock(T0))
    _write(writer, ex, 1)
    writer.absurd_height("statuses", -500)
    _write(writer, ex, 2)
    heights = [line["block_number"] for line in read_lines(tmp_path, "statuses", mode)]
    first = ex.height - 2
    odd = [h for h in heights if not first <= h <= ex.height]
    assert odd == [first + 1 - 500]
    assert writer.absurd_lines == [("statuses", first + 1, first + 1 - 500)]
    assert {line["block_number"] for line in read_lines(tmp_path, "diffs", mode)} == {
        first,
        first + 1,
        first + 2,
    }
    with pytest.raises(ValueError, match="ahead must not be 0"):
        writer.absurd_height("diffs", 0)


def test_crash_leaves_a_partial_line_that_the_next_write_continues(tmp_path: Path) -> None:
    """crash(block): whole writes, then half a line without newline; files closed; appending glues."""
    ex = Exchange(seed=2, scale=0.05)
    writer = NodeWriter(tmp_path, clock=SteppingClock(T0), split_probability=0)
    _write(writer, ex, 1)
    stream, path = writer.crash(ex.step(T0 + 69_000_000))
    assert writer.current_paths() == {}
    assert not path.read_bytes().endswith(b"\n")
    _write(writer, ex, 1, T0 + 2 * 69_000_000)
    lines = path.read_bytes().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["block_number"] == ex.height - 2
    with pytest.raises(ValueError):
        json.loads(lines[1])
    glued = lines[1].rindex(b'{"local_time":"')  # the restarted writer's line follows the cut
    assert glued > 0 and json.loads(lines[1][glued:])["block_number"] == ex.height
