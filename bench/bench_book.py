"""Benchmark of the book (orderbook.book): prints numbers; ``--guard`` also judges them.

Mainnet shape: a few hundred coins holding 500k+ resting orders. Two sources,
both prepared before any timing:

``--source simulator`` (default): the node simulator (``orderbook.sim``). An
``Exchange`` with ``--coins`` coins (the 8 default markets plus perps) and
``--orders / --coins`` resting orders each; its ``snapshot()`` is written with
the simulator's ``write_snapshot`` and its blocks (``step()``, ``--scale 1``:
~1,000 statuses, ~60% ``badAloPxRejected``, ~340 diffs, ~8 fill events) are
encoded with the writer's ``envelope`` exactly as ``NodeWriter`` writes
``by_block`` lines. Every book has about the same size (BTC ~1.7k orders).

``--source synthetic``: this script's own seeded generator (class
``Generator``): perps, spot ``@N`` and HIP-3 ``xyz:N`` coins, BTC with ~51k
orders as in a real 2026-05-05 snapshot and a Zipf tail (its first coin,
``@1``, ~56k, ~440 levels); each block has ``--diffs``
diffs (40% new, 40% remove, 20% update; 2% of news with insertBefore) and
``--statuses`` statuses (one ``open`` per new, the rest mostly
badAloPxRejected), plus four fills.

Either way the snapshot is loaded from its file by the server's loader
(``orderbook.node.snapshot.load_snapshot``, sliced, cooperative) under a
running reactor with GC on, measuring the longest reactor turn; then the
blocks' three node JSON lines (bytes) are decoded inside the timed loop with
the production decoder (``orderbook.node.schema.decode_line``) and applied,
so blocks/s includes decode.

Timing is made robust against a shared, noisy VM: every pass is timed with
``time.process_time()`` (CPU of this process: what the book costs) and
``time.perf_counter()`` (wall: what it costs with the neighbours); passes
take turns in three GC modes, all after ``freeze_after_load()`` as the
server runs: disabled, enabled with CPython's default thresholds, and
enabled with the server's policy (``orderbook.gc_policy``: young threshold
10,000); each mode reports the median and best pass and the time spent in
the collector (``gc.callbacks``). The load average
is printed before and after, and a fixed reference workload (class
``Reference``) runs before every pass: when two runs' blocks/s differ, its
time shows how much of that is the machine.

Also reported: the blocks' shape (measured on the lines), blocks through the
statuses decoder child, L2 view cost on the biggest book, bytes per resting
order (tracemalloc), the worst ``load_orders`` chunk of the biggest book, and
a full ``gc.collect()`` unfrozen vs after ``gc.freeze()``. Metadata goes out
as JSON at the end. The default run takes ~45-70 s (simulator) or ~35 s
(synthetic) on 2 cores.

    PYTHONPATH=. python bench/bench_book.py [--source simulator|synthetic]
        [--coins 300] [--orders 520000] [--blocks N] [--scale 1.0]

Regression guard (issue 13: the book's ingest speed is settled, so it must
not slip): ``--guard`` runs the workload recorded in ``bench/baseline.json``
(its own args), measures decode + apply CPU blocks/s under the server's GC
policy and the reference workload before every pass, and compares blocks/s
x reference time (the machine's speed cancels out) with the baseline's. It
prints ``REGRESSION GUARD: FAIL`` and exits 1 when that drops by more than
20%, or when a resting order takes more than 250 bytes; else ``PASS``.
``--write-baseline`` records the current figures (with these args) there.

    PYTHONPATH=. python bench/bench_book.py --guard [--baseline bench/baseline.json]
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
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from twisted.internet import reactor

from orderbook import fixed
from orderbook.book import l2
from orderbook.book.books import Books, freeze_after_load
from orderbook.book.events import Block, StatusOrder
from orderbook.book.times import iso_to_ms
from orderbook.gc_policy import YOUNG_THRESHOLD, raise_young_threshold
from orderbook.node import schema
from orderbook.node.prefilter import (
    READ,
    STRIPPED,
    frame,
    read_frame,
    read_request,
    strip_rejections,
)
from orderbook.node.snapshot import load_snapshot
from orderbook.sim.exchange import Block as SimBlock
from orderbook.sim.exchange import Exchange
from orderbook.sim.generate import BLOCK_INTERVAL_NS, DEFAULT_START_NS, WRITE_LATENCY_NS
from orderbook.sim.markets import DEFAULT_MARKETS
from orderbook.sim.writer import STREAMS, SteppingClock, envelope, write_snapshot

Lines = tuple[bytes, bytes, bytes]
"""One block's statuses, diffs and fills lines (no newline), as the tailer hands them on."""

MAINNET_BLOCKS_PER_S = 14.5
TARGET_FACTOR = 40
MAINNET_STATUSES_LINE_KB = 240  # node-data.md: a by-block statuses line averages ~240 KB
DECODER_WINDOW = 3  # statuses lines in flight to the child (the node writes ahead of us)
MAGNITUDES = [76_000, 3_000, 150, 25, 1.2, 0.035, 0.0012345, 450, 9.5, 0.61]
OTHER_STATUSES = (
    ["badAloPxRejected"] * 93 + ["perpMarginRejected"] * 4 + ["iocCancelRejected", "canceled"]
)
SIZES = [fixed.parse(s) for s in ("0.00012", "0.0013", "0.02144", "0.5", "1.0", "12.5", "300.0")]
POOL = 4000  # distinct pre-encoded non-open statuses blocks draw from
BASELINE = Path(__file__).with_name("baseline.json")
MAX_DROP = 0.20  # the guard fails when normalised blocks/s fall by more than this
MAX_BYTES_PER_ORDER = 250  # issue 13: memory per resting order stays <= 250 B
GUARD_ARGS = ("source", "seed", "coins", "orders", "blocks", "passes", "scale", "diffs", "statuses")


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
) -> dict[str, Any]:
    sz = "0.0686"
    order = StatusOrder(  # the node's order object: its defaults are a plain limit order's
        coin=coin,
        side=side,
        limitPx=fixed.format(px),
        sz=sz,
        oid=oid,
        timestamp=ms,
        origSz=sz,
        tif="Alo",
        cloid=f"0x{oid:032x}",
    )
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


class _RefEvent(msgspec.Struct, gc=False):
    user: str
    oid: int
    px: str
    status: str


class Reference:
    """A fixed CPU workload shaped like a block's, to tell the machine's speed.

    The same bytes and steps in every run (msgspec decode of 10,000 events,
    then dict and attribute churn), independent of the source and the book:
    when a run's blocks/s differ from another's, the reference shows how much
    of that is the (shared, noisy) machine. Timed with ``process_time``, best
    of three, before every pass.
    """

    def __init__(self) -> None:
        rng = random.Random(20261126)
        statuses = ("open", "badAloPxRejected", "canceled")
        events = [
            {
                "user": f"0x{rng.getrandbits(160):040x}",
                "oid": rng.randrange(1 << 20),
                "px": f"{rng.randint(1, 99_999)}.0",
                "status": rng.choice(statuses),
            }
            for _ in range(10_000)
        ]
        self._raw = msgspec.json.encode(events)
        self._decode = msgspec.json.Decoder(list[_RefEvent]).decode
        self.samples_ms: list[float] = []

    def measure(self) -> float:
        """Run it three times; note and return the best, in ms."""
        best = min(self._once() for _ in range(3))
        self.samples_ms.append(best)
        return best

    def _once(self) -> float:
        start = time.process_time()
        resting: dict[int, _RefEvent] = {}
        levels: dict[str, int] = {}
        for event in self._decode(self._raw):
            if event.status == "open":
                resting[event.oid] = event
                levels[event.px] = levels.get(event.px, 0) + 1
            elif resting.pop(event.oid, None) is not None:
                levels[event.px] = levels.get(event.px, 1) - 1
        return (time.process_time() - start) * 1e3


def run_pass(books: Books, lines: list[Lines]) -> dict[str, Any]:
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


GC_MODES = {
    "gc_off": "GC off",
    "gc_default": "GC on, CPython's default thresholds",
    "gc_server": f"GC on, the server's policy (young threshold {YOUNG_THRESHOLD:,})",
}


@contextmanager
def gc_mode(mode: str) -> Iterator[None]:
    """The collector as ``mode`` says, for one pass."""
    if mode == "gc_off":
        gc.disable()
        try:
            yield
        finally:
            gc.enable()
    elif mode == "gc_server":
        previous = raise_young_threshold()
        try:
            yield
        finally:
            gc.set_threshold(*previous)
    else:
        yield


class GcClock:
    """Time spent in the collector (gc.callbacks), and how many collections."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1


def bench_blocks(
    books: Books, lines: list[Lines], passes: int, reference: Reference
) -> dict[str, dict[str, Any]]:
    """``passes`` passes per GC mode, in turn; consecutive slices of ``lines``;
    the reference workload before each."""
    size = len(lines) // (len(GC_MODES) * passes)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in GC_MODES}
    freeze_after_load()  # as the server does after a snapshot load
    try:
        for index in range(len(GC_MODES) * passes):
            mode = list(GC_MODES)[index % len(GC_MODES)]
            reference.measure()
            clock = GcClock()
            with gc_mode(mode):  # (a collection GC-off deferred runs after, unclocked)
                gc.callbacks.append(clock)
                try:
                    result = run_pass(books, lines[index * size : (index + 1) * size])
                finally:
                    gc.callbacks.remove(clock)
            result["gc_ms_per_block"] = clock.seconds * 1e3 / size
            result["gc_collections"] = clock.collections
            runs[mode].append(result)
    finally:
        gc.unfreeze()
    return {mode: summarize(results, size) for mode, results in runs.items()}


class DecoderPipe:
    """The production statuses decoder child, driven synchronously over its pipes."""

    def __init__(self) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-m", "orderbook.node.prefilter"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def request(self, raw: bytes, path: bytes, offset: int) -> None:
        """Ask the child to strip ``raw``, which it reads at ``offset`` of ``path`` (as
        the server asks)."""
        self.child.stdin.write(frame(READ, read_request(path, offset, raw)))
        self.child.stdin.flush()

    def reply(self, raw: bytes) -> bytes:
        """The answer to the oldest request: the stripped line, or ``raw`` if unread."""
        answer = read_frame(self.child.stdout)
        if answer is None:
            raise RuntimeError("the decoder child closed its output")
        kind, reply = answer
        return reply if kind == STRIPPED else raw

    def close(self) -> None:
        self.child.stdin.close()
        self.child.wait(10)


def write_statuses_file(lines: list[Lines], path: Path) -> list[int]:
    """The statuses lines as the node's file (the child reads them there); their offsets."""
    offsets = []
    with open(path, "wb") as handle:
        for raw, _, _ in lines:
            offsets.append(handle.tell())
            handle.write(raw + b"\n")
    return offsets


def decoder_pass(
    pipe: DecoderPipe,
    books: Books,
    lines: list[Lines],
    name: bytes,
    offsets: list[int],
    main_ms: list[float],
) -> float:
    """Apply ``lines`` with their statuses stripped by the child, which works
    DECODER_WINDOW lines ahead as in the server; the reactor core's blocks/s."""
    start = time.process_time()
    for at in range(min(DECODER_WINDOW, len(lines))):
        pipe.request(lines[at][0], name, offsets[at])
    for at, (raw_statuses, raw_diffs, raw_fills) in enumerate(lines):
        t0 = time.process_time()
        ahead = at + DECODER_WINDOW
        if ahead < len(lines):
            pipe.request(lines[ahead][0], name, offsets[ahead])
        stripped = pipe.reply(raw_statuses)
        books.apply_block(decode_block(stripped, raw_diffs, raw_fills))
        main_ms.append((time.process_time() - t0) * 1e3)
    return len(lines) / (time.process_time() - start)


def bench_decode_worker(books: Books, lines: list[Lines], passes: int) -> dict[str, Any]:
    """Blocks through the decoder child (GC on with the server's policy): the reactor core's
    CPU per block (the request, reading the stripped line back, decoding it, apply), and
    the child's CPU per statuses line (measured on the same code in this process). The
    statuses lines are written to a file first: the child reads them there, as in the
    server, a few lines ahead of the block being applied."""
    pipe = DecoderPipe()
    size = len(lines) // passes
    rates, main_ms = [], []
    directory = tempfile.TemporaryDirectory(prefix="bench_book-statuses-")
    path = Path(directory.name) / "statuses"
    offsets = write_statuses_file(lines, path)
    name = os.fsencode(path)
    freeze_after_load()
    try:
        with gc_mode("gc_server"):
            for index in range(passes):
                part = slice(index * size, (index + 1) * size)
                rates.append(decoder_pass(pipe, books, lines[part], name, offsets[part], main_ms))
    finally:
        gc.unfreeze()
        pipe.close()
        directory.cleanup()
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
        "gc_ms_per_block": statistics.median(r["gc_ms_per_block"] for r in results),
        "gc_collections": sum(r["gc_collections"] for r in results),
    }


# -- sources -------------------------------------------------------------------


@dataclass
class Prepared:
    """Everything the timed part needs, made before any timing."""

    snapshot_path: Path
    lines: list[Lines]  # the timed GC passes
    more: list[Lines]  # the blocks after them, for the decoder-child pass
    prep: dict[str, float]  # seconds per preparation step


def prepare_simulator(args: argparse.Namespace, directory: Path) -> Prepared:
    """The simulator's book written as the node's snapshot file, then its next blocks."""
    extra = args.coins - len(DEFAULT_MARKETS)
    if extra < 0:
        raise SystemExit(f"--coins must be at least {len(DEFAULT_MARKETS)} with --source simulator")
    prep: dict[str, float] = {}
    start = time.perf_counter()
    exchange = Exchange(
        seed=args.seed,
        scale=args.scale,
        extra_perps=extra,
        start_time_ns=DEFAULT_START_NS,
        orders_per_coin=args.orders // args.coins,
    )
    prep["build_s"] = time.perf_counter() - start
    start = time.perf_counter()
    path = directory / "snapshot.json"
    write_snapshot(exchange.snapshot(), path)
    prep["snapshot_s"] = time.perf_counter() - start
    start = time.perf_counter()
    clock = SteppingClock(DEFAULT_START_NS)
    total = args.blocks + args.blocks // 2
    blocks = [
        node_lines(exchange.step(DEFAULT_START_NS + index * BLOCK_INTERVAL_NS), clock)
        for index in range(total)
    ]
    prep["blocks_s"] = time.perf_counter() - start
    return Prepared(path, blocks[: args.blocks], blocks[args.blocks :], prep)


def node_lines(block: SimBlock, clock: SteppingClock) -> Lines:
    """``block``'s three lines exactly as ``NodeWriter`` writes them in by_block mode
    (fills, diffs, statuses, each stamped by the stepping clock), newline dropped."""
    clock.now = block.time_ns + WRITE_LATENCY_NS  # as orderbook.sim.generate does
    events = {"fills": block.fills, "diffs": block.diffs, "statuses": block.statuses}
    lines = {stream: envelope(clock(), block, events[stream])[:-1] for stream in STREAMS}
    return lines["statuses"], lines["diffs"], lines["fills"]


def prepare_synthetic(args: argparse.Namespace, directory: Path) -> Prepared:
    """This script's generator: its snapshot written as the node's file, then blocks."""
    prep: dict[str, float] = {}
    start = time.perf_counter()
    gen = Generator(args.seed, args.coins, args.orders)
    snapshot = gen.snapshot()
    prep["build_s"] = time.perf_counter() - start
    start = time.perf_counter()
    path = directory / "snapshot.json"
    coins: dict[str, list[list[tuple[str, StatusOrder]]]] = {}
    for coin, side, entries in snapshot:
        coins.setdefault(coin, [[], []])[0 if side == "B" else 1] = entries
    path.write_bytes(msgspec.json.encode([0, list(coins.items())]))
    del snapshot, coins
    prep["snapshot_s"] = time.perf_counter() - start
    start = time.perf_counter()
    total = args.blocks + args.blocks // 2
    blocks = [gen.block(h, args.diffs, args.statuses) for h in range(1, total + 1)]
    prep["blocks_s"] = time.perf_counter() - start
    return Prepared(path, blocks[: args.blocks], blocks[args.blocks :], prep)


def block_shape(lines: list[Lines]) -> dict[str, Any]:
    """What the blocks hold, per block on average (decoded outside any timing)."""
    statuses: Counter[str] = Counter()
    diffs: Counter[str] = Counter()
    fills = coins = 0
    for raw in lines:
        block = decode_block(*raw)
        statuses.update(status.status for status in block.statuses)
        for diff in block.diffs:
            body = diff.raw_book_diff
            kind = body if isinstance(body, str) else "new" if body.new else "update"
            diffs[kind] += 1
        fills += len(block.fills)
        coins += len({diff.coin for diff in block.diffs})
    n, n_statuses = len(lines), sum(statuses.values())
    rejected = sum(count for name, count in statuses.items() if name.endswith("Rejected"))
    canceled = sum(count for name, count in statuses.items() if name.endswith("anceled"))
    return {
        "blocks": n,
        "statuses_per_block": n_statuses / n,
        "open_per_block": statuses["open"] / n,
        "rejected_share": rejected / n_statuses,
        "bad_alo_share": statuses["badAloPxRejected"] / n_statuses,
        "canceled_share": canceled / n_statuses,
        "filled_per_block": statuses["filled"] / n,
        "diffs_per_block": sum(diffs.values()) / n,
        "new_per_block": diffs["new"] / n,
        "update_per_block": diffs["update"] / n,
        "remove_per_block": diffs["remove"] / n,
        "fills_per_block": fills / n,
        "coins_with_diffs_per_block": coins / n,
        "statuses_line_kb": statistics.mean(len(s) for s, _, _ in lines) / 1e3,
        "diffs_line_kb": statistics.mean(len(d) for _, d, _ in lines) / 1e3,
        "fills_line_kb": statistics.mean(len(f) for _, _, f in lines) / 1e3,
        "top_statuses": dict(statuses.most_common(6)),
    }


# -- snapshot ------------------------------------------------------------------

_SideEntries = list[tuple[str, StatusOrder]]
_snapshot_decoder = msgspec.json.Decoder(
    tuple[int, list[tuple[str, tuple[_SideEntries, _SideEntries]]]]
)


def bench_reactor_load(path: Path) -> tuple[Books, dict[str, Any]]:
    """Load the snapshot file as the server does (``load_snapshot``, GC on) under a
    running reactor; a ``callLater(0)`` heartbeat measures every reactor turn."""
    turns: list[float] = []
    gc_pauses: list[float] = []
    quiet_turns: list[float] = []  # turns without a full collection
    state: dict[str, Any] = {"last": 0.0, "gc_start": 0.0, "collected": False}

    def beat() -> None:
        now = time.perf_counter()
        turns.append(now - state["last"])
        if not state["collected"]:
            quiet_turns.append(now - state["last"])
        state["last"], state["collected"] = now, False
        if "books" not in state and "failure" not in state:
            reactor.callLater(0, beat)

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            state["gc_start"] = time.perf_counter()
        else:
            gc_pauses.append(time.perf_counter() - state["gc_start"])
            state["collected"] = True

    def finished(books: Books) -> None:
        state["wall_s"] = time.perf_counter() - state["wall_s"]
        state["cpu_s"] = time.process_time() - state["cpu_s"]
        state["books"] = books
        reactor.stop()

    def failed(failure: Any) -> None:
        state["failure"] = failure
        reactor.stop()

    def start() -> None:
        state["wall_s"], state["cpu_s"] = time.perf_counter(), time.process_time()
        state["last"] = time.perf_counter()
        reactor.callLater(0, beat)
        load_snapshot(path, Books).addCallbacks(finished, failed)

    gc.collect()
    gc.callbacks.append(on_gc)
    try:
        reactor.callWhenRunning(start)
        reactor.run(installSignalHandlers=False)
    finally:
        gc.callbacks.remove(on_gc)
    if "failure" in state:
        state["failure"].raiseException()
    books = state["books"]
    return books, {
        "orders": books.order_count(),
        "coins": books.coin_count(),
        "file_mb": path.stat().st_size / 1e6,
        "wall_s": state["wall_s"],
        "cpu_s": state["cpu_s"],
        "reactor_turns": len(turns),
        "worst_turn_ms": max(turns) * 1e3,
        "p99_turn_ms": percentile(turns, 0.99) * 1e3,
        "turns_over_50ms": sum(turn > 0.05 for turn in turns),
        "worst_turn_without_gen2_ms": max(quiet_turns, default=0.0) * 1e3,
        "gen2_collections": len(gc_pauses),
        "worst_gen2_ms": max(gc_pauses, default=0.0) * 1e3,
    }


def read_snapshot(path: Path) -> list[tuple[str, str, _SideEntries]]:
    """The snapshot file as ``(coin, side, entries best first)`` for every coin side."""
    _, coins = _snapshot_decoder.decode(path.read_bytes())
    return [
        (coin, side, entries)
        for coin, sides in coins
        for side, entries in zip("BA", sides, strict=True)
    ]


def bench_load(snapshot: list[tuple[str, str, _SideEntries]], chunk: int) -> dict[str, Any]:
    """Bytes per order (tracemalloc) over the whole snapshot, the time to load it from
    decoded entries, and sliced loads of the biggest book."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    books = Books()
    for coin, side, entries in snapshot:
        books.load_orders(coin, side, entries)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    count = books.order_count()
    del books
    start = time.perf_counter()
    fresh = Books()
    for coin, side, entries in snapshot:
        fresh.load_orders(coin, side, entries)
    load_s = time.perf_counter() - start
    del fresh
    sizes: Counter[str] = Counter()
    for coin, _, entries in snapshot:
        sizes[coin] += len(entries)
    biggest = sizes.most_common(1)[0][0]
    worst = 0.0
    sliced = Books()
    for coin, side, entries in snapshot:
        if coin != biggest:
            continue
        for offset in range(0, len(entries), chunk):
            start = time.perf_counter()
            sliced.load_orders(coin, side, entries[offset : offset + chunk])
            worst = max(worst, time.perf_counter() - start)
    return {
        "orders": count,
        "bytes_per_order": used / count,
        "load_all_s": load_s,
        "chunk_orders": chunk,
        "chunk_coin": biggest,
        "chunk_coin_orders": sizes[biggest],
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


# -- views ---------------------------------------------------------------------


def bench_views(books: Books) -> dict[str, Any]:
    """L2/L4 view cost on the biggest book."""
    coin = max(books.coins(), key=lambda name: books.book(name).order_count())
    book = books.book(coin)

    def view(sig: int | None) -> None:
        l2.side_levels(book.bids, sig, None, 20)
        l2.side_levels(book.asks, sig, None, 20)

    return {
        "coin": coin,
        "orders": book.order_count(),
        "levels": len(book.bids.levels) + len(book.asks.levels),
        "l2_top20_us": median_call(lambda: view(None), 200) * 1e6,
        "l2_sig3_top20_us": median_call(lambda: view(3), 50) * 1e6,
        "l2_cached_us": median_call(lambda: books.l2_view(coin), 1000) * 1e6,
        "l4_snapshot_ms": median_call(book.l4_levels, 3) * 1e3,
    }


# -- regression guard ----------------------------------------------------------


def load_traced(snapshot: list[tuple[str, str, _SideEntries]]) -> tuple[Books, float]:
    """The snapshot in a fresh Books, and the bytes per resting order it took (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        books = Books()
        for coin, side, entries in snapshot:
            books.load_orders(coin, side, entries)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return books, used / books.order_count()


def guard_measure(args: argparse.Namespace) -> dict[str, Any]:
    """The guarded figures: decode + apply CPU blocks/s with the server's GC policy
    (median of ``passes``), the reference workload's median ms and bytes per order."""
    reference = Reference()
    with tempfile.TemporaryDirectory(prefix="bench_book-") as directory:
        prepare = prepare_simulator if args.source == "simulator" else prepare_synthetic
        data = prepare(args, Path(directory))
        snapshot = read_snapshot(data.snapshot_path)
    books, bytes_per_order = load_traced(snapshot)
    del snapshot
    size = len(data.lines) // args.passes
    rates = []
    freeze_after_load()
    try:
        with gc_mode("gc_server"):
            for index in range(args.passes):
                reference.measure()
                part = data.lines[index * size : (index + 1) * size]
                rates.append(run_pass(books, part)["cpu_blocks_per_s"])
    finally:
        gc.unfreeze()
    rate, reference_ms = statistics.median(rates), statistics.median(reference.samples_ms)
    return {
        "cpu_blocks_per_s": rate,
        "cpu_passes": rates,
        "reference_ms": reference_ms,
        "normalised": rate * reference_ms / 1e3,  # blocks per reference run: machine-neutral
        "bytes_per_order": bytes_per_order,
        "orders": books.order_count(),
    }


def write_baseline(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """Measure with ``args`` and record the figures and the args in ``path``."""
    figures = guard_measure(args)
    baseline = {
        "args": {name: getattr(args, name) for name in GUARD_ARGS},
        **figures,
        "recorded": time.strftime("%Y-%m-%d", time.gmtime()),
        "python": sys.version.split()[0],
        "machine": " ".join(
            filter(None, (platform.machine(), platform.processor(), f"{os.cpu_count()} CPUs"))
        ),
    }
    path.write_text(json.dumps(baseline, indent=2) + "\n")
    print(
        f"baseline written to {path}: {figures['cpu_blocks_per_s']:.0f} blocks/s CPU x reference "
        f"{figures['reference_ms']:.2f} ms = {figures['normalised']:.3f} blocks per reference run; "
        f"{figures['bytes_per_order']:.0f} B per resting order"
    )
    return baseline


def judge(figures: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """What fails the guard (empty: pass)."""
    failures = []
    ratio = figures["normalised"] / baseline["normalised"]
    if ratio < 1 - MAX_DROP:
        failures.append(
            f"blocks/s per reference run dropped {1 - ratio:.0%} below the baseline "
            f"(more than {MAX_DROP:.0%})"
        )
    if figures["bytes_per_order"] > MAX_BYTES_PER_ORDER:
        failures.append(
            f"{figures['bytes_per_order']:.0f} B per resting order (limit {MAX_BYTES_PER_ORDER})"
        )
    return failures


def run_guard(args: argparse.Namespace, path: Path) -> int:
    """Run the baseline's workload, print the comparison and the verdict; the exit code."""
    baseline = json.loads(path.read_text())
    for name, value in baseline["args"].items():
        setattr(args, name, value)
    figures = guard_measure(args)
    ratio = figures["normalised"] / baseline["normalised"]
    print(
        f"regression guard against {path} (recorded {baseline.get('recorded', '?')} on "
        f"{baseline.get('machine', '?')}, {baseline['args']['source']} source, "
        f"{figures['orders']} orders, {args.passes} passes of {args.blocks // args.passes} blocks)"
    )
    print(
        f"  decode + apply, server GC policy: {figures['cpu_blocks_per_s']:.0f} blocks/s CPU "
        f"(baseline {baseline['cpu_blocks_per_s']:.0f}) x reference {figures['reference_ms']:.2f} "
        f"ms (baseline {baseline['reference_ms']:.2f}) = {figures['normalised']:.3f} blocks per "
        f"reference run, {ratio:.0%} of the baseline's {baseline['normalised']:.3f} "
        f"(fails below {1 - MAX_DROP:.0%})"
    )
    print(
        f"  memory: {figures['bytes_per_order']:.0f} B per resting order (baseline "
        f"{baseline['bytes_per_order']:.0f}, limit {MAX_BYTES_PER_ORDER})"
    )
    failures = judge(figures, baseline)
    for failure in failures:
        print(f"REGRESSION GUARD: FAIL: {failure}")
    if not failures:
        print("REGRESSION GUARD: PASS")
    print(json.dumps({"guard": "fail" if failures else "pass", "ratio": ratio, **figures}))
    return 1 if failures else 0


# -- main ----------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", choices=("simulator", "synthetic"), default="simulator")
    parser.add_argument("--seed", type=int, default=20260505)
    parser.add_argument("--coins", type=int, default=300)
    parser.add_argument("--orders", type=int, default=520_000)
    parser.add_argument(
        "--blocks",
        type=int,
        help="timed blocks, split over 3 x passes (plus half as many through the decoder "
        "child); default 900 (simulator) or 1200 (synthetic)",
    )
    parser.add_argument("--passes", type=int, default=4, help="per GC mode")
    parser.add_argument("--scale", type=float, default=1.0, help="simulator: load per block")
    parser.add_argument("--diffs", type=int, default=500, help="synthetic: per block")
    parser.add_argument("--statuses", type=int, default=1000, help="synthetic: per block")
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument(
        "--guard", action="store_true", help="compare with the baseline; exit 1 on a regression"
    )
    parser.add_argument(
        "--write-baseline", action="store_true", help="record the guarded figures as the baseline"
    )
    parser.add_argument("--baseline", type=Path, default=BASELINE, help="the baseline file")
    args = parser.parse_args(argv)
    if args.blocks is None:
        args.blocks = 900 if args.source == "simulator" else 1200
    return args


def print_shape(shape: dict[str, Any]) -> None:
    print(
        "block shape: {statuses_per_block:.0f} statuses ({open_per_block:.0f} open, "
        "{rejected_share:.0%} rejected of which badAloPx {bad_alo_share:.0%} of all, "
        "{canceled_share:.0%} canceled, {filled_per_block:.0f} filled), {diffs_per_block:.0f} "
        "diffs ({new_per_block:.0f} new, {update_per_block:.0f} update, {remove_per_block:.0f} "
        "remove) in {coins_with_diffs_per_block:.0f} coins, {fills_per_block:.1f} fill events; lines {statuses_line_kb:.0f} KB statuses "
        "+ {diffs_line_kb:.0f} KB diffs + {fills_line_kb:.1f} KB fills".format(**shape)
        + f" (statuses {shape['statuses_line_kb'] / MAINNET_STATUSES_LINE_KB:.1f}x mainnet's "
        f"average line of ~{MAINNET_STATUSES_LINE_KB} KB)"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.guard:
        sys.exit(run_guard(args, args.baseline))
    if args.write_baseline:
        write_baseline(args, args.baseline)
        return
    print(f"load average {load_average()} (1/5/15 min) on {os.cpu_count()} CPUs")
    reference = Reference()
    with tempfile.TemporaryDirectory(prefix="bench_book-") as directory:
        prepare = prepare_simulator if args.source == "simulator" else prepare_synthetic
        data = prepare(args, Path(directory))
        prep = data.prep
        print(
            f"prepared ({args.source}): book in {prep['build_s']:.1f} s, snapshot file in "
            f"{prep['snapshot_s']:.1f} s, {len(data.lines) + len(data.more)} blocks in "
            f"{prep['blocks_s']:.1f} s"
        )
        books, reactor_load = bench_reactor_load(data.snapshot_path)
        print(
            f"snapshot load as the server does it ({reactor_load['file_mb']:.0f} MB file, "
            f"{reactor_load['orders']} orders in {reactor_load['coins']} coins, GC on): "
            f"{reactor_load['wall_s']:.1f} s wall, {reactor_load['cpu_s']:.1f} s CPU; worst "
            f"reactor turn {reactor_load['worst_turn_ms']:.0f} ms, p99 "
            f"{reactor_load['p99_turn_ms']:.0f} ms over {reactor_load['reactor_turns']} turns, "
            f"{reactor_load['turns_over_50ms']} over 50 ms; {reactor_load['gen2_collections']} "
            f"full collections, worst {reactor_load['worst_gen2_ms']:.0f} ms; worst turn without "
            f"one {reactor_load['worst_turn_without_gen2_ms']:.0f} ms"
        )
        snapshot = read_snapshot(data.snapshot_path)
    load = bench_load(snapshot, args.chunk)
    del snapshot
    print(
        f"memory: {load['bytes_per_order']:.0f} bytes/order (tracemalloc); load_orders of all "
        f"decoded entries {load['load_all_s']:.2f} s; {load['chunk_coin']} "
        f"({load['chunk_coin_orders']} orders) in chunks of {args.chunk}: worst chunk "
        f"{load['worst_chunk_ms']:.1f} ms"
    )
    gcs = bench_gc()
    print(
        f"gc.collect() over the loaded book: {gcs['gc_collect_unfrozen_ms']:.0f} ms unfrozen, "
        f"{gcs['gc_collect_frozen_ms']:.1f} ms after gc.freeze()"
    )

    shape = block_shape(data.lines)
    print_shape(shape)
    load_before = load_average()
    blocks = bench_blocks(books, data.lines, args.passes, reference)
    load_after = load_average()
    for mode, result in blocks.items():
        cpu = result["cpu_blocks_per_s_median"]
        print(
            f"blocks, decode + apply, {GC_MODES[mode]} ({args.passes} passes of "
            f"{result['blocks_per_pass']}): CPU {cpu:.0f} blocks/s median, "
            f"{result['cpu_blocks_per_s_best']:.0f} best = {cpu / MAINNET_BLOCKS_PER_S:.1f}x mainnet "
            f"{MAINNET_BLOCKS_PER_S}/s (target {TARGET_FACTOR}x); wall {result['wall_blocks_per_s_median']:.0f} "
            f"median, {result['wall_blocks_per_s_best']:.0f} best; per block CPU p50 "
            f"{result['block_ms_p50']:.2f} ms (decode {result['decode_ms_p50']:.2f} + apply "
            f"{result['apply_ms_p50']:.2f}), p99 {result['block_ms_p99']:.2f} ms; "
            f"{result['errors']} book errors; in the collector {result['gc_ms_per_block']:.3f} "
            f"ms a block ({result['gc_collections']} collections)"
        )
    print(f"load average {load_before} before the block passes, {load_after} after")
    samples = reference.samples_ms
    print(
        f"reference workload (fixed; tells this machine's speed, lower is faster): "
        f"{statistics.median(samples):.2f} ms median ({min(samples):.2f}-{max(samples):.2f}) "
        f"before the block passes"
    )
    worker = bench_decode_worker(books, data.more, args.passes)
    rate = worker["main_cpu_blocks_per_s_median"]
    print(
        f"blocks with the statuses decoder child (GC as the server, [node] decode_worker = yes): reactor "
        f"core CPU {rate:.0f} blocks/s median, {worker['main_cpu_blocks_per_s_best']:.0f} best = "
        f"{rate / MAINNET_BLOCKS_PER_S:.1f}x mainnet (target {TARGET_FACTOR}x); per block p50 "
        f"{worker['main_block_ms_p50']:.2f} ms, p99 {worker['main_block_ms_p99']:.2f} ms; the child "
        f"spends {worker['child_strip_ms_p50']:.2f} ms a statuses line (its own core) and sends "
        f"back {worker['stripped_size_ratio']:.0%} of it"
    )
    views = bench_views(books)
    print(
        f"views on the biggest book, {views['coin']} ({views['orders']} orders, "
        f"{views['levels']} levels): top-20 {views['l2_top20_us']:.0f} us, nSigFigs=3 top-20 "
        f"{views['l2_sig3_top20_us']:.0f} us, cached {views['l2_cached_us']:.2f} us, full L4 "
        f"snapshot {views['l4_snapshot_ms']:.1f} ms"
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
        "args": {**vars(args), "baseline": str(args.baseline)},
        "prep": prep,
        "block_shape": shape,
        "snapshot_load": reactor_load,
        "load": load,
        "gc": gcs,
        "blocks": blocks,
        "reference_ms": reference.samples_ms,
        "decode_worker": worker,
        "views": views,
    }
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
