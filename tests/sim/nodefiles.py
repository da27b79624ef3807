"""Test helpers: read node files back and replay them onto a snapshot.

The replayer is deliberately tiny and written for the tests only (it must
not use ``orderbook.book``): it is the second opinion on the simulator.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from orderbook.sim.writer import STREAMS, stream_root


def stream_files(data_dir: Path, stream: str, mode: str) -> list[Path]:
    """The hourly files of one stream, oldest first."""
    root = stream_root(data_dir, stream, mode)
    files = [p for p in root.glob("*/*") if p.is_file()]
    return sorted(files, key=lambda p: (p.parent.name, int(p.name)))


def read_lines(data_dir: Path, stream: str, mode: str) -> list[dict[str, Any]]:
    """Every line of a stream, parsed, in file order."""
    lines = []
    for path in stream_files(data_dir, stream, mode):
        for raw in path.read_bytes().splitlines():
            lines.append(json.loads(raw))
    return lines


def split_lines(data_dir: Path, stream: str, mode: str) -> tuple[list[dict[str, Any]], list[bytes]]:
    """A stream's lines in file order: (parsed good lines, raw unparsable lines)."""
    good, bad = [], []
    for path in stream_files(data_dir, stream, mode):
        for raw in path.read_bytes().splitlines():
            try:
                good.append(json.loads(raw))
            except ValueError:
                bad.append(raw)
    return good, bad


def events_by_height(data_dir: Path, mode: str) -> dict[int, dict[str, list[Any]]]:
    """height -> stream -> events, rows of one block concatenated in file order."""
    blocks: dict[int, dict[str, list[Any]]] = defaultdict(lambda: {s: [] for s in STREAMS})
    for stream in STREAMS:
        for line in read_lines(data_dir, stream, mode):
            blocks[line["block_number"]][stream].extend(line["events"])
    return dict(blocks)


def time_ms(text: str) -> int:
    """Epoch ms of a node time string (up to 9 fractional digits)."""
    whole, _, frac = text.partition(".")
    when = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return int(when.timestamp()) * 1000 + int((frac + "000")[:3])


class Replayer:
    """An L4 book rebuilt from a snapshot plus statuses and diffs."""

    def __init__(self, snapshot: list[Any]) -> None:
        self.height, coins = snapshot
        self.coins = [coin for coin, _ in coins]
        self.sides: dict[tuple[str, str], dict[Decimal, list[list[Any]]]] = {}
        self.where: dict[int, tuple[str, str, Decimal]] = {}
        for coin, (bids, asks) in coins:
            for side, entries in (("B", bids), ("A", asks)):
                levels = self.sides.setdefault((coin, side), {})
                for user, order in entries:
                    px = Decimal(order["limitPx"])
                    levels.setdefault(px, []).append([user, order])
                    self.where[order["oid"]] = (coin, side, px)

    def apply(
        self, height: int, statuses: list[dict[str, Any]], diffs: list[dict[str, Any]]
    ) -> None:
        """Apply one block; diffs decide, statuses give metadata for ``new``."""
        assert height == self.height + 1, f"block {height} after {self.height}"
        self.height = height
        meta: dict[int, dict[str, Any]] = {}
        for status in statuses:
            oid = status["order"]["oid"]
            if status["status"] in ("open", "triggered") and oid not in meta:
                meta[oid] = status
        for diff in diffs:
            self._apply_diff(diff, meta)

    def _apply_diff(self, diff: dict[str, Any], meta: dict[int, dict[str, Any]]) -> None:
        body = diff["raw_book_diff"]
        oid = diff["oid"]
        if body == "remove":
            coin, side, px = self.where.pop(oid)
            level = self.sides[(coin, side)][px]
            level[:] = [e for e in level if e[1]["oid"] != oid]
            if not level:
                del self.sides[(coin, side)][px]
        elif "update" in body:
            entry = self._entry(oid)
            assert entry[1]["sz"] == body["update"]["origSz"], (oid, entry, body)
            entry[1]["sz"] = body["update"]["newSz"]
        else:
            self._new(diff, body["new"], meta.get(oid))

    def _entry(self, oid: int) -> list[Any]:
        coin, side, px = self.where[oid]
        return next(e for e in self.sides[(coin, side)][px] if e[1]["oid"] == oid)

    def _new(
        self, diff: dict[str, Any], new: dict[str, Any], status: dict[str, Any] | None
    ) -> None:
        coin, side, px = diff["coin"], diff["side"], Decimal(diff["px"])
        if status is None:
            order = {
                "coin": coin,
                "side": side,
                "limitPx": diff["px"],
                "sz": new["sz"],
                "oid": diff["oid"],
                "timestamp": self._block_ms,
                "triggerCondition": "N/A",
                "isTrigger": False,
                "triggerPx": "0.0",
                "children": [],
                "isPositionTpsl": False,
                "reduceOnly": False,
                "orderType": "Limit",
                "origSz": new["sz"],
                "tif": "Alo",
                "cloid": None,
            }
        else:
            order = dict(status["order"])
            if status["status"] == "triggered":
                order.update(
                    timestamp=time_ms(status["time"]),
                    tif="Gtc",
                    triggerCondition="Triggered",
                    isTrigger=False,
                    triggerPx="0.0",
                )
        order["sz"] = new["sz"]
        entry = [diff["user"], order]
        level = self.sides.setdefault((coin, side), {}).setdefault(px, [])
        before = new.get("insertBefore")
        if before is None:
            level.append(entry)
        else:
            index = next(i for i, e in enumerate(level) if e[1]["oid"] == before)
            level.insert(index, entry)
        self.where[diff["oid"]] = (coin, side, px)

    _block_ms = 0

    def replay(
        self, blocks: dict[int, dict[str, list[Any]]], block_ms: dict[int, int], height: int
    ) -> None:
        """Apply every block after the current height up to ``height``."""
        for h in range(self.height + 1, height + 1):
            events = blocks.get(h, {})  # sparse streaming files: maybe no line at all
            self._block_ms = block_ms.get(h, 0)
            self.apply(h, events.get("statuses", []), events.get("diffs", []))

    def snapshot(self) -> list[Any]:
        """The book in the node's snapshot format."""
        coins = []
        for coin in self.coins:
            sides = []
            for side in ("B", "A"):
                levels = self.sides.get((coin, side), {})
                prices = sorted(levels, reverse=side == "B")
                sides.append([e for px in prices for e in levels[px]])
            coins.append([coin, sides])
        return [self.height, coins]


def block_times_ms(data_dir: Path, mode: str) -> dict[int, int]:
    """height -> block_time in epoch ms, from whichever stream has a line for it."""
    return {
        line["block_number"]: time_ms(line["block_time"])
        for stream in STREAMS
        for line in read_lines(data_dir, stream, mode)
    }
