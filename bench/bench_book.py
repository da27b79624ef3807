"""Benchmark of the book (orderbook.book): prints numbers, never pass/fail.

Mainnet shape, generated from a seed before any timing: a few hundred coins
(perps, spot ``@N``, HIP-3 ``xyz:N``) holding 500k+ resting orders, BTC the
biggest with ~51k; blocks of ~500 diffs (40% new, 40% remove, 20% update, 2%
of news with insertBefore), 1000 statuses (one ``open`` per new, the
rest rejections: ~80%; 93% as on mainnet would leave too few statuses for
~200 news), and two trades. Blocks are encoded as node JSON lines (bytes)
and decoded with msgspec inside the timed loop, so blocks/s includes decode.

Reported: blocks/s (median of passes) against mainnet's 14.5 blocks/s,
per-block p50/p99, L2 view cost on the biggest book, bytes per resting order
(tracemalloc), the worst ``load_orders`` chunk of a 50k-order book, and a
full ``gc.collect()`` unfrozen vs after ``gc.freeze()``. GC is off while
timing. Metadata goes out as JSON at the end.

    PYTHONPATH=. python bench/bench_book.py [--orders 500000] [--blocks 300]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import sys
import time
import tracemalloc
from typing import Any

import msgspec

from orderbook import fixed
from orderbook.book import l2
from orderbook.book.books import Books, freeze_after_load
from orderbook.book.events import Block, BookDiff, Fill, OrderStatus, StatusOrder
from orderbook.book.order import iso_to_ms

MAINNET_BLOCKS_PER_S = 14.5
TARGET_FACTOR = 40
MAGNITUDES = [76_000, 3_000, 150, 25, 1.2, 0.035, 0.0012345, 450, 9.5, 0.61]
REJECTIONS = ["badAloPxRejected"] * 19 + ["perpMarginRejected", "iocCancelRejected"]
SIZES = [fixed.parse(s) for s in ("0.00012", "0.0013", "0.02144", "0.5", "1.0", "12.5", "300.0")]


class Envelope(msgspec.Struct):
    block_number: int
    block_time: str
    events: list[Any]


def decoder(event: Any) -> msgspec.json.Decoder:
    fields = [("block_number", int), ("block_time", str), ("events", list[event])]
    return msgspec.json.Decoder(msgspec.defstruct("Envelope", fields))


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
        self.weights = self.sizes[:]
        self.counts = {"blocks": 0, "statuses": 0, "news": 0, "diffs": 0}

    def _market(self, index: int) -> Market:
        coin = "BTC" if index == 0 else ["C{}", "@{}", "xyz:T{}"][index % 3].format(index)
        mid = fixed.parse(f"{MAGNITUDES[index % len(MAGNITUDES)]:.8f}")
        tick = 10 ** max(0, len(str(mid)) - 5)
        return Market(coin, mid - mid % tick, tick)

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
        statuses, diffs = [], []
        for _ in range(n_diffs):
            market = rng.choices(self.markets, self.weights)[0]
            roll = rng.random()
            if roll < 0.4 or len(market.oids) < 10:
                self._new(market, block_time, ms, statuses, diffs)
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
        self.counts["news"] += len(statuses)
        self.counts["statuses"] += max(n_statuses, len(statuses))
        self.counts["diffs"] += len(diffs)
        self.counts["blocks"] += 1
        for _ in range(n_statuses - len(statuses)):
            market = rng.choice(self.markets)
            side = rng.choice("BA")
            px = market.price(rng, "A" if side == "B" else "B")  # crossing ALO: rejected
            status = _status(
                rng.choice(self.users),
                rng.choice(REJECTIONS),
                market.coin,
                side,
                px,
                self.oid(),
                block_time,
                ms,
            )
            statuses.insert(rng.randrange(len(statuses) + 1), status)
        fills = self._fills(ms)
        return tuple(  # type: ignore[return-value]
            msgspec.json.encode(
                {
                    "local_time": block_time,
                    "block_time": block_time,
                    "block_number": height,
                    "events": events,
                }
            )
            for events in (statuses, diffs, fills)
        )

    def _new(self, market: Market, block_time: str, ms: int, statuses: list, diffs: list) -> None:
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
        statuses.append(_status(user, "open", market.coin, side, px, oid, block_time, ms))
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


def bench_blocks(
    books: Books, lines: list[tuple[bytes, bytes, bytes]], passes: int
) -> dict[str, Any]:
    statuses_dec, diffs_dec, fills_dec = (
        decoder(OrderStatus),
        decoder(BookDiff),
        decoder(tuple[str, Fill]),
    )
    per_block, decode_times, rates, errors = [], [], [], 0
    size = len(lines) // passes
    clock = time.perf_counter
    for chunk in range(passes):
        start = clock()
        for raw_statuses, raw_diffs, raw_fills in lines[chunk * size : (chunk + 1) * size]:
            t0 = clock()
            st, df, fl = (
                statuses_dec.decode(raw_statuses),
                diffs_dec.decode(raw_diffs),
                fills_dec.decode(raw_fills),
            )
            block = Block(
                height=st.block_number,
                time_ms=iso_to_ms(st.block_time),
                block_time=st.block_time,
                statuses=st.events,
                diffs=df.events,
                fills=fl.events,
            )
            t1 = clock()
            errors += len(books.apply_block(block).errors)
            per_block.append(clock() - t0)
            decode_times.append(t1 - t0)
        rates.append(size / (clock() - start))
    return {
        "blocks_per_s_median": statistics.median(rates),
        "blocks_per_s_passes": rates,
        "block_ms_p50": percentile(per_block, 0.5) * 1e3,
        "block_ms_p99": percentile(per_block, 0.99) * 1e3,
        "decode_ms_p50": percentile(decode_times, 0.5) * 1e3,
        "errors": errors,
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=20260505)
    parser.add_argument("--coins", type=int, default=300)
    parser.add_argument("--orders", type=int, default=520_000)
    parser.add_argument("--blocks", type=int, default=300)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--diffs", type=int, default=500)
    parser.add_argument("--statuses", type=int, default=1000, help="per block, opens included")
    parser.add_argument("--chunk", type=int, default=5000)
    args = parser.parse_args(argv)

    prep = time.perf_counter()
    gen = Generator(args.seed, args.coins, args.orders)
    snapshot = gen.snapshot()
    lines = [gen.block(h, args.diffs, args.statuses) for h in range(1, args.blocks + 1)]
    prep_s = time.perf_counter() - prep
    print(
        f"prepared {sum(len(e) for _, _, e in snapshot)} orders, {len(lines)} blocks in {prep_s:.1f} s"
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

    gc.collect()
    gc.disable()
    try:
        blocks = bench_blocks(books, lines, args.passes)
        views = bench_views(books)
    finally:
        gc.enable()
    sizes = [tuple(map(len, block)) for block in lines]
    rate = blocks["blocks_per_s_median"]
    print(
        f"blocks (decode + apply): {rate:.0f} blocks/s median of {args.passes} passes = "
        f"{rate / MAINNET_BLOCKS_PER_S:.1f}x mainnet {MAINNET_BLOCKS_PER_S}/s (target {TARGET_FACTOR}x); "
        f"per block p50 {blocks['block_ms_p50']:.2f} ms, p99 {blocks['block_ms_p99']:.2f} ms "
        f"(decode p50 {blocks['decode_ms_p50']:.2f} ms)"
    )
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
        "timer_resolution_s": time.get_clock_info("perf_counter").resolution,
        "args": vars(args),
        "prep_s": prep_s,
        "block_shape": {
            "statuses_line_bytes_mean": statistics.mean(s for s, _, _ in sizes),
            "diffs_line_bytes_mean": statistics.mean(d for _, d, _ in sizes),
            "statuses_per_block": gen.counts["statuses"] / gen.counts["blocks"],
            "rejected_share": 1 - gen.counts["news"] / gen.counts["statuses"],
            "diffs_per_block": gen.counts["diffs"] / gen.counts["blocks"],
            "fills_per_block": 4,
        },
        "load": load,
        "gc": gcs,
        "blocks": blocks,
        "views": views,
    }
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
