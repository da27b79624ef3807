"""Write blocks the way a node does: three hourly-rotated streams, two layouts.

Layout under the data directory (see ../shared/docs/node-data.md §1)::

    node_order_statuses_by_block/hourly/YYYYMMDD/H   (or ..._streaming)
    node_raw_book_diffs_by_block/hourly/YYYYMMDD/H
    node_fills_by_block/hourly/YYYYMMDD/H

Date and hour (no leading zero) come from the writer's clock, the same clock
that stamps ``local_time``. By-block mode writes one line per block per stream
(``"events":[]`` when empty) in the node's order fills, diffs, statuses.
Streaming mode writes one event per line and **no line at all** for a stream
with no event in a block; all rows of a stream in a block share one
``local_time`` (stamped at its first row), and the block's rows reach the
files in write calls of 1-8 rows that take turns fills, diffs, statuses, so a
diff can be readable before its order status, the two fills of one trade can
land in different writes, and the statuses of a block trail its last diff.
:meth:`NodeWriter.begin_block` returns a block's write calls without writing
them, so a caller can spread them over time (the service does). Some lines
reach the file in two write calls with a flush in between, as with a real node.

Faults (:meth:`NodeWriter.gap`, :meth:`garbage`, :meth:`truncate`,
:meth:`absurd_height`, :meth:`crash`, :meth:`delete_old`, :meth:`restart`)
let tests break the files on purpose.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from orderbook.sim.exchange import Block
from orderbook.sim.markets import node_time

Clock = Callable[[], int]
"""A wall clock: epoch nanoseconds."""

STREAMS = ("fills", "diffs", "statuses")
"""The streams, in the order a node writes them at block end."""

MODES = ("by_block", "streaming")

MAX_ROWS_PER_WRITE = 8
"""Streaming: each write call carries 1 to this many rows of one stream."""

ABSURD_AHEAD = 1_000_000
"""How far ahead the absurd-height fault puts its line's block number by default."""

_DIRS = {
    "statuses": "node_order_statuses",
    "diffs": "node_raw_book_diffs",
    "fills": "node_fills",
}
GARBAGE_LINE = b'{"local_time":"\xff\xfe garbage \x00 not json\n'

_encode = msgspec.json.Encoder().encode
_HOUR_NS = 3600 * 10**9


def stream_root(data_dir: Path, stream: str, mode: str) -> Path:
    """``<data_dir>/node_<stream>_<mode>/hourly``."""
    if stream not in _DIRS:
        raise ValueError(f"unknown stream {stream!r} (expected one of {', '.join(STREAMS)})")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (expected by_block or streaming)")
    return Path(data_dir) / f"{_DIRS[stream]}_{mode}" / "hourly"


def hourly_path(data_dir: Path, stream: str, mode: str, time_ns: int) -> Path:
    """The file a line written at ``time_ns`` goes to: ``.../YYYYMMDD/H``."""
    when = datetime.fromtimestamp(time_ns // 10**9, tz=timezone.utc)
    return stream_root(data_dir, stream, mode) / when.strftime("%Y%m%d") / str(when.hour)


def envelope(local_ns: int, block: Block, events: list[Any], height: int | None = None) -> bytes:
    """One node line: ``{"local_time","block_time","block_number","events"}`` + newline.

    ``height`` overrides the block's height (the absurd-height fault).
    """
    number = block.height if height is None else height
    head = (
        f'{{"local_time":"{node_time(local_ns)}","block_time":"{node_time(block.time_ns)}",'
        f'"block_number":{number},"events":'
    )
    return head.encode() + _encode(events) + b"}\n"


def write_snapshot(snapshot: list[Any], path: Path, include_height: bool = True) -> None:
    """Write a snapshot (``[height, coins]``) the way the node's fileSnapshot does."""
    data = snapshot if include_height else snapshot[1]
    Path(path).write_bytes(_encode(data))


class ScaledClock:
    """A wall clock whose hours last ``hour_seconds`` real seconds.

    It starts at ``start_ns`` (default: now) and runs ``3600 / hour_seconds``
    times faster than ``base``: with ``hour_seconds=2`` and a start at 23:59:58
    a test sees a new hourly file every 2 s and a new date directory after 4 s.
    """

    def __init__(
        self, hour_seconds: float = 3600.0, start_ns: int | None = None, base: Clock = time.time_ns
    ) -> None:
        if hour_seconds <= 0:
            raise ValueError(f"hour_seconds must be positive, got {hour_seconds}")
        self._base = base
        self._origin = base()
        self._start = self._origin if start_ns is None else start_ns
        self._factor = 3600.0 / hour_seconds

    def __call__(self) -> int:
        return self._start + int((self._base() - self._origin) * self._factor)


class SteppingClock:
    """A deterministic clock for generated files: ``now`` plus ``step_ns`` per call."""

    def __init__(self, now: int, step_ns: int = 37_000) -> None:
        self.now = now
        self.step_ns = step_ns

    def __call__(self) -> int:
        self.now += self.step_ns
        return self.now


@dataclass(slots=True)
class Write:
    """One write call: ``rows`` of one stream of ``block`` (one line per row).

    By-block: one row holding all the block's events of the stream (maybe
    none). Streaming: one row per event, never an empty row.
    """

    block: Block
    stream: str
    rows: list[list[Any]]


class NodeWriter:
    """Appends blocks to the three streams, rotating files by the clock's hour."""

    def __init__(
        self,
        data_dir: Path,
        mode: str = "by_block",
        clock: Clock = time.time_ns,
        seed: int = 0,
        split_probability: float = 0.05,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (expected by_block or streaming)")
        self.data_dir = Path(data_dir)
        self.mode = mode
        self.clock = clock
        self.split_probability = split_probability
        self._rng = random.Random(f"writer-{seed}")
        self._files: dict[str, tuple[Path, BinaryIO]] = {}
        self._hours: dict[str, int] = {}
        self._stamps: dict[str, tuple[int, int, bytes]] = {}
        self._skip_next = False
        self._garbage: list[str] = []
        self._truncate: list[str] = []
        self._absurd: dict[str, int] = {}
        self.lines_written = 0
        self.split_writes = 0
        self.blocks_written = 0
        self.blocks_skipped: list[int] = []
        self.absurd_lines: list[tuple[str, int, int]] = []
        self.last_written: int | None = None

    # -- writing ----------------------------------------------------------

    def write_block(self, block: Block) -> None:
        """Write one block to all three streams (or skip it after :meth:`gap`)."""
        for write in self.begin_block(block):
            self.write(write)

    def begin_block(self, block: Block) -> list[Write]:
        """The write calls of ``block`` in file order, not yet written (none after :meth:`gap`).

        Pass each to :meth:`write`, in order, before the next block's.
        """
        if self._skip_next:
            self._skip_next = False
            self.blocks_skipped.append(block.height)
            return []
        self.blocks_written += 1
        self.last_written = block.height
        if self.mode == "by_block":
            return [Write(block, stream, [_events(block, stream)]) for stream in STREAMS]
        return self._streaming_writes(block)

    def _streaming_writes(self, block: Block) -> list[Write]:
        """Rows of the three streams taking turns, 1-8 rows a turn; empty streams write nothing."""
        rows = {stream: [[event] for event in _events(block, stream)] for stream in STREAMS}
        writes = []
        while any(rows.values()):
            for stream in STREAMS:
                take = rows[stream][: self._rng.randint(1, MAX_ROWS_PER_WRITE)]
                if take:
                    del rows[stream][: len(take)]
                    writes.append(Write(block, stream, take))
        return writes

    def write(self, write: Write) -> None:
        """Append one write call's lines (see :meth:`begin_block`)."""
        now, head = self._stamp(write)
        lines = [head + _encode(events) + b"}\n" for events in write.rows]
        ahead = self._absurd.pop(write.stream, None)
        if ahead is not None:
            height = write.block.height + ahead
            lines[0] = envelope(now, write.block, write.rows[0], height)
            self.absurd_lines.append((write.stream, write.block.height, height))
        self._write_lines(write.stream, now, lines)

    def _stamp(self, write: Write) -> tuple[int, bytes]:
        """The stream's ``local_time`` for this block and the line head up to ``"events":``.

        By-block: a new stamp per line. Streaming: stamped at the stream's first
        row of the block, shared by the rest.
        """
        height = write.block.height
        known = self._stamps.get(write.stream)
        if self.mode == "streaming" and known is not None and known[0] == height:
            return known[1], known[2]
        now = self.clock()
        head = envelope(now, write.block, []).removesuffix(b"[]}\n")
        self._stamps[write.stream] = (height, now, head)
        return now, head

    def _write_lines(self, stream: str, now: int, lines: list[bytes]) -> None:
        """Append complete lines in one write (two, split mid-line, now and then)."""
        handle = self._handle(stream, now)
        if stream in self._garbage:
            self._garbage.remove(stream)
            self._put(handle, GARBAGE_LINE)
        if stream in self._truncate:
            self._truncate.remove(stream)
            lines[0] = lines[0][: self._rng.randint(1, len(lines[0]) - 2)] + b"\n"
        data = b"".join(lines)
        if self._rng.random() < self.split_probability:
            cut = self._rng.randint(1, len(lines[0]) - 1)
            self._put(handle, data[:cut])
            self._put(handle, data[cut:])
            self.split_writes += 1
        else:
            self._put(handle, data)
        self.lines_written += len(lines)

    @staticmethod
    def _put(handle: BinaryIO, data: bytes) -> None:
        handle.write(data)
        handle.flush()

    def _handle(self, stream: str, now: int) -> BinaryIO:
        hour = now // _HOUR_NS
        current = self._files.get(stream)
        if current is not None and self._hours[stream] == hour:
            return current[1]
        if current is not None:
            current[1].close()
        path = hourly_path(self.data_dir, stream, self.mode, now)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "ab")  # noqa: SIM115 - kept open across blocks
        self._files[stream] = (path, handle)
        self._hours[stream] = hour
        return handle

    def current_paths(self) -> dict[str, Path]:
        """The file each stream currently appends to."""
        return {stream: path for stream, (path, _) in self._files.items()}

    def close(self) -> None:
        """Close all files (writing again reopens them)."""
        for _, handle in self._files.values():
            handle.close()
        self._files.clear()

    # -- faults -----------------------------------------------------------

    def gap(self) -> None:
        """Never write the next block: readers see N, then N+2."""
        self._skip_next = True

    def garbage(self, stream: str) -> None:
        """Write a line of non-JSON bytes before the next line of ``stream``."""
        stream_root(self.data_dir, stream, self.mode)
        self._garbage.append(stream)

    def truncate(self, stream: str) -> None:
        """Cut the next line of ``stream`` short (that block's line is lost)."""
        stream_root(self.data_dir, stream, self.mode)
        self._truncate.append(stream)

    def absurd_height(self, stream: str, ahead: int = ABSURD_AHEAD) -> None:
        """Give the next line of ``stream`` a block number ``ahead`` blocks too far.

        The line is otherwise intact and parseable; its block's real height
        never appears in that stream (by-block), or lacks that row (streaming).
        Later lines are normal again.
        """
        stream_root(self.data_dir, stream, self.mode)
        if ahead == 0:
            raise ValueError("absurd_height: ahead must not be 0")
        self._absurd[stream] = ahead

    def crash(self, block: Block) -> tuple[str, Path]:
        """Write part of ``block`` and die mid-line, like a node killed while writing.

        Some of the block's write calls go out whole, then half of the next
        one without its newline; every file is closed. The next line written
        to that stream is appended right after the partial one, as a restarted
        node does (one unparsable line). Returns (stream, file) of the cut.
        """
        writes = self.begin_block(block)
        if not writes:
            raise ValueError(f"crash: block {block.height} is being skipped by a gap fault")
        cut = self._rng.randrange(len(writes))
        for write in writes[:cut]:
            self.write(write)
        last = writes[cut]
        now, head = self._stamp(last)
        line = head + _encode(last.rows[0]) + b"}\n"
        handle = self._handle(last.stream, now)
        self._put(handle, line[: self._rng.randint(1, len(line) - 2)])
        path = self._files[last.stream][0]
        self.close()
        return last.stream, path

    def clear_faults(self) -> None:
        """Forget faults that have not happened yet."""
        self._skip_next = False
        self._garbage.clear()
        self._truncate.clear()
        self._absurd.clear()

    def delete_old(self) -> list[Path]:
        """Delete every hourly file except the ones being written; return them."""
        keep = set(self.current_paths().values())
        deleted = []
        for stream in STREAMS:
            root = stream_root(self.data_dir, stream, self.mode)
            for path in sorted(root.glob("*/*")):
                if path not in keep and path.is_file():
                    path.unlink()
                    deleted.append(path)
            for day in sorted(root.glob("*")):
                if day.is_dir() and not any(day.iterdir()):
                    day.rmdir()
        return deleted

    def restart(self) -> None:
        """Drop every file handle (between two lines); the next write reopens and appends."""
        self.close()


def _events(block: Block, stream: str) -> list[Any]:
    return {"fills": block.fills, "diffs": block.diffs, "statuses": block.statuses}[stream]
