"""Shared test helpers for the node package: waiting, a fake node, an info server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.web import resource, server

from orderbook.node.schema import DIRECTORIES
from tests.polling import until

MAINNET_DAY = "20260430"


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition"):
    """A Deferred that fires once ``condition()`` is true (fails after ``timeout`` s)."""
    return defer.ensureDeferred(until(condition, timeout, what))


def block_time(height: int) -> str:
    """A deterministic block_time string for ``height``."""
    seconds = height % 50
    return f"2026-04-30T20:46:{seconds:02d}.{height % 1000:03d}000001"


def envelope(height: int, events: list) -> bytes:
    line = {
        "local_time": block_time(height),
        "block_time": block_time(height),
        "block_number": height,
        "events": events,
    }
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


def order(coin: str, side: str, px: str, sz: str, oid: int, ts: int = 1777582003304) -> dict:
    return {
        "coin": coin, "side": side, "limitPx": px, "sz": sz, "oid": oid, "timestamp": ts,
        "triggerCondition": "N/A", "isTrigger": False, "triggerPx": "0.0", "children": [],
        "isPositionTpsl": False, "reduceOnly": False, "orderType": "Limit", "origSz": sz,
        "tif": "Gtc", "cloid": None,
    }  # fmt: skip


class FakeNode:
    """A tiny node: rests one new order per block (removing an old one every 3rd),
    writes by-block lines into a data dir and snapshot files on request."""

    def __init__(
        self, data_dir: Path, start_height: int = 1000, day: str = MAINNET_DAY, mode="by_block"
    ) -> None:
        self.data_dir = data_dir
        self.mode = mode
        self.height = start_height
        self.day = day
        self.hour = 20
        self.resting: dict[int, tuple[str, dict]] = {}  # oid -> (user, order)
        self.held: dict[str, list[bytes]] = {}  # stream -> lines kept back
        self.next_oid = 1
        self.steady = False  # True: the book stays level, users and sizes repeat
        for _ in range(6):
            self._rest(*self._new_order())

    def stream_dir(self, kind: str) -> Path:
        return self.data_dir / DIRECTORIES[self.mode][kind] / "hourly"

    def path(self, kind: str) -> Path:
        return self.stream_dir(kind) / self.day / str(self.hour)

    def touch_files(self) -> None:
        for kind in ("statuses", "diffs", "fills"):
            self.path(kind).parent.mkdir(parents=True, exist_ok=True)
            self.path(kind).touch()

    def _new_order(self) -> tuple[str, dict]:
        oid = self.next_oid
        self.next_oid += 1
        coin = ("BTC", "@107", "xyz:TSLA")[oid % 3]
        side = "B" if oid % 2 else "A"
        px = str(100 - oid % 7) if side == "B" else str(110 + oid % 7)
        tag = oid % 16 if self.steady else oid  # steady: users and sizes repeat too
        return f"0x{tag:040x}", order(coin, side, px + ".0", f"{tag}.5", oid)

    def _rest(self, user: str, body: dict) -> None:
        self.resting[body["oid"]] = (user, body)

    def next_block(self) -> dict[str, bytes]:
        """Advance one block; return its line per stream."""
        self.height += 1
        user, body = self._new_order()
        statuses = [{"time": block_time(self.height), "user": user, "hash": None,
                     "builder": None, "status": "open", "order": body}]  # fmt: skip
        diffs = [self._diff(user, body, {"new": {"sz": body["sz"]}})]
        self._rest(user, body)
        if self.height % 3 == 0 or self.steady:
            oid = min(self.resting)
            old_user, old_body = self.resting.pop(oid)
            diffs.append(self._diff(old_user, old_body, "remove"))
        fills = []
        if self.height % 4 == 0:
            fill = {"coin": "BTC", "px": "100.0", "sz": "1.0", "side": "B", "time": 1,
                    "hash": "0x1", "oid": 1, "crossed": True, "tid": self.height}  # fmt: skip
            fills = [[user, fill], [user, dict(fill, side="A", crossed=False)]]
        return {
            "statuses": envelope(self.height, statuses),
            "diffs": envelope(self.height, diffs),
            "fills": envelope(self.height, fills),
        }

    @staticmethod
    def _rows(line: bytes) -> bytes:
        """A by-block line as streaming rows: one event per line, none for no event
        (a node's streams are sparse)."""
        doc = json.loads(line)
        return b"".join(
            json.dumps(dict(doc, events=[e]), separators=(",", ":")).encode() + b"\n"
            for e in doc["events"]
        )

    @staticmethod
    def _diff(user: str, body: dict, change: Any) -> dict:
        return {"user": user, "oid": body["oid"], "coin": body["coin"], "side": body["side"],
                "px": body["limitPx"], "raw_book_diff": change}  # fmt: skip

    def write_block(
        self, lines: dict[str, bytes] | None = None, hold: tuple[str, ...] = ()
    ) -> dict[str, bytes]:
        """Write the next block (or ``lines``); streams in ``hold`` are kept back."""
        lines = lines or self.next_block()
        for kind in ("fills", "diffs", "statuses"):  # the node's order
            data = self._rows(lines[kind]) if self.mode == "streaming" else lines[kind]
            if kind in hold:
                self.held.setdefault(kind, []).append(data)
            else:
                self._append(kind, data)
        return lines

    def release(self) -> None:
        """Write every held line (a stopped stream catches up)."""
        held, self.held = self.held, {}
        for kind, chunks in held.items():
            self._append(kind, b"".join(chunks))

    def _append(self, kind: str, data: bytes) -> None:
        self.path(kind).parent.mkdir(parents=True, exist_ok=True)
        with open(self.path(kind), "ab") as handle:
            handle.write(data)

    def snapshot_document(self) -> list:
        books: dict[str, list[list]] = {}
        for user, body in self.resting.values():
            sides = books.setdefault(body["coin"], [[], []])
            sides[0 if body["side"] == "B" else 1].append([user, body])
        for sides in books.values():
            sides[0].sort(key=lambda e: (-float(e[1]["limitPx"]), e[1]["oid"]))
            sides[1].sort(key=lambda e: (float(e[1]["limitPx"]), e[1]["oid"]))
        return [self.height, [[coin, sides] for coin, sides in sorted(books.items())]]


class InfoResource(resource.Resource):
    """POST /info: writes ``snapshot()`` to the requested outPath.

    ``mode``: "ok", "fail" (500), "hang" (never answers), "missing" (200, no
    file), "truncated" (200, the file cut in the middle) or "slow" (200 when
    a third is written, the rest follows in two pieces 50 ms apart).
    """

    isLeaf = True

    def __init__(self, snapshot: Callable[[], Any]) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.mode = "ok"
        self.requests: list[dict] = []
        self.hanging: list = []

    def render_POST(self, request):  # noqa: N802
        body = json.loads(request.content.read())
        self.requests.append(body)
        if self.mode == "fail":
            request.setResponseCode(500)
            return b"node says no"
        if self.mode == "hang":
            self.hanging.append(request)
            return server.NOT_DONE_YET
        if self.mode == "missing":
            return b"null"
        path = Path(body["outPath"])
        data = json.dumps(self.snapshot(), separators=(",", ":")).encode()
        if self.mode == "truncated":
            path.write_bytes(data[: len(data) // 2])
        elif self.mode == "slow":
            from twisted.internet import reactor

            third = len(data) // 3
            path.write_bytes(data[:third])
            for index, piece in enumerate((data[third : 2 * third], data[2 * third :])):
                reactor.callLater(0.05 * (index + 1), self._append, path, piece)
        else:
            path.write_bytes(data)
        return b"null"

    @staticmethod
    def _append(path: Path, data: bytes) -> None:
        with open(path, "ab") as handle:
            handle.write(data)


def listen_info(reactor, snapshot: Callable[[], Any]):
    """Start an info server on 127.0.0.1:0; return (resource, port, url)."""
    info = InfoResource(snapshot)
    port = reactor.listenTCP(0, server.Site(info), interface="127.0.0.1")
    return info, port, f"http://127.0.0.1:{port.getHost().port}/info"
