"""Ingestion speed: line decoding on the mainnet capture, sliced snapshot loading.

Prints JSON numbers (never pass/fail). Usage:
    PYTHONPATH=. python bench/bench_decode.py [--orders 200000]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from twisted.internet import task

from orderbook.book.books import Books
from orderbook.node.schema import decode_line
from orderbook.node.snapshot import load_snapshot

FIXTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/mainnet-20260430-btc/hl/data"


def bench_lines() -> dict:
    path = FIXTURE / "node_order_statuses_by_block/hourly/20260430/20"
    lines = path.read_bytes().splitlines()
    size = sum(map(len, lines))
    passes = []
    for _ in range(5):
        start = time.perf_counter()
        for raw in lines:
            decode_line("statuses", raw)
        passes.append(time.perf_counter() - start)
    best = statistics.median(passes)
    return {"statuses_lines": len(lines), "MB_per_s": round(size / best / 1e6, 1),
            "ms_per_line": round(best / len(lines) * 1000, 3)}  # fmt: skip


def _snapshot(orders: int) -> bytes:
    coins = {}
    for i in range(orders):
        coin = f"C{i % 200}"
        side = "B" if i % 2 else "A"
        body = {"coin": coin, "side": side, "limitPx": f"{100 + i % 97}.0", "sz": "1.5",
                "oid": i + 1, "timestamp": 1777582003304, "triggerCondition": "N/A",
                "isTrigger": False, "triggerPx": "0.0", "children": [], "isPositionTpsl": False,
                "reduceOnly": False, "orderType": "Limit", "origSz": "1.5", "tif": "Alo",
                "cloid": None}  # fmt: skip
        coins.setdefault(coin, ([], []))[0 if side == "B" else 1].append([f"0x{i:040x}", body])
    for bids, asks in coins.values():
        bids.sort(key=lambda e: -float(e[1]["limitPx"]))
        asks.sort(key=lambda e: float(e[1]["limitPx"]))
    doc = [1, [[c, [b, a]] for c, (b, a) in coins.items()]]
    return json.dumps(doc, separators=(",", ":")).encode()


def bench_snapshot(orders: int) -> dict:
    from twisted.internet import reactor

    data = _snapshot(orders)
    path = Path(tempfile.mkdtemp()) / "snap.json"
    path.write_bytes(data)
    turns: list[float] = []
    result: dict = {}

    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        turns.append(now - last[0])
        last[0] = now

    ticker = task.LoopingCall(tick)

    def run():
        ticker.start(0.001)
        start = time.perf_counter()
        done = load_snapshot(path, Books)

        def finished(books):
            result["seconds"] = round(time.perf_counter() - start, 3)
            result["orders"] = books.order_count()
            ticker.stop()
            reactor.stop()

        done.addCallback(finished)

    gc.disable()
    reactor.callWhenRunning(run)
    reactor.run()
    turns.sort()
    result.update(file_MB=round(len(data) / 1e6, 1), max_reactor_gap_ms=round(turns[-1] * 1000, 1),
                  p99_reactor_gap_ms=round(turns[int(len(turns) * 0.99)] * 1000, 1))  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=200_000)
    args = parser.parse_args()
    out = {"python": platform.python_version(), "machine": platform.machine()}
    if FIXTURE.is_dir():
        out["lines"] = bench_lines()
    out["snapshot"] = bench_snapshot(args.orders)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
