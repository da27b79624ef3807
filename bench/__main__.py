"""``python -m bench``: the end-to-end benchmark, with its baseline in the same run.

    python -m bench [--parts e2e,baseline] [--clients 100,1000] [--workers 1,2]
                    [--seconds 20] [--warmup-s 5] [--scale 0.2] [--json FILE]

Parts:

- ``e2e``: for every (clients, workers) pair, the real ``twistd orderbook``
  over TLS + permessage-deflate, the simulator at mainnet pace, load clients
  (3 subscriptions each) and a probe (see bench/e2e.py);
- ``baseline``: the naive server of bench/bench_fanout.py (autobahn's
  ``sendMessage`` per client: encoded and compressed per connection) at the
  same client counts, over TLS, for the CPU-per-message ratio.

Prints a table, and with ``--json FILE`` writes every figure there.
Numbers, never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_fanout beside this file

from bench import e2e  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--parts", default="e2e,baseline", help="e2e, baseline (comma list)")
    parser.add_argument("--clients", default="100,1000")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument(
        "--balance", default="reuseport", help="reuseport, shared (comma list; workers > 1)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per run")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="before each measured window")
    parser.add_argument("--scale", type=float, default=0.2, help="simulator load per block")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    return parser.parse_args(argv)


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def run_e2e(args: argparse.Namespace) -> list[dict]:
    rows = []
    for clients in numbers(args.clients):
        for workers in numbers(args.workers):
            for balance in args.balance.split(",") if workers > 1 else ["reuseport"]:
                run = e2e.run(
                    clients, workers, args.seconds, args.scale, args.warmup_s, balance=balance
                )
                rows.append(e2e.as_dict(run))
                print(e2e_line(rows[-1]), flush=True)
    return rows


def e2e_line(r: dict) -> str:
    lat = r["latency_ms"]
    return (
        f"e2e      clients={r['clients']:5d} workers={r['workers']} {r['balance']:9s} "
        f"blocks/s={r['blocks_per_s']:5.1f} delivered={r['delivered_per_s']:7.0f} msg/s "
        f"cpu={r['server_cpu_us_per_msg']:6.2f} us/msg ({r['server_cpu_cores']:.2f} cores) "
        f"latency p50={lat.get('p50', '-')} p99={lat.get('p99', '-')} max={lat.get('max', '-')} ms "
        f"(n={lat.get('count', 0)}) closed={r['client_closed']} slow={r['slow_closed']:.0f} "
        f"frames/conn={r['frames_per_connection']} conns={r['connections_per_worker']}"
    )


def run_baseline(args: argparse.Namespace) -> list[dict]:
    import bench_fanout

    rows = []
    for clients in numbers(args.clients):
        rate = 14.5  # blocks/s, one l2Book change each: mainnet pace
        row = bench_fanout.run(clients, min(args.seconds, 10.0), True, "autobahn", rate)
        rows.append(row)
        print(
            f"baseline clients={clients:5d} naive (sendMessage per client, TLS) "
            f"delivered={row['delivered_per_s']:7d} msg/s cpu={row['server_cpu_us_per_msg']:6.2f} us/msg",
            flush=True,
        )
    return rows


def ratios(e2e_rows: list[dict], baseline_rows: list[dict]) -> list[str]:
    naive = {row["clients"]: row["server_cpu_us_per_msg"] for row in baseline_rows}
    lines = []
    for row in e2e_rows:
        if row["clients"] in naive and row["server_cpu_us_per_msg"]:
            factor = naive[row["clients"]] / row["server_cpu_us_per_msg"]
            lines.append(
                f"ratio    clients={row['clients']:5d} workers={row['workers']}: "
                f"{factor:.1f}x cheaper per message than the naive server"
            )
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    parts = set(args.parts.split(","))
    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    print(f"machine: {meta['cpus']} cpus {meta['machine']}, Python {meta['python']}", flush=True)
    report: dict = {"meta": meta}
    if "e2e" in parts:
        report["e2e"] = run_e2e(args)
    if "baseline" in parts:
        report["baseline"] = run_baseline(args)
    for line in ratios(report.get("e2e", []), report.get("baseline", [])):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
