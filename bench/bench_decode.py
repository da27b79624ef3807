"""Ingestion speed: line decoding on the mainnet capture, sliced snapshot loading.

Prints JSON numbers (never pass/fail). Usage:
    PYTHONPATH=. python bench/bench_decode.py [--orders 200000]
    PYTHONPATH=. python bench/bench_decode.py --only burst [--mode streaming] [--burst-blocks 40]
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

import msgspec
from twisted.internet import task

from orderbook.book.books import Books
from orderbook.book.events import StatusOrder
from orderbook.node.blocks import BlockAssembler
from orderbook.node.schema import DIRECTORIES, decode_line
from orderbook.node.snapshot import _load_whole, load_snapshot
from orderbook.node.streaming import StreamAssembler
from orderbook.node.tail import NodeTailer, hourly_files

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


def _snapshot(orders: int, coins_count: int) -> bytes:
    coins = {}
    for i in range(orders):
        coin = f"C{i % coins_count}"
        side = "B" if i % 2 else "A"
        body = StatusOrder(  # the node's order object: its defaults are a plain limit order's
            coin=coin,
            side=side,
            limitPx=f"{100 + i % 97}.0",
            sz="1.5",
            oid=i + 1,
            timestamp=1777582003304,
            origSz="1.5",
            tif="Alo",
        )
        coins.setdefault(coin, ([], []))[0 if side == "B" else 1].append([f"0x{i:040x}", body])
    for bids, asks in coins.values():
        bids.sort(key=lambda e: -float(e[1].limitPx))
        asks.sort(key=lambda e: float(e[1].limitPx))
    return msgspec.json.encode([1, [[c, [b, a]] for c, (b, a) in coins.items()]])


def bench_snapshot(orders: int, coins_count: int) -> dict:
    from twisted.internet import reactor

    data = _snapshot(orders, coins_count)
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
    result.update(coins=coins_count, file_MB=round(len(data) / 1e6, 1), max_reactor_gap_ms=round(turns[-1] * 1000, 1),
                  p99_reactor_gap_ms=round(turns[int(len(turns) * 0.99)] * 1000, 1))  # fmt: skip
    return result


def _burst_source(blocks: int, mode: str, scale: float) -> tuple[Path, Path]:
    """Simulated mainnet-sized node files (and the snapshot before them)."""
    from orderbook.sim.generate import generate

    root = Path(tempfile.mkdtemp())
    made = generate(root / "src", blocks, seed=7, mode=mode, scale=scale, snapshot_at=[0])
    return root, made.snapshots[made.first_height - 1]


def bench_burst(blocks: int, mode: str, scale: float, budget_s: float | None) -> dict:
    """A burst of ``blocks`` blocks lands at once (the node's buffered output, or a
    reader that fell behind): how long the reactor goes without a turn while the
    tailer reads, decodes, assembles and applies it to a real Books."""
    from twisted.internet import reactor

    root, snapshot = _burst_source(blocks, mode, scale)
    books = Books()
    _load_whole(snapshot.read_bytes(), books)
    streams, sources = {}, {}
    for kind, directory in DIRECTORIES[mode].items():
        [(_, source)] = list(hourly_files(root / "src" / directory / "hourly"))
        sources[kind] = source
        streams[kind] = root / "dst" / directory / "hourly"
        (streams[kind] / source.parent.name).mkdir(parents=True)
        (streams[kind] / source.parent.name / source.name).write_bytes(b"")
    assembler = (
        BlockAssembler()
        if mode == "by_block"
        else StreamAssembler(time.monotonic, behind=lambda: tailer.behind())
    )
    if mode == "streaming":
        assembler.trust_from(0)  # the files are read from their start
    applied: list[float] = []
    slowest_line = [0.0]

    def deliver(kind, path, batch):
        for _, raw in batch:
            began = time.perf_counter()
            for block in assembler.add(kind, decode_line(kind, raw)):
                books.apply_block(block)
                applied.append(time.perf_counter())
            slowest_line[0] = max(slowest_line[0], time.perf_counter() - began)

    options = {} if budget_s is None else {"turn_budget_s": budget_s}
    tailer = NodeTailer(streams, deliver, lambda *a: None, reactor, 0.05, **options)
    gaps: list[float] = []
    last = [0.0]
    start = [0.0]
    wanted = blocks - (1 if mode == "streaming" else 0)  # the last one waits for a later row

    def tick():
        now = time.perf_counter()
        if last[0]:
            gaps.append(now - last[0])
        last[0] = now
        if len(applied) >= wanted:
            ticker.stop()
            tailer.stop()
            reactor.stop()

    ticker = task.LoopingCall(tick)

    def run():
        tailer.start()
        for kind, source in sources.items():  # the whole burst lands at once
            target = streams[kind] / source.parent.name / source.name
            target.write_bytes(source.read_bytes())
        start[0] = time.perf_counter()
        ticker.start(0.001)

    gc.disable()
    reactor.callWhenRunning(run)
    reactor.run()
    gc.enable()
    gaps.sort()
    size = sum(source.stat().st_size for source in sources.values())
    return {
        "mode": mode,
        "blocks": len(applied),
        "burst_MB": round(size / 1e6, 1),
        "statuses_line_KB": round(sources["statuses"].stat().st_size / blocks / 1e3),
        "seconds": round(applied[-1] - start[0], 3),
        "max_reactor_gap_ms": round(gaps[-1] * 1000, 1),
        "p99_reactor_gap_ms": round(gaps[int(len(gaps) * 0.99)] * 1000, 1),
        "slowest_line_ms": round(slowest_line[0] * 1000, 1),
        "turn_budget_s": budget_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--coins", type=int, default=200, help="coins in the snapshot")
    parser.add_argument("--burst-blocks", type=int, default=40)
    parser.add_argument("--mode", choices=("by_block", "streaming"), default="by_block")
    parser.add_argument("--scale", type=float, default=1.0, help="simulator load (1 = mainnet)")
    parser.add_argument("--turn-budget", type=float, help="tailer work per reactor turn, s")
    parser.add_argument("--only", choices=("lines", "snapshot", "burst"))
    args = parser.parse_args()
    out = {"python": platform.python_version(), "machine": platform.machine()}
    if FIXTURE.is_dir() and args.only in (None, "lines"):
        out["lines"] = bench_lines()
    if args.only in (None, "snapshot"):
        out["snapshot"] = bench_snapshot(args.orders, args.coins)
    if args.only == "burst":  # needs its own reactor run
        out["burst"] = bench_burst(args.burst_blocks, args.mode, args.scale, args.turn_budget)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
