"""The simulator's fills files as the reference for trades: tid -> (block, coin).

Read incrementally while the soak runs (hourly files are deleted by the
``delete_old`` fault, so they are read before each fault and once a second).
A line that does not parse (garbage, truncated, cut by a restart) or has no
newline yet is skipped: no correct server can publish its trades either.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

FILLS_DIRS = ("node_fills_by_block", "node_fills_streaming")


class FillsReference:
    """Every trade the node wrote: ``trades[tid] = (height, coin)``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.trades: dict[int, tuple[int, str]] = {}
        self.heights: set[int] = set()  # blocks with a parseable fills line
        self.bad_lines = 0
        self._offsets: dict[Path, int] = defaultdict(int)

    def poll(self) -> None:
        """Read what was appended to every fills file since the last poll."""
        for name in FILLS_DIRS:
            root = self.data_dir / name / "hourly"
            if root.is_dir():
                for path in sorted(root.glob("*/*")):
                    self._read(path)

    def _read(self, path: Path) -> None:
        try:
            with path.open("rb") as file:
                file.seek(self._offsets[path])
                data = file.read()
        except FileNotFoundError:
            return
        complete = data.rfind(b"\n") + 1
        self._offsets[path] += complete
        for raw in data[:complete].splitlines():
            self._line(raw)

    def _line(self, raw: bytes) -> None:
        try:
            line = json.loads(raw)
            height = line["block_number"]
            events = line["events"]
        except (ValueError, KeyError, TypeError):
            self.bad_lines += 1
            return
        self.heights.add(height)
        for _user, fill in events if isinstance(events, list) else ():
            self.trades[fill["tid"]] = (height, fill["coin"])

    @property
    def height(self) -> int:
        """The highest block read (0 before any)."""
        return max(self.heights, default=0)

    def expected(self, coin: str, after: int | None, through: int) -> set[int]:
        """The tids of ``coin`` in blocks ``after+1 .. through`` (none before a Snapshot)."""
        if after is None:
            return set()
        return {
            tid
            for tid, (height, name) in self.trades.items()
            if name == coin and after < height <= through
        }
