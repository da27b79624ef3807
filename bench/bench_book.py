"""Benchmark of the book (orderbook.book): prints numbers, never pass/fail.

Mainnet shape, generated from a seed before any timing: a few hundred coins
(perps, spot ``@N``, HIP-3 ``xyz:N``) holding 500k+ resting orders, BTC the
biggest with ~51k. Each block has ``--diffs`` diffs (40% new, 40% remove,
20% update; 2% of news with insertBefore) and ``--statuses`` statuses: one
``open`` per new, the rest rejections (mostly badAloPxRejected) and ~1%
cancels, so ~80% rejections (mainnet has ~93%, but then ~200 news would lack
their ``open``), plus two trades (four fills). Blocks are the three node JSON
lines (bytes), decoded inside the timed loop with the production decoder
(``orderbook.node.schema.decode_line``), so blocks/s includes decode.

Timing is made robust against a shared, noisy VM: every pass is timed with
``time.process_time()`` (CPU of this process: what the book costs) and
``time.perf_counter()`` (wall: what it costs with the neighbours); passes
alternate GC disabled / GC enabled (after ``freeze_after_load()``, as the
server runs); each mode reports the median and best pass. The load average
is printed before and after.

Also reported: L2 view cost on the biggest book, bytes per resting order
(tracemalloc), the worst ``load_orders`` chunk of a 50k-order book, and a
full ``gc.collect()`` unfrozen vs after ``gc.freeze()``. Metadata goes out as
JSON at the end. The default run takes ~30 s.

    PYTHONPATH=. python bench/bench_book.py [--orders 520000] [--blocks 800]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import random
import statistics
import struct
import subprocess
import sys
import time
import tracemalloc
from typing import Any

import msgspec

from orderbook import fixed
from orderbook.book import l2
from orderbook.book.books import Books, freeze_after_load
from orderbook.book.events import Block, StatusOrder
from orderbook.book.order import iso_to_ms
from orderbook.node import schema
from orderbook.node.decoder import strip_rejections

MAINNET_BLOCKS_PER_S = 14.5
TARGET_FACTOR = 40
MAGNITUDES = [76_000, 3_000, 150, 25, 1.2, 0.035, 0.0012345, 450, 9.5, 0.61]
OTHER_STATUSES = (
    ["badAloPxRejected"] * 93 + ["perpMarginRejected"] * 4 + ["iocCancelRejected", "canceled"]
)
SIZES = [fixed.parse(s) for s in ("0.00012", "0.0013", "0.02144", "0.5", "1.0", "12.5", "300.0")]
POOL = 4000  # distinct pre-encoded non-open statuses blocks draw from


class Market:
    """The generator's own view of one coin: resting orders for picking targets."""

    def __init__(self, coin: str, mid: int, tick: int) -> None:
        self.coin, self.mid, self.tick = coin, mid, tick
        self.orders: dict[int, list[Any]] = {}  # oid -> [side, px, sz, user]
        self.oids: list[int] = []
        self.where: dict[int, int] = {}

    def add(self, oid: int, entry: list[Any]) -> None:
        self.orders[oid] = entry
        self.where[oid] = len(self.oids)
        self.oids.append(oid)

    def pop(self, oid: int) -> list[Any]:
        index = self.where.pop(oid)
        last = self.oids.pop()
        if last != oid:
            self.oids[index] = last
            self.where[last] = index
        return self.orders.pop(oid)

    def price(self, rng: random.Random, side: str) -> int:
        offset = (1 + int(rng.expovariate(1 / 30))) * self.tick
        return self.mid - offset if side == "B" else self.mid + offset


class Generator:
    """Seeded mainnet-shaped state and blocks."""

    def __init__(self, seed: int, n_coins: int, n_orders: int) -> None:
        self.rng = random.Random(seed)
        self.users = [f"0x{self.rng.getrandbits(160):040x}" for _ in range(5000)]
        self.next_oid = 400_000_000_000
        self.markets = [self._market(i) for i in range(n_coins)]
        btc = min(51_351, n_orders // 4)  # BTC as in a real 2026-05-05 snapshot
        weights = [1 / (rank + 2) ** 1.1 for rank in range(n_coins - 1)]
        scale = (n_orders - btc) / sum(weights)
        self.sizes = [btc] + [max(2, int(w * scale)) for w in weights]
        self.cum_weights = list(itertools.accumulate(self.sizes))
        self.counts = {"blocks": 0, "statuses": 0, "opens": 0, "diffs": 0}
        self.pool = [self._other_status() for _ in range(POOL)]

    def _market(self, index: int) -> Market:
        coin = "BTC" if index == 0 else ["C{}", "@{}", "xyz:T{}"][index % 3].format(index)
        mid = fixed.parse(f"{MAGNITUDES[index % len(MAGNITUDES)]:.8f}")
        tick = 10 ** max(0, len(str(mid)) - 5)
        return Market(coin, mid - mid % tick, tick)

    def _other_status(self) -> bytes:
        """One encoded rejection (a crossing ALO, mostly) or cancel."""
        rng, market = self.rng, self.rng.choice(self.markets)
        side = rng.choice("BA")
        px = market.price(rng, "A" if side == "B" else "B")
        block_time = "2026-05-05T17:00:00.015780465"
        name = rng.choice(OTHER_STATUSES)
        status = _status(
            rng.choice(self.users), name, market.coin, side, px, self.oid(), block_time, 1777999
        )
        return msgspec.json.encode(status)

    def oid(self) -> int:
        self.next_oid += 1
        return self.next_oid

    def snapshot(self) -> list[tuple[str, str, list[tuple[str, StatusOrder]]]]:
        """(coin, side, entries best first) for every coin side."""
        rng, result = self.rng, []
        for market, size in zip(self.markets, self.sizes, strict=True):
            for side in ("B", "A"):
                entries = []
                for _ in range(size // 2):
                    oid, px, sz, user = (
                        self.oid(),
                        market.price(rng, side),
                        rng.choice(SIZES),
                        rng.choice(self.users),
                    )
                    market.add(oid, [side, px, sz, user])
                    entries.append((px, oid, user, sz))
                entries.sort(key=lambda e: (-e[0] if side == "B" else e[0], e[1]))
                result.append(
                    (
                        market.coin,
                        side,
                        [
                            (
                                user,
                                StatusOrder(
                                    coin=market.coin,
                                    side=side,
                                    limitPx=fixed.format(px),
                                    sz=fixed.format(sz),
                                    oid=oid,
                                    timestamp=1777582000000,
                                    tif="Alo",
                                    cloid=f"0x{oid:032x}",
                                ),
                            )
                            for px, oid, user, sz in entries
                        ],
                    )
                )
        return result

    def block(self, height: int, n_diffs: int, n_statuses: int) -> tuple[bytes, bytes, bytes]:
        """The three node lines (statuses, diffs, fills) of one block."""
        rng = self.rng
        block_time = (
            f"2026-05-05T17:{height // 600 % 60:02d}:{height // 10 % 60:02d}.{height % 10}15780465"
        )
        ms = iso_to_ms(block_time)
        opens: list[bytes] = []
        diffs: list[dict[str, Any]] = []
        for _ in range(n_diffs):
            market = rng.choices(self.markets, cum_weights=self.cum_weights)[0]
            roll = rng.random()
            if roll < 0.4 or len(market.oids) < 10:
                self._new(market, block_time, ms, opens, diffs)
            elif roll < 0.8:
                oid = rng.choice(market.oids)
                side, px, _, user = market.pop(oid)
                diffs.append(_diff(user, oid, market.coin, side, px, "remove"))
            else:
                oid = rng.choice(market.oids)
                entry = market.orders[oid]
                new_sz = max(1, entry[2] // 2)
                body = {"update": {"origSz": fixed.format(entry[2]), "newSz": fixed.format(new_sz)}}
                diffs.append(_diff(entry[3], oid, market.coin, entry[0], entry[1], body))
                entry[2] = new_sz
        statuses = rng.sample(self.pool, max(0, n_statuses - len(opens)))
        for status in opens:
            statuses.insert(rng.randrange(len(statuses) + 1), status)
        self.counts["opens"] += len(opens)
        self.counts["statuses"] += len(statuses)
        self.counts["diffs"] += len(diffs)
        self.counts["blocks"] += 1
        head = msgspec.json.encode(
            {"local_time": block_time, "block_time": block_time, "block_number": height}
        )
        head = head[:-1] + b',"events":'
        return (
            head + b"[" + b",".join(statuses) + b"]}",
            head + msgspec.json.encode(diffs) + b"}",
            head + msgspec.json.encode(self._fills(ms)) + b"}",
        )

    def _new(
        self, market: Market, block_time: str, ms: int, opens: list[bytes], diffs: list
    ) -> None:
        rng, oid = self.rng, self.oid()
        user, sz = rng.choice(self.users), rng.choice(SIZES)
        body: dict[str, Any] = {"sz": fixed.format(sz)}
        if rng.random() < 0.02 and market.oids:
            target = rng.choice(market.oids)
            side, px = market.orders[target][:2]
            body["insertBefore"] = target
        else:
            side = rng.choice("BA")
            px = market.price(rng, side)
        market.add(oid, [side, px, sz, user])
        status = _status(user, "open", market.coin, side, px, oid, block_time, ms)
        opens.append(msgspec.json.encode(status))
        diffs.append(_diff(user, oid, market.coin, side, px, {"new": body}))

    def _fills(self, ms: int) -> list[Any]:
        fills = []
        for _ in range(2):
            market, tid = self.markets[0], self.oid()
            px = fixed.format(market.mid)
            buyer, seller = self.rng.sample(self.users, 2)
            for user, side, crossed in ((buyer, "B", True), (seller, "A", False)):
                fills.append(
                    [
                        user,
                        {
                            "coin": market.coin,
                            "px": px,
                            "sz": "0.00153",
                            "side": side,
                            "time": ms,
                            "startPosition": "0.1",
                            "dir": "Open Long",
                            "closedPnl": "0.0",
                            "hash": "0x" + "0" * 64,
                            "oid": self.oid(),
                            "crossed": crossed,
                            "fee": "0.05",
                            "tid": tid,
                            "feeToken": "USDC",
                            "twapId": None,
                        },
                    ]
                )
        return fills


def _diff(user: str, oid: int, coin: str, side: str, px: int, body: Any) -> dict[str, Any]:
    return {
        "user": user,
        "oid": oid,
        "coin": coin,
        "side": side,
        "px": fixed.format(px),
        "raw_book_diff": body,
    }


def _status(
    user: str, status: str, coin: str, side: str, px: int, oid: int, block_time: str, ms: int
) -> dict:
    sz = "0.0686"
    order = {
        "coin": coin,
        "side": side,
        "limitPx": fixed.format(px),
        "sz": sz,
        "oid": oid,
        "timestamp": ms,
        "triggerCondition": "N/A",
        "isTrigger": False,
        "triggerPx": "0.0",
        "children": [],
        "isPositionTpsl": False,
        "reduceOnly": False,
        "orderType": "Limit",
        "origSz": sz,
        "tif": "Alo",
        "cloid": f"0x{oid:032x}",
    }
    return {
        "time": block_time,
        "user": user,
        "hash": None,
        "builder": None,
        "status": status,
        "order": order,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median_call(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def decode_block(raw_statuses: bytes, raw_diffs: bytes, raw_fills: bytes) -> Block:
    """The three lines of one block -> a Block, as ingestion does it."""
    decode = schema.decode_line
    statuses = decode(schema.STATUSES, raw_statuses)
    diffs = decode(schema.DIFFS, raw_diffs)
    fills = decode(schema.FILLS, raw_fills)
    return Block(
        height=statuses.block_number,
        time_ms=schema.time_ms(statuses.block_time),
        block_time=statuses.block_time,
        statuses=statuses.events,  # type: ignore[arg-type]
        diffs=diffs.events,  # type: ignore[arg-type]
        fills=fills.events,  # type: ignore[arg-type]
    )


def run_pass(books: Books, lines: list[tuple[bytes, bytes, bytes]]) -> dict[str, Any]:
    """Decode and apply ``lines`` in order; CPU and wall time, per block and total."""
    cpu = time.process_time
    decode_s, apply_s, block_s, errors = [], [], [], 0
    wall_start, cpu_start = time.perf_counter(), cpu()
    for raw in lines:
        t0 = cpu()
        block = decode_block(*raw)
        t1 = cpu()
        errors += len(books.apply_block(block).errors)
        t2 = cpu()
        decode_s.append(t1 - t0)
        apply_s.append(t2 - t1)
        block_s.append(t2 - t0)
    cpu_s, wall_s = cpu() - cpu_start, time.perf_counter() - wall_start
    return {
        "cpu_blocks_per_s": len(lines) / cpu_s,
        "wall_blocks_per_s": len(lines) / wall_s,
        "block_ms": block_s,
        "decode_ms": decode_s,
        "apply_ms": apply_s,
        "errors": errors,
    }


def bench_blocks(
    books: Books, lines: list[tuple[bytes, bytes, bytes]], passes: int
) -> dict[str, dict[str, Any]]:
    """``passes`` passes per GC mode, alternating; consecutive slices of ``lines``."""
    size = len(lines) // (2 * passes)
    runs: dict[str, list[dict[str, Any]]] = {"gc_off": [], "gc_on": []}
    freeze_after_load()  # as the server does after a snapshot load
    try:
        for index in range(2 * passes):
            mode = "gc_off" if index % 2 == 0 else "gc_on"
            if mode == "gc_off":
                gc.disable()
            try:
                runs[mode].append(run_pass(books, lines[index * size : (index + 1) * size]))
            finally:
                gc.enable()
    finally:
        gc.unfreeze()
    return {mode: summarize(results, size) for mode, results in runs.items()}


class DecoderPipe:
    """The production statuses decoder child, driven synchronously over its pipes."""

    def __init__(self) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-m", "orderbook.node.decoder"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def strip(self, raw: bytes) -> bytes:
        self.child.stdin.write(struct.pack(">I", len(raw)) + raw)
        self.child.stdin.flush()
        (size,) = struct.unpack(">I", self.child.stdout.read(4))
        return self.child.stdout.read(size)

    def close(self) -> None:
        self.child.stdin.close()
        self.child.wait(10)


def bench_decode_worker(
    books: Books, lines: list[tuple[bytes, bytes, bytes]], passes: int
) -> dict[str, Any]:
    """Blocks through the decoder child (GC on, as the server runs): the reactor core's
    CPU per block (pipe I/O + decode of the stripped line + apply), and the child's CPU
    per statuses line (measured on the same code in this process)."""
    pipe = DecoderPipe()
    size = len(lines) // passes
    rates, main_ms = [], []
    freeze_after_load()
    try:
        for index in range(passes):
            chunk = lines[index * size : (index + 1) * size]
            start = time.process_time()
            for raw_statuses, raw_diffs, raw_fills in chunk:
                t0 = time.process_time()
                block = decode_block(pipe.strip(raw_statuses), raw_diffs, raw_fills)
                books.apply_block(block)
                main_ms.append((time.process_time() - t0) * 1e3)
            rates.append(len(chunk) / (time.process_time() - start))
    finally:
        gc.unfreeze()
        pipe.close()
    strip_ms = [
        median_call(lambda raw=raw: strip_rejections(raw), 1) * 1e3 for raw, _, _ in lines[:50]
    ]
    stripped = [len(strip_rejections(raw)) / len(raw) for raw, _, _ in lines[:50]]
    return {
        "main_cpu_blocks_per_s_median": statistics.median(rates),
        "main_cpu_blocks_per_s_best": max(rates),
        "main_block_ms_p50": percentile(main_ms, 0.5),
        "main_block_ms_p99": percentile(main_ms, 0.99),
        "child_strip_ms_p50": statistics.median(strip_ms),
        "stripped_size_ratio": statistics.median(stripped),
    }


def summarize(results: list[dict[str, Any]], size: int) -> dict[str, Any]:
    cpu_rates = [r["cpu_blocks_per_s"] for r in results]
    wall_rates = [r["wall_blocks_per_s"] for r in results]

    def ms(key: str, q: float) -> float:
        return percentile([v for r in results for v in r[key]], q) * 1e3

    return {
        "blocks_per_pass": size,
        "cpu_blocks_per_s_median": statistics.median(cpu_rates),
        "cpu_blocks_per_s_best": max(cpu_rates),
        "wall_blocks_per_s_median": statistics.median(wall_rates),
        "wall_blocks_per_s_best": max(wall_rates),
        "cpu_passes": cpu_rates,
        "wall_passes": wall_rates,
        "block_ms_p50": ms("block_ms", 0.5),
        "block_ms_p99": ms("block_ms", 0.99),
        "decode_ms_p50": ms("decode_ms", 0.5),
        "apply_ms_p50": ms("apply_ms", 0.5),
        "errors": sum(r["errors"] for r in results),
    }


def bench_views(books: Books) -> dict[str, Any]:
    book = books.book("BTC")

    def view(sig: int | None) -> None:
        l2.side_levels(book.bids, sig, None, 20)
        l2.side_levels(book.asks, sig, None, 20)

    return {
        "btc_orders": book.order_count(),
        "btc_levels": len(book.bids.levels) + len(book.asks.levels),
        "l2_top20_us": median_call(lambda: view(None), 200) * 1e6,
        "l2_sig3_top20_us": median_call(lambda: view(3), 50) * 1e6,
        "l2_cached_us": median_call(lambda: books.l2_view("BTC"), 1000) * 1e6,
        "l4_snapshot_btc_ms": median_call(book.l4_levels, 3) * 1e3,
    }


def bench_load(snapshot: list, chunk: int) -> tuple[Books, dict[str, Any]]:
    """Bytes per order (tracemalloc) over the whole snapshot, then sliced loads of BTC."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    books = Books()
    for coin, side, entries in snapshot:
        books.load_orders(coin, side, entries)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    count = books.order_count()
    start = time.perf_counter()
    fresh = Books()
    for coin, side, entries in snapshot:
        fresh.load_orders(coin, side, entries)
    load_s = time.perf_counter() - start
    del fresh
    worst, btc = 0.0, 0
    sliced = Books()
    for coin, side, entries in snapshot:
        if coin != "BTC":
            continue
        for offset in range(0, len(entries), chunk):
            start = time.perf_counter()
            sliced.load_orders(coin, side, entries[offset : offset + chunk])
            worst = max(worst, time.perf_counter() - start)
        btc += len(entries)
    return books, {
        "orders": count,
        "coins": books.coin_count(),
        "bytes_per_order": used / count,
        "load_all_s": load_s,
        "btc_chunk_orders": chunk,
        "btc_orders_sliced": btc,
        "worst_chunk_ms": worst * 1e3,
    }


def bench_gc() -> dict[str, Any]:
    gc.collect()
    unfrozen = median_call(gc.collect, 3)
    freeze_after_load()
    frozen = median_call(gc.collect, 3)
    gc.unfreeze()
    return {"gc_collect_unfrozen_ms": unfrozen * 1e3, "gc_collect_frozen_ms": frozen * 1e3}


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=20260505)
    parser.add_argument("--coins", type=int, default=300)
    parser.add_argument("--orders", type=int, default=520_000)
    parser.add_argument("--blocks", type=int, default=800, help="split over 2 x passes")
    parser.add_argument("--passes", type=int, default=4, help="per GC mode")
    parser.add_argument("--diffs", type=int, default=500)
    parser.add_argument("--statuses", type=int, default=1000, help="per block, opens included")
    parser.add_argument("--chunk", type=int, default=5000)
    args = parser.parse_args(argv)

    print(f"load average {load_average()} (1/5/15 min) on {os.cpu_count()} CPUs")
    prep = time.perf_counter()
    gen = Generator(args.seed, args.coins, args.orders)
    snapshot = gen.snapshot()
    lines = [gen.block(h, args.diffs, args.statuses) for h in range(1, args.blocks + 1)]
    prep_s = time.perf_counter() - prep
    print(
        f"prepared {sum(len(e) for _, _, e in snapshot)} orders, {len(lines)} blocks in {prep_s:.1f} s"
    )
    counts = gen.counts
    sizes = [tuple(map(len, block)) for block in lines]
    shape = {
        "diffs_per_block": counts["diffs"] / counts["blocks"],
        "statuses_per_block": counts["statuses"] / counts["blocks"],
        "opens_per_block": counts["opens"] / counts["blocks"],
        "rejected_share": 1 - counts["opens"] / counts["statuses"],
        "fills_per_block": 4,
        "statuses_line_kb": statistics.mean(s for s, _, _ in sizes) / 1e3,
        "diffs_line_kb": statistics.mean(d for _, d, _ in sizes) / 1e3,
    }
    print(
        "block shape: {diffs_per_block:.0f} diffs (40% new, 40% remove, 20% update), "
        "{statuses_per_block:.0f} statuses ({opens_per_block:.0f} open, "
        "{rejected_share:.0%} rejections or cancels), {fills_per_block} fills; "
        "lines {statuses_line_kb:.0f} KB statuses + {diffs_line_kb:.0f} KB diffs".format(**shape)
    )

    books, load = bench_load(snapshot, args.chunk)
    del snapshot
    print(
        f"load: {load['orders']} orders in {load['coins']} coins, {load['bytes_per_order']:.0f} bytes/order "
        f"(tracemalloc), all in {load['load_all_s']:.2f} s; BTC ({load['btc_orders_sliced']} orders) in chunks "
        f"of {args.chunk}: worst chunk {load['worst_chunk_ms']:.1f} ms"
    )
    gcs = bench_gc()
    print(
        f"gc.collect() over the loaded book: {gcs['gc_collect_unfrozen_ms']:.0f} ms unfrozen, "
        f"{gcs['gc_collect_frozen_ms']:.1f} ms after gc.freeze()"
    )

    load_before = load_average()
    blocks = bench_blocks(books, lines, args.passes)
    load_after = load_average()
    for mode, result in blocks.items():
        cpu = result["cpu_blocks_per_s_median"]
        print(
            f"blocks, decode + apply, {mode.replace('_', ' ')} ({args.passes} passes of "
            f"{result['blocks_per_pass']}): CPU {cpu:.0f} blocks/s median, "
            f"{result['cpu_blocks_per_s_best']:.0f} best = {cpu / MAINNET_BLOCKS_PER_S:.1f}x mainnet "
            f"{MAINNET_BLOCKS_PER_S}/s (target {TARGET_FACTOR}x); wall {result['wall_blocks_per_s_median']:.0f} "
            f"median, {result['wall_blocks_per_s_best']:.0f} best; per block CPU p50 "
            f"{result['block_ms_p50']:.2f} ms (decode {result['decode_ms_p50']:.2f} + apply "
            f"{result['apply_ms_p50']:.2f}), p99 {result['block_ms_p99']:.2f} ms"
        )
    print(f"load average {load_before} before the block passes, {load_after} after")
    following = range(args.blocks + 1, args.blocks + 1 + args.blocks // 2)
    more = [gen.block(h, args.diffs, args.statuses) for h in following]  # blocks not yet applied
    worker = bench_decode_worker(books, more, args.passes)
    rate = worker["main_cpu_blocks_per_s_median"]
    print(
        f"blocks with the statuses decoder child (GC on, [node] decode_worker = yes): reactor "
        f"core CPU {rate:.0f} blocks/s median, {worker['main_cpu_blocks_per_s_best']:.0f} best = "
        f"{rate / MAINNET_BLOCKS_PER_S:.1f}x mainnet (target {TARGET_FACTOR}x); per block p50 "
        f"{worker['main_block_ms_p50']:.2f} ms, p99 {worker['main_block_ms_p99']:.2f} ms; the child "
        f"spends {worker['child_strip_ms_p50']:.2f} ms a statuses line (its own core) and sends "
        f"back {worker['stripped_size_ratio']:.0%} of it"
    )
    views = bench_views(books)
    print(
        f"views on BTC ({views['btc_orders']} orders, {views['btc_levels']} levels): top-20 "
        f"{views['l2_top20_us']:.0f} us, nSigFigs=3 top-20 {views['l2_sig3_top20_us']:.0f} us, cached "
        f"{views['l2_cached_us']:.2f} us, full L4 snapshot {views['l4_snapshot_btc_ms']:.0f} ms"
    )
    meta = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": {"before_blocks": load_before, "after_blocks": load_after},
        "timer_resolution_s": {
            "perf_counter": time.get_clock_info("perf_counter").resolution,
            "process_time": time.get_clock_info("process_time").resolution,
        },
        "args": vars(args),
        "prep_s": prep_s,
        "block_shape": shape,
        "load": load,
        "gc": gcs,
        "blocks": blocks,
        "decode_worker": worker,
        "views": views,
    }
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
