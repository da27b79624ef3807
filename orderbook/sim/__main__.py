"""``python -m orderbook.sim``: run the node simulator, or generate files offline.

Live (default): writes blocks at ``--blocks-per-second`` (or ``--max-speed``)
under ``--data-dir``, serves ``POST /info`` and ``POST /control`` on
127.0.0.1:``--info-port``, prints one line::

    simulator ready: data_dir=/d info=http://127.0.0.1:3001/info height=1000000000 mode=by_block

and runs until SIGTERM/SIGINT (or until ``--blocks`` blocks are written).

Offline (``--offline``): writes ``--blocks`` blocks as fast as possible with a
synthetic clock (same seed, same bytes), optionally snapshots, and exits.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from orderbook.sim.exchange import QUIET_TRADE_SHARE
from orderbook.sim.generate import DEFAULT_START_NS, generate
from orderbook.sim.service import STREAMING_SPREAD_S
from orderbook.sim.writer import write_snapshot

LIGHT_SCALE = 0.02


def _start_time(text: str) -> int:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--start-time: {e}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {text}")
    return value


def _deep(text: str) -> tuple[str, int]:
    coin, sep, count = text.rpartition("=")
    if not sep or not coin or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"expected COIN=ORDERS (e.g. BTC=51000), got {text!r}")
    return coin, int(count)


def parser() -> argparse.ArgumentParser:
    """The command line (documented in docs/simulator.rst)."""
    p = argparse.ArgumentParser(prog="python -m orderbook.sim", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, required=True, help="where the node_* directories go")
    p.add_argument(
        "--info-port", type=int, default=3001, help="info server port (0: any free port)"
    )
    p.add_argument("--info-interface", default="127.0.0.1", help="info server address")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same history)")
    p.add_argument(
        "--blocks-per-second", type=_positive, default=14.5, help="block rate (mainnet: 14.5)"
    )
    p.add_argument(
        "--mode", choices=("by_block", "streaming"), default="by_block", help="file layout"
    )
    p.add_argument("--scale", type=float, default=1.0, help="events per block relative to mainnet")
    p.add_argument("--light", action="store_true", help=f"demo/test load: --scale {LIGHT_SCALE}")
    p.add_argument(
        "--trade-share",
        type=_share,
        default=1.0,
        help="share of blocks in which takers trade (1.0: every block has a few takers)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help=f"quiet market: --trade-share {QUIET_TRADE_SHARE} (most blocks have no fills)",
    )
    p.add_argument(
        "--deep",
        type=_deep,
        action="append",
        default=[],
        metavar="COIN=ORDERS",
        help="make COIN's book mainnet-deep (BTC=51000: ~51k orders, one level ~5k); repeatable",
    )
    p.add_argument(
        "--streaming-spread-ms",
        type=float,
        default=STREAMING_SPREAD_S * 1000,
        help="streaming: a block's rows reach the files over this many ms (live mode)",
    )
    p.add_argument("--max-speed", action="store_true", help="no pause between blocks")
    p.add_argument("--blocks", type=int, default=None, help="stop after this many blocks")
    p.add_argument(
        "--extra-perps", type=int, default=0, help="more perp coins besides the defaults"
    )
    p.add_argument(
        "--hour-seconds", type=_positive, default=3600.0, help="length of a file hour (tests)"
    )
    p.add_argument(
        "--start-time", type=_start_time, default=None, help="writer clock start, ISO UTC"
    )
    p.add_argument(
        "--split-probability", type=float, default=0.05, help="share of lines written in 2 parts"
    )
    p.add_argument("--offline", action="store_true", help="generate --blocks blocks and exit")
    p.add_argument("--snapshot-every", type=int, default=0, help="offline: snapshot every N blocks")
    p.add_argument("--snapshot-dir", type=Path, default=None, help="offline: snapshot directory")
    p.add_argument(
        "--dump-snapshot", type=Path, default=None, help="write the final book here on exit"
    )
    return p


def _offline(args: argparse.Namespace) -> int:
    if args.blocks is None:
        print("--offline needs --blocks N", file=sys.stderr)
        return 2
    result = generate(
        args.data_dir,
        args.blocks,
        seed=args.seed,
        mode=args.mode,
        scale=args.scale,
        extra_perps=args.extra_perps,
        start_time_ns=args.start_time or DEFAULT_START_NS,
        snapshot_every=args.snapshot_every,
        snapshot_dir=args.snapshot_dir,
        split_probability=args.split_probability,
        trade_share=args.trade_share,
        deep=dict(args.deep),
    )
    if args.dump_snapshot is not None and result.exchange is not None:
        write_snapshot(result.exchange.snapshot(), args.dump_snapshot)
    print(
        f"simulator generated: data_dir={args.data_dir} first={result.first_height} "
        f"last={result.last_height} snapshots={len(result.snapshots)}",
        flush=True,
    )
    return 0


def _live(args: argparse.Namespace) -> int:
    from twisted.internet import reactor

    from orderbook.sim.service import InfoPortError, SimulatorService

    service = SimulatorService(
        args.data_dir,
        info_port=args.info_port,
        seed=args.seed,
        blocks_per_second=args.blocks_per_second,
        mode=args.mode,
        scale=args.scale,
        max_speed=args.max_speed,
        blocks=args.blocks,
        extra_perps=args.extra_perps,
        hour_seconds=args.hour_seconds,
        start_time_ns=args.start_time,
        split_probability=args.split_probability,
        interface=args.info_interface,
        trade_share=args.trade_share,
        deep=dict(args.deep),
        streaming_spread_s=args.streaming_spread_ms / 1000,
    )
    try:
        service.startService()
    except InfoPortError as e:
        print(f"python -m orderbook.sim: {e}", file=sys.stderr)
        return 1

    def shutdown() -> object:
        if args.dump_snapshot is not None:
            write_snapshot(service.exchange.snapshot(), args.dump_snapshot)
        return service.stopService()

    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    service.done.addCallback(lambda _: reactor.stop())
    print(
        f"simulator ready: data_dir={args.data_dir} info={service.info_url} "
        f"height={service.height} mode={args.mode}",
        flush=True,
    )
    reactor.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run; returns the exit code."""
    args = parser().parse_args(argv)
    if args.light:
        args.scale = LIGHT_SCALE
    if args.quiet:
        args.trade_share = QUIET_TRADE_SHARE
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])],
        redirectStandardIO=False,
    )
    return _offline(args) if args.offline else _live(args)


if __name__ == "__main__":
    sys.exit(main())
