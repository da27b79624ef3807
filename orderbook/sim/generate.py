"""Write N blocks of node files as fast as possible, deterministically.

For benchmarks and replay tests: no reactor, no wall clock. Block ``i`` has
``block_time = start_time_ns + i * block_interval_ns`` and its lines are
stamped a fixed latency later, so one seed always gives byte-identical files.
Snapshots of the simulator's own book can be written at chosen heights, to
replay the files from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orderbook.sim.exchange import Exchange
from orderbook.sim.writer import NodeWriter, SteppingClock, write_snapshot

DEFAULT_START_NS = 1_777_582_003_304_461_819
"""2026-04-30T20:46:43.304461819, the first block of the mainnet fixture."""

BLOCK_INTERVAL_NS = 68_965_517
"""1 / 14.5 s: mainnet's block rate."""

WRITE_LATENCY_NS = 250_000_000


@dataclass
class Generated:
    """What :func:`generate` wrote."""

    first_height: int
    last_height: int
    snapshots: dict[int, Path] = field(default_factory=dict)
    exchange: Exchange | None = None
    writer: NodeWriter | None = None


def snapshot_path(directory: Path, height: int) -> Path:
    """Where :func:`generate` puts the snapshot taken at ``height``."""
    return Path(directory) / f"{height}.json"


def generate(
    data_dir: Path,
    blocks: int,
    seed: int = 0,
    mode: str = "by_block",
    scale: float = 1.0,
    extra_perps: int = 0,
    start_time_ns: int = DEFAULT_START_NS,
    block_interval_ns: int = BLOCK_INTERVAL_NS,
    snapshot_at: Iterable[int] = (),
    snapshot_every: int = 0,
    snapshot_dir: Path | None = None,
    split_probability: float = 0.05,
    start_height: int = 1_000_000_000,
    trade_share: float = 1.0,
    deep: Mapping[str, int] | None = None,
) -> Generated:
    """Write ``blocks`` blocks under ``data_dir``; return heights and snapshot paths.

    ``snapshot_at`` holds block counts (0 = the book before the first block,
    ``k`` = after the k-th block); ``snapshot_every=k`` adds one every k blocks.
    Snapshots go to ``snapshot_dir`` (default ``<data_dir>/snapshots``) as
    ``<height>.json``. ``trade_share`` and ``deep`` are :class:`Exchange`'s
    (quiet market, mainnet-deep books).
    """
    if blocks < 0:
        raise ValueError(f"blocks must be >= 0, got {blocks}")
    exchange = Exchange(
        seed=seed,
        scale=scale,
        extra_perps=extra_perps,
        start_height=start_height,
        start_time_ns=start_time_ns,
        trade_share=trade_share,
        deep=deep,
    )
    clock = SteppingClock(start_time_ns)
    writer = NodeWriter(data_dir, mode, clock=clock, seed=seed, split_probability=split_probability)
    wanted = set(snapshot_at)
    if snapshot_every > 0:
        wanted.update(range(0, blocks + 1, snapshot_every))
    directory = Path(snapshot_dir) if snapshot_dir is not None else Path(data_dir) / "snapshots"
    result = Generated(start_height + 1, start_height + blocks, exchange=exchange, writer=writer)
    try:
        for index in range(blocks + 1):
            if index in wanted:
                directory.mkdir(parents=True, exist_ok=True)
                path = snapshot_path(directory, exchange.height)
                write_snapshot(exchange.snapshot(), path)
                result.snapshots[exchange.height] = path
            if index == blocks:
                break
            time_ns = start_time_ns + index * block_interval_ns
            clock.now = time_ns + WRITE_LATENCY_NS
            writer.write_block(exchange.step(time_ns))
    finally:
        writer.close()
    return result
