"""Where the recent blocks' lines are in the node's files, to rebuild blocks for validation.

Validation compares the live book with a node snapshot; a snapshot older
than the live book is first brought to the live height with the blocks in
between. Those blocks are not kept in memory (decoded, ~97 KB a mainnet
block): the node's files are append-only, so only each line's position is
remembered, one *span* (height, file, first byte, end) per stream and block
(a streaming block's rows are adjacent in each file, so they share a span).
At most ``max_blocks`` spans per stream are kept: a few hundred bytes per
block, flat after warm-up. Blocks are rebuilt by reading and decoding those
bytes again; a file pruned meanwhile makes the rebuild fail (validation is
then skipped, as when the window does not reach back far enough).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from pathlib import Path

from orderbook.book.events import Block
from orderbook.node.blocks import Parts, filtered, store
from orderbook.node.schema import STREAM_KINDS, LineError, decode_line

Span = tuple[int, Path, int, int]  # (height, file, first byte, end byte)


class RetainedLines:
    """A bounded window of line positions per stream, and the blocks they rebuild to."""

    def __init__(
        self,
        max_blocks: int = 2000,
        accept_coin: Callable[[str], bool] | None = None,
        streaming: bool = False,
    ) -> None:
        self.max_blocks = max_blocks
        self.streaming = streaming
        self.accept_coin = accept_coin
        self._spans: dict[str, deque[Span]] = {kind: deque() for kind in STREAM_KINDS}
        self._floor: int | None = None  # the lowest height whose lines are all known

    def __len__(self) -> int:
        return sum(map(len, self._spans.values()))

    def note(self, kind: str, height: int, path: Path, offset: int, length: int) -> None:
        """The line of ``kind`` for block ``height`` is at ``path[offset:offset+length]``."""
        if self._floor is None:
            # a by-block line is a whole block; a streaming block may have begun before
            self._floor = height + 1 if self.streaming else height
        spans = self._spans[kind]
        end = offset + length
        if spans:
            last_height, last_path, start, last_end = spans[-1]
            if last_height == height and last_path == path and last_end + 1 == offset:
                spans[-1] = (height, path, start, end)  # the next row of the same block
                return
        spans.append((height, path, offset, end))
        if len(spans) > self.max_blocks:
            self._floor = max(self._floor, spans.popleft()[0] + 1)

    @property
    def oldest_usable_snapshot(self) -> int | None:
        """The lowest snapshot height these lines can bring up to the live book."""
        return None if self._floor is None else self._floor - 1

    def forget(self) -> None:
        """Drop every position (after a resync the window starts again)."""
        for spans in self._spans.values():
            spans.clear()
        self._floor = None

    def blocks(self, after: int, through: int) -> list[Block] | None:
        """Blocks ``after+1 .. through`` rebuilt from the files; None when not retained."""
        if through <= after:
            return []
        if self._floor is None or after + 1 < self._floor:
            return None
        parts: dict[int, Parts] = {}
        try:
            for kind, spans in self._spans.items():
                for height, path, start, end in spans:
                    if after < height <= through:
                        self._read(kind, path, start, end, parts)
        except (OSError, LineError):
            return None
        return _every_height(parts, after + 1, through)

    def _read(self, kind: str, path: Path, start: int, end: int, parts: dict[int, Parts]) -> None:
        with open(path, "rb") as handle:
            data = os.pread(handle.fileno(), end - start, start)
        if len(data) != end - start:
            raise OSError(f"{path} is shorter than when read")
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            line = decode_line(kind, raw)
            block = parts.get(line.block_number)
            if block is None:
                block = parts[line.block_number] = Parts(line.block_time)
            store(block, kind, filtered(kind, line.events, self.accept_coin))


def _every_height(parts: dict[int, Parts], low: int, high: int) -> list[Block] | None:
    """A block per height; heights without lines (streaming) are empty, timed like the
    block before them (the first ones like the first block with lines); None if none has."""
    blocks: list[Block] = []
    block_time = next((parts[h].block_time for h in sorted(parts) if h >= low), "")
    if not block_time:
        return None
    for height in range(low, high + 1):
        found = parts.get(height)
        if found is not None and found.block_time:
            block_time = found.block_time
        blocks.append((found or Parts(block_time)).block(height))
    return blocks
