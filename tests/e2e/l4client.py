"""A client-side L4 book, rebuilt exactly as docs/client-api.rst ("Keeping an L4 book") says.

Independent of orderbook.book on purpose: it is what a client would write
from the documentation, so the end-to-end tests check the server against the
documented contract, not against its own code.
"""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

L4_FIELDS = (
    "user",
    "coin",
    "side",
    "limitPx",
    "sz",
    "oid",
    "timestamp",
    "triggerCondition",
    "isTrigger",
    "triggerPx",
    "isPositionTpsl",
    "reduceOnly",
    "orderType",
    "tif",
    "cloid",
)


def iso_ms(text: str) -> int:
    """Naive UTC ISO-8601 (up to 9 fractional digits) -> epoch milliseconds."""
    from datetime import datetime, timezone

    whole, _, frac = text.partition(".")
    moment = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1000 + int((frac + "000")[:3])


class L4Book:
    """One coin's book: ``levels[side]`` is a list of orders in queue order."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.coin = snapshot["coin"]
        self.height = snapshot["height"]
        self.orders: dict[int, dict[str, Any]] = {}
        self.queue: list[int] = []  # every oid in arrival order (levels derived on demand)
        for side in snapshot["levels"]:
            for order in side:
                self.orders[order["oid"]] = dict(order)
                self.queue.append(order["oid"])

    def apply(self, updates: dict[str, Any]) -> None:
        """Apply one Updates message; heights must be consecutive."""
        if updates["height"] != self.height + 1:
            raise AssertionError(f"height gap: {self.height} -> {updates['height']}")
        self.height = updates["height"]
        statuses = {s["order"]["oid"]: s for s in updates["order_statuses"]}
        for diff in updates["book_diffs"]:
            self._apply_diff(diff, statuses, updates["time"])

    def _apply_diff(self, diff: dict[str, Any], statuses: dict[int, Any], time_ms: int) -> None:
        oid, raw = diff["oid"], diff["raw_book_diff"]
        if raw == "remove":
            del self.orders[oid]
            self.queue.remove(oid)
        elif "update" in raw:
            self.orders[oid]["sz"] = raw["update"]["newSz"]
        else:
            order = self._new_order(diff, statuses.get(oid), time_ms)
            self.orders[oid] = order
            before = raw["new"].get("insertBefore")
            if before is None:
                self.queue.append(oid)
            else:
                self.queue.insert(self.queue.index(before), oid)

    def _new_order(self, diff: dict[str, Any], status: Any, time_ms: int) -> dict[str, Any]:
        if status is None:
            order = {"coin": diff["coin"], "side": diff["side"], "timestamp": time_ms,
                     "triggerCondition": "N/A", "isTrigger": False, "triggerPx": "0.0",
                     "isPositionTpsl": False, "reduceOnly": False, "orderType": "Limit",
                     "tif": "Alo", "cloid": None}  # fmt: skip
        else:
            order = {k: v for k, v in status["order"].items() if k in L4_FIELDS}
            if status["status"] == "triggered":
                order.update(timestamp=iso_ms(status["time"]), tif="Gtc",
                             triggerCondition="Triggered", isTrigger=False, triggerPx="0.0")  # fmt: skip
        order.update(user=diff["user"], oid=diff["oid"], limitPx=diff["px"])
        order["sz"] = diff["raw_book_diff"]["new"]["sz"]
        return order

    def levels(self) -> list[list[dict[str, Any]]]:
        """[bids best first, asks best first], oldest first within a price."""
        bids = [self.orders[o] for o in self.queue if self.orders[o]["side"] == "B"]
        asks = [self.orders[o] for o in self.queue if self.orders[o]["side"] == "A"]
        bids.sort(key=lambda o: -Decimal(o["limitPx"]))  # stable: keeps queue order
        asks.sort(key=lambda o: Decimal(o["limitPx"]))
        return [bids, asks]


def normalise(order: dict[str, Any]) -> dict[str, Any]:
    """The fields an L4 order is compared on (strings compared as sent: canonical)."""
    return {k: order.get(k) for k in L4_FIELDS}


def comparable(levels: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    return [[normalise(order) for order in side] for side in levels]


def request_snapshot(info_url: str, out_path: Path) -> tuple[int, dict[str, Any]]:
    """Ask a node (or the simulator) for a fileSnapshot; return (height, {coin: levels})."""
    body = json.dumps(
        {
            "type": "fileSnapshot",
            "request": {"type": "l4Snapshots", "includeUsers": True, "includeTriggerOrders": False},
            "outPath": str(out_path),
            "includeHeightInOutput": True,
        }
    ).encode()
    request = urllib.request.Request(info_url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    height, coins = json.loads(out_path.read_text())
    books = {}
    for coin, sides in coins:
        books[coin] = [[dict(order, user=user) for user, order in side] for side in sides]
    return height, books
